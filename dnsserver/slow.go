package dnsserver

import (
	"net/netip"

	"github.com/miekg/dns"
)

// serveSlow handles what the fast parser hands off: NOTIFY (we are a
// primary, so NOTIMP), TSIG-signed queries, and AXFR/IXFR that did not go
// through ServeStream (over UDP). It never runs for plain queries.
func (r *Responder) serveSlow(out, req []byte, q *query, t Transport, src netip.AddrPort) ([]byte, *zoneCounters, int) {
	if q.opcode == dns.OpcodeNotify {
		return bareReply(out, req, q, dns.RcodeNotImplemented), r.none, dns.RcodeNotImplemented
	}
	if !q.hasTSIG {
		return r.serveUnsigned(out, req, q, t, src, nil)
	}
	return r.serveSigned(out, req, q, t, src)
}

// serveUnsigned answers a request whose TSIG, if it had one, verified with
// key (nil: unsigned). req may still carry the TSIG for transfers; for
// other queries it must not.
func (r *Responder) serveUnsigned(out, req []byte, q *query, t Transport, src netip.AddrPort, key *tsigKey) ([]byte, *zoneCounters, int) {
	switch q.qtype {
	case dns.TypeAXFR:
		// AXFR runs on TCP through ServeStream; over UDP we choose NOTIMP
		// of the two answers RFC 5936 section 4.2 allows.
		return bareReply(out, req, q, dns.RcodeNotImplemented), r.none, dns.RcodeNotImplemented
	case dns.TypeIXFR:
		return r.ixfrUDP(out, req, q, t, src, key)
	}
	sc := r.pool.Get().(*scratch)
	defer r.pool.Put(sc)
	return r.answer(sc, out, req, src, t)
}

// ixfrUDP answers IXFR over UDP with our SOA alone when the client may
// transfer the zone: "use TCP" when out of date, "up to date" otherwise
// (RFC 1995 section 2).
func (r *Responder) ixfrUDP(out, req []byte, q *query, t Transport, src netip.AddrPort, key *tsigKey) ([]byte, *zoneCounters, int) {
	zd := r.snap.Load().zones[string(q.name())]
	if zd == nil || q.qclass != dns.ClassINET {
		return bareReply(out, req, q, dns.RcodeRefused), r.none, dns.RcodeRefused
	}
	zc := r.zoneCounters(zd)
	if !r.xfr.allowed(zd.origin, src, key) {
		args := []any{"zone", zd.origin, "transport", t.String(), "qtype", "IXFR", "reason", "not allowed"}
		if src.IsValid() {
			args = append(args, "client", src.Addr())
		}
		r.log.Info("zone transfer refused", args...)
		return bareReply(out, req, q, dns.RcodeRefused), zc, dns.RcodeRefused
	}
	sc := r.pool.Get().(*scratch)
	defer r.pool.Put(sc)
	sc.q = *q
	sc.r.reset()
	sc.r.aa = true
	sc.r.ans = append(sc.r.ans, rrRef{owner: zd.apex, set: zd.soa})
	return r.write(sc, out, req, t, 0), zc, dns.RcodeSuccess
}

// serveSigned verifies a request's TSIG. A failure is answered NOTAUTH
// with the TSIG error (RFC 8945 section 5.2); a valid request is answered
// as if unsigned and the reply signed with the same key.
func (r *Responder) serveSigned(out, req []byte, q *query, t Transport, src netip.AddrPort) ([]byte, *zoneCounters, int) {
	m := new(dns.Msg)
	if err := m.Unpack(req); err != nil || len(m.Question) != 1 {
		return bareReply(out, req, q, dns.RcodeFormatError), r.none, dns.RcodeFormatError
	}
	st := r.xfr.verifyTSIG(req, m)
	if st.failed() {
		b, err := tsigErrorReply(m, st)
		if err != nil {
			return bareReply(out, req, q, dns.RcodeNotAuth), r.none, dns.RcodeNotAuth
		}
		return append(out[:0], b...), r.none, dns.RcodeNotAuth
	}
	unsigned := req
	if q.qtype != dns.TypeAXFR && q.qtype != dns.TypeIXFR {
		var ok bool
		if unsigned, ok = withoutTSIG(req, q); !ok {
			return bareReply(out, req, q, dns.RcodeFormatError), r.none, dns.RcodeFormatError
		}
	}
	reply, zc, rcode := r.serveUnsigned(out, unsigned, q, t, src, st.key)
	if reply == nil {
		return nil, zc, rcode
	}
	signed, ok := r.signReply(reply, q, t, newSigner(st))
	if !ok {
		return bareReply(out, req, q, dns.RcodeServerFailure), zc, dns.RcodeServerFailure
	}
	return append(out[:0], signed...), zc, rcode
}

// signReply appends a TSIG to reply. When the signed reply no longer fits
// the client's UDP buffer it is cut to the header and question with TC set,
// signed, so the client retries over TCP.
func (r *Responder) signReply(reply []byte, q *query, t Transport, s *tsigSigner) ([]byte, bool) {
	if s == nil {
		return reply, true
	}
	m := new(dns.Msg)
	if err := m.Unpack(reply); err != nil {
		r.log.Debug("sign reply: unpack own reply", "error", err)
		return nil, false
	}
	limit := r.replyLimit(q, t)
	retry := *s // the truncated reply is signed afresh, not chained
	signed, err := s.pack(m.Copy())
	if err == nil && len(signed) > limit {
		m.Answer, m.Ns, m.Truncated = nil, nil, true
		extra := m.Extra[:0]
		for _, rr := range m.Extra {
			if rr.Header().Rrtype == dns.TypeOPT {
				extra = append(extra, rr)
			}
		}
		m.Extra = extra
		signed, err = retry.pack(m)
	}
	if err != nil {
		r.log.Debug("sign reply", "error", err)
		return nil, false
	}
	return signed, true
}
