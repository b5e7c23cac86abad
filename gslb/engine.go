package gslb

import (
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gslbd/gslbd/geo"
	"github.com/gslbd/gslbd/gslb/health"
	"github.com/gslbd/gslbd/gslb/state"
)

// Locator finds where an address is; *geo.DB implements it.
type Locator interface {
	Lookup(addr netip.Addr) geo.Result
}

// EngineConfig configures an Engine.
type EngineConfig struct {
	Clock  health.Clock // RealClock()
	Logger *slog.Logger // nil discards
}

// Engine answers GSLB queries from an immutable snapshot of configuration,
// health and the geolocation database, swapped atomically on change.
type Engine struct {
	clock   health.Clock
	log     *slog.Logger
	snap    atomic.Pointer[snapshot]
	mu      sync.Mutex // serialises snapshot rebuilds
	pool    sync.Pool  // *decision scratch
	metrics *engineMetrics
}

type snapshot struct {
	cfg      *Config
	health   []epHealth // by Endpoint.Index
	statuses map[health.TargetKey]health.Status
	geo      Locator
	rtt      map[netip.Prefix][]float64 // measured RTT (ms) by client /24 or /48, by site index
	rttSeen  map[netip.Prefix]time.Time // when each rtt row was last fed
	load     []float64                  // reported load by site index; nil = none
	keep     []float64                  // capacity filters: share of client subnets each site keeps (1 = all)
	// parts are the geo filters' partitions of the address space for this
	// cfg and geo: the site list and the largest uniform block per address.
	parts  map[*geoFilter]*geo.Partition
	geoGen uint64 // bumped by SetGeo (a Locator need not be comparable)
	// overrides as set; epOverride is the one applying to each endpoint
	// (by Endpoint.Index; nil slice when there are none).
	overrides  []state.Override
	epOverride []*state.Override
	// self is this gslbd's vantage name; vantages are the published probe
	// results of every vantage point (self's is ignored: its live probes
	// are used instead).
	self     string
	vantages []state.VantageReport
}

// partitioner is a Locator that can precompute partitions (*geo.DB).
type partitioner interface {
	Partition(classify func(geo.Location, bool) int) (*geo.Partition, error)
}

// buildPartitions precomputes every partitionable geo filter of cfg over l.
// Filters with the same classes share one walk of the database. A failure
// leaves the filter on per-query lookups (correct, with the database's own
// network as the scope).
func (e *Engine) buildPartitions(cfg *Config, l Locator) map[*geoFilter]*geo.Partition {
	pt, ok := l.(partitioner)
	if !ok || pt == nil {
		return nil
	}
	parts := map[*geoFilter]*geo.Partition{}
	byShape := map[string]*geo.Partition{}
	start := time.Now()
	for _, name := range sortedKeys(cfg.Records) {
		for _, f := range cfg.Records[name].Chain {
			gf, ok := f.(*geoFilter)
			if !ok || !gf.partitionable() || parts[gf] != nil {
				continue
			}
			shape := gf.shape()
			if p := byShape[shape]; p != nil {
				parts[gf] = p
				continue
			}
			p, err := pt.Partition(gf.classify)
			if err != nil {
				e.log.Warn("geo partition failed; per-query lookups for this filter", "record", name, "err", err)
				continue
			}
			byShape[shape], parts[gf] = p, p
		}
	}
	if len(byShape) > 0 {
		e.log.Info("geo partitions built", "partitions", len(byShape), "took", time.Since(start).Round(time.Millisecond))
	}
	return parts
}

