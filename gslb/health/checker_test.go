package health

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

var (
	addrA = netip.MustParseAddr("192.0.2.1")
	addrB = netip.MustParseAddr("192.0.2.2")
	addr6 = netip.MustParseAddr("2001:db8::1")
)

func tcpTarget(a netip.Addr) Target {
	return Target{Addr: a, Monitor: Monitor{Kind: KindTCP, Port: 80, Interval: 10 * time.Second, Rise: 2, Fall: 3}}
}

func TestCheckerHysteresis(t *testing.T) {
	errTimeout := context.DeadlineExceeded
	errRefused := &net.OpError{Op: "dial", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	type want struct {
		up     bool
		reason string
		next   time.Duration // NextChange - LastProbe, 0 for zero
	}
	tests := []struct {
		name        string
		initialDown bool
		seq         []error
		want        []want
		flips       []bool // Up after each OnChange
	}{
		{"initially up, falls after 3", false,
			[]error{errTimeout, errRefused, errTimeout, nil, nil},
			[]want{{true, "timeout", 20 * time.Second}, {true, "connection refused", 10 * time.Second},
				{false, "timeout", 0}, {false, "ok", 10 * time.Second}, {true, "ok", 0}},
			[]bool{false, true}},
		{"initially down, rises after 2", true,
			[]error{nil, nil, errTimeout, nil},
			[]want{{false, "ok", 10 * time.Second}, {true, "ok", 0}, {true, "timeout", 20 * time.Second}, {true, "ok", 0}},
			[]bool{true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tg := tcpTarget(addrA)
			h := newHarness(t, Config{InitialDown: tt.initialDown}, []Target{tg})
			k := tg.Key()
			s, ok := h.c.Status(k)
			if !ok || s.Up != !tt.initialDown || s.Probed || s.Reason != "initial" || !s.Since.Equal(epoch) {
				t.Fatalf("initial status %+v, %t", s, ok)
			}
			for i, err := range tt.seq {
				h.setResult(addrA, err)
				due := h.due(k)
				s := h.probeNext(k)
				var next time.Duration
				if !s.NextChange.IsZero() {
					next = s.NextChange.Sub(s.LastProbe)
				}
				w := tt.want[i]
				if s.Up != w.up || s.Reason != w.reason || next != w.next || !s.LastProbe.Equal(due) || !s.Probed {
					t.Fatalf("probe %d at %v: %+v (next +%v), want %+v", i, due.Sub(epoch), s, next, w)
				}
				if got, _ := h.c.Status(k); got != s {
					t.Fatalf("Status() = %+v, OnProbe saw %+v", got, s)
				}
			}
			changes := h.takeChanges()
			if len(changes) != len(tt.flips) {
				t.Fatalf("%d changes, want %d", len(changes), len(tt.flips))
			}
			for i, ch := range changes {
				if ch.Key != k || ch.New.Up != tt.flips[i] || ch.Old.Up == ch.New.Up || ch.New.Transitions != uint64(i+1) ||
					!ch.New.Since.Equal(ch.New.LastProbe) || ch.Target.Addr != addrA {
					t.Errorf("change %d: %+v", i, ch)
				}
			}
		})
	}
}

func TestCheckerJitter(t *testing.T) {
	dues := func(seed uint64) []time.Duration {
		var ts []Target
		for i := range 200 {
			ts = append(ts, tcpTarget(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})))
		}
		h := newHarness(t, Config{Rand: rand.New(rand.NewPCG(seed, 0))}, ts)
		var out []time.Duration
		for _, tg := range ts {
			out = append(out, h.due(tg.Key()).Sub(epoch))
		}
		h.stop()
		return out
	}
	a, b, c := dues(1), dues(1), dues(2)
	buckets := make(map[time.Duration]int)
	for i, d := range a {
		if d < 0 || d >= 10*time.Second {
			t.Fatalf("first probe at +%v, outside the 10s interval", d)
		}
		buckets[d/time.Second]++
		if d != b[i] {
			t.Fatalf("same seed, different offsets: %v vs %v", d, b[i])
		}
	}
	for s, n := range buckets {
		if n > 40 { // 20 expected per second
			t.Errorf("%d of 200 first probes in second %d: not spread", n, s)
		}
	}
	if len(buckets) != 10 {
		t.Errorf("first probes in %d of 10 seconds", len(buckets))
	}
	same := 0
	for i := range a {
		if a[i] == c[i] {
			same++
		}
	}
	if same > 10 {
		t.Errorf("seeds 1 and 2 agree on %d offsets", same)
	}
}

