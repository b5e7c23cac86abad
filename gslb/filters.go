package gslb

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/gslbd/gslbd/geo"
)

// Filter is one step of a record's chain. It reorders or removes the
// candidates of a decision; filters that look at the client raise the
// decision's ECS scope to the prefix length their answer depended on.
type Filter interface {
	Name() string
	apply(d *decision)
}

// upFilter drops endpoints that are down.
type upFilter struct{}

func (upFilter) Name() string { return "up" }
func (upFilter) apply(d *decision) {
	before := len(d.cands)
	d.cands = slices.DeleteFunc(d.cands, func(c cand) bool { return !c.up })
	if before > 0 && len(d.cands) == 0 {
		d.healthEmptied = true
	}
	if d.explaining() {
		d.note("%d of %d up", len(d.cands), before)
	}
}

// firstN keeps the first N candidates.
type firstN struct{ n int }

func (f firstN) Name() string { return "first_n" }
func (f firstN) apply(d *decision) {
	if len(d.cands) > f.n {
		d.cands = d.cands[:f.n]
	}
	if d.explaining() {
		d.note("kept %d", len(d.cands))
	}
}

// geoKey is one "where" of a geo map.
type geoKind uint8

const (
	geoCIDR geoKind = iota
	geoASN
	geoSubdivision
	geoCountry
	geoContinent
	geoDefault
	geoPartition
)

// geoFilter maps the client's location to an ordered list of sites.
type geoFilter struct {
	cidrs        []netip.Prefix // longest first
	cidrSites    map[netip.Prefix][]int
	asn          map[uint32][]int
	subdivision  map[string][]int // "GB-SCT"
	country      map[string][]int
	continent    map[string][]int
	defaultSites []int
	prefer       bool           // sites not listed follow the listed ones (else: fence)
	classes      [][]int        // distinct site lists, for partitions (index = class)
	classOf      map[string]int // siteListKey -> index in classes
}

func (f *geoFilter) Name() string { return "geo" }

func (f *geoFilter) apply(d *decision) {
	sites, why := f.sitesFor(d)
	rank := d.rankBuf(len(d.snap.cfg.SiteList))
	for i := range rank {
		rank[i] = -1
	}
	for i, s := range sites {
		rank[s] = i
	}
	if !f.prefer {
		d.cands = slices.DeleteFunc(d.cands, func(c cand) bool { return rank[c.ep.Site.Index] < 0 })
	}
	slices.SortStableFunc(d.cands, func(a, b cand) int {
		ra, rb := rank[a.ep.Site.Index], rank[b.ep.Site.Index]
		switch {
		case ra == rb:
			return 0
		case ra < 0:
			return 1
		case rb < 0:
			return -1
		}
		return ra - rb
	})
	if d.explaining() {
		d.note("%s -> sites %s", why.String(), d.siteNames(sites))
	}
}

// geoMatch says which entry of a geo map decided; formatted only for Explain.
type geoMatch struct {
	kind    geoKind
	dflt    bool
	cidr    netip.Prefix
	network netip.Prefix // the partition block (geoPartition)
	loc     geo.Location
	locOK   bool
}

func (m geoMatch) String() string {
	s := m.entry()
	if m.network.IsValid() {
		s += " (same answer for " + m.network.String() + ")"
	}
	return s
}

func (m geoMatch) entry() string {
	switch {
	case m.kind == geoPartition:
		return "partition"
	case m.dflt:
		return "default (" + describeLoc(m.loc, m.locOK) + ")"
	case m.kind == geoCIDR:
		return "cidr " + m.cidr.String()
	case m.kind == geoASN:
		return "asn " + strconv.FormatUint(uint64(m.loc.ASN), 10)
	case m.kind == geoSubdivision:
		return "subdivision " + m.loc.Country + "-" + m.loc.Subdivision
	case m.kind == geoCountry:
		return "country " + m.loc.Country
	}
	return "continent " + m.loc.Continent
}

