package dnsserver

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// xfrMsgBudget is the size we aim at for each message of a transfer: the
// uncompressed length of its records, so a packed message stays below it.
const xfrMsgBudget = 16 << 10

// isTransferQuery reports, from the raw bytes and without unpacking,
// whether req is a query (QR clear, opcode QUERY, one question) for AXFR or
// IXFR. It is called for every TCP message, so it must stay cheap.
func isTransferQuery(req []byte) bool {
	if len(req) < headerLen || req[2]&0x80 != 0 || (req[2]>>3)&0x0F != dns.OpcodeQuery ||
		binary.BigEndian.Uint16(req[4:]) != 1 {
		return false
	}
	off, ok := skipName(req, headerLen)
	if !ok || off+2 > len(req) {
		return false
	}
	t := binary.BigEndian.Uint16(req[off:])
	return t == dns.TypeAXFR || t == dns.TypeIXFR
}

// serialLess reports whether serial a is older than b in RFC 1982 serial
// number arithmetic.
func serialLess(a, b uint32) bool {
	return a != b && int32(b-a) > 0
}

// xfr is one zone transfer being answered.
type xfr struct {
	r     *Responder
	req   *dns.Msg
	src   netip.AddrPort
	send  func([]byte) error
	sign  *tsigSigner
	opt   *dns.OPT // our OPT when the request had one
	zone  string   // the question name, for logs
	start time.Time
	msgs  int
	bytes int
}

// serveTransfer answers AXFR and IXFR over TCP (RFC 5936, RFC 1995). It
// returns false, having done nothing, for any other message.
func (r *Responder) serveTransfer(req []byte, src netip.AddrPort, send func([]byte) error) bool {
	if !isTransferQuery(req) {
		return false
	}
	x := &xfr{r: r, src: src, send: send, start: time.Now()}
	zc, rcode := x.serve(req)
	qtype := uint16(dns.TypeAXFR)
	if x.req != nil {
		qtype = x.req.Question[0].Qtype
	}
	r.metrics.count(zc, qtype, rcode, TCP, x.bytes)
	r.metrics.latency[TCP].observeDuration(time.Since(x.start))
	return true
}

// serve checks the request and streams the zone, or sends an error reply.
func (x *xfr) serve(req []byte) (*zoneCounters, int) {
	r := x.r
	m := new(dns.Msg)
	if err := m.Unpack(req); err != nil || len(m.Question) != 1 || !tsigLast(m) {
		x.sendRaw(formErr(req))
		return r.none, dns.RcodeFormatError
	}
	x.req, x.zone = m, dns.CanonicalName(m.Question[0].Name)
	st := r.xfr.verifyTSIG(req, m)
	if st.failed() {
		x.refuse(nil, "tsig "+dns.RcodeToString[int(st.err)])
		out, err := tsigErrorReply(m, st)
		if err == nil {
			x.sendRaw(out)
		}
		return r.none, dns.RcodeNotAuth
	}
	x.sign = newSigner(st)
	if o := m.IsEdns0(); o != nil {
		x.opt = &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		x.opt.SetUDPSize(r.cfg.MaxUDPSize)
		if o.Version() != 0 {
			return r.none, x.reply(dns.RcodeBadVers)
		}
	}
	q := m.Question[0]
	var zd *zoneData
	if apex, err := wireName(q.Name); err == nil && q.Qclass == dns.ClassINET {
		zd = r.snap.Load().zones[string(apex)]
	}
	if zd == nil {
		x.refuse(nil, "zone not served")
		return r.none, x.reply(dns.RcodeRefused)
	}
	zc := r.zoneCounters(zd)
	if !r.xfr.allowed(zd.origin, x.src, st.key) {
		x.refuse(st.key, "not allowed")
		return zc, x.reply(dns.RcodeRefused)
	}
	if q.Qtype == dns.TypeIXFR {
		client, ok := ixfrSerial(m)
		if !ok {
			return zc, x.reply(dns.RcodeFormatError)
		}
		if !serialLess(client, zd.serial) {
			// Up to date: a single SOA (RFC 1995 section 2).
			x.flush(x.newMsg(true, zd.soa.rrs[0]))
			return zc, dns.RcodeSuccess
		}
		// No history is kept: an AXFR-style reply (RFC 1995 section 4).
	}
	x.stream(zd, st.key)
	return zc, dns.RcodeSuccess
}