// hitServer counts requests per path.
type hitServer struct {
	*httptest.Server
	mu   sync.Mutex
	hits map[string]int
}

func newHitServer(t *testing.T) *hitServer {
	s := &hitServer{hits: make(map[string]int)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.hits[r.URL.Path]++
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *hitServer) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

func TestCheckerDedupAndRemoval(t *testing.T) {
	srv := newHitServer(t)
	ta := serverTarget(t, srv.Server, Monitor{Kind: KindHTTP, Path: "/a", Interval: 10 * time.Second})
	tb := serverTarget(t, srv.Server, Monitor{Kind: KindHTTP, Path: "/b", Interval: 10 * time.Second})
	taAgain := ta
	taAgain.Monitor.Method = "GET"                  // an explicit default
	taAgain.Addr = netip.AddrFrom16(ta.Addr.As16()) // IPv4-mapped
	h := newHarness(t, Config{Probe: (&prober{}).probe}, []Target{ta, tb, taAgain, ta})
	if n := len(h.c.Statuses()); n != 2 {
		t.Fatalf("%d targets, want 2 (deduplicated)", n)
	}
	for i := 1; i <= 3; i++ {
		h.clock.Advance(10 * time.Second)
		for _, ev := range h.wait(2) {
			if ev.status.Reason != "ok" {
				t.Fatalf("probe of %s: %s", ev.key, ev.status.Reason)
			}
		}
		if a, b := srv.count("/a"), srv.count("/b"); a != i || b != i {
			t.Fatalf("after %d intervals: /a %d hits, /b %d, want %d each", i, a, b, i)
		}
	}
	h.c.SetTargets([]Target{tb})
	if _, ok := h.c.Status(ta.Key()); ok {
		t.Fatal("removed target still has a status")
	}
	if s, ok := h.c.Status(tb.Key()); !ok || !s.Up || s.Successes != 3 {
		t.Fatalf("kept target lost its state: %+v", s)
	}
	if n := h.clock.PendingTimers(); n != 1 {
		t.Fatalf("%d timers pending after removal, want 1", n)
	}
	for i := 4; i <= 6; i++ {
		h.clock.Advance(10 * time.Second)
		if ev := h.wait(1)[0]; ev.key != tb.Key() {
			t.Fatalf("probe of %s after its removal", ev.key)
		}
	}
	if a, b := srv.count("/a"), srv.count("/b"); a != 3 || b != 6 {
		t.Fatalf("after removal: /a %d hits (want 3), /b %d (want 6)", a, b)
	}
}

func TestCheckerRemovalDiscardsInFlight(t *testing.T) {
	started, returned := make(chan netip.Addr, 10), make(chan struct{})
	probe := func(ctx context.Context, tg Target) (time.Duration, error) {
		started <- tg.Addr
		if tg.Addr == addrA {
			<-ctx.Done() // hangs until cancelled by the removal
			close(returned)
			return 0, ctx.Err()
		}
		return time.Millisecond, nil
	}
	h := newHarness(t, Config{Probe: probe, MaxConcurrent: 1}, []Target{tcpTarget(addrA)})
	h.clock.Advance(10 * time.Second)
	<-started
	h.c.SetTargets([]Target{tcpTarget(addrB)})
	<-returned
	h.clock.Advance(10 * time.Second)
	// With one slot, B's probe starts only after A's result was handled, so
	// an event for A would arrive first.
	if ev := h.wait(1)[0]; ev.key != tcpTarget(addrB).Key() {
		t.Fatalf("event for %s, want only B's", ev.key)
	}
	if st := h.c.Statuses(); len(st) != 1 {
		t.Fatalf("statuses %v", st)
	}
}

func TestCheckerMaxConcurrent(t *testing.T) {
	var inflight, peak atomic.Int32
	started, release := make(chan struct{}, 10), make(chan struct{})
	probe := func(ctx context.Context, _ Target) (time.Duration, error) {
		n := inflight.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done(): // Run stopped by a failing test
		}
		inflight.Add(-1)
		return time.Millisecond, nil
	}
	var ts []Target
	for i := range 6 {
		ts = append(ts, tcpTarget(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})))
	}
	h := newHarness(t, Config{Probe: probe, MaxConcurrent: 2}, ts)
	h.clock.Advance(10 * time.Second) // all six due
	<-started
	<-started
	h.c.mu.Lock()
	running, queued := h.c.inflight, len(h.c.due)
	h.c.mu.Unlock()
	if running != 2 || queued != 4 {
		t.Fatalf("%d probes running, %d queued; want 2 and 4", running, queued)
	}
	for range 6 {
		release <- struct{}{}
	}
	h.wait(6)
	if p := peak.Load(); p != 2 {
		t.Fatalf("peak concurrency %d, want 2", p)
	}
}

