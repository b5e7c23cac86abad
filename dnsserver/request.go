package dnsserver

import (
	"encoding/binary"
	"net/netip"

	"github.com/miekg/dns"
)

// parseStatus is what parsing a query decided.
type parseStatus uint8

const (
	parseOK      parseStatus = iota
	parseDrop                // not a query we answer at all (too short, a response)
	parseFormErr             // malformed: FORMERR
	parseNotImp              // opcode we do not implement
	parseBadVers             // EDNS version > 0: BADVERS
	parseSlow                // needs the full parser (TSIG, transfers, NOTIFY)
)

// ecsOption is a validated EDNS Client Subnet option (RFC 7871).
type ecsOption struct {
	present bool
	family  uint16
	source  uint8
	addr    [16]byte
}

// Prefix returns the client subnet as a netip.Prefix.
func (e *ecsOption) Prefix() netip.Prefix {
	var a netip.Addr
	if e.family == 1 {
		a = netip.AddrFrom4([4]byte(e.addr[:4]))
	} else {
		a = netip.AddrFrom16(e.addr)
	}
	return netip.PrefixFrom(a, int(e.source))
}

// query is a parsed question plus what the reply must reflect.
type query struct {
	qname    [maxNameLen]byte // lowercase wire form
	qlen     int
	qtype    uint16
	qclass   uint16
	qend     int // offset after the question in the request
	opcode   uint8
	edns     bool
	udpSize  uint16
	version  uint8
	do       bool
	ecs      ecsOption
	nscount  uint16
	hasTSIG  bool
	question []byte // the question as sent (original case)
}

func (q *query) name() []byte { return q.qname[:q.qlen] }

// parse validates req as a query. It fills q as far as it got, so even an
// error reply can carry the question and the OPT record when those parts
// were sound. Messages with an opcode we do not implement are still parsed
// (generically) for that reason, and then reported as parseNotImp.
func (q *query) parse(req []byte) parseStatus {
	if len(req) < headerLen || req[2]&0x80 != 0 {
		return parseDrop
	}
	q.opcode = (req[2] >> 3) & 0x0F
	q.qlen, q.question, q.edns, q.ecs.present, q.hasTSIG = 0, nil, false, false, false
	if q.opcode == dns.OpcodeNotify {
		return parseSlow
	}
	st := q.parseMessage(req)
	if q.opcode != dns.OpcodeQuery {
		return parseNotImp
	}
	return st
}

func (q *query) parseMessage(req []byte) parseStatus {
	qd := binary.BigEndian.Uint16(req[4:])
	an := binary.BigEndian.Uint16(req[6:])
	q.nscount = binary.BigEndian.Uint16(req[8:])
	ar := binary.BigEndian.Uint16(req[10:])
	if qd != 1 {
		return parseFormErr
	}
	n, off, ok := readQName(&q.qname, req, headerLen)
	if !ok || off+4 > len(req) {
		return parseFormErr
	}
	q.qlen = n
	q.qtype = binary.BigEndian.Uint16(req[off:])
	q.qclass = binary.BigEndian.Uint16(req[off+2:])
	q.qend = off + 4
	q.question = req[headerLen:q.qend]
	off = q.qend
	// The answer and authority sections of a query are empty, except for
	// IXFR's SOA in authority (other opcodes may use them).
	for i := 0; i < int(an)+int(q.nscount); i++ {
		if off, ok = skipRR(req, off); !ok {
			return parseFormErr
		}
	}
	if q.opcode == dns.OpcodeQuery && (an != 0 || (q.nscount != 0 && q.qtype != dns.TypeIXFR)) {
		return parseFormErr
	}
	return q.parseAdditional(req, off, ar)
}

// skipRR skips one resource record and returns the offset after it.
func skipRR(msg []byte, off int) (int, bool) {
	off, ok := skipName(msg, off)
	if !ok || off+10 > len(msg) {
		return 0, false
	}
	end := off + 10 + int(binary.BigEndian.Uint16(msg[off+8:]))
	return end, end <= len(msg)
}

// parseAdditional reads the additional section: at most one OPT (at the
// root, RFC 6891 section 6.1.1) and a TSIG that must come last.
func (q *query) parseAdditional(req []byte, off int, ar uint16) parseStatus {
	status := parseOK
	for i := 0; i < int(ar); i++ {
		if q.hasTSIG {
			return parseFormErr // TSIG must be the last record (RFC 8945 5.1)
		}
		nameEnd, ok := skipName(req, off)
		if !ok || nameEnd+10 > len(req) {
			return parseFormErr
		}
		rtype := binary.BigEndian.Uint16(req[nameEnd:])
		rdlen := int(binary.BigEndian.Uint16(req[nameEnd+8:]))
		rdata := nameEnd + 10
		if rdata+rdlen > len(req) {
			return parseFormErr
		}
		switch rtype {
		case dns.TypeOPT:
			if q.edns || nameEnd != off+1 || req[off] != 0 {
				return parseFormErr // a second OPT, or one not owned by the root
			}
			q.edns = true
			q.udpSize = binary.BigEndian.Uint16(req[nameEnd+2:])
			q.version = req[nameEnd+5]
			q.do = req[nameEnd+6]&0x80 != 0
			if !q.parseOptions(req[rdata : rdata+rdlen]) {
				return parseFormErr
			}
		case dns.TypeTSIG:
			q.hasTSIG = true
			status = parseSlow
		}
		off = rdata + rdlen
	}
	if q.edns && q.version != 0 {
		return parseBadVers
	}
	if q.qtype == dns.TypeAXFR || q.qtype == dns.TypeIXFR {
		return parseSlow
	}
	return status
}

// parseOptions walks EDNS options; unknown ones are ignored (RFC 6891
// section 6.1.2), ECS is validated strictly.
func (q *query) parseOptions(opts []byte) bool {
	for len(opts) > 0 {
		if len(opts) < 4 {
			return false
		}
		code := binary.BigEndian.Uint16(opts)
		l := int(binary.BigEndian.Uint16(opts[2:]))
		if 4+l > len(opts) {
			return false
		}
		if code == dns.EDNS0SUBNET {
			if q.ecs.present || !q.ecs.parse(opts[4:4+l]) {
				return false
			}
		}
		opts = opts[4+l:]
	}
	return true
}

// parse validates an ECS option per RFC 7871 section 6: a known FAMILY, a
// SOURCE PREFIX-LENGTH within the family, SCOPE 0 in queries, exactly
// ceil(SOURCE/8) address octets and no bits set past SOURCE.
func (e *ecsOption) parse(b []byte) bool {
	if len(b) < 4 {
		return false
	}
	e.family = binary.BigEndian.Uint16(b)
	e.source = b[2]
	scope := b[3]
	addr := b[4:]
	var max uint8
	switch e.family {
	case 1:
		max = 32
	case 2:
		max = 128
	default:
		return false
	}
	if e.source > max || scope != 0 || len(addr) != (int(e.source)+7)/8 {
		return false
	}
	if rem := e.source % 8; rem != 0 && addr[len(addr)-1]&(0xFF>>rem) != 0 {
		return false
	}
	e.addr = [16]byte{}
	copy(e.addr[:], addr)
	e.present = true
	return true
}
