package dnsserver

import (
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/gslbd/gslbd/zones"
)

// rrset is one RRset, pre-packed. bodies[i] is the i-th record's wire form
// after its owner name: TYPE, CLASS, TTL, RDLENGTH, RDATA (names in RDATA
// uncompressed, which RFC 3597 allows a server to do).
type rrset struct {
	rtype  uint16
	ttl    uint32
	rrs    []dns.RR
	bodies [][]byte
	// target is the lowercase wire CNAME target (CNAME sets only).
	target []byte
	// extra lists the in-zone nodes whose A/AAAA belong in the additional
	// section when this set is answered (MX exchange, SRV target, NS host).
	extra []*node
	// required marks extra entries that are mandatory glue (RFC 9471): an NS
	// host at or below the delegation point it serves.
	required []bool
}

// node is one owner name of a zone, or an empty non-terminal (no sets).
type node struct {
	name     []byte // lowercase wire form
	sets     []*rrset
	cname    *rrset
	gslb     string // the GSLB record answering A/AAAA here ("" = none)
	cut      bool   // NS below the apex: a delegation point
	occluded bool   // at or below a delegation point (only glue lives here)
}

func (n *node) get(t uint16) *rrset {
	for _, s := range n.sets {
		if s.rtype == t {
			return s
		}
	}
	return nil
}

// zoneData is a zone compiled for answering. Immutable.
type zoneData struct {
	origin      string // presentation form, lowercase
	apex        []byte // lowercase wire
	apexNode    *node
	nodes       map[string]*node // keyed by lowercase wire name
	soa         *rrset           // the SOA as served in answers
	negSOA      *rrset           // the SOA with the RFC 2308 negative TTL
	hasWildcard bool
	serial      uint32
	src         *zones.Zone
	counters    *zoneCounters
}

// wireName packs a presentation name into lowercase uncompressed wire form.
func wireName(name string) ([]byte, error) {
	buf := make([]byte, maxNameLen)
	n, err := dns.PackDomainName(dns.Fqdn(strings.ToLower(name)), buf, 0, nil, false)
	if err != nil {
		return nil, fmt.Errorf("pack name %q: %w", name, err)
	}
	return buf[:n], nil
}

// packBody packs rr with the given TTL and returns the bytes after the owner.
func packBody(rr dns.RR, ttl uint32) ([]byte, error) {
	rr = dns.Copy(rr)
	rr.Header().Ttl = ttl
	buf := make([]byte, dns.Len(rr)+maxNameLen)
	end, err := dns.PackRR(rr, buf, 0, nil, false)
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", rr.String(), err)
	}
	start, ok := skipName(buf, 0)
	if !ok {
		return nil, fmt.Errorf("pack %s: bad owner", rr.String())
	}
	return slices.Clone(buf[start:end]), nil
}

// newRRSet packs rrs (one owner, one type) with the lowest TTL among them.
func newRRSet(rrs []dns.RR) (*rrset, error) {
	s := &rrset{rtype: rrs[0].Header().Rrtype, ttl: rrs[0].Header().Ttl, rrs: rrs}
	for _, rr := range rrs {
		s.ttl = min(s.ttl, rr.Header().Ttl)
	}
	for _, rr := range rrs {
		b, err := packBody(rr, s.ttl)
		if err != nil {
			return nil, err
		}
		s.bodies = append(s.bodies, b)
	}
	return s, nil
}

