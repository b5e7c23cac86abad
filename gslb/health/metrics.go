package health

import "github.com/prometheus/client_golang/prometheus"

// metrics are the Checker's Prometheus metrics. Labels are bounded: kind,
// a reason class, up or down; never an address.
type metrics struct {
	checker     *Checker
	probes      *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	transitions *prometheus.CounterVec
	targets     *prometheus.Desc
}

func newMetrics() *metrics {
	return &metrics{
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gslbd_health_probes_total",
			Help: "Health probes completed, by kind and result (ok, or the failure class: timeout, refused, tls, status, body, dns_rcode, dns_answer, other).",
		}, []string{"kind", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gslbd_health_probe_duration_seconds",
			Help:    "Duration of health probes, failed ones included.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"kind"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gslbd_health_transitions_total",
			Help: "Health state changes of targets, by kind, new state and the class of the reason.",
		}, []string{"kind", "to", "reason"}),
		targets: prometheus.NewDesc("gslbd_health_targets",
			"Health targets by kind and state.", []string{"kind", "state"}, nil),
	}
}

// observe counts a probe outcome. Safe for concurrent use.
func (m *metrics) observe(kind Kind, o outcome, flipped, up bool) {
	m.probes.WithLabelValues(string(kind), o.class).Inc()
	m.duration.WithLabelValues(string(kind)).Observe(o.rtt.Seconds())
	if flipped {
		to := "down"
		if up {
			to = "up"
		}
		m.transitions.WithLabelValues(string(kind), to, o.class).Inc()
	}
}

// Collector returns the Checker's metrics for a registry:
// gslbd_health_probes_total{kind,result},
// gslbd_health_probe_duration_seconds{kind},
// gslbd_health_transitions_total{kind,to,reason} and
// gslbd_health_targets{kind,state} (read at scrape time).
func (c *Checker) Collector() prometheus.Collector { return c.metrics }

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.probes.Describe(ch)
	m.duration.Describe(ch)
	m.transitions.Describe(ch)
	ch <- m.targets
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.probes.Collect(ch)
	m.duration.Collect(ch)
	m.transitions.Collect(ch)
	up, down := make(map[Kind]int), make(map[Kind]int)
	m.checker.mu.Lock()
	for _, tg := range m.checker.targets {
		if tg.status.Up {
			up[tg.t.Monitor.Kind]++
		} else {
			down[tg.t.Monitor.Kind]++
		}
	}
	m.checker.mu.Unlock()
	for _, k := range []Kind{KindHTTP, KindHTTPS, KindTCP, KindDNS} {
		ch <- prometheus.MustNewConstMetric(m.targets, prometheus.GaugeValue, float64(up[k]), string(k), "up")
		ch <- prometheus.MustNewConstMetric(m.targets, prometheus.GaugeValue, float64(down[k]), string(k), "down")
	}
}
