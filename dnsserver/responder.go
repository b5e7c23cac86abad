package dnsserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gslbd/gslbd/gslb"
	"github.com/gslbd/gslbd/zones"
)

// Identity holds the CHAOS-class TXT answers. Empty fields are REFUSED, so
// a server gives away nothing unless its operator says so.
type Identity struct {
	Version  string // version.bind. and version.server.
	Hostname string // hostname.bind.
	ID       string // id.server.
}

// Config configures a Responder.
type Config struct {
	// MaxUDPSize is the EDNS payload size we advertise and the largest UDP
	// reply we send. Default 1232 (the DNS flag day 2020 value).
	MaxUDPSize uint16
	// Identity answers CHAOS TXT queries; default: all REFUSED.
	Identity Identity
	// Transfers configures AXFR/IXFR per zone; by default every zone
	// refuses them.
	Transfers TransferConfig
	// GSLB answers A/AAAA for the names of its records; nil: static only.
	GSLB *gslb.Engine
	// QuerySample is the share of queries logged at Info (0 = none, 1 = all).
	QuerySample float64
	// Logger; nil discards.
	Logger *slog.Logger
}

// Responder answers DNS queries from the zones it was given. It implements
// Handler and prometheus.Collector. Safe for concurrent use.
type Responder struct {
	cfg     Config
	log     *slog.Logger
	snap    atomic.Pointer[snapshot]
	mu      sync.Mutex // serialises SetZones
	metrics *queryMetrics
	none    *zoneCounters // queries outside every zone
	chaos   map[string]*rrset
	zoneSet *zones.Set // the last set given, for GSLBChanged
	xfr     *transferPolicy
	pool    sync.Pool
	// sampleEvery logs one query in sampleEvery (0 = off); sampled counts.
	sampleEvery uint64
	sampled     atomic.Uint64
}

// latencyEvery: one query in this many is timed for the latency histogram.
const latencyEvery = 16

// scratch is the per-query working memory, pooled.
type scratch struct {
	n   uint64 // queries served with this scratch, for latency sampling
	g   gslb.Answer
	ga  [16]netip.Addr
	q   query
	r   result
	w   writer
	ans [8]rrRef
	ns  [4]rrRef
	ext [16]rrRef
}

// NewResponder validates cfg and builds a Responder serving no zones.
func NewResponder(cfg Config) (*Responder, error) {
	if cfg.MaxUDPSize == 0 {
		cfg.MaxUDPSize = 1232
	}
	if cfg.MaxUDPSize < 512 {
		return nil, fmt.Errorf("dnsserver config: max_udp_size %d is below 512", cfg.MaxUDPSize)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Responder{cfg: cfg, log: cfg.Logger, metrics: newQueryMetrics()}
	r.none = r.metrics.counters("")
	r.snap.Store(&snapshot{zones: map[string]*zoneData{}})
	r.pool.New = func() any {
		s := new(scratch)
		s.r.ans, s.r.ns, s.r.extra = s.ans[:0], s.ns[:0], s.ext[:0]
		return s
	}
	var err error
	if r.chaos, err = buildChaos(cfg.Identity); err != nil {
		return nil, err
	}
	if r.xfr, err = compileTransfers(cfg.Transfers); err != nil {
		return nil, err
	}
	switch s := cfg.QuerySample; {
	case s < 0 || s > 1:
		return nil, fmt.Errorf("dnsserver config: query_sample %v is not between 0 and 1", s)
	case s > 0:
		r.sampleEvery = uint64(1/s + 0.5)
	}
	return r, nil
}

func buildChaos(id Identity) (map[string]*rrset, error) {
	m := map[string]*rrset{}
	for name, v := range map[string]string{
		"version.bind.": id.Version, "version.server.": id.Version,
		"hostname.bind.": id.Hostname, "id.server.": id.ID,
	} {
		if v == "" {
			continue
		}
		rr := &dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassCHAOS}, Txt: []string{v}}
		s, err := newRRSet([]dns.RR{rr})
		if err != nil {
			return nil, fmt.Errorf("dnsserver config: identity %s: %w", name, err)
		}
		w, _ := wireName(name)
		m[string(w)] = s
	}
	return m, nil
}