// sitesFor finds the client's site list: the longest CIDR, then ASN,
// subdivision, country, continent, else the default. It raises the scope
// to cover exactly the block of addresses that get the same list.
func (f *geoFilter) sitesFor(d *decision) ([]int, geoMatch) {
	a := d.clientAddr()
	for _, p := range f.cidrs {
		if p.Contains(a) {
			d.raiseScope(p.Bits())
			f.excludeLonger(d, a, p.Bits())
			return f.cidrSites[p], geoMatch{kind: geoCIDR, cidr: p}
		}
	}
	f.excludeLonger(d, a, -1)
	if part := d.snap.parts[f]; part != nil {
		// The precomputed partition gives the list and the largest block
		// around the client that gets the same list (gdnsd-style scope).
		class, network := part.Lookup(a)
		d.raiseScope(network.Bits())
		m := geoMatch{kind: geoPartition, network: network}
		if d.explaining() && d.snap.geo != nil {
			r := d.snap.geo.Lookup(a)
			_, m.kind = f.locationSites(r.Location, r.Found)
			m.loc, m.locOK, m.dflt = r.Location, r.Found, m.kind == geoDefault
		}
		return f.classes[class], m
	}
	loc, ok := d.location()
	m := geoMatch{loc: loc, locOK: ok}
	if len(f.asn) > 0 && loc.ASN != 0 {
		if s, hit := f.asn[loc.ASN]; hit {
			m.kind = geoASN
			return s, m
		}
	}
	sites, kind := f.locationSites(loc, ok)
	m.kind, m.dflt = kind, kind == geoDefault
	return sites, m
}

// locationSites maps a location to a site list by subdivision, country,
// continent, else the default.
func (f *geoFilter) locationSites(loc geo.Location, ok bool) ([]int, geoKind) {
	if ok {
		if s, hit := f.subdivision[loc.Country+"-"+loc.Subdivision]; hit && loc.Subdivision != "" {
			return s, geoSubdivision
		}
		if s, hit := f.country[loc.Country]; hit {
			return s, geoCountry
		}
		if s, hit := f.continent[loc.Continent]; hit {
			return s, geoContinent
		}
	}
	return f.defaultSites, geoDefault
}

// classify is the partition's classifier: the index in f.classes of the
// site list a location gets. Equal lists share an index, so blocks that get
// the same answer through different map entries merge.
func (f *geoFilter) classify(loc geo.Location, ok bool) int {
	sites, _ := f.locationSites(loc, ok)
	return f.classOf[siteListKey(sites)] // compileGeo registers every list
}

func siteListKey(sites []int) string {
	b := make([]byte, 0, len(sites)*2)
	for _, s := range sites {
		b = append(b, byte(s>>8), byte(s))
	}
	return string(b)
}

// partitionable reports whether a partition can replace per-query lookups:
// ASN keys need the ASN database, which the partition does not cover.
func (f *geoFilter) partitionable() bool { return len(f.asn) == 0 }

// excludeLonger raises the scope so the client's block does not reach a
// map CIDR that would answer differently (one it is not inside of, or a
// more specific one inside the matched prefix).
func (f *geoFilter) excludeLonger(d *decision, a netip.Addr, matched int) {
	for _, p := range f.cidrs {
		if p.Bits() <= matched || p.Contains(a) || p.Addr().Is4() != a.Is4() {
			continue
		}
		d.raiseScope(commonBits(a, p.Addr()) + 1)
	}
}

func describeLoc(l geo.Location, ok bool) string {
	if !ok {
		return "location unknown"
	}
	return strings.TrimSpace(l.Continent + " " + l.Country + " " + l.Subdivision)
}

// commonBits is the number of leading bits a and b share.
func commonBits(a, b netip.Addr) int {
	x, y := a.As16(), b.As16()
	n := 0
	for i := range x {
		if v := x[i] ^ y[i]; v != 0 {
			for v&0x80 == 0 {
				v <<= 1
				n++
			}
			break
		}
		n += 8
	}
	if a.Is4() {
		n -= 96
	}
	return n
}

