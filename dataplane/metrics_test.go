package dataplane

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetrics(t *testing.T) {
	h := newCtrl(t, ctrlYAML, "")
	h.health.set(h.target(t, be3), false, "timeout")
	h.c.Reconcile()
	h.c.Drain(vip80, be4)
	h.prog.setCounters(Counters{
		VIPs: map[VIP]VIPCounters{vip80: {Packets: 10, Bytes: 1000, NewFlows: 3, LRUHits: 7, LRUMisses: 3, Drops: map[string]uint64{"no_backend": 2, "fragment": 1}}},
		Backends: map[BackendKey]BackendCounters{
			{VIP: vip80, Addr: be2}: {Packets: 6, Bytes: 600, NewFlows: 2},
			{VIP: vip80, Addr: be4}: {Packets: 4, Bytes: 400, NewFlows: 1},
		},
		ActiveFlows: 42,
	})
	feed, err := NewFeed(FeedConfig{Site: "lon", Source: h.prog, Clock: NewFakeClock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	h.prog.addRTT(sample("198.18.0.0/24", 1, 1e6), sample("198.18.1.0/24", 1, 1e6))
	feed.Poll()
	c := NewCollector(MetricsConfig{Counters: h.prog, Controller: h.c, Feed: feed})

	want := `
# HELP lbd_active_flows Connection-table entries that saw a packet in the last minute.
# TYPE lbd_active_flows gauge
lbd_active_flows 42
# HELP lbd_backend_bytes_total Bytes sent to the backend.
# TYPE lbd_backend_bytes_total counter
lbd_backend_bytes_total{backend="198.18.1.2",vip="tcp/192.0.2.10:80"} 600
lbd_backend_bytes_total{backend="198.18.1.4",vip="tcp/192.0.2.10:80"} 400
# HELP lbd_backend_draining 1 when an operator drained or removed the backend.
# TYPE lbd_backend_draining gauge
lbd_backend_draining{backend="198.18.1.2",vip="tcp/192.0.2.10:80"} 0
lbd_backend_draining{backend="198.18.1.3",vip="tcp/192.0.2.10:80"} 0
lbd_backend_draining{backend="198.18.1.4",vip="tcp/192.0.2.10:80"} 1
# HELP lbd_backend_new_flows_total New flows sent to the backend.
# TYPE lbd_backend_new_flows_total counter
lbd_backend_new_flows_total{backend="198.18.1.2",vip="tcp/192.0.2.10:80"} 2
lbd_backend_new_flows_total{backend="198.18.1.4",vip="tcp/192.0.2.10:80"} 1
# HELP lbd_backend_packets_total Packets sent to the backend.
# TYPE lbd_backend_packets_total counter
lbd_backend_packets_total{backend="198.18.1.2",vip="tcp/192.0.2.10:80"} 6
lbd_backend_packets_total{backend="198.18.1.4",vip="tcp/192.0.2.10:80"} 4
# HELP lbd_backend_table_entries Maglev table entries of the backend in the programmed table.
# TYPE lbd_backend_table_entries gauge
lbd_backend_table_entries{backend="198.18.1.2",vip="tcp/192.0.2.10:80"} 65537
lbd_backend_table_entries{backend="198.18.1.3",vip="tcp/192.0.2.10:80"} 0
lbd_backend_table_entries{backend="198.18.1.4",vip="tcp/192.0.2.10:80"} 0
# HELP lbd_backend_up 1 when the backend passes its health check.
# TYPE lbd_backend_up gauge
lbd_backend_up{backend="198.18.1.2",vip="tcp/192.0.2.10:80"} 1
lbd_backend_up{backend="198.18.1.3",vip="tcp/192.0.2.10:80"} 0
lbd_backend_up{backend="198.18.1.4",vip="tcp/192.0.2.10:80"} 1
# HELP lbd_dataplane_up 1 when the last read of the data path's counters succeeded.
# TYPE lbd_dataplane_up gauge
lbd_dataplane_up 1
# HELP lbd_feed_prefixes Client prefixes in the RTT feed.
# TYPE lbd_feed_prefixes gauge
lbd_feed_prefixes 2
# HELP lbd_vip_bytes_total Bytes received for the VIP.
# TYPE lbd_vip_bytes_total counter
lbd_vip_bytes_total{vip="tcp/192.0.2.10:80"} 1000
# HELP lbd_vip_drops_total Packets of the VIP dropped, by reason.
# TYPE lbd_vip_drops_total counter
lbd_vip_drops_total{reason="fragment",vip="tcp/192.0.2.10:80"} 1
lbd_vip_drops_total{reason="malformed",vip="tcp/192.0.2.10:80"} 0
lbd_vip_drops_total{reason="no_backend",vip="tcp/192.0.2.10:80"} 2
lbd_vip_drops_total{reason="too_big",vip="tcp/192.0.2.10:80"} 0
lbd_vip_drops_total{reason="unsupported",vip="tcp/192.0.2.10:80"} 0
# HELP lbd_vip_lru_hits_total Packets of the VIP whose flow was in the connection table.
# TYPE lbd_vip_lru_hits_total counter
lbd_vip_lru_hits_total{vip="tcp/192.0.2.10:80"} 7
# HELP lbd_vip_lru_misses_total Packets of the VIP that needed a Maglev lookup.
# TYPE lbd_vip_lru_misses_total counter
lbd_vip_lru_misses_total{vip="tcp/192.0.2.10:80"} 3
# HELP lbd_vip_new_flows_total Flows of the VIP that had no connection-table entry.
# TYPE lbd_vip_new_flows_total counter
lbd_vip_new_flows_total{vip="tcp/192.0.2.10:80"} 3
# HELP lbd_vip_packets_total Packets received for the VIP.
# TYPE lbd_vip_packets_total counter
lbd_vip_packets_total{vip="tcp/192.0.2.10:80"} 10
# HELP lbd_vip_programmed 1 when the data path has the VIP's current service, 0 while a failed push is retried.
# TYPE lbd_vip_programmed gauge
lbd_vip_programmed{vip="tcp/192.0.2.10:80"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}

	// Counters that cannot be read: lbd_dataplane_up 0, no counter series,
	// the scrape still succeeds.
	h.prog.mu.Lock()
	h.prog.countersErr = errBoom
	h.prog.mu.Unlock()
	if err := testutil.CollectAndCompare(c, strings.NewReader(`
# HELP lbd_dataplane_up 1 when the last read of the data path's counters succeeded.
# TYPE lbd_dataplane_up gauge
lbd_dataplane_up 0
`), "lbd_dataplane_up", "lbd_vip_packets_total"); err != nil {
		t.Error(err)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Gather(); err != nil {
		t.Errorf("gather with failing counters: %v", err)
	}
}

type fibProgrammer struct{ *fakeProgrammer }

func (fibProgrammer) FIBStats() (map[string]uint64, error) {
	return map[string]uint64{"success": 10, "no_neighbour": 2}, nil
}

func TestMetricsFIB(t *testing.T) {
	c := NewCollector(MetricsConfig{Counters: fibProgrammer{newFakeProgrammer()}})
	want := `
# HELP lbd_fib_lookups_total Route lookups for IPIP packets, by result; other than success and frag_needed, the packet was passed to the kernel.
# TYPE lbd_fib_lookups_total counter
lbd_fib_lookups_total{result="no_neighbour"} 2
lbd_fib_lookups_total{result="success"} 10
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "lbd_fib_lookups_total"); err != nil {
		t.Error(err)
	}
}