// tsigLast reports that a TSIG, if any, is the last record (RFC 8945 5.1).
func tsigLast(m *dns.Msg) bool {
	for i, rr := range m.Extra {
		if rr.Header().Rrtype == dns.TypeTSIG && i != len(m.Extra)-1 {
			return false
		}
	}
	return true
}

// ixfrSerial returns the client's serial: the SOA in the authority section
// of an IXFR query (RFC 1995 section 3).
func ixfrSerial(m *dns.Msg) (uint32, bool) {
	if len(m.Ns) != 1 {
		return 0, false
	}
	soa, ok := m.Ns[0].(*dns.SOA)
	if !ok {
		return 0, false
	}
	return soa.Serial, true
}

// formErr is a FORMERR reply to a message that did not unpack: the header
// only, with the ID and opcode echoed.
func formErr(req []byte) []byte {
	return []byte{req[0], req[1], 0x80 | req[2]&0x78, dns.RcodeFormatError, 0, 0, 0, 0, 0, 0, 0, 0}
}

// newMsg starts a reply message; the question goes in the first only
// (RFC 5936 section 2.2).
func (x *xfr) newMsg(first bool, answer ...dns.RR) *dns.Msg {
	m := new(dns.Msg)
	m.Id, m.Response, m.Opcode, m.Authoritative = x.req.Id, true, dns.OpcodeQuery, true
	if first {
		m.Question = x.req.Question
	}
	m.Answer = answer
	if x.opt != nil {
		m.Extra = append(m.Extra, x.opt)
	}
	return m
}

// reply sends a single error reply (signed when the request was) and
// returns its rcode. A failed send is the transport's to report.
func (x *xfr) reply(rcode int) int {
	m := x.newMsg(true)
	m.Authoritative = false
	m.Rcode = rcode
	x.flush(m)
	return rcode
}

// flush packs, signs and sends m.
func (x *xfr) flush(m *dns.Msg) error {
	out, err := x.sign.pack(m)
	if err != nil {
		return fmt.Errorf("pack transfer message: %w", err)
	}
	return x.sendRaw(out)
}

func (x *xfr) sendRaw(out []byte) error {
	if err := x.send(out); err != nil {
		return fmt.Errorf("send transfer message: %w", err)
	}
	x.msgs++
	x.bytes += len(out)
	return nil
}

// refuse logs a refused transfer. Transfers are rare: Info is not spam.
func (x *xfr) refuse(key *tsigKey, reason string) {
	args := []any{"zone", x.zone, "client", x.src.Addr(), "reason", reason}
	if key != nil {
		args = append(args, "key", key.name)
	}
	if x.req != nil {
		args = append(args, "qtype", dns.TypeToString[x.req.Question[0].Qtype])
	}
	x.r.log.Info("zone transfer refused", args...)
}

// stream sends the zone: its SOA, every other record, the SOA again (RFC
// 5936 section 2.2), in messages of about xfrMsgBudget bytes.
func (x *xfr) stream(zd *zoneData, key *tsigKey) {
	soa := zd.soa.rrs[0]
	m := x.newMsg(true, soa)
	size, n := dns.Len(soa), 1
	var err error
	for _, rec := range zd.src.Records {
		rr := rec.RR
		if rr == nil || rr.Header().Rrtype == dns.TypeSOA {
			continue
		}
		l := dns.Len(rr)
		if size+l > xfrMsgBudget {
			if err = x.flush(m); err != nil {
				break
			}
			m, size = x.newMsg(false), 0
		}
		m.Answer = append(m.Answer, rr)
		size += l
		n++
	}
	if err == nil {
		m.Answer = append(m.Answer, soa)
		err = x.flush(m)
		n++
	}
	args := []any{"zone", zd.origin, "client", x.src.Addr(), "qtype", dns.TypeToString[x.req.Question[0].Qtype],
		"serial", zd.serial, "records", n, "messages", x.msgs, "bytes", x.bytes, "duration", time.Since(x.start)}
	if key != nil {
		args = append(args, "key", key.name)
	}
	if err != nil {
		x.r.log.Info("zone transfer aborted", append(args, "error", err)...)
		return
	}
	x.r.log.Info("zone transfer", args...)
}
