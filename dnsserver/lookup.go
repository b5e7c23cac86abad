package dnsserver

import (
	"net/netip"

	"github.com/miekg/dns"
)

// maxCNAMEChain bounds in-zone CNAME chasing (loops and long chains).
const maxCNAMEChain = 12

// rrRef is one RRset placed in a reply, with the owner name to write.
type rrRef struct {
	owner    []byte // lowercase wire form
	set      *rrset
	required bool // additional section only: mandatory glue
}

// result is the outcome of a lookup, before it is written.
type result struct {
	rcode uint8
	aa    bool
	ans   []rrRef
	ns    []rrRef
	extra []rrRef
	// hinfo asks the writer for the RFC 8482 synthetic HINFO instead of ans.
	hinfo    bool
	hinfoTTL uint32
	// dyn is a GSLB name whose addresses the engine decides; dynOwner is
	// the owner to write them with (after any CNAMEs in ans).
	dyn      *node
	dynOwner []byte
	dynType  uint16
	addrs    []netip.Addr // the engine's answer for dyn
	addrTTL  uint32
}

func (r *result) reset() {
	r.rcode, r.aa, r.hinfo, r.hinfoTTL = dns.RcodeSuccess, false, false, 0
	r.ans, r.ns, r.extra = r.ans[:0], r.ns[:0], r.extra[:0]
	r.dyn, r.dynOwner = nil, nil
}

// snapshot is the immutable set of compiled zones that queries read.
type snapshot struct {
	zones map[string]*zoneData // keyed by lowercase wire apex
}

// findZone returns the zone with the longest apex that is a suffix of
// qname. For DS, the zone whose apex is qname itself is skipped when a
// parent zone is also served, since DS lives on the parent side of a cut
// (RFC 4035 section 3.1.4.1).
func (s *snapshot) findZone(qname []byte, qtype uint16) *zoneData {
	var child *zoneData
	for off := 0; off < len(qname); off += int(qname[off]) + 1 {
		if zd := s.zones[string(qname[off:])]; zd != nil {
			if qtype == dns.TypeDS && off == 0 && len(qname) > 1 {
				child = zd
				continue
			}
			return zd
		}
		if qname[off] == 0 {
			break
		}
	}
	return child
}

// lookup answers qname/qtype from zd following RFC 1034 section 4.3.2 with
// RFC 4592 wildcards, in-zone CNAME chains and RFC 8482 ANY.
func (zd *zoneData) lookup(r *result, qname []byte, qtype uint16) {
	r.aa = true
	name := qname
	for hop := 0; ; hop++ {
		n, owner, cut := zd.find(name, qtype)
		switch {
		case cut != nil:
			zd.referral(r, cut)
			if hop == 0 {
				r.aa = false
			}
			return
		case n == nil:
			r.rcode = dns.RcodeNameError
			r.ns = append(r.ns, rrRef{owner: zd.apex, set: zd.negSOA})
			return
		}
		if n.cname != nil && qtype != dns.TypeCNAME && qtype != dns.TypeANY {
			r.ans = append(r.ans, rrRef{owner: owner, set: n.cname})
			if hop+1 >= maxCNAMEChain || !isSubdomain(n.cname.target, zd.apex) || zd.inChain(r, n.cname.target) {
				return // out of zone, too long or a loop: the resolver goes on
			}
			name = n.cname.target
			continue
		}
		zd.answerNode(r, n, owner, qtype)
		return
	}
}

// find locates name. It returns the delegation node when name is at or
// below a cut (except DS at the cut itself), else the matching node (exact or
// wildcard source) and the owner to write, or nil for NXDOMAIN.
func (zd *zoneData) find(name []byte, qtype uint16) (n *node, owner []byte, cut *node) {
	var offs [128]uint8
	nl := countLabels(name)
	labelOffsets(name, &offs)
	apexLabels := countLabels(zd.apex)
	encloser := zd.apexNode
	// Walk down from just below the apex toward name.
	for i := nl - apexLabels - 1; i >= 0; i-- {
		sub := name[offs[i]:]
		cand := zd.nodes[string(sub)]
		if cand == nil {
			return zd.wildcard(encloser, name)
		}
		if cand.cut && !(i == 0 && qtype == dns.TypeDS) {
			return nil, nil, cand
		}
		encloser = cand
	}
	return encloser, name, nil
}

// wildcard applies RFC 4592: the source of synthesis is "*" below the
// closest encloser; its records are answered with the query name as owner.
func (zd *zoneData) wildcard(encloser *node, name []byte) (*node, []byte, *node) {
	if !zd.hasWildcard {
		return nil, nil, nil
	}
	var buf [maxNameLen + 2]byte
	if len(encloser.name)+2 > maxNameLen {
		return nil, nil, nil
	}
	buf[0], buf[1] = 1, '*'
	copy(buf[2:], encloser.name)
	src := zd.nodes[string(buf[:len(encloser.name)+2])]
	if src == nil {
		return nil, nil, nil
	}
	return src, name, nil
}

// inChain reports whether target already owns a CNAME in the answer.
func (zd *zoneData) inChain(r *result, target []byte) bool {
	for _, a := range r.ans {
		if string(a.owner) == string(target) {
			return true
		}
	}
	return false
}

// answerNode fills the answer for an existing node: the RRset, ANY, or NODATA.
func (zd *zoneData) answerNode(r *result, n *node, owner []byte, qtype uint16) {
	if n.gslb != "" && (qtype == dns.TypeA || qtype == dns.TypeAAAA) {
		r.dyn, r.dynOwner, r.dynType = n, owner, qtype
		return
	}
	if qtype == dns.TypeANY && (len(n.sets) > 0 || n.gslb != "") {
		// RFC 8482 section 4.2: one synthesised HINFO instead of every set.
		r.hinfo = true
		r.hinfoTTL = zd.soa.ttl
		if len(n.sets) > 0 {
			r.hinfoTTL = n.sets[0].ttl
		}
		for _, s := range n.sets {
			r.hinfoTTL = min(r.hinfoTTL, s.ttl)
		}
		r.ans = append(r.ans, rrRef{owner: owner})
		return
	}
	s := n.get(qtype)
	if s == nil {
		r.ns = append(r.ns, rrRef{owner: zd.apex, set: zd.negSOA})
		return
	}
	r.ans = append(r.ans, rrRef{owner: owner, set: s})
	zd.addExtra(r, s)
}

// referral fills a delegation: the cut's NS in authority, glue in additional.
func (zd *zoneData) referral(r *result, cut *node) {
	ns := cut.get(dns.TypeNS)
	r.ns = append(r.ns, rrRef{owner: cut.name, set: ns})
	zd.addExtra(r, ns)
}

// addExtra appends the address records of s's in-zone targets.
func (zd *zoneData) addExtra(r *result, s *rrset) {
	for i, t := range s.extra {
		for _, at := range [2]uint16{dns.TypeA, dns.TypeAAAA} {
			if as := t.get(at); as != nil {
				r.extra = append(r.extra, rrRef{owner: t.name, set: as, required: s.required[i]})
			}
		}
	}
}
