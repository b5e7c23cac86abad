package dnsserver

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Query metrics are plain atomics on the answer path and turned into
// Prometheus metrics at scrape time, so a query pays a few atomic adds and
// no label hashing. Label values are bounded: zones come from configuration,
// qtypes and rcodes from fixed lists with "other".

var qtypeNames = []string{"A", "AAAA", "CNAME", "MX", "NS", "SOA", "TXT", "SRV", "PTR", "CAA",
	"HTTPS", "SVCB", "DS", "DNSKEY", "ANY", "AXFR", "IXFR", "other"}

func qtypeIndex(t uint16) int {
	switch t {
	case dns.TypeA:
		return 0
	case dns.TypeAAAA:
		return 1
	case dns.TypeCNAME:
		return 2
	case dns.TypeMX:
		return 3
	case dns.TypeNS:
		return 4
	case dns.TypeSOA:
		return 5
	case dns.TypeTXT:
		return 6
	case dns.TypeSRV:
		return 7
	case dns.TypePTR:
		return 8
	case dns.TypeCAA:
		return 9
	case dns.TypeHTTPS:
		return 10
	case dns.TypeSVCB:
		return 11
	case dns.TypeDS:
		return 12
	case dns.TypeDNSKEY:
		return 13
	case dns.TypeANY:
		return 14
	case dns.TypeAXFR:
		return 15
	case dns.TypeIXFR:
		return 16
	}
	return 17
}

var rcodeNames = []string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "NOTAUTH", "BADVERS", "other"}

func rcodeIndex(rc int) int {
	switch rc {
	case dns.RcodeSuccess, dns.RcodeFormatError, dns.RcodeServerFailure, dns.RcodeNameError, dns.RcodeNotImplemented, dns.RcodeRefused:
		return rc
	case dns.RcodeNotAuth:
		return 6
	case dns.RcodeBadVers:
		return 7
	}
	return 8
}

const nTransports = 2

// zoneCounters counts queries of one zone (or of no zone).
type zoneCounters struct {
	n [18][9][nTransports]atomic.Uint64
}

// histogram is a fixed-bucket histogram updated with atomics.
type histogram struct {
	bounds []float64
	counts []atomic.Uint64 // len(bounds)+1, the last is +Inf
	sum    atomic.Uint64   // in units of 1e-9 (durations) or bytes
	scale  float64
}

func newHistogram(bounds []float64, scale float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1), scale: scale}
}

func (h *histogram) observe(v float64, raw uint64) {
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(raw)
}

func (h *histogram) metric(desc *prometheus.Desc, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.bounds))
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i].Load()
		buckets[b] = cum
	}
	cum += h.counts[len(h.bounds)].Load()
	return prometheus.MustNewConstHistogram(desc, cum, float64(h.sum.Load())*h.scale, buckets, labels...)
}

// queryMetrics holds every per-query counter of a Responder.
type queryMetrics struct {
	mu       sync.Mutex
	zones    map[string]*zoneCounters // by zone origin; "" for no zone
	latency  [nTransports]*histogram
	size     [nTransports]*histogram
	reloadOK map[string]*atomic.Uint64
	reloadKO map[string]*atomic.Uint64

	queriesDesc, latencyDesc, sizeDesc, serialDesc, reloadDesc, zonesDesc *prometheus.Desc
}