// SetZones compiles the zones of set that changed (by pointer) and swaps the
// new snapshot in atomically. A zone that fails to compile keeps its
// previous version; the error lists every such zone.
func (r *Responder) SetZones(set *zones.Set) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.setZones(set, false)
}

// GSLBChanged recompiles every zone against the engine's current records
// (call it after gslb.Engine.SetConfig).
func (r *Responder) GSLBChanged() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.setZones(r.zoneSet, true)
}

func (r *Responder) gslbNames() []string {
	if r.cfg.GSLB == nil {
		return nil
	}
	recs := r.cfg.GSLB.Config().Records
	names := make([]string, 0, len(recs))
	for n := range recs {
		names = append(names, n)
	}
	return names
}

func (r *Responder) setZones(set *zones.Set, force bool) error {
	if set == nil {
		set = &zones.Set{}
	}
	r.zoneSet = set
	names := r.gslbNames()
	old := r.snap.Load()
	byOrigin := make(map[string]*zoneData, len(old.zones))
	for _, zd := range old.zones {
		byOrigin[zd.origin] = zd
	}
	next := &snapshot{zones: make(map[string]*zoneData, len(set.Zones))}
	var errs []error
	for origin, z := range set.Zones {
		prev := byOrigin[origin]
		if prev != nil && prev.src == z && !force {
			next.zones[string(prev.apex)] = prev
			continue
		}
		zd, err := compileZone(z, names)
		if err != nil {
			errs = append(errs, err)
			if prev != nil {
				next.zones[string(prev.apex)] = prev
			}
			continue
		}
		zd.counters = r.metrics.counters(zd.origin)
		next.zones[string(zd.apex)] = zd
	}
	r.snap.Store(next)
	return errors.Join(errs...)
}

// ObserveReload counts a zone load attempt (for the zones watcher's hook).
func (r *Responder) ObserveReload(zone string, ok bool) { r.metrics.reload(zone, ok) }

// Describe implements prometheus.Collector.
func (r *Responder) Describe(ch chan<- *prometheus.Desc) { r.metrics.describe(ch) }

// Collect implements prometheus.Collector.
func (r *Responder) Collect(ch chan<- prometheus.Metric) { r.metrics.collect(ch, r.snap.Load()) }

// ServeDNS answers one query. See Handler.
func (r *Responder) ServeDNS(out, req []byte, src netip.AddrPort, t Transport) []byte {
	sc := r.pool.Get().(*scratch)
	// Reading the clock twice costs about as much as answering a cached
	// name, so latency is timed for one query in latencyEvery.
	sc.n++
	var start time.Time
	timed := sc.n%latencyEvery == 0
	if timed {
		start = time.Now()
	}
	reply, zc, rcode := r.answer(sc, out, req, src, t)
	if reply != nil {
		r.metrics.count(zc, sc.q.qtype, rcode, t, len(reply))
		if timed {
			r.metrics.latency[t].observeDuration(time.Since(start))
		}
		if r.sampleEvery > 0 && r.sampled.Add(1)%r.sampleEvery == 0 {
			r.logQuery(&sc.q, src, t, rcode, len(reply))
		}
	}
	r.pool.Put(sc)
	return reply
}

// logQuery writes one sampled query log line.
func (r *Responder) logQuery(q *query, src netip.AddrPort, t Transport, rcode, size int) {
	var name string
	if q.question != nil {
		name, _, _ = dns.UnpackDomainName(q.question, 0)
	}
	r.log.Info("query", "client", src.Addr(), "transport", t.String(), "qname", name,
		"qtype", dns.Type(q.qtype).String(), "rcode", dns.RcodeToString[rcode], "size", size)
}

// ServeStream handles zone transfers on TCP. See Handler.
func (r *Responder) ServeStream(req []byte, src netip.AddrPort, send func([]byte) error) bool {
	return r.serveTransfer(req, src, send)
}