// proximity orders candidates by great-circle distance from the client to
// their site, scaled by a per-site bias (Route 53 style: +50 makes a site
// look half as far). Sites within tie percent of the closest count as
// equally close and keep their previous order.
type proximity struct {
	bias []float64 // by site index, -99..99
	tie  float64   // percent
}

func (f *proximity) Name() string { return "proximity" }

func (f *proximity) apply(d *decision) {
	loc, ok := d.location()
	if !ok || !loc.HasCoords {
		d.note("client location unknown: order unchanged")
		return
	}
	dist := d.floatBuf(len(d.snap.cfg.SiteList))
	for i, s := range d.snap.cfg.SiteList {
		dist[i] = math.Inf(1)
		if s.HasCoords {
			dist[i] = geo.Distance(loc.Lat, loc.Lon, s.Lat, s.Lon) * (1 - f.bias[i]/100)
		}
	}
	best := math.Inf(1) // the nearest candidate: a site fenced out or down sets no band
	for _, c := range d.cands {
		best = min(best, dist[c.ep.Site.Index])
	}
	sortWithinBand(d.cands, dist, best*(1+f.tie/100))
	if len(d.cands) > 0 && d.explaining() {
		d.note("client at %.1f,%.1f; nearest %s at %.0f km", loc.Lat, loc.Lon, d.cands[0].ep.Site.Name, dist[d.cands[0].ep.Site.Index])
	}
}

// weighted orders candidates by weighted random choice without
// replacement (Efraimidis-Spirakis keys). With hash, the random numbers
// come from the client's subnet, so a subnet keeps getting the same
// answers, from every server and across reloads (and adding an endpoint
// moves only its share).
type weighted struct {
	hash         bool
	bits4, bits6 int
}

func (f *weighted) Name() string { return "weighted" }

func (f *weighted) apply(d *decision) {
	var subnet netip.Prefix
	if f.hash {
		bits := f.bits6
		if d.clientAddr().Is4() {
			bits = f.bits4
		}
		bits = min(bits, d.client.Bits())
		subnet = netip.PrefixFrom(d.clientAddr(), bits).Masked()
		d.raiseScope(bits)
	}
	positive := 0
	for _, c := range d.cands {
		if c.ep.Weight > 0 {
			positive++
		}
	}
	if positive > 0 && positive < len(d.cands) {
		d.cands = slices.DeleteFunc(d.cands, func(c cand) bool { return c.ep.Weight == 0 })
	}
	keys := d.floatBuf(len(d.snap.cfg.Endpoints))
	for _, c := range d.cands {
		u := f.uniform(subnet, c.ep)
		keys[c.ep.Index] = math.Log(u) / float64(max(c.ep.Weight, 1))
	}
	slices.SortStableFunc(d.cands, func(a, b cand) int {
		ka, kb := keys[a.ep.Index], keys[b.ep.Index]
		switch {
		case ka > kb:
			return -1
		case ka < kb:
			return 1
		}
		return 0
	})
	switch {
	case !d.explaining():
	case f.hash:
		d.note("hash of %s", subnet)
	default:
		d.note("random by weight")
	}
}

// uniform returns a number in (0, 1]: random, or from the subnet and endpoint.
func (f *weighted) uniform(subnet netip.Prefix, ep *Endpoint) float64 {
	var x uint64
	if f.hash {
		x = stableHash(subnet, ep.Addr)
	} else {
		x = rand.Uint64()
	}
	return (float64(x>>11) + 1) / (1 << 53)
}