func TestCheckerPanicAndRecovery(t *testing.T) {
	var panics atomic.Bool
	panics.Store(true)
	probe := func(context.Context, Target) (time.Duration, error) {
		if panics.Load() {
			panic("probe bug")
		}
		return time.Millisecond, nil
	}
	tg := tcpTarget(addrA)
	tg.Monitor.Fall = 1
	h := newHarness(t, Config{Probe: probe}, []Target{tg})
	if s := h.probeNext(tg.Key()); s.Up || s.Reason != "panic: probe bug" {
		t.Fatalf("after a panic: %+v", s)
	}
	panics.Store(false)
	h.probeNext(tg.Key())
	if s := h.probeNext(tg.Key()); !s.Up || s.Transitions != 2 {
		t.Fatalf("the checker did not survive the panic: %+v", s)
	}
}

func TestCheckerInheritsStateOnThresholdChange(t *testing.T) {
	tg := tcpTarget(addrA)
	h := newHarness(t, Config{}, []Target{tg, tcpTarget(addr6)})
	h.setResult(addrA, errors.New("boom"))
	for range 3 {
		h.probeNext(tg.Key())
	}
	changed := tg
	changed.Monitor.Fall, changed.Monitor.Interval = 5, 30*time.Second
	other := tg
	other.Monitor.Port = 81
	h.c.SetTargets([]Target{changed, other, tcpTarget(addr6)})
	s, _ := h.c.Status(changed.Key())
	if s.Up || s.Transitions != 1 || s.Reason != "boom" || s.Failures != 0 {
		t.Fatalf("threshold change lost the state: %+v", s)
	}
	if s, _ := h.c.Status(other.Key()); !s.Up || s.Probed {
		t.Fatalf("another port inherited: %+v", s)
	}
	if s, _ := h.c.Status(tcpTarget(addr6).Key()); !s.Up {
		t.Fatalf("IPv6 target shares the IPv4 state: %+v", s)
	}
	if d := h.due(changed.Key()).Sub(h.clock.Now()); d < 0 || d >= 30*time.Second {
		t.Fatalf("first probe of the changed target in %v, want within its 30s interval", d)
	}
}

func TestCheckerRunLifecycle(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	started := make(chan struct{}, 10)
	var calls atomic.Int32
	probe := func(ctx context.Context, _ Target) (time.Duration, error) {
		if calls.Add(1) == 1 {
			started <- struct{}{}
			<-ctx.Done() // in flight when Run is stopped
			return 0, ctx.Err()
		}
		return time.Millisecond, nil
	}
	tg := tcpTarget(addrA)
	tg.Monitor.Fall = 1
	h := newHarness(t, Config{Probe: probe}, []Target{tg})
	ctx := context.Background()
	if err := h.c.Run(ctx); err == nil {
		t.Fatal("a second concurrent Run did not fail")
	}
	h.clock.Advance(10 * time.Second)
	<-started
	h.stop() // returns only once the probe returned
	if s, _ := h.c.Status(tg.Key()); !s.Up || s.Probed {
		t.Fatalf("a probe cancelled by shutdown counted: %+v", s)
	}
	if n := h.clock.PendingTimers(); n != 0 {
		t.Fatalf("%d timers left after Run returned", n)
	}
	select {
	case ev := <-h.probed:
		t.Fatalf("event after shutdown: %+v", ev)
	default:
	}
	// Run again: probes resume.
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- h.c.Run(ctx) }()
	h.waitTimers(1)
	if s := h.probeNext(tg.Key()); !s.Probed || s.Reason != "ok" {
		t.Fatalf("after restart: %+v", s)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestNewCheckerErrors(t *testing.T) {
	if _, err := NewChecker(Config{MaxConcurrent: -1}); err == nil {
		t.Fatal("negative MaxConcurrent accepted")
	}
}

func TestSetTargetsSkipsInvalid(t *testing.T) {
	c, err := NewChecker(Config{})
	if err != nil {
		t.Fatal(err)
	}
	c.SetTargets([]Target{{Addr: addrA, Monitor: Monitor{Kind: KindTCP}}, {Monitor: Monitor{Kind: KindTCP, Port: 1}}, tcpTarget(addrA)})
	if st := c.Statuses(); len(st) != 1 {
		t.Fatalf("statuses %v, want only the valid target", st)
	}
}
