package xdp

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/gslbd/gslbd/dataplane"
)

// dropReasons are the drop reasons in the order of DROP_* in bpf/lb.c;
// a test checks that they are dataplane.DropReasons.
var dropReasons = [...]string{"malformed", "no_backend", "fragment", "too_big", "unsupported"}

// fibResults name the bpf_fib_lookup results (BPF_FIB_LKUP_RET_*), by
// index in fib_stats; 14 counts next hops taken from the cache instead,
// 15 errors (negative results).
var fibResults = map[uint32]string{
	0: "success", 1: "blackhole", 2: "unreachable", 3: "prohibit", 4: "not_forwarded",
	5: "forwarding_disabled", 6: "unsupported_lwt", 7: "no_neighbour", 8: "frag_needed",
	9: "no_src_addr", 14: "cached", 15: "error",
}

// activeWindow is how recently a flow must have been seen to count in
// Counters.ActiveFlows.
const activeWindow = time.Minute

const batchSize = 4096

// Counters sums the per-CPU counters of the installed VIPs and backends
// and counts the connection-table entries seen in the last minute.
func (l *Loader) Counters() (dataplane.Counters, error) {
	out := dataplane.Counters{
		VIPs:     make(map[dataplane.VIP]dataplane.VIPCounters),
		Backends: make(map[dataplane.BackendKey]dataplane.BackendCounters),
	}
	if err := l.serviceCounters(&out); err != nil {
		return dataplane.Counters{}, err
	}
	active, err := l.activeFlows(activeWindow)
	if err != nil {
		return dataplane.Counters{}, err
	}
	out.ActiveFlows = active
	return out, nil
}

func (l *Loader) serviceCounters(out *dataplane.Counters) error {
	// Under the lock: a concurrent SetService may hand a counter slot to
	// another backend.
	l.mu.Lock()
	defer l.mu.Unlock()
	ncpu := l.ncpu
	vbuf := make([]lbVipCounters, ncpu)
	rbuf := make([]lbRealCounters, ncpu)
	for v, st := range l.vips {
		if err := l.objs.VipStats.Lookup(st.index, &vbuf); err != nil {
			return fmt.Errorf("xdp: read counters of %s: %w", v, err)
		}
		c := dataplane.VIPCounters{Drops: make(map[string]uint64, len(dropReasons))}
		var drops [len(dropReasons)]uint64
		for _, s := range vbuf {
			c.Packets += s.Packets
			c.Bytes += s.Bytes
			c.NewFlows += s.NewFlows
			c.LRUHits += s.LruHits
			c.LRUMisses += s.LruMisses
			for i := range drops {
				drops[i] += s.Drops[i]
			}
		}
		for i, r := range dropReasons {
			c.Drops[r] = drops[i]
		}
		out.VIPs[v] = c
		for _, b := range st.backends {
			if err := l.objs.RealStats.Lookup(b.real, &rbuf); err != nil {
				return fmt.Errorf("xdp: read counters of %s backend %s: %w", v, b.addr, err)
			}
			var bc dataplane.BackendCounters
			for _, s := range rbuf {
				bc.Packets += s.Packets
				bc.Bytes += s.Bytes
				bc.NewFlows += s.NewFlows
			}
			out.Backends[dataplane.BackendKey{VIP: v, Addr: b.addr}] = bc
		}
	}
	return nil
}

// activeFlows counts connection-table entries whose last packet is more
// recent than window. last_seen is CLOCK_MONOTONIC_COARSE, written at most
// once a second.
func (l *Loader) activeFlows(window time.Duration) (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("xdp: read the monotonic clock: %w", err)
	}
	now := uint64(ts.Nano())
	var n uint64
	err := scan(l.objs.Conntrack, func(_ lbFlowKey, st lbFlowState) {
		if st.LastSeen >= now || now-st.LastSeen < uint64(window) {
			n++
		}
	})
	if err != nil {
		return 0, fmt.Errorf("xdp: read connection table: %w", err)
	}
	return n, nil
}

// scan calls fn for every entry of m, in batches where the kernel can.
// Entries added or evicted meanwhile may be missed or seen twice.
func scan[K, V any](m *ebpf.Map, fn func(K, V)) error {
	keys := make([]K, batchSize)
	vals := make([]V, batchSize)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			fn(keys[i], vals[i])
		}
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return nil
		case errors.Is(err, ebpf.ErrNotSupported):
			var k K
			var v V
			it := m.Iterate()
			for it.Next(&k, &v) {
				fn(k, v)
			}
			return it.Err()
		case err != nil:
			return err
		}
	}
}

// RTT drains the handshake RTT samples: each client prefix's entry is
// read and deleted in one step, so a sample lands in this call or the
// next.
func (l *Loader) RTT() ([]dataplane.RTTSample, error) {
	var out []dataplane.RTTSample
	add := func(k lbRttKey, v lbRttVal) {
		if v.Count == 0 {
			return
		}
		bits := 24
		if k.Family == afInet6 {
			bits = 48
		}
		out = append(out, dataplane.RTTSample{
			Prefix: netip.PrefixFrom(addrFrom16(k.Addr, k.Family), bits),
			Count:  v.Count,
			Mean:   time.Duration(v.SumNs / v.Count),
			Min:    time.Duration(v.MinNs),
		})
	}
	keys := make([]lbRttKey, batchSize)
	vals := make([]lbRttVal, batchSize)
	var cursor ebpf.MapBatchCursor
	for {
		n, err := l.objs.Rtt.BatchLookupAndDelete(&cursor, keys, vals, nil)
		for i := range n {
			add(keys[i], vals[i])
		}
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return out, nil
		case errors.Is(err, ebpf.ErrNotSupported):
			return l.rttOneByOne(out, add)
		case err != nil:
			return nil, fmt.Errorf("xdp: drain rtt map: %w", err)
		}
	}
}

func (l *Loader) rttOneByOne(out []dataplane.RTTSample, add func(lbRttKey, lbRttVal)) ([]dataplane.RTTSample, error) {
	var keys []lbRttKey
	var k lbRttKey
	var v lbRttVal
	it := l.objs.Rtt.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("xdp: list rtt map: %w", err)
	}
	for _, k := range keys {
		if err := l.objs.Rtt.LookupAndDelete(k, &v); err != nil {
			if errors.Is(err, ebpf.ErrKeyNotExist) {
				continue
			}
			return nil, fmt.Errorf("xdp: drain rtt map: %w", err)
		}
		add(k, v)
	}
	return out, nil
}

// FIBStats returns how the route lookups of IPIP packets ended, summed
// over CPUs, by result ("success", "no_neighbour", "frag_needed", ...;
// "cached" counts packets that reused a recent successful lookup).
// Anything but success, cached and frag_needed means packets were passed
// to the kernel to forward.
func (l *Loader) FIBStats() (map[string]uint64, error) {
	out := make(map[string]uint64, len(fibResults))
	buf := make([]uint64, l.ncpu)
	for i, name := range fibResults {
		if err := l.objs.FibStats.Lookup(i, &buf); err != nil {
			return nil, fmt.Errorf("xdp: read fib_stats: %w", err)
		}
		var sum uint64
		for _, v := range buf {
			sum += v
		}
		out[name] = sum
	}
	return out, nil
}
