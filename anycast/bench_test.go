package anycast

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

// BenchmarkFlipToRouter measures the time from Set(Withdrawn) or
// Set(Announced) to the change being in the in-process router's RIB: the
// announcer's path (gobgp RIB, UPDATE on the loopback session) and the
// router's handling of it. Each iteration is one flip; median and max are
// reported in milliseconds.
func BenchmarkFlipToRouter(b *testing.B) {
	r := startRouter(b, routerASN, routerNeighbor{addr: loopback, asn: siteASN})
	cfg := siteConfig(b, r)
	a, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	runAnnouncer(b, a)
	waitEstablished(b, a)
	vip := VIP{Prefix: netip.MustParsePrefix("192.0.2.99/32")}
	prefix := vip.Prefix

	// waitSeen blocks until the router's RIB holds (or lacks) the route,
	// re-reading it after each BGP message the router handles.
	waitSeen := func(want bool) {
		deadline := time.NewTimer(10 * time.Second)
		defer deadline.Stop()
		for {
			if (len(r.routes(b, prefix)) == 1) == want {
				return
			}
			select {
			case <-r.msgs:
			case <-deadline.C:
				b.Fatalf("router did not see %v (want present=%v) within 10s", prefix, want)
			}
		}
	}

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s, want := Announced, true
		if i%2 == 1 {
			s, want = Withdrawn, false
		}
		// Drain stale signals so the wait starts from this flip.
		select {
		case <-r.msgs:
		default:
		}
		start := time.Now()
		if err := a.Set(vip, s, "bench"); err != nil {
			b.Fatal(err)
		}
		waitSeen(want)
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportLatency(b, lat)
}

// reportLatency reports the median and max of lat in milliseconds.
func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), "median-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
}
