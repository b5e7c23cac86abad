package gslb

import (
	"hash/fnv"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// rttTable is a latency filter's static table: per "where", RTT to each site
// (by site index; NaN = unknown).
type rttTable struct {
	cidrs     []netip.Prefix
	byCIDR    map[netip.Prefix][]float64
	asn       map[uint32][]float64
	country   map[string][]float64
	continent map[string][]float64
}

// latency orders candidates by round-trip time from the client's network to
// their site: measured RTTs fed to the engine (per /24 and /48, smoothed)
// first, then the configured table (CIDR, ASN, country, continent). With no
// data it falls back to proximity, or leaves the order alone.
type latency struct {
	table    rttTable
	tie      float64 // percent
	fallback *proximity
}

func (f *latency) Name() string { return "latency" }

func (f *latency) apply(d *decision) {
	rtts, why := f.lookup(d)
	if rtts == nil {
		if f.fallback != nil {
			f.fallback.apply(d)
			d.note("no RTT data (%s): by proximity", why)
			return
		}
		d.note("no RTT data (%s): order unchanged", why)
		return
	}
	best := math.Inf(1)
	for _, c := range d.cands {
		if v := rtts[c.ep.Site.Index]; !math.IsNaN(v) {
			best = min(best, v)
		}
	}
	sortWithinBand(d.cands, rtts, best*(1+f.tie/100))
	d.note("rtt from %s", why)
}

// lookup finds the RTT row for the client and raises the scope to the
// network it was keyed by.
func (f *latency) lookup(d *decision) ([]float64, string) {
	a := d.clientAddr()
	if m := d.snap.rtt; m != nil {
		bits := 48
		if a.Is4() {
			bits = 24
		}
		if d.client.Bits() >= bits {
			p := netip.PrefixFrom(a, bits).Masked()
			if row, ok := m[p]; ok {
				d.raiseScope(bits)
				return row, "measured " + p.String()
			}
		}
	}
	for _, p := range f.table.cidrs {
		if p.Contains(a) {
			d.raiseScope(p.Bits())
			return f.table.byCIDR[p], "table " + p.String()
		}
	}
	loc, ok := d.location()
	if !ok {
		return nil, "location unknown"
	}
	if row, hit := f.table.asn[loc.ASN]; hit && loc.ASN != 0 {
		return row, "table asn " + strconv.FormatUint(uint64(loc.ASN), 10)
	}
	if row, hit := f.table.country[loc.Country]; hit {
		return row, "table country " + loc.Country
	}
	if row, hit := f.table.continent[loc.Continent]; hit {
		return row, "table continent " + loc.Continent
	}
	return nil, "nothing for " + describeLoc(loc, ok)
}

// capacity spills traffic from sites loaded past their capacity: a site
// whose reported load exceeds its capacity keeps a client with probability
// capacity/load, else that client's candidates from the site move behind
// the others (so the next site in order takes the excess). The choice is a
// hash of the client's /24 or /56 and the site, so a client subnet keeps its
// answer while the load holds.
type capacity struct{}

func (capacity) Name() string { return "capacity" }

func (capacity) apply(d *decision) {
	load := d.snap.load
	if load == nil {
		d.note("no load reported")
		return
	}
	bits := 56
	if d.clientAddr().Is4() {
		bits = 24
	}
	bits = min(bits, d.client.Bits())
	subnet := netip.PrefixFrom(d.clientAddr(), bits).Masked()
	spilled := d.rankBuf(len(d.snap.cfg.SiteList))
	for i := range spilled {
		spilled[i] = 0
	}
	var moved []string
	for _, s := range d.snap.cfg.SiteList {
		k := d.snap.keep[s.Index]
		if k >= 1 {
			continue
		}
		if spillHash(subnet, s.Name) >= k {
			spilled[s.Index] = 1
			if d.trace != nil {
				moved = append(moved, s.Name)
			}
		}
	}
	d.raiseScope(bits)
	slices.SortStableFunc(d.cands, func(a, b cand) int {
		return spilled[a.ep.Site.Index] - spilled[b.ep.Site.Index]
	})
	if d.trace != nil {
		d.note("spilled from [%s] for %s", strings.Join(moved, " "), subnet)
	}
}

// spillHash maps a subnet and a site to [0, 1), stably across restarts.
func spillHash(subnet netip.Prefix, site string) float64 {
	h := fnv.New64a()
	b := subnet.Addr().As16()
	h.Write(b[:])
	h.Write([]byte{byte(subnet.Bits())})
	h.Write([]byte(site))
	return float64(h.Sum64()>>11) / (1 << 53)
}

// RTTSample is one measured round-trip time from a client network to a site
// (from lbd's handshake timings or an agent).
type RTTSample struct {
	Client netip.Prefix // /24 or /48 (longer prefixes are truncated)
	Site   string
	RTT    time.Duration
}

// rttAlpha is the EWMA weight of a new sample.
const rttAlpha = 0.3

// rttMaxAge is how long a measured RTT row counts without being fed again:
// a client network that stopped connecting says nothing about today's paths.
const rttMaxAge = time.Hour

// sameSites reports whether two configurations index the same sites.
func sameSites(a, b *Config) bool {
	if len(a.SiteList) != len(b.SiteList) {
		return false
	}
	for i := range a.SiteList {
		if a.SiteList[i].Name != b.SiteList[i].Name {
			return false
		}
	}
	return true
}

// remapRow moves a per-site row from old's site indexes to cur's, by site
// name: sites cur does not have are dropped, new ones get fill.
func remapRow(row []float64, old, cur *Config, fill float64) []float64 {
	n := make([]float64, len(cur.SiteList))
	for i, site := range cur.SiteList {
		n[i] = fill
		if o := old.Sites[site.Name]; o != nil && o.Index < len(row) {
			n[i] = row[o.Index]
		}
	}
	return n
}

// remapRTT moves every measured RTT row to cur's site indexes.
func remapRTT(rows map[netip.Prefix][]float64, old, cur *Config) map[netip.Prefix][]float64 {
	out := make(map[netip.Prefix][]float64, len(rows))
	for k, row := range rows {
		out[k] = remapRow(row, old, cur, math.NaN())
	}
	return out
}

// FeedRTT merges measured RTTs (smoothed by EWMA) into the table the
// latency filters read first. Samples for unknown sites are ignored and
// counted in the return value.
func (e *Engine) FeedRTT(samples []RTTSample) (ignored int) {
	now := e.clock.Now()
	e.rebuild(func(s *snapshot) {
		next := make(map[netip.Prefix][]float64, len(s.rtt)+len(samples))
		seen := make(map[netip.Prefix]time.Time, len(s.rtt)+len(samples))
		for k, v := range s.rtt {
			if t, ok := s.rttSeen[k]; ok && now.Sub(t) > rttMaxAge {
				continue // aged out
			}
			next[k] = v
			seen[k] = s.rttSeen[k]
		}
		for _, smp := range samples {
			site := s.cfg.Sites[smp.Site]
			if site == nil || !smp.Client.IsValid() || smp.RTT <= 0 {
				ignored++
				continue
			}
			bits := 48
			a := smp.Client.Addr().Unmap()
			if a.Is4() {
				bits = 24
			}
			key := netip.PrefixFrom(a, min(bits, smp.Client.Bits())).Masked()
			if key.Bits() != bits {
				ignored++ // coarser than /24 or /48: not a client network
				continue
			}
			row := slices.Clone(next[key])
			if row == nil {
				row = make([]float64, len(s.cfg.SiteList))
				for i := range row {
					row[i] = math.NaN()
				}
			}
			ms := float64(smp.RTT) / float64(time.Millisecond)
			if old := row[site.Index]; math.IsNaN(old) {
				row[site.Index] = ms
			} else {
				row[site.Index] = old + rttAlpha*(ms-old)
			}
			next[key] = row
			seen[key] = now
		}
		s.rtt, s.rttSeen = next, seen
	})
	return ignored
}

// SetLoad reports sites' current load (requests or new connections per
// second, in the unit of their capacity) for capacity filters.
//
// The load a site reports is what reaches it, after earlier spills, not
// the demand: a site that keeps a share k of client subnets and sees load
// L would see about L/k without spilling. So each report moves the share
// multiplicatively, k' = k x capacity/load (clamped to [0.01, 1]): a site
// at 4x its capacity keeps a quarter at once, and keeps a quarter while
// the demand holds (rather than snapping back to everything once the
// spilled load looks fine, and overloading again); below capacity the
// share grows back by the same rule.
func (e *Engine) SetLoad(load map[string]float64) {
	e.rebuild(func(s *snapshot) {
		l := make([]float64, len(s.cfg.SiteList))
		for name, v := range load {
			if site := s.cfg.Sites[name]; site != nil {
				l[site.Index] = v
			}
		}
		keep := make([]float64, len(s.cfg.SiteList))
		for i, site := range s.cfg.SiteList {
			k := 1.0
			if i < len(s.keep) {
				k = s.keep[i]
			}
			switch {
			case site.Capacity <= 0 || l[i] <= 0:
				k = 1 // no capacity, or no traffic reported: nothing to spill
			default:
				k = min(max(k*site.Capacity/l[i], minKeep), 1)
			}
			keep[i] = k
		}
		s.load, s.keep = l, keep
	})
}

// minKeep is the smallest share of client subnets a loaded site keeps, so
// that its reported load still says something about its demand.
const minKeep = 0.01

// compileRTTTable reads a latency filter's table: key -> site -> RTT.
func (c *Config) compileRTTTable(path string, in map[string]map[string]time.Duration) (rttTable, error) {
	t := rttTable{byCIDR: map[netip.Prefix][]float64{}, asn: map[uint32][]float64{}, country: map[string][]float64{}, continent: map[string][]float64{}}
	for _, key := range sortedKeys(in) {
		p := path + ".rtt." + key
		row := make([]float64, len(c.SiteList))
		for i := range row {
			row[i] = math.NaN()
		}
		for site, d := range in[key] {
			s := c.Sites[site]
			if s == nil {
				return t, errAt(p, "unknown site %q", site)
			}
			if d <= 0 {
				return t, errAt(p+"."+site, "RTT must be positive (like 25ms)")
			}
			row[s.Index] = float64(d) / float64(time.Millisecond)
		}
		kind, val, hasKind := strings.Cut(key, ":")
		if !hasKind {
			pfx, err := ParsePrefix(key)
			if err != nil {
				return t, errAt(p, "a key is continent:XX, country:XX, asn:N or a CIDR; %v", err)
			}
			t.cidrs = append(t.cidrs, pfx)
			t.byCIDR[pfx] = row
			continue
		}
		val = strings.ToUpper(val)
		switch kind {
		case "continent":
			if !slices.Contains(continents, val) {
				return t, errAt(p, "%q is not one of %s", val, strings.Join(continents, " "))
			}
			t.continent[val] = row
		case "country":
			if len(val) != 2 {
				return t, errAt(p, "%q is not an ISO 3166-1 alpha-2 code", val)
			}
			t.country[val] = row
		case "asn":
			n, err := strconv.ParseUint(strings.TrimPrefix(val, "AS"), 10, 32)
			if err != nil {
				return t, errAt(p, "%q is not an AS number", val)
			}
			t.asn[uint32(n)] = row
		default:
			return t, errAt(p, "unknown key kind %q (continent, country, asn, or a CIDR)", kind)
		}
	}
	sortPrefixesLongestFirst(t.cidrs)
	return t, nil
}
