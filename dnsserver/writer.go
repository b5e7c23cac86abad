package dnsserver

import (
	"net/netip"

	"github.com/miekg/dns"
)

const headerLen = 12

// Sections of a reply, as indexes into writer.counts.
const (
	secAnswer = iota
	secAuthority
	secAdditional
)

// writer appends a reply to a buffer: header, the question copied from the
// query (so owner names that point at it echo the query's case), whole
// RRsets, and the OPT record. Owner names are compressed against the
// question; RDATA is copied pre-packed.
type writer struct {
	b      []byte
	limit  int    // bytes available for everything before the OPT record
	q      []byte // lowercase question name
	qoffs  [128]uint8
	qn     int
	counts [3]uint16
	tc     bool
}

// begin writes the header (counts patched by finish) and the question.
// question is the query's question in its original case (name, type, class).
func (w *writer) begin(out []byte, limit int, req []byte, qlower, question []byte, flags uint16) {
	w.b = append(out[:0], req[0], req[1], byte(flags>>8), byte(flags), 0, 1, 0, 0, 0, 0, 0, 0)
	w.b = append(w.b, question...)
	w.limit, w.q, w.tc = limit, qlower, false
	w.counts = [3]uint16{}
	w.qn = labelOffsets(qlower, &w.qoffs)
}

// qSuffix returns the offset within the question name of a suffix equal to
// suf that starts on a label boundary, or -1.
func (w *writer) qSuffix(suf []byte) int {
	j := len(w.q) - len(suf)
	if j < 0 {
		return -1
	}
	for k := 0; k < w.qn; k++ {
		if o := int(w.qoffs[k]); o == j {
			if string(w.q[j:]) == string(suf) {
				return j
			}
			return -1
		} else if o > j {
			return -1
		}
	}
	return -1
}

// writeOwner appends owner, ending in a pointer into the question where a
// suffix matches.
func (w *writer) writeOwner(owner []byte) {
	for i := 0; i < len(owner) && owner[i] != 0; i += int(owner[i]) + 1 {
		if j := w.qSuffix(owner[i:]); j >= 0 {
			ptr := headerLen + j
			w.b = append(w.b, owner[:i]...)
			w.b = append(w.b, 0xC0|byte(ptr>>8), byte(ptr))
			return
		}
	}
	w.b = append(w.b, owner...)
}

// addSet appends a whole RRset to section sec, or nothing if it does not fit
// within the limit. It reports whether the set was written.
func (w *writer) addSet(sec int, owner []byte, s *rrset) bool {
	start := len(w.b)
	ownerStart, ownerLen := 0, 0
	for i, body := range s.bodies {
		switch {
		case i == 0:
			ownerStart = len(w.b)
			w.writeOwner(owner)
			ownerLen = len(w.b) - ownerStart
		case ownerLen == 2 || ownerStart > 0x3FFF:
			w.b = append(w.b, w.b[ownerStart:ownerStart+ownerLen]...)
		default:
			w.b = append(w.b, 0xC0|byte(ownerStart>>8), byte(ownerStart))
		}
		w.b = append(w.b, body...)
	}
	if len(w.b) > w.limit {
		w.b = w.b[:start]
		return false
	}
	w.counts[sec] += uint16(len(s.bodies))
	return true
}

// addAddrs appends one A or AAAA record per address (a GSLB answer), all
// or nothing.
func (w *writer) addAddrs(owner []byte, rtype uint16, ttl uint32, addrs []netip.Addr) bool {
	start := len(w.b)
	ownerStart, ownerLen := 0, 0
	for i, a := range addrs {
		if i == 0 {
			ownerStart = len(w.b)
			w.writeOwner(owner)
			ownerLen = len(w.b) - ownerStart
		} else {
			w.b = append(w.b, w.b[ownerStart:ownerStart+ownerLen]...)
		}
		w.b = append(w.b, byte(rtype>>8), byte(rtype), 0, byte(dns.ClassINET),
			byte(ttl>>24), byte(ttl>>16), byte(ttl>>8), byte(ttl))
		if rtype == dns.TypeA {
			b := a.As4()
			w.b = append(w.b, 0, 4)
			w.b = append(w.b, b[:]...)
		} else {
			b := a.As16()
			w.b = append(w.b, 0, 16)
			w.b = append(w.b, b[:]...)
		}
	}
	if len(w.b) > w.limit {
		w.b = w.b[:start]
		return false
	}
	w.counts[secAnswer] += uint16(len(addrs))
	return true
}

// addHINFO appends the RFC 8482 synthetic HINFO ("RFC8482", "").
func (w *writer) addHINFO(owner []byte, ttl uint32) bool {
	start := len(w.b)
	w.writeOwner(owner)
	w.b = append(w.b, 0, byte(dns.TypeHINFO), 0, byte(dns.ClassINET),
		byte(ttl>>24), byte(ttl>>16), byte(ttl>>8), byte(ttl),
		0, 9, 7, 'R', 'F', 'C', '8', '4', '8', '2', 0)
	if len(w.b) > w.limit {
		w.b = w.b[:start]
		return false
	}
	w.counts[secAnswer]++
	return true
}

// writeResult writes r's sections. A set of the answer or authority section,
// or required glue, that does not fit sets TC and ends the reply; optional
// additional data that does not fit is left out (RFC 2181 section 9).
func (w *writer) writeResult(r *result) {
	if r.hinfo {
		if !w.addHINFO(r.ans[0].owner, r.hinfoTTL) {
			w.tc = true
		}
		return
	}
	for _, a := range r.ans {
		if !w.addSet(secAnswer, a.owner, a.set) {
			w.tc = true
			return
		}
	}
	if r.dyn != nil && !w.addAddrs(r.dynOwner, r.dynType, r.addrTTL, r.addrs) {
		w.tc = true
		return
	}
	for _, a := range r.ns {
		if !w.addSet(secAuthority, a.owner, a.set) {
			w.tc = true
			return
		}
	}
	for _, a := range r.extra {
		if !w.addSet(secAdditional, a.owner, a.set) && a.required {
			w.tc = true
			return
		}
	}
}

// finish patches the counts and flags; arcount includes an OPT record the
// caller appends afterwards when hasOPT.
func (w *writer) finish(rcode uint8, aa, hasOPT bool) []byte {
	b := w.b
	if aa {
		b[2] |= 0x04
	}
	if w.tc {
		b[2] |= 0x02
	}
	b[3] = b[3]&0xF0 | rcode&0x0F
	ar := w.counts[secAdditional]
	if hasOPT {
		ar++
	}
	b[6], b[7] = byte(w.counts[secAnswer]>>8), byte(w.counts[secAnswer])
	b[8], b[9] = byte(w.counts[secAuthority]>>8), byte(w.counts[secAuthority])
	b[10], b[11] = byte(ar>>8), byte(ar)
	return b
}
