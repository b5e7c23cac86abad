package gslb

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/gslbd/gslbd/gslb/state"

	"github.com/prometheus/client_golang/prometheus"
)

// Engine metrics are atomics bumped by Decide and turned into Prometheus
// metrics at scrape time. Labels come from the configuration only (record,
// site, pool and endpoint names), never from clients.

var scopeBounds = []float64{0, 8, 16, 20, 24, 28, 32, 48, 56, 64, 128}

type recordStats struct {
	answers  atomic.Uint64
	allDown  atomic.Uint64
	nodata   atomic.Uint64
	servfail atomic.Uint64
}

type engineMetrics struct {
	mu      sync.Mutex
	records map[string]*recordStats
	sites   map[string]*atomic.Uint64
	ecs     [3]atomic.Uint64 // absent, used, ignored
	scope   []atomic.Uint64  // histogram counts by scopeBounds (+Inf last)
	scopeN  atomic.Uint64
	scopeS  atomic.Uint64

	answersDesc, siteDesc, allDownDesc, outcomeDesc, ecsDesc, scopeDesc, upDesc *prometheus.Desc
	splitDesc, vantageDesc, overridesDesc                                       *prometheus.Desc
}

func newEngineMetrics() *engineMetrics {
	return &engineMetrics{
		records: map[string]*recordStats{},
		sites:   map[string]*atomic.Uint64{},
		scope:   make([]atomic.Uint64, len(scopeBounds)+1),
		answersDesc: prometheus.NewDesc("gslbd_gslb_answers_total",
			"GSLB decisions that returned addresses, by record.", []string{"record"}, nil),
		siteDesc: prometheus.NewDesc("gslbd_gslb_site_answers_total",
			"Addresses answered, by the site they belong to.", []string{"site"}, nil),
		allDownDesc: prometheus.NewDesc("gslbd_gslb_all_down_total",
			"Decisions where health left no endpoint and the record's all_down policy applied.", []string{"record"}, nil),
		outcomeDesc: prometheus.NewDesc("gslbd_gslb_empty_answers_total",
			"GSLB decisions answered without addresses, by record and outcome (nodata, servfail).", []string{"record", "outcome"}, nil),
		ecsDesc: prometheus.NewDesc("gslbd_gslb_ecs_queries_total",
			"GSLB decisions by EDNS Client Subnet use: absent, used, ignored (untrusted resolver or SOURCE /0).", []string{"ecs"}, nil),
		scopeDesc: prometheus.NewDesc("gslbd_gslb_ecs_scope_prefix_length",
			"ECS SCOPE PREFIX-LENGTH returned when ECS was used.", nil, nil),
		upDesc: prometheus.NewDesc("gslbd_gslb_endpoint_up",
			"Whether an endpoint is considered up (1) or down (0) by the engine.", []string{"pool", "site", "endpoint"}, nil),
		splitDesc: prometheus.NewDesc("gslbd_gslb_quorum_disagreements",
			"Monitored endpoints whose vantage points disagree about their health now.", nil, nil),
		vantageDesc: prometheus.NewDesc("gslbd_gslb_vantage_points",
			"Other vantage points (gslbd instances) whose probe results count, not lapsed.", nil, nil),
		overridesDesc: prometheus.NewDesc("gslbd_gslb_overrides",
			"Operator overrides in force, by kind.", []string{"kind"}, nil),
	}
}

// bind attaches the persistent counters to a new configuration's records,
// so totals survive reloads.
func (m *engineMetrics) bind(cfg *Config) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, r := range cfg.Records {
		st := m.records[name]
		if st == nil {
			st = &recordStats{}
			m.records[name] = st
		}
		r.stats = st
	}
	for name, s := range cfg.Sites {
		c := m.sites[name]
		if c == nil {
			c = new(atomic.Uint64)
			m.sites[name] = c
		}
		s.answers = c
	}
}

func (m *engineMetrics) observeECS(used, present bool, scope uint8) {
	switch {
	case !present:
		m.ecs[0].Add(1)
	case !used:
		m.ecs[2].Add(1)
	default:
		m.ecs[1].Add(1)
		i := 0
		for i < len(scopeBounds) && float64(scope) > scopeBounds[i] {
			i++
		}
		m.scope[i].Add(1)
		m.scopeN.Add(1)
		m.scopeS.Add(uint64(scope))
	}
}

func (m *engineMetrics) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.answersDesc, m.siteDesc, m.allDownDesc, m.outcomeDesc, m.ecsDesc, m.scopeDesc, m.upDesc, m.splitDesc, m.vantageDesc, m.overridesDesc} {
		ch <- d
	}
}

func (m *engineMetrics) collect(ch chan<- prometheus.Metric, s *snapshot, now time.Time) {
	m.mu.Lock()
	for name, st := range m.records {
		ch <- prometheus.MustNewConstMetric(m.answersDesc, prometheus.CounterValue, float64(st.answers.Load()), name)
		ch <- prometheus.MustNewConstMetric(m.allDownDesc, prometheus.CounterValue, float64(st.allDown.Load()), name)
		ch <- prometheus.MustNewConstMetric(m.outcomeDesc, prometheus.CounterValue, float64(st.nodata.Load()), name, "nodata")
		ch <- prometheus.MustNewConstMetric(m.outcomeDesc, prometheus.CounterValue, float64(st.servfail.Load()), name, "servfail")
	}
	for name, c := range m.sites {
		ch <- prometheus.MustNewConstMetric(m.siteDesc, prometheus.CounterValue, float64(c.Load()), name)
	}
	m.mu.Unlock()
	for i, label := range []string{"absent", "used", "ignored"} {
		ch <- prometheus.MustNewConstMetric(m.ecsDesc, prometheus.CounterValue, float64(m.ecs[i].Load()), label)
	}
	buckets := make(map[float64]uint64, len(scopeBounds))
	var cum uint64
	for i, b := range scopeBounds {
		cum += m.scope[i].Load()
		buckets[b] = cum
	}
	ch <- prometheus.MustNewConstHistogram(m.scopeDesc, m.scopeN.Load(), float64(m.scopeS.Load()), buckets)
	for _, ep := range s.cfg.Endpoints {
		v := 0.0
		if s.health[ep.Index].up {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(m.upDesc, prometheus.GaugeValue, v, ep.Pool, ep.Site.Name, ep.Name)
	}
	split := 0
	for _, h := range s.health {
		if h.split {
			split++
		}
	}
	ch <- prometheus.MustNewConstMetric(m.splitDesc, prometheus.GaugeValue, float64(split))
	others := 0
	for _, r := range s.vantages {
		if r.Vantage != s.self {
			others++
		}
	}
	ch <- prometheus.MustNewConstMetric(m.vantageDesc, prometheus.GaugeValue, float64(others))
	kinds := map[state.Kind]int{state.KindUp: 0, state.KindDown: 0, state.KindDrain: 0, state.KindMaintenance: 0}
	for _, o := range s.overrides {
		if o.Active(now) {
			kinds[o.Kind]++
		}
	}
	for k, n := range kinds {
		ch <- prometheus.MustNewConstMetric(m.overridesDesc, prometheus.GaugeValue, float64(n), string(k))
	}
}

// Describe implements prometheus.Collector.
func (e *Engine) Describe(ch chan<- *prometheus.Desc) { e.metrics.describe(ch) }

// Collect implements prometheus.Collector.
func (e *Engine) Collect(ch chan<- prometheus.Metric) {
	e.metrics.collect(ch, e.snap.Load(), e.clock.Now())
}
