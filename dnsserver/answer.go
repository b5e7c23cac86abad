package dnsserver

import (
	"net/netip"

	"github.com/miekg/dns"

	"github.com/gslbd/gslbd/gslb"
)

const (
	optFixedLen = 11     // root name, TYPE, CLASS, TTL, RDLENGTH
	maxTCPMsg   = 0xFFFF // RFC 1035 4.2.2 length prefix bound
)

// answer parses req and writes the reply into out. It returns nil to drop.
func (r *Responder) answer(sc *scratch, out, req []byte, src netip.AddrPort, t Transport) ([]byte, *zoneCounters, int) {
	q := &sc.q
	switch q.parse(req) {
	case parseDrop:
		return nil, nil, 0
	case parseFormErr:
		return r.errorReply(out, req, q, dns.RcodeFormatError), r.none, dns.RcodeFormatError
	case parseNotImp:
		return r.errorReply(out, req, q, dns.RcodeNotImplemented), r.none, dns.RcodeNotImplemented
	case parseBadVers:
		return r.badVers(out, req, q), r.none, dns.RcodeBadVers
	case parseSlow:
		// NOTIFY, TSIG-signed queries and transfers over UDP: we are a
		// primary only and transfers run on TCP through ServeStream.
		return r.serveSlow(out, req, q, t, src)
	}
	switch {
	case q.qtype == dns.TypeOPT:
		return r.errorReply(out, req, q, dns.RcodeFormatError), r.none, dns.RcodeFormatError
	case q.qtype == dns.TypeTKEY || q.qtype == dns.TypeTSIG || q.qtype == dns.TypeMAILA || q.qtype == dns.TypeMAILB:
		return r.errorReply(out, req, q, dns.RcodeNotImplemented), r.none, dns.RcodeNotImplemented
	}
	res := &sc.r
	res.reset()
	zc := r.none
	var scope uint8
	switch q.qclass {
	case dns.ClassINET:
		zd := r.snap.Load().findZone(q.name(), q.qtype)
		if zd == nil {
			res.rcode = dns.RcodeRefused
			break
		}
		zc = r.zoneCounters(zd)
		zd.lookup(res, q.name(), q.qtype)
		if res.dyn != nil {
			scope = r.decide(sc, zd, src)
		}
	case dns.ClassCHAOS:
		r.chaosLookup(res, q)
	default:
		res.rcode = dns.RcodeRefused
	}
	return r.write(sc, out, req, t, scope), zc, int(res.rcode)
}

// decide asks the GSLB engine for a GSLB name's addresses and returns the
// ECS scope the answer depended on.
func (r *Responder) decide(sc *scratch, zd *zoneData, src netip.AddrPort) uint8 {
	res, a := &sc.r, &sc.g
	gq := gslb.Query{Name: res.dyn.gslb, IPv6: res.dynType == dns.TypeAAAA, Resolver: src.Addr()}
	if sc.q.ecs.present {
		gq.ECS = sc.q.ecs.Prefix()
	}
	a.Addrs = sc.ga[:0]
	if r.cfg.GSLB != nil {
		r.cfg.GSLB.Decide(gq, a)
	} else {
		a.Outcome = gslb.NotGSLB
	}
	switch a.Outcome {
	case gslb.Answered:
		if len(a.Addrs) > 0 {
			res.addrs, res.addrTTL = a.Addrs, a.TTL
			return a.Scope
		}
	case gslb.ServFail:
		res.dyn, res.rcode, res.aa = nil, dns.RcodeServerFailure, false
		res.ans = res.ans[:0]
		return 0
	case gslb.NotGSLB:
		a.Scope = 0
	}
	// NODATA. Its scope is the decision's: a geofence that leaves a region
	// without an answer must not be cached for everyone.
	res.dyn = nil
	res.ns = append(res.ns, rrRef{owner: zd.apex, set: zd.negSOA})
	return a.Scope
}

// zoneCounters returns the metrics counters of a compiled zone.
func (r *Responder) zoneCounters(zd *zoneData) *zoneCounters {
	if zd.counters == nil {
		return r.none
	}
	return zd.counters
}