// NewEngine returns an engine with an empty configuration.
func NewEngine(cfg EngineConfig) *Engine {
	if cfg.Clock == nil {
		cfg.Clock = health.RealClock()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e := &Engine{clock: cfg.Clock, log: cfg.Logger, metrics: newEngineMetrics()}
	e.pool.New = func() any { return new(decision) }
	e.snap.Store(&snapshot{cfg: &Config{Sites: map[string]*Site{}, Pools: map[string]*Pool{}, Records: map[string]*Record{}}})
	return e
}

// Config returns the configuration being served.
func (e *Engine) Config() *Config { return e.snap.Load().cfg }

// SetConfig swaps in a new configuration, keeping the known health.
func (e *Engine) SetConfig(cfg *Config) {
	e.metrics.bind(cfg)
	e.rebuild(func(s *snapshot) { s.cfg = cfg })
}

// SetGeo swaps in a geolocation database (nil: location unknown).
func (e *Engine) SetGeo(l Locator) {
	e.rebuild(func(s *snapshot) { s.geo, s.geoGen = l, s.geoGen+1 })
}

// SetHealth swaps in probe results (health.Checker.Statuses()).
func (e *Engine) SetHealth(st map[health.TargetKey]health.Status) {
	e.rebuild(func(s *snapshot) { s.statuses = st })
}

func (e *Engine) rebuild(change func(*snapshot)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.snap.Load()
	next := &snapshot{cfg: old.cfg, statuses: old.statuses, geo: old.geo, rtt: old.rtt, rttSeen: old.rttSeen, load: old.load, keep: old.keep, parts: old.parts, geoGen: old.geoGen,
		overrides: old.overrides, self: old.self, vantages: old.vantages}
	change(next)
	if next.cfg != old.cfg && !sameSites(old.cfg, next.cfg) {
		// Measured RTTs and loads are stored by site index: follow the
		// sites to their new indexes (a site added or removed shifts them).
		next.rtt = remapRTT(next.rtt, old.cfg, next.cfg)
		if next.load != nil {
			next.load = remapRow(next.load, old.cfg, next.cfg, 0)
			next.keep = remapRow(next.keep, old.cfg, next.cfg, 1)
		}
	}
	next.epOverride = endpointOverrides(next.cfg, next.overrides)
	if next.cfg != old.cfg || next.geoGen != old.geoGen {
		next.parts = e.buildPartitions(next.cfg, next.geo)
	}
	next.health = make([]epHealth, len(next.cfg.Endpoints))
	remote := remoteViews(next.self, next.vantages)
	for i, ep := range next.cfg.Endpoints {
		h := epHealth{up: true, reason: "not monitored"}
		if ep.Target != nil {
			h.reason = "not probed yet"
			var views []View
			if st, ok := next.statuses[ep.Target.Key()]; ok {
				views = append(views, View{Vantage: next.self, Self: true, Up: st.Up, Reason: st.Reason, Since: st.Since})
				h.nextChange = st.NextChange
			}
			views = append(views, remote[ep.Name]...)
			if len(views) > 0 {
				h.up, h.reason, h.split = verdict(next.cfg.Quorum, views)
			}
			if len(views) > 1 || (len(views) == 1 && !views[0].Self) {
				h.views = views
			}
		}
		next.health[i] = h
	}
	e.snap.Store(next)
}

// EndpointUp reports whether the endpoint named name is up (known false
// when there is no such endpoint).
func (e *Engine) EndpointUp(name string) (up, known bool) {
	s := e.snap.Load()
	for _, ep := range s.cfg.Endpoints {
		if ep.Name == name {
			return s.health[ep.Index].up, true
		}
	}
	return false, false
}

// PoolHealth counts a pool's endpoints that are up (known false when there
// is no such pool).
func (e *Engine) PoolHealth(pool string) (up, total int, known bool) {
	s := e.snap.Load()
	p := s.cfg.Pools[pool]
	if p == nil {
		return 0, 0, false
	}
	for _, ep := range p.Endpoints {
		total++
		if s.health[ep.Index].up {
			up++
		}
	}
	return up, total, true
}

// HasRecord reports whether name (canonical) is a GSLB record.
func (e *Engine) HasRecord(name string) bool {
	_, ok := e.snap.Load().cfg.Records[name]
	return ok
}

// Decide answers q, appending addresses to a.Addrs.
func (e *Engine) Decide(q Query, a *Answer) {
	d := e.pool.Get().(*decision)
	e.decide(d, q, a)
	if d.rec != nil {
		e.observe(d, q, a)
	}
	d.snap, d.rec, d.trace = nil, nil, nil
	e.pool.Put(d)
}

// Explain answers q and says why, step by step.
func (e *Engine) Explain(q Query) Answer {
	var a Answer
	d := new(decision)
	d.trace = &a.Trace
	e.decide(d, q, &a)
	return a
}

func (e *Engine) decide(d *decision, q Query, a *Answer) {
	s := e.snap.Load()
	rec := s.cfg.Records[q.Name]
	a.Outcome, a.Scope, a.UsedECS = NotGSLB, 0, false
	if rec == nil {
		return
	}
	*d = decision{snap: s, rec: rec, cands: d.cands[:0], all: d.all[:0], ranks: d.ranks, floats: d.floats, order: d.order[:0], draws: d.draws[:0], trace: d.trace}
	d.client = clientPrefix(q, s.cfg.Trusted, &a.UsedECS)
	d.now = e.clock.Now()
	d.load(rec.Pool, q.IPv6, false)
	d.run()
	a.Outcome = Answered
	if len(d.cands) == 0 && d.healthEmptied {
		e.allDown(d, q, a)
	}
	a.TTL = e.ttl(d)
	if a.Outcome == ServFail {
		return
	}
	// A NODATA depends on the client as much as an answer does (a region
	// whose sites are down or fenced out): it carries the same scope.
	if a.UsedECS {
		a.Scope = uint8(min(d.scope, d.client.Addr().BitLen()))
	}
	if a.Outcome != Answered {
		return
	}
	for _, c := range d.cands {
		a.Addrs = append(a.Addrs, c.ep.Addr)
	}
	if len(d.cands) == 0 { // not len(a.Addrs): the caller's buffer may hold addresses
		a.Outcome = NoData
	}
}

// observe counts a decision for the metrics.
func (e *Engine) observe(d *decision, q Query, a *Answer) {
	if st := d.rec.stats; st != nil {
		switch a.Outcome {
		case Answered:
			st.answers.Add(1)
		case NoData:
			st.nodata.Add(1)
		case ServFail:
			st.servfail.Add(1)
		}
		if d.allDownApplied {
			st.allDown.Add(1)
		}
	}
	if a.Outcome == Answered {
		for _, c := range d.cands {
			if c.ep.Site.answers != nil {
				c.ep.Site.answers.Add(1)
			}
		}
	}
	e.metrics.observeECS(a.UsedECS, q.ECS.IsValid(), a.Scope)
}

// allDown applies the record's policy when health left nothing.
func (e *Engine) allDown(d *decision, q Query, a *Answer) {
	d.allDownApplied = true
	if d.trace != nil {
		*d.trace = append(*d.trace, Step{Filter: "all_down", Note: "every candidate is down"})
	}
	switch d.rec.AllDown {
	case AllDownNoData:
		a.Outcome = NoData
	case AllDownServFail:
		a.Outcome = ServFail
	case AllDownFallback:
		d.load(d.rec.Fallback, q.IPv6, false)
		d.run()
		if len(d.cands) == 0 {
			d.load(d.rec.Fallback, q.IPv6, true)
			d.run()
		}
		a.Outcome = Answered
	default: // all: answer as if every endpoint were up
		d.load(d.rec.Pool, q.IPv6, true)
		d.run()
		a.Outcome = Answered
	}
}

// ttl is the record's TTL, shrunk toward the next possible health change
// of any endpoint considered (as gdnsd does), never below ttl_min.
func (e *Engine) ttl(d *decision) uint32 {
	ttl := d.rec.TTL
	now := d.now
	for _, c := range d.all {
		nc := d.snap.health[c.ep.Index].nextChange
		if nc.IsZero() {
			continue
		}
		if secs := nc.Sub(now) / time.Second; secs < time.Duration(ttl) {
			ttl = uint32(max(secs, 0))
		}
	}
	return min(max(ttl, d.rec.TTLMin), d.rec.TTLMax)
}

// clientPrefix is the network the decision is about: the ECS source prefix
// when the query had one from a trusted resolver, else the resolver itself.
// SOURCE /0 says "do not use client information" (RFC 7871 7.1.2): the
// resolver is used and the reply's scope is 0.
func clientPrefix(q Query, trusted []netip.Prefix, usedECS *bool) netip.Prefix {
	if q.ECS.IsValid() && q.ECS.Bits() > 0 && trustedResolver(q.Resolver, trusted) {
		*usedECS = true
		a, bits := q.ECS.Addr(), q.ECS.Bits()
		if a.Is4In6() { // ::ffff:a.b.c.d/n is the IPv4 prefix /n-96
			a, bits = a.Unmap(), max(bits-96, 0)
		}
		return netip.PrefixFrom(a, bits).Masked()
	}
	r := q.Resolver.Unmap()
	return netip.PrefixFrom(r, r.BitLen())
}

func trustedResolver(r netip.Addr, trusted []netip.Prefix) bool {
	if len(trusted) == 0 {
		return true
	}
	r = r.Unmap()
	for _, p := range trusted {
		if p.Contains(r) {
			return true
		}
	}
	return false
}
