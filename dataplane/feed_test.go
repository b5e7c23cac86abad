package dataplane

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"testing"
	"time"
)

func newTestFeed(t *testing.T, set FeedSettings) (*Feed, *fakeProgrammer, *FakeClock) {
	t.Helper()
	prog := newFakeProgrammer()
	clock := NewFakeClock(t0)
	f, err := NewFeed(FeedConfig{Site: "lon", Source: prog, Settings: set, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	return f, prog, clock
}

func sample(p string, n uint64, mean time.Duration) RTTSample {
	return RTTSample{Prefix: netip.MustParsePrefix(p), Count: n, Mean: mean, Min: mean / 2}
}

func (f *fakeProgrammer) addRTT(s ...RTTSample) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rtt = append(f.rtt, s...)
}

func (f *fakeProgrammer) setCounters(c Counters) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counters = c
}

func rttOf(t *testing.T, f *Feed, client string) FeedRTT {
	t.Helper()
	for _, r := range f.Snapshot().RTT {
		if r.Client.String() == client {
			return r
		}
	}
	t.Fatalf("%s not in the feed: %+v", client, f.Snapshot().RTT)
	return FeedRTT{}
}

func TestFeedEWMA(t *testing.T) {
	f, prog, _ := newTestFeed(t, FeedSettings{Alpha: 0.1})
	prog.addRTT(sample("198.18.0.0/24", 4, 10*time.Millisecond))
	f.Poll()
	if r := rttOf(t, f, "198.18.0.0/24"); r.RTTMs != 10 || r.Samples != 4 {
		t.Errorf("first batch: %+v, want 10ms over 4", r)
	}
	prog.addRTT(sample("198.18.0.0/24", 1, 20*time.Millisecond))
	f.Poll()
	if r := rttOf(t, f, "198.18.0.0/24"); r.RTTMs != 11 || r.Samples != 5 {
		t.Errorf("one flow at 20ms: %+v, want 11ms (alpha 0.1) over 5", r)
	}
	// Ten flows weigh 1-0.9^10 = 0.6513.
	prog.addRTT(sample("198.18.0.0/24", 10, 31*time.Millisecond))
	f.Poll()
	if r := rttOf(t, f, "198.18.0.0/24"); r.RTTMs != 24.026 {
		t.Errorf("ten flows at 31ms: %v ms, want 24.026", r.RTTMs)
	}
}

func TestFeedPrefixes(t *testing.T) {
	f, prog, _ := newTestFeed(t, FeedSettings{})
	prog.addRTT(
		sample("198.18.7.9/32", 1, time.Millisecond),         // truncated to /24
		sample("::ffff:198.18.8.0/120", 1, time.Millisecond), // unmapped
		sample("2001:db8:1:2::/64", 1, time.Millisecond),     // truncated to /48
		sample("198.18.9.0/24", 0, time.Millisecond),         // no flows: ignored
		RTTSample{Count: 1, Mean: time.Millisecond},          // invalid: ignored
	)
	f.Poll()
	var got []string
	for _, r := range f.Snapshot().RTT {
		got = append(got, r.Client.String())
	}
	want := []string{"198.18.7.0/24", "198.18.8.0/24", "2001:db8:1::/48"}
	if len(got) != len(want) {
		t.Fatalf("clients %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("clients %v, want %v", got, want)
		}
	}
}

func TestFeedBounded(t *testing.T) {
	f, prog, clock := newTestFeed(t, FeedSettings{MaxPrefixes: 3, MaxAge: time.Minute})
	prog.addRTT(sample("198.18.1.0/24", 1, time.Millisecond), sample("198.18.2.0/24", 1, time.Millisecond), sample("198.18.3.0/24", 1, time.Millisecond))
	f.Poll()
	clock.Advance(10 * time.Second)
	// .1 is seen again, .4 is new: .2, the least recently seen, goes.
	prog.addRTT(sample("198.18.1.0/24", 1, time.Millisecond), sample("198.18.4.0/24", 1, time.Millisecond))
	f.Poll()
	got := map[string]bool{}
	for _, r := range f.Snapshot().RTT {
		got[r.Client.String()] = true
	}
	if len(got) != 3 || got["198.18.2.0/24"] || !got["198.18.1.0/24"] || !got["198.18.4.0/24"] {
		t.Errorf("kept %v", got)
	}
	if f.Len() != 3 {
		t.Errorf("Len %d", f.Len())
	}
	// .3 was last seen at t0, the others at t0+10s.
	clock.Advance(55 * time.Second)
	f.Poll()
	for _, r := range f.Snapshot().RTT {
		if r.Client.String() == "198.18.3.0/24" {
			t.Errorf("198.18.3.0/24 not seen for 65s, kept past max_age 1m")
		}
	}
	if f.Len() != 2 {
		t.Errorf("after max_age: %d prefixes, want 2", f.Len())
	}
	clock.Advance(10 * time.Second)
	f.Poll()
	if f.Len() != 0 {
		t.Errorf("after max_age of all: %d prefixes", f.Len())
	}
}