// compileZone turns a validated zone into answer-ready data. gslbNames are
// the GSLB records' owner names (canonical); those inside this zone answer
// A and AAAA from the engine.
func compileZone(z *zones.Zone, gslbNames []string) (*zoneData, error) {
	apex, err := wireName(z.Origin)
	if err != nil {
		return nil, fmt.Errorf("compile zone %s: %w", z.Origin, err)
	}
	zd := &zoneData{origin: z.Origin, apex: apex, nodes: make(map[string]*node), serial: z.Serial, src: z}

	// Group records by owner and type, keeping file order.
	type key struct {
		owner string
		t     uint16
	}
	groups := make(map[key][]dns.RR)
	var order []key
	for _, rec := range z.Records {
		h := rec.RR.Header()
		k := key{strings.ToLower(dns.Fqdn(h.Name)), h.Rrtype}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], rec.RR)
	}
	for _, k := range order {
		name, err := wireName(k.owner)
		if err != nil {
			return nil, fmt.Errorf("compile zone %s: %w", z.Origin, err)
		}
		if !isSubdomain(name, apex) {
			return nil, fmt.Errorf("compile zone %s: %s is outside the zone", z.Origin, k.owner)
		}
		n := zd.ensureNode(name)
		s, err := newRRSet(groups[k])
		if err != nil {
			return nil, fmt.Errorf("compile zone %s: %w", z.Origin, err)
		}
		n.sets = append(n.sets, s)
		switch k.t {
		case dns.TypeCNAME:
			n.cname = s
			if s.target, err = wireName(s.rrs[0].(*dns.CNAME).Target); err != nil {
				return nil, fmt.Errorf("compile zone %s: %w", z.Origin, err)
			}
		case dns.TypeNS:
			n.cut = string(name) != string(apex)
		}
		if len(name) > 1 && name[0] == 1 && name[1] == '*' {
			zd.hasWildcard = true
		}
	}
	zd.apexNode = zd.nodes[string(apex)]
	if zd.apexNode == nil || zd.apexNode.get(dns.TypeSOA) == nil {
		return nil, fmt.Errorf("compile zone %s: no SOA at the apex", z.Origin)
	}
	zd.soa = zd.apexNode.get(dns.TypeSOA)
	soa := zd.soa.rrs[0].(*dns.SOA)
	if zd.negSOA, err = newNegSOA(soa); err != nil {
		return nil, fmt.Errorf("compile zone %s: %w", z.Origin, err)
	}
	for _, n := range zd.nodes {
		slices.SortFunc(n.sets, func(a, b *rrset) int { return int(a.rtype) - int(b.rtype) })
		n.occluded = zd.underCut(n.name)
	}
	if err := zd.linkAdditional(); err != nil {
		return nil, fmt.Errorf("compile zone %s: %w", z.Origin, err)
	}
	for _, name := range gslbNames {
		w, err := wireName(name)
		if err != nil || !isSubdomain(w, apex) {
			continue
		}
		n := zd.nodes[string(w)]
		if n == nil {
			n = zd.ensureNode(w)
			n.occluded = zd.underCut(w)
		}
		if n.occluded || n.cname != nil || n.get(dns.TypeA) != nil || n.get(dns.TypeAAAA) != nil {
			continue // CheckGSLB reports these; the static data wins
		}
		n.gslb = name
	}
	return zd, nil
}

// newNegSOA builds the SOA for negative answers: its TTL is the minimum of
// the SOA's own TTL and its MINIMUM field (RFC 2308 section 3).
func newNegSOA(soa *dns.SOA) (*rrset, error) {
	return newRRSet([]dns.RR{withTTL(soa, min(soa.Hdr.Ttl, soa.Minttl))})
}

func withTTL(rr dns.RR, ttl uint32) dns.RR {
	rr = dns.Copy(rr)
	rr.Header().Ttl = ttl
	return rr
}

// ensureNode returns the node for name, creating it and any missing
// ancestors up to the apex as empty non-terminals.
func (zd *zoneData) ensureNode(name []byte) *node {
	if n, ok := zd.nodes[string(name)]; ok {
		return n
	}
	n := &node{name: name}
	zd.nodes[string(name)] = n
	if len(name) > len(zd.apex) {
		zd.ensureNode(name[int(name[0])+1:])
	}
	return n
}

// underCut reports whether name is at or below a delegation point.
func (zd *zoneData) underCut(name []byte) bool {
	for p := name; len(p) > len(zd.apex); p = p[int(p[0])+1:] {
		if n := zd.nodes[string(p)]; n != nil && n.cut {
			return true
		}
	}
	return false
}

// linkAdditional resolves MX, SRV and NS targets to in-zone nodes that have
// address records, so answers can add them without lookups.
func (zd *zoneData) linkAdditional() error {
	for _, n := range zd.nodes {
		for _, s := range n.sets {
			for _, rr := range s.rrs {
				var target string
				switch v := rr.(type) {
				case *dns.MX:
					target = v.Mx
				case *dns.SRV:
					target = v.Target
				case *dns.NS:
					target = v.Ns
				default:
					continue
				}
				tw, err := wireName(target)
				if err != nil {
					return err
				}
				t := zd.nodes[string(tw)]
				if t == nil || (t.get(dns.TypeA) == nil && t.get(dns.TypeAAAA) == nil) || slices.Contains(s.extra, t) {
					continue
				}
				if t.occluded && s.rtype != dns.TypeNS {
					continue // MX/SRV targets below a cut are not ours to give
				}
				s.extra = append(s.extra, t)
				// Glue for a delegation is required when the host is at or
				// below the cut it serves (RFC 9471).
				s.required = append(s.required, s.rtype == dns.TypeNS && n.cut && isSubdomain(tw, n.name))
			}
		}
	}
	return nil
}