// chaosLookup answers the configured CHAOS TXT names; all else is REFUSED.
func (r *Responder) chaosLookup(res *result, q *query) {
	s := r.chaos[string(q.name())]
	if s == nil || (q.qtype != dns.TypeTXT && q.qtype != dns.TypeANY) {
		res.rcode = dns.RcodeRefused
		return
	}
	res.aa = true
	res.ans = append(res.ans, rrRef{owner: q.name(), set: s})
}

// replyLimit is the largest reply we may send to this query.
func (r *Responder) replyLimit(q *query, t Transport) int {
	if t == TCP {
		return maxTCPMsg
	}
	if !q.edns {
		return 512
	}
	return int(max(512, min(q.udpSize, r.cfg.MaxUDPSize)))
}

// replyFlags are the header flags copied from the query: opcode, RD, CD.
func replyFlags(req []byte) uint16 {
	return 0x8000 | uint16(req[2]&0x79)<<8 | uint16(req[3]&0x10)
}

// write renders sc.r for sc.q: header, question, sections, OPT.
func (r *Responder) write(sc *scratch, out, req []byte, t Transport, scope uint8) []byte {
	q, res, w := &sc.q, &sc.r, &sc.w
	limit := r.replyLimit(q, t)
	if q.edns {
		limit -= optLen(q)
	}
	w.begin(out, limit, req, q.name(), q.question, replyFlags(req))
	w.writeResult(res)
	b := w.finish(res.rcode, res.aa, q.edns)
	if q.edns {
		b = r.appendOPT(b, q, 0, scope)
	}
	return b
}

func optLen(q *query) int {
	n := optFixedLen
	if q.ecs.present {
		n += 8 + (int(q.ecs.source)+7)/8
	}
	return n
}

// appendOPT appends our OPT record: our payload size, the extended rcode
// bits, version 0, the DO bit copied (RFC 3225), and the ECS option echoed
// with the scope the answer used (RFC 7871 section 7.2.1).
func (r *Responder) appendOPT(b []byte, q *query, extRcode uint8, scope uint8) []byte {
	size := r.cfg.MaxUDPSize
	var do byte
	if q.do {
		do = 0x80
	}
	b = append(b, 0, 0, byte(dns.TypeOPT), byte(size>>8), byte(size), extRcode, 0, do, 0)
	if !q.ecs.present {
		return append(b, 0, 0)
	}
	alen := (int(q.ecs.source) + 7) / 8
	olen := 4 + alen
	b = append(b, 0, byte(4+olen), 0, byte(dns.EDNS0SUBNET), 0, byte(olen),
		byte(q.ecs.family>>8), byte(q.ecs.family), q.ecs.source, scope)
	return append(b, q.ecs.addr[:alen]...)
}

// bareReply is an error reply: the header, the question when it parsed,
// no OPT (the OPT may be what was wrong).
func bareReply(out, req []byte, q *query, rcode int) []byte {
	flags := replyFlags(req) | uint16(rcode&0x0F)
	b := append(out[:0], req[0], req[1], byte(flags>>8), byte(flags), 0, 0, 0, 0, 0, 0, 0, 0)
	if q.question != nil {
		b[5] = 1
		b = append(b, q.question...)
	}
	return b
}

// errorReply is bareReply plus our OPT when the query carried a sound OPT
// record (RFC 6891 section 7: a reply to an EDNS query carries OPT). The
// ECS option is not echoed: it may be what was malformed.
func (r *Responder) errorReply(out, req []byte, q *query, rcode int) []byte {
	b := bareReply(out, req, q, rcode)
	if !q.edns {
		return b
	}
	b[11] = 1
	q.ecs.present = false
	return r.appendOPT(b, q, 0, 0)
}

// badVers answers an EDNS version we do not speak: BADVERS (extended rcode
// 16 = 1<<4) with our OPT at version 0 (RFC 6891 section 6.1.3).
func (r *Responder) badVers(out, req []byte, q *query) []byte {
	b := bareReply(out, req, q, 0)
	b[11] = 1
	q.ecs.present = false
	return r.appendOPT(b, q, dns.RcodeBadVers>>4, 0)
}
