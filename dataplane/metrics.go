package dataplane

import (
	"cmp"
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// MetricsConfig says where the collector reads from; nil parts are left
// out of the scrape.
type MetricsConfig struct {
	Counters   CountersSource // the data path (a Programmer)
	Controller *Controller
	Feed       *Feed
}

// NewCollector returns a Prometheus collector that reads the data path's
// counters at scrape time (they live in per-CPU BPF maps; copying them on
// a timer would only add staleness). Labels are bounded by the
// configuration: vip ("tcp/192.0.2.10:80"), backend (its address) and the
// drop reason (DropReasons); never a client address or prefix.
func NewCollector(cfg MetricsConfig) prometheus.Collector {
	return &collector{cfg: cfg}
}

type collector struct {
	cfg MetricsConfig
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descVIPPackets     = desc("lbd_vip_packets_total", "Packets received for the VIP.", "vip")
	descVIPBytes       = desc("lbd_vip_bytes_total", "Bytes received for the VIP.", "vip")
	descVIPNewFlows    = desc("lbd_vip_new_flows_total", "Flows of the VIP that had no connection-table entry.", "vip")
	descVIPLRUHits     = desc("lbd_vip_lru_hits_total", "Packets of the VIP whose flow was in the connection table.", "vip")
	descVIPLRUMisses   = desc("lbd_vip_lru_misses_total", "Packets of the VIP that needed a Maglev lookup.", "vip")
	descVIPDrops       = desc("lbd_vip_drops_total", "Packets of the VIP dropped, by reason.", "vip", "reason")
	descVIPProgrammed  = desc("lbd_vip_programmed", "1 when the data path has the VIP's current service, 0 while a failed push is retried.", "vip")
	descBackendPackets = desc("lbd_backend_packets_total", "Packets sent to the backend.", "vip", "backend")
	descBackendBytes   = desc("lbd_backend_bytes_total", "Bytes sent to the backend.", "vip", "backend")
	descBackendNew     = desc("lbd_backend_new_flows_total", "New flows sent to the backend.", "vip", "backend")
	descBackendUp      = desc("lbd_backend_up", "1 when the backend passes its health check.", "vip", "backend")
	descBackendDrain   = desc("lbd_backend_draining", "1 when an operator drained or removed the backend.", "vip", "backend")
	descBackendEntries = desc("lbd_backend_table_entries", "Maglev table entries of the backend in the programmed table.", "vip", "backend")
	descActiveFlows    = desc("lbd_active_flows", "Connection-table entries that saw a packet in the last minute.")
	descFeedPrefixes   = desc("lbd_feed_prefixes", "Client prefixes in the RTT feed.")
	descDataplaneUp    = desc("lbd_dataplane_up", "1 when the last read of the data path's counters succeeded.")
	descFIBLookups     = desc("lbd_fib_lookups_total", "Route lookups for IPIP packets, by result; other than success and frag_needed, the packet was passed to the kernel.", "result")
)

// fibStatser is implemented by a data path that counts its route lookups
// (the XDP loader). The results are a fixed set, a bounded label.
type fibStatser interface {
	FIBStats() (map[string]uint64, error)
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descVIPPackets, descVIPBytes, descVIPNewFlows, descVIPLRUHits, descVIPLRUMisses, descVIPDrops, descVIPProgrammed,
		descBackendPackets, descBackendBytes, descBackendNew, descBackendUp, descBackendDrain, descBackendEntries,
		descActiveFlows, descFeedPrefixes, descDataplaneUp, descFIBLookups,
	} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if c.cfg.Counters != nil {
		cs, err := c.cfg.Counters.Counters()
		gauge(descDataplaneUp, b2f(err == nil))
		if err == nil {
			for _, v := range slices.SortedFunc(maps.Keys(cs.VIPs), compareVIPs) {
				vc, name := cs.VIPs[v], v.String()
				counter(descVIPPackets, vc.Packets, name)
				counter(descVIPBytes, vc.Bytes, name)
				counter(descVIPNewFlows, vc.NewFlows, name)
				counter(descVIPLRUHits, vc.LRUHits, name)
				counter(descVIPLRUMisses, vc.LRUMisses, name)
				for _, reason := range DropReasons {
					counter(descVIPDrops, vc.Drops[reason], name, reason)
				}
			}
			for _, k := range slices.SortedFunc(maps.Keys(cs.Backends), compareBackendKeys) {
				bc, vip, be := cs.Backends[k], k.VIP.String(), k.Addr.String()
				counter(descBackendPackets, bc.Packets, vip, be)
				counter(descBackendBytes, bc.Bytes, vip, be)
				counter(descBackendNew, bc.NewFlows, vip, be)
			}
			gauge(descActiveFlows, float64(cs.ActiveFlows))
		}
		if fs, ok := c.cfg.Counters.(fibStatser); ok {
			if stats, err := fs.FIBStats(); err == nil {
				for _, result := range slices.Sorted(maps.Keys(stats)) {
					counter(descFIBLookups, stats[result], result)
				}
			}
		}
	}
	if c.cfg.Controller != nil {
		for _, vs := range c.cfg.Controller.Status() {
			vip := vs.VIP.String()
			gauge(descVIPProgrammed, b2f(vs.Programmed), vip)
			for _, b := range vs.Backends {
				be := b.Addr.String()
				gauge(descBackendUp, b2f(b.Health.Up), vip, be)
				gauge(descBackendDrain, b2f(b.State != "active"), vip, be)
				gauge(descBackendEntries, float64(b.TableEntries), vip, be)
			}
		}
	}
	if c.cfg.Feed != nil {
		gauge(descFeedPrefixes, float64(c.cfg.Feed.Len()))
	}
}

func compareBackendKeys(a, b BackendKey) int {
	return cmp.Or(compareVIPs(a.VIP, b.VIP), a.Addr.Compare(b.Addr))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
