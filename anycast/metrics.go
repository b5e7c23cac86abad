package anycast

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are read from the announcer at scrape time. Label values come
// from the configuration (peer addresses) and from the VIPs the daemon
// configures, never from anything a peer sends.

type metricDescs struct {
	peerUp, announced, depreferred, transitions *prometheus.Desc
}

func newMetricDescs() metricDescs {
	return metricDescs{
		peerUp: prometheus.NewDesc("gslbd_anycast_peer_up",
			"Whether the BGP session with a peer is established (1) or not (0).", []string{"peer"}, nil),
		announced: prometheus.NewDesc("gslbd_anycast_announced",
			"Whether a VIP is announced (1, including de-preferred) or withdrawn (0).", []string{"prefix"}, nil),
		depreferred: prometheus.NewDesc("gslbd_anycast_depreferred",
			"Whether a VIP is announced de-preferred, with the graceful-shutdown community (1) or not (0).", []string{"prefix"}, nil),
		transitions: prometheus.NewDesc("gslbd_anycast_transitions_total",
			"VIP state transitions, by the state entered (announced, depreferred, withdrawn).", []string{"to"}, nil),
	}
}

type collector Announcer

// Collector returns the announcer's Prometheus metrics.
func (a *Announcer) Collector() prometheus.Collector { return (*collector)(a) }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.descs.peerUp
	ch <- c.descs.announced
	ch <- c.descs.depreferred
	ch <- c.descs.transitions
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	a := (*Announcer)(c)
	st := a.Status()
	for _, p := range st.Peers {
		ch <- prometheus.MustNewConstMetric(c.descs.peerUp, prometheus.GaugeValue, b2f(p.Up), p.Address.String())
	}
	for _, v := range st.VIPs {
		ch <- prometheus.MustNewConstMetric(c.descs.announced, prometheus.GaugeValue, b2f(v.Active), v.Prefix.String())
		ch <- prometheus.MustNewConstMetric(c.descs.depreferred, prometheus.GaugeValue, b2f(v.Active && v.State == Depreferred), v.Prefix.String())
	}
	a.mu.Lock()
	counts := a.transitions
	a.mu.Unlock()
	for s, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.descs.transitions, prometheus.CounterValue, float64(n), State(s).String())
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
