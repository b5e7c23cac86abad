package dnsserver

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// tcpTimeoutKind indexes transportMetrics.tcpTimeouts.
type tcpTimeoutKind uint8

const (
	timeoutIdle tcpTimeoutKind = iota
	timeoutRead
	timeoutWrite
	numTimeoutKinds
)

func (k tcpTimeoutKind) String() string {
	return [numTimeoutKinds]string{"idle", "read", "write"}[k]
}

// udpOp indexes transportMetrics.udpErrors.
type udpOp uint8

const (
	opRead udpOp = iota
	opWrite
	numUDPOps
)

func (op udpOp) String() string { return [numUDPOps]string{"read", "write"}[op] }

// transportMetrics are plain atomics bumped on rare events only (errors,
// timeouts, connection changes): nothing here is touched per UDP query.
type transportMetrics struct {
	tcpOpen     atomic.Int64
	tcpAccepted atomic.Uint64
	tcpRejected atomic.Uint64
	tcpTimeouts [numTimeoutKinds]atomic.Uint64
	udpErrors   [numUDPOps]atomic.Uint64
	panics      atomic.Uint64
}

// transportCollector exports transportMetrics at scrape time.
type transportCollector struct {
	m           *transportMetrics
	tcpOpen     *prometheus.Desc
	tcpAccepted *prometheus.Desc
	tcpRejected *prometheus.Desc
	tcpTimeouts *prometheus.Desc
	udpErrors   *prometheus.Desc
	panics      *prometheus.Desc
}

func newTransportCollector(m *transportMetrics) *transportCollector {
	return &transportCollector{
		m: m,
		tcpOpen: prometheus.NewDesc("gslbd_dns_tcp_connections",
			"DNS TCP connections open now.", nil, nil),
		tcpAccepted: prometheus.NewDesc("gslbd_dns_tcp_connections_total",
			"DNS TCP connections accepted and served (rejected ones are not included).", nil, nil),
		tcpRejected: prometheus.NewDesc("gslbd_dns_tcp_connections_rejected_total",
			"DNS TCP connections closed at once because TCPMaxConns were open.", nil, nil),
		tcpTimeouts: prometheus.NewDesc("gslbd_dns_tcp_timeouts_total",
			"DNS TCP connections closed on a timeout: idle (no next message), read (message too slow), write.",
			[]string{"kind"}, nil),
		udpErrors: prometheus.NewDesc("gslbd_dns_udp_errors_total",
			"DNS UDP socket errors, by operation. A failed batched send counts each message lost.",
			[]string{"op"}, nil),
		panics: prometheus.NewDesc("gslbd_dns_panics_total",
			"DNS handler panics recovered by the transport; the message was dropped.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *transportCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.tcpOpen
	ch <- c.tcpAccepted
	ch <- c.tcpRejected
	ch <- c.tcpTimeouts
	ch <- c.udpErrors
	ch <- c.panics
}

// Collect implements prometheus.Collector.
func (c *transportCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	ch <- prometheus.MustNewConstMetric(c.tcpOpen, prometheus.GaugeValue, float64(m.tcpOpen.Load()))
	ch <- prometheus.MustNewConstMetric(c.tcpAccepted, prometheus.CounterValue, float64(m.tcpAccepted.Load()))
	ch <- prometheus.MustNewConstMetric(c.tcpRejected, prometheus.CounterValue, float64(m.tcpRejected.Load()))
	for k := range numTimeoutKinds {
		ch <- prometheus.MustNewConstMetric(c.tcpTimeouts, prometheus.CounterValue,
			float64(m.tcpTimeouts[k].Load()), k.String())
	}
	for op := range numUDPOps {
		ch <- prometheus.MustNewConstMetric(c.udpErrors, prometheus.CounterValue,
			float64(m.udpErrors[op].Load()), op.String())
	}
	ch <- prometheus.MustNewConstMetric(c.panics, prometheus.CounterValue, float64(m.panics.Load()))
}
