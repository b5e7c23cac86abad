package zones

import (
	"fmt"
	"sort"
	"strings"

	"github.com/miekg/dns"
)

const (
	maxTTL     = 1<<31 - 1 // RFC 2181 section 8
	weekTTL    = 604800    // longer TTLs draw a warning
	dayMinimum = 86400     // longer SOA MINIMUM draws a warning
)

// nameType keys the records of one RRset.
type nameType struct {
	name string
	typ  uint16
}

// validator collects every finding about one zone's records.
type validator struct {
	origin string
	file   string
	recs   []Record
	issues []Issue

	inZone  []bool
	byName  map[string][]int   // in-zone owner -> record indexes
	byRRset map[nameType][]int // in-zone owner and type -> record indexes
	cuts    map[string]bool    // owners of NS records below the apex
	targets map[string]bool    // NS targets (canonical)
}

// validate checks the records of the zone origin loaded from file. It
// returns all findings, fatal and warnings, and normalises the TTLs of
// RRsets whose TTLs differ. It also returns the apex SOA, when there is
// exactly one.
func validate(origin, file string, recs []Record) ([]Issue, *dns.SOA) {
	v := &validator{
		origin:  origin,
		file:    file,
		recs:    recs,
		inZone:  make([]bool, len(recs)),
		byName:  map[string][]int{},
		byRRset: map[nameType][]int{},
		cuts:    map[string]bool{},
		targets: map[string]bool{},
	}
	if len(recs) == 0 {
		v.issues = append(v.issues, Issue{File: file, Msg: "zone file has no records"})
		return v.issues, nil
	}
	v.checkRecords()
	soa := v.checkApex()
	v.checkCNAMEs()
	v.checkDuplicates()
	v.checkOcclusion()
	v.checkNSTargets()
	v.normaliseTTLs()
	sortIssues(v.issues)
	return v.issues, soa
}

func (v *validator) fatal(r Record, format string, args ...any) {
	v.issues = append(v.issues, Issue{File: r.File, Line: r.Line, Msg: fmt.Sprintf(format, args...)})
}

func (v *validator) warn(r Record, format string, args ...any) {
	v.issues = append(v.issues, Issue{File: r.File, Line: r.Line, Msg: fmt.Sprintf(format, args...), Warning: true})
}

// at formats where a record came from, for "first at" references.
func at(r Record) string { return location(r.File, r.Line) }

func typeName(t uint16) string { return dns.Type(t).String() }

// checkRecords runs the checks that look at one record alone and indexes
// the in-zone records.
func (v *validator) checkRecords() {
	for i, r := range v.recs {
		h := r.RR.Header()
		if h.Class != dns.ClassINET {
			v.fatal(r, "class %s is not supported; only IN", dns.Class(h.Class))
		}
		v.checkTTL(r)
		if !dns.IsSubDomain(v.origin, h.Name) {
			v.fatal(r, "%s is outside the zone %s", h.Name, v.origin)
			continue
		}
		v.inZone[i] = true
		v.byName[h.Name] = append(v.byName[h.Name], i)
		key := nameType{h.Name, h.Rrtype}
		v.byRRset[key] = append(v.byRRset[key], i)
		v.checkType(r)
		v.checkWildcard(r)
		if ns, ok := r.RR.(*dns.NS); ok {
			v.targets[dns.CanonicalName(ns.Ns)] = true
			if h.Name != v.origin {
				v.cuts[h.Name] = true
			}
		}
	}
}

// checkType rejects record types that cannot be served from a zone.
func (v *validator) checkType(r Record) {
	switch t := r.RR.Header().Rrtype; t {
	case dns.TypeDNAME:
		v.fatal(r, "DNAME is not supported")
	case dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY, dns.TypeIXFR, dns.TypeAXFR,
		dns.TypeMAILA, dns.TypeMAILB, dns.TypeANY, dns.TypeNone:
		v.fatal(r, "type %s is a meta or query type and cannot appear in a zone", typeName(t))
	}
}

// checkTTL applies the TTL sanity rules.
func (v *validator) checkTTL(r Record) {
	h := r.RR.Header()
	switch {
	case h.Ttl > maxTTL:
		v.fatal(r, "TTL %d of %s %s exceeds the maximum %d (RFC 2181 8)", h.Ttl, h.Name, typeName(h.Rrtype), maxTTL)
	case h.Ttl > weekTTL:
		v.warn(r, "TTL %d of %s %s is longer than one week (%d seconds)", h.Ttl, h.Name, typeName(h.Rrtype), weekTTL)
	}
	soa, ok := r.RR.(*dns.SOA)
	if !ok {
		return
	}
	if soa.Minttl > dayMinimum {
		v.warn(r, "SOA MINIMUM %d is longer than one day (%d seconds); negative answers would be cached that long", soa.Minttl, dayMinimum)
	}
	if h.Ttl == 0 {
		v.warn(r, "SOA TTL is 0, so negative answers will not be cached (RFC 2308)")
	}
}