func newQueryMetrics() *queryMetrics {
	m := &queryMetrics{
		zones:    make(map[string]*zoneCounters),
		reloadOK: make(map[string]*atomic.Uint64),
		reloadKO: make(map[string]*atomic.Uint64),
		queriesDesc: prometheus.NewDesc("gslbd_dns_queries_total",
			"DNS queries answered, by zone (\"none\" outside served zones), query type, response code and transport.",
			[]string{"zone", "qtype", "rcode", "transport"}, nil),
		latencyDesc: prometheus.NewDesc("gslbd_dns_request_duration_seconds",
			"Time spent answering a query inside gslbd, from received request to written reply; one UDP/TCP query in 16 is timed.",
			[]string{"transport"}, nil),
		sizeDesc: prometheus.NewDesc("gslbd_dns_response_size_bytes",
			"Size of DNS replies.", []string{"transport"}, nil),
		serialDesc: prometheus.NewDesc("gslbd_zone_serial",
			"SOA serial of the zone version being served.", []string{"zone"}, nil),
		reloadDesc: prometheus.NewDesc("gslbd_zone_reloads_total",
			"Zone load attempts by result (success or failure; on failure the previous version keeps serving).",
			[]string{"zone", "result"}, nil),
		zonesDesc: prometheus.NewDesc("gslbd_zones", "Number of zones being served.", nil, nil),
	}
	lat := []float64{1e-6, 2e-6, 5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 1e-3, 10e-3, 100e-3}
	sz := []float64{64, 128, 256, 512, 768, 1024, 1232, 1500, 4096, 16384}
	for t := range nTransports {
		m.latency[t] = newHistogram(lat, 1e-9)
		m.size[t] = newHistogram(sz, 1)
	}
	return m
}

// counters returns the counters of a zone, creating them once; they
// outlive reloads so totals never go backwards.
func (m *queryMetrics) counters(zone string) *zoneCounters {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.zones[zone]
	if c == nil {
		c = &zoneCounters{}
		m.zones[zone] = c
	}
	return c
}

func (m *queryMetrics) count(c *zoneCounters, qtype uint16, rcode int, t Transport, size int) {
	c.n[qtypeIndex(qtype)][rcodeIndex(rcode)][t].Add(1)
	m.size[t].observe(float64(size), uint64(size))
}

func (h *histogram) observeDuration(d time.Duration) { h.observe(d.Seconds(), uint64(d)) }

func (m *queryMetrics) reload(zone string, ok bool) {
	m.mu.Lock()
	tab := m.reloadKO
	if ok {
		tab = m.reloadOK
	}
	c := tab[zone]
	if c == nil {
		c = new(atomic.Uint64)
		tab[zone] = c
	}
	m.mu.Unlock()
	c.Add(1)
}

func (m *queryMetrics) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.queriesDesc, m.latencyDesc, m.sizeDesc, m.serialDesc, m.reloadDesc, m.zonesDesc} {
		ch <- d
	}
}

func (m *queryMetrics) collect(ch chan<- prometheus.Metric, snap *snapshot) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for zone, c := range m.zones {
		label := zone
		if label == "" {
			label = "none"
		}
		for qi := range c.n {
			for ri := range c.n[qi] {
				for t := range nTransports {
					if v := c.n[qi][ri][t].Load(); v > 0 {
						ch <- prometheus.MustNewConstMetric(m.queriesDesc, prometheus.CounterValue, float64(v),
							label, qtypeNames[qi], rcodeNames[ri], Transport(t).String())
					}
				}
			}
		}
	}
	for t := range nTransports {
		ch <- m.latency[t].metric(m.latencyDesc, Transport(t).String())
		ch <- m.size[t].metric(m.sizeDesc, Transport(t).String())
	}
	for zone, c := range m.reloadOK {
		ch <- prometheus.MustNewConstMetric(m.reloadDesc, prometheus.CounterValue, float64(c.Load()), zone, "success")
	}
	for zone, c := range m.reloadKO {
		ch <- prometheus.MustNewConstMetric(m.reloadDesc, prometheus.CounterValue, float64(c.Load()), zone, "failure")
	}
	if snap != nil {
		for _, zd := range snap.zones {
			ch <- prometheus.MustNewConstMetric(m.serialDesc, prometheus.GaugeValue, float64(zd.serial), zd.origin)
		}
		ch <- prometheus.MustNewConstMetric(m.zonesDesc, prometheus.GaugeValue, float64(len(snap.zones)))
	}
}