func TestFeedLoad(t *testing.T) {
	f, prog, clock := newTestFeed(t, FeedSettings{})
	v2 := VIP{Addr: netip.MustParseAddr("192.0.2.11"), Proto: ProtoTCP, Port: 443}
	vip8 := VIP{Addr: netip.MustParseAddr("192.0.2.12"), Proto: ProtoUDP}
	counters := func(a, b, c uint64) Counters {
		m := map[VIP]VIPCounters{vip80: {NewFlows: a}, v2: {NewFlows: b}}
		if c > 0 {
			m[vip8] = VIPCounters{NewFlows: c}
		}
		return Counters{VIPs: m, ActiveFlows: 5678}
	}
	prog.setCounters(counters(1000, 5000, 0))
	f.Poll()
	if l := f.Snapshot().Load; l.NewFlowsPerSecond != 0 || l.ActiveFlows != 5678 {
		t.Errorf("first reading: %+v (no rate yet)", l)
	}
	clock.Advance(10 * time.Second)
	prog.setCounters(counters(2000, 6000, 0))
	f.Poll()
	if l := f.Snapshot().Load; l.NewFlowsPerSecond != 200 {
		t.Errorf("2000 new flows in 10s: %v/s", l.NewFlowsPerSecond)
	}
	// VIP 80 reset to 300 (counts whole), vip8 appears with history (not
	// counted), v2 +100.
	clock.Advance(20 * time.Second)
	prog.setCounters(counters(300, 6100, 1e6))
	f.Poll()
	if l := f.Snapshot().Load; l.NewFlowsPerSecond != 20 {
		t.Errorf("400 new flows in 20s: %v/s", l.NewFlowsPerSecond)
	}
	// A failed reading keeps the last load; the next rate spans both
	// intervals.
	prog.mu.Lock()
	prog.countersErr = errBoom
	prog.mu.Unlock()
	clock.Advance(10 * time.Second)
	if err := f.Poll(); !errors.Is(err, errBoom) {
		t.Errorf("Poll: %v", err)
	}
	if l := f.Snapshot().Load; l.NewFlowsPerSecond != 20 {
		t.Errorf("after a failed reading: %+v", l)
	}
	prog.mu.Lock()
	prog.countersErr = nil
	prog.mu.Unlock()
	clock.Advance(10 * time.Second)
	prog.setCounters(counters(300, 6100, 1e6+800))
	f.Poll()
	if l := f.Snapshot().Load; l.NewFlowsPerSecond != 40 {
		t.Errorf("800 new flows in 20s: %v/s", l.NewFlowsPerSecond)
	}
}

func TestFeedJSON(t *testing.T) {
	f, prog, clock := newTestFeed(t, FeedSettings{})
	if got, want := string(f.JSON()), `{"site":"lon","time":"2025-01-02T03:04:05Z","interval_s":10,"rtt":[],"load":{"new_flows_per_second":0,"active_flows":0}}`+"\n"; got != want {
		t.Errorf("empty feed:\n%s\nwant\n%s", got, want)
	}
	prog.setCounters(Counters{VIPs: map[VIP]VIPCounters{vip80: {NewFlows: 10}}, ActiveFlows: 5678})
	f.Poll()
	clock.Advance(10 * time.Second)
	prog.addRTT(sample("2001:db8::/48", 2, 1500*time.Microsecond), sample("198.18.0.0/24", 42, 12500*time.Microsecond))
	prog.setCounters(Counters{VIPs: map[VIP]VIPCounters{vip80: {NewFlows: 1244}}, ActiveFlows: 5678})
	f.Poll()
	want := `{"site":"lon","time":"2025-01-02T03:04:15Z","interval_s":10,"rtt":[{"client":"198.18.0.0/24","rtt_ms":12.5,"samples":42},{"client":"2001:db8::/48","rtt_ms":1.5,"samples":2}],"load":{"new_flows_per_second":123.4,"active_flows":5678}}` + "\n"
	if got := string(f.JSON()); got != want {
		t.Errorf("feed:\n%s\nwant\n%s", got, want)
	}
	var back FeedSnapshot
	if err := json.Unmarshal(f.JSON(), &back); err != nil || back.RTT[0].Client != netip.MustParsePrefix("198.18.0.0/24") {
		t.Errorf("round trip: %v %+v", err, back)
	}
}

func TestFeedRun(t *testing.T) {
	f, prog, clock := newTestFeed(t, FeedSettings{Interval: 10 * time.Second})
	prog.addRTT(sample("198.18.0.0/24", 1, time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.Run(ctx) }()
	// The first reading is immediate; then it waits for the interval.
	if err := clock.WaitForTimers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if f.Len() != 1 {
		t.Errorf("first reading not done at start")
	}
	prog.addRTT(sample("198.18.1.0/24", 1, time.Millisecond))
	clock.Advance(10 * time.Second)
	// Run reads, then sets its next timer: once that timer is pending the
	// reading is done.
	if err := clock.WaitForTimers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if f.Len() != 2 {
		t.Errorf("second reading not done")
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}