// checkWildcard allows "*" only as the leftmost label and never for NS.
func (v *validator) checkWildcard(r Record) {
	h := r.RR.Header()
	labels := dns.SplitDomainName(h.Name)
	for i, l := range labels {
		if l == "*" && i > 0 {
			v.warn(r, "%s has a \"*\" label that is not leftmost; it is not a wildcard and matches only literally", h.Name)
			break
		}
	}
	if len(labels) > 0 && labels[0] == "*" && h.Rrtype == dns.TypeNS {
		v.fatal(r, "wildcard NS record %s is not allowed", h.Name)
	}
}

// checkApex requires exactly one SOA, at the apex, and NS records there.
func (v *validator) checkApex() *dns.SOA {
	var first *Record
	var soa *dns.SOA
	for i, r := range v.recs {
		s, ok := r.RR.(*dns.SOA)
		if !ok || !v.inZone[i] {
			continue
		}
		switch {
		case s.Hdr.Name != v.origin:
			v.fatal(r, "SOA record for %s is not at the zone apex %s", s.Hdr.Name, v.origin)
		case first != nil:
			v.fatal(r, "more than one SOA record at the zone apex (first at %s)", at(*first))
			soa = nil
		default:
			first, soa = &v.recs[i], s
		}
	}
	if first == nil {
		v.issues = append(v.issues, Issue{File: v.file, Msg: "no SOA record at the zone apex " + v.origin})
	}
	if len(v.byRRset[nameType{v.origin, dns.TypeNS}]) == 0 {
		v.issues = append(v.issues, Issue{File: v.file, Msg: "no NS records at the zone apex " + v.origin})
	}
	return soa
}

// checkCNAMEs enforces RFC 2181 10.1: a CNAME is alone at its name, there
// is only one, and there is none at the apex.
func (v *validator) checkCNAMEs() {
	for _, name := range sortedKeys(v.byName) {
		idx := v.byName[name]
		var first, other = -1, -1
		for _, i := range idx {
			switch v.recs[i].RR.Header().Rrtype {
			case dns.TypeCNAME:
				if first < 0 {
					first = i
				} else if !dns.IsDuplicate(v.recs[first].RR, v.recs[i].RR) {
					v.fatal(v.recs[i], "more than one CNAME at %s (first at %s)", name, at(v.recs[first]))
				}
			case dns.TypeRRSIG, dns.TypeNSEC: // allowed beside a CNAME (RFC 4035 2.5)
			default:
				if other < 0 {
					other = i
				}
			}
		}
		switch {
		case first < 0:
		case name == v.origin:
			v.fatal(v.recs[first], "CNAME at the zone apex %s is not allowed", name)
		case other >= 0:
			o := v.recs[other]
			v.fatal(v.recs[first], "%s has a CNAME and other data (%s at %s); a CNAME must be alone at its name (RFC 2181 10.1)",
				name, typeName(o.RR.Header().Rrtype), at(o))
		}
	}
}

// checkDuplicates rejects records equal in owner, type, class and rdata.
// Records are bucketed by a case-folded key and confirmed with
// dns.IsDuplicate, which compares names without regard to case.
func (v *validator) checkDuplicates() {
	buckets := map[string][]int{}
	for i, r := range v.recs {
		if !v.inZone[i] {
			continue
		}
		h := r.RR.Header()
		rdata := strings.TrimPrefix(r.RR.String(), h.String())
		key := fmt.Sprintf("%s %d %d %s", h.Name, h.Class, h.Rrtype, strings.ToLower(rdata))
		dup := false
		for _, j := range buckets[key] {
			if dns.IsDuplicate(v.recs[j].RR, r.RR) {
				v.fatal(r, "duplicate record %s %s, first at %s", h.Name, typeName(h.Rrtype), at(v.recs[j]))
				dup = true
				break
			}
		}
		if !dup {
			buckets[key] = append(buckets[key], i)
		}
	}
}

// topCut returns the delegation point closest to the apex at or above
// name, or "" when name is authoritative data of this zone.
func (v *validator) topCut(name string) string {
	cut := ""
	for n := name; n != v.origin && n != "." && n != ""; {
		if v.cuts[n] {
			cut = n
		}
		off, end := dns.NextLabel(n, 0)
		if end {
			break
		}
		n = n[off:]
	}
	return cut
}