// stableHash is FNV-1a over the subnet, its length and the endpoint's
// address, finished with the splitmix64 mixer. It must never change (nor
// depend on a per-process seed): every server, of every version, has to
// give a subnet the same endpoints.
func stableHash(subnet netip.Prefix, ep netip.Addr) uint64 {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	b, e := subnet.Addr().As16(), ep.As16()
	for _, c := range b {
		h = (h ^ uint64(c)) * prime
	}
	h = (h ^ uint64(subnet.Bits())) * prime
	for _, c := range e {
		h = (h ^ uint64(c)) * prime
	}
	h = (h ^ h>>30) * 0xbf58476d1ce4e5b9
	h = (h ^ h>>27) * 0x94d049bb133111eb
	return h ^ h>>31
}

// priority keeps the first group (a site, or a tier) that has enough
// healthy endpoints, and only its healthy ones.
type priority struct {
	byTier     bool
	minCount   int
	minPercent float64
}

func (f *priority) Name() string { return "priority" }

func (f *priority) group(c cand) int {
	if f.byTier {
		return c.ep.Tier
	}
	return c.ep.Site.Index
}

func (f *priority) apply(d *decision) {
	order := d.cands
	if f.byTier {
		d.order = append(d.order[:0], d.cands...)
		order = d.order
		slices.SortStableFunc(order, func(a, b cand) int { return a.ep.Tier - b.ep.Tier })
	}
	tried := 0
	for i, c := range order {
		g := f.group(c)
		if slices.ContainsFunc(order[:i], func(o cand) bool { return f.group(o) == g }) {
			continue
		}
		tried++
		up, total := 0, 0
		for _, a := range d.all {
			if f.group(a) == g {
				total++
				if a.up {
					up++
				}
			}
		}
		if up > 0 && up >= f.minCount && float64(up) >= f.minPercent/100*float64(total) {
			d.cands = slices.DeleteFunc(d.cands, func(o cand) bool { return f.group(o) != g || !o.up })
			if d.explaining() {
				d.note("group %s: %d of %d up", f.groupName(c), up, total)
			}
			return
		}
	}
	if len(d.cands) > 0 {
		d.healthEmptied = true
	}
	d.cands = d.cands[:0]
	if d.explaining() {
		d.note("no group among %d has enough healthy endpoints", tried)
	}
}

func (f *priority) groupName(c cand) string {
	if f.byTier {
		return "tier " + strconv.Itoa(c.ep.Tier)
	}
	return c.ep.Site.Name
}

// ParseThreshold reads min_healthy: a count ("2") or a share ("50%").
func ParseThreshold(s string) (count int, percent float64, err error) {
	if p, ok := strings.CutSuffix(strings.TrimSpace(s), "%"); ok {
		v, err := strconv.ParseFloat(p, 64)
		if err != nil || v < 0 || v > 100 {
			return 0, 0, fmt.Errorf("%q is not a percentage between 0 and 100", s)
		}
		return 0, v, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, 0, fmt.Errorf("%q is not a count of at least 1 or a percentage", s)
	}
	return n, 0, nil
}

// sortWithinBand orders candidates by their site's value (distance, RTT),
// lowest first; values within band of the best count as equal and keep
// their previous order; NaN (unknown) sorts last.
func sortWithinBand(cs []cand, bySite []float64, band float64) {
	key := func(c cand) float64 {
		v := bySite[c.ep.Site.Index]
		switch {
		case math.IsNaN(v):
			return math.Inf(1)
		case v <= band:
			return 0
		}
		return v
	}
	slices.SortStableFunc(cs, func(a, b cand) int {
		ka, kb := key(a), key(b)
		switch {
		case ka < kb:
			return -1
		case ka > kb:
			return 1
		}
		return 0
	})
}

// shape identifies what a geo filter's classify does, so filters with the
// same map share one partition.
func (f *geoFilter) shape() string {
	var b strings.Builder
	for _, group := range []map[string][]int{f.subdivision, f.country, f.continent} {
		for _, k := range sortedKeys(group) {
			b.WriteString(k)
			b.WriteString(siteListKey(group[k]))
			b.WriteByte(0)
		}
		b.WriteByte(1)
	}
	b.WriteString(siteListKey(f.defaultSites))
	return b.String()
}