// checkOcclusion rejects data at or below a delegation point other than
// NS, DS and glue (RFC 1034 4.2.1): it would never be served.
func (v *validator) checkOcclusion() {
	for i, r := range v.recs {
		h := r.RR.Header()
		if !v.inZone[i] || h.Name == v.origin {
			continue
		}
		cut := v.topCut(h.Name)
		if cut == "" {
			continue
		}
		glue := h.Rrtype == dns.TypeA || h.Rrtype == dns.TypeAAAA
		switch {
		case h.Name != cut:
			if !glue {
				v.fatal(r, "%s %s is below the delegation point %s and occluded (only glue A/AAAA is allowed there)",
					h.Name, typeName(h.Rrtype), cut)
			}
		case h.Rrtype == dns.TypeNS, h.Rrtype == dns.TypeDS, h.Rrtype == dns.TypeRRSIG, h.Rrtype == dns.TypeNSEC:
		case glue && v.targets[h.Name]:
		default:
			v.fatal(r, "%s %s is at the delegation point %s and occluded (only NS, DS and glue are allowed there)",
				h.Name, typeName(h.Rrtype), cut)
		}
	}
}

// checkNSTargets requires addresses for in-zone name server names: glue
// when the name is at or below a delegation point, authoritative A/AAAA
// otherwise. An NS target must not be an alias (RFC 2181 10.3).
func (v *validator) checkNSTargets() {
	for i, r := range v.recs {
		ns, ok := r.RR.(*dns.NS)
		if !ok || !v.inZone[i] {
			continue
		}
		owner := ns.Hdr.Name
		if owner != v.origin && v.topCut(owner) != owner {
			continue // an NS below a delegation point: reported as occluded
		}
		t := dns.CanonicalName(ns.Ns)
		if !dns.IsSubDomain(v.origin, t) {
			continue
		}
		hasAddr := len(v.byRRset[nameType{t, dns.TypeA}])+len(v.byRRset[nameType{t, dns.TypeAAAA}]) > 0
		cut := v.topCut(t)
		switch {
		case cut != "" && !hasAddr:
			v.fatal(r, "missing glue: NS target %s is at or below the delegation point %s but has no A or AAAA in the zone", t, cut)
		case cut != "":
		case len(v.byRRset[nameType{t, dns.TypeCNAME}]) > 0:
			v.fatal(r, "NS target %s is a CNAME; it must have A or AAAA records instead (RFC 2181 10.3)", t)
		case !hasAddr:
			v.fatal(r, "%s is in-zone but has no A or AAAA", t)
		}
	}
}

// normaliseTTLs warns about RRsets whose records have different TTLs and
// serves them all with the lowest (RFC 2181 5.2).
func (v *validator) normaliseTTLs() {
	sets := map[nameType][]int{}
	var order []nameType
	for i, r := range v.recs {
		h := r.RR.Header()
		k := nameType{h.Name, h.Rrtype}
		if sig, ok := r.RR.(*dns.RRSIG); ok {
			k.name += " " + typeName(sig.TypeCovered) // RRSIGs form one set per covered type
		}
		if _, seen := sets[k]; !seen {
			order = append(order, k)
		}
		sets[k] = append(sets[k], i)
	}
	for _, k := range order {
		idx := sets[k]
		low, diff := v.recs[idx[0]].RR.Header().Ttl, -1
		for _, i := range idx[1:] {
			ttl := v.recs[i].RR.Header().Ttl
			if ttl != v.recs[idx[0]].RR.Header().Ttl && diff < 0 {
				diff = i
			}
			low = min(low, ttl)
		}
		if diff < 0 {
			continue
		}
		f, d := v.recs[idx[0]], v.recs[diff]
		v.warn(d, "TTLs differ within the RRset %s %s (%d at %s, %d here); all are served with the lowest, %d (RFC 2181 5.2)",
			d.RR.Header().Name, typeName(k.typ), f.RR.Header().Ttl, at(f), d.RR.Header().Ttl, low)
		for _, i := range idx {
			v.recs[i].RR.Header().Ttl = low
		}
	}
}

// sortIssues orders issues by file, then line, keeping the order of
// findings on the same line.
func sortIssues(issues []Issue) {
	sort.SliceStable(issues, func(i, j int) bool {
		if issues[i].File != issues[j].File {
			return issues[i].File < issues[j].File
		}
		return issues[i].Line < issues[j].Line
	})
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
