package dataplane

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// recorder collects a checker's callbacks.
type recorder struct {
	mu      sync.Mutex
	changes []HealthChange
	probes  int
}

func (r *recorder) onChange(c HealthChange) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.changes = append(r.changes, c)
}

func (r *recorder) onProbe(HealthTarget, HealthStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.probes++
}

func (r *recorder) transitions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, c := range r.changes {
		state := "down"
		if c.New.Up {
			state = "up"
		}
		out = append(out, state+":"+c.New.Reason)
	}
	return out
}

// newFakeChecker returns a checker on a fake clock whose first probes are
// due at once, closed at the end of the test.
func newFakeChecker(t *testing.T, cfg HealthConfig, ts ...HealthTarget) (*HealthChecker, *FakeClock, *recorder) {
	t.Helper()
	clock := NewFakeClock(t0)
	rec := &recorder{}
	cfg.Clock, cfg.OnChange, cfg.OnProbe = clock, rec.onChange, rec.onProbe
	cfg.FirstProbe = func(time.Duration) time.Duration { return 0 }
	h := NewHealthChecker(cfg)
	t.Cleanup(func() { h.Close() })
	h.SetTargets(ts)
	h.Start()
	return h, clock, rec
}

func loopbackTarget(t *testing.T, typ CheckType, hostport string) HealthTarget {
	t.Helper()
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		t.Fatal(err)
	}
	return HealthTarget{Addr: ap.Addr(), Check: Check{
		Type: typ, Port: ap.Port(), Path: "/health", ExpectStatus: 200,
		Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 2, Fall: 2,
	}}
}

// closedPort returns a loopback address:port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func mustStatus(t *testing.T, h *HealthChecker, tg HealthTarget) HealthStatus {
	t.Helper()
	s, ok := h.Status(tg)
	if !ok {
		t.Fatalf("no status for %s", tg)
	}
	return s
}

func TestHealthHTTP(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	var gotHost, gotPath atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHost.Store(r.Host)
		gotPath.Store(r.URL.Path)
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	tg := loopbackTarget(t, CheckHTTP, strings.TrimPrefix(srv.URL, "http://"))
	tg.Check.Host = "proxy.example"
	h, clock, rec := newFakeChecker(t, HealthConfig{}, tg)

	clock.Advance(0)
	if s := mustStatus(t, h, tg); !s.Up || s.Reason != "ok" || !s.Probed || s.Successes != 1 {
		t.Fatalf("after a 200: %+v", s)
	}
	if gotHost.Load() != "proxy.example" || gotPath.Load() != "/health" {
		t.Errorf("request Host %v path %v, want proxy.example /health", gotHost.Load(), gotPath.Load())
	}
	status.Store(503)
	clock.Advance(time.Second)
	if s := mustStatus(t, h, tg); !s.Up || s.Failures != 1 || s.Reason != "status 503" {
		t.Fatalf("one failure of fall 2 must keep it up: %+v", s)
	}
	clock.Advance(time.Second)
	if s := mustStatus(t, h, tg); s.Up || !s.Since.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("two failures must take it down at t0+2s: %+v", s)
	}
	status.Store(200)
	clock.Advance(2 * time.Second)
	if s := mustStatus(t, h, tg); !s.Up {
		t.Fatalf("two successes must bring it up: %+v", s)
	}
	if got, want := strings.Join(rec.transitions(), ","), "down:status 503,up:ok"; got != want {
		t.Errorf("transitions %s, want %s", got, want)
	}
	if rec.probes != 5 {
		t.Errorf("%d probes, want 5 (one per interval)", rec.probes)
	}
}

func TestHealthTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	open := loopbackTarget(t, CheckTCP, ln.Addr().String())
	closed := loopbackTarget(t, CheckTCP, closedPort(t))
	h, clock, rec := newFakeChecker(t, HealthConfig{}, open, closed)
	clock.Advance(0)
	clock.Advance(time.Second)
	if s := mustStatus(t, h, open); !s.Up || s.Reason != "ok" {
		t.Errorf("listening port: %+v", s)
	}
	if s := mustStatus(t, h, closed); s.Up || s.Reason != "connection refused" {
		t.Errorf("closed port: %+v", s)
	}
	if got := rec.transitions(); len(got) != 1 || got[0] != "down:connection refused" {
		t.Errorf("transitions %v", got)
	}
}

func TestHealthTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	tg := loopbackTarget(t, CheckHTTP, strings.TrimPrefix(srv.URL, "http://"))
	tg.Check.Timeout, tg.Check.Fall = 50*time.Millisecond, 1
	h, clock, _ := newFakeChecker(t, HealthConfig{}, tg)
	clock.Advance(0)
	if s := mustStatus(t, h, tg); s.Up || s.Reason != "timeout" {
		t.Errorf("hung server: %+v", s)
	}
}

func TestHealthHysteresis(t *testing.T) {
	results := []error{nil, errors.New("boom"), nil, errors.New("a"), errors.New("b"), errors.New("c"), nil, errors.New("d"), nil, nil, nil}
	var i atomic.Int32
	probe := func(context.Context, HealthTarget) error { return results[i.Add(1)-1] }
	tg := HealthTarget{Addr: netip.MustParseAddr("198.18.1.2"), Check: Check{Type: CheckTCP, Port: 80, Interval: time.Second, Timeout: time.Second, Rise: 3, Fall: 3}}
	h, clock, rec := newFakeChecker(t, HealthConfig{Probe: probe}, tg)
	clock.Advance(0)
	clock.Advance(time.Duration(len(results)-1) * time.Second)
	if got, want := strings.Join(rec.transitions(), ","), "down:c,up:ok"; got != want {
		t.Errorf("transitions %s, want %s (fall 3 after a,b,c; rise 3 after the last three)", got, want)
	}
	if s := mustStatus(t, h, tg); !s.Up || s.Successes != 3 {
		t.Errorf("final %+v", s)
	}
}

func TestHealthInitialDown(t *testing.T) {
	tg := HealthTarget{Addr: netip.MustParseAddr("198.18.1.2"), Check: Check{Type: CheckTCP, Port: 80, Interval: time.Second, Timeout: time.Second, Rise: 2, Fall: 2}}
	none := HealthTarget{Addr: netip.MustParseAddr("198.18.1.3"), Check: Check{Type: CheckNone}}
	h, clock, rec := newFakeChecker(t, HealthConfig{InitialDown: true, Probe: func(context.Context, HealthTarget) error { return nil }}, tg, none)
	if s := mustStatus(t, h, tg); s.Up || s.Reason != "initial" {
		t.Fatalf("before probes: %+v", s)
	}
	if s := mustStatus(t, h, none); !s.Up || s.Reason != "unchecked" {
		t.Fatalf("check none: %+v", s)
	}
	clock.Advance(0)
	if s := mustStatus(t, h, tg); !s.Up || s.Reason != "ok" {
		t.Fatalf("after the first probe, a success: %+v", s)
	}
	clock.Advance(time.Second)
	if rec.probes != 2 {
		t.Errorf("%d probes, want 2 (none is never probed)", rec.probes)
	}
}

// TestHealthFirstProbeDecides: a target presumed up whose first probe
// fails is down at once, not after Fall failures; Fall applies after.
func TestHealthFirstProbeDecides(t *testing.T) {
	results := []error{errors.New("refused"), nil, errors.New("x"), errors.New("y"), errors.New("z")}
	var i atomic.Int32
	probe := func(context.Context, HealthTarget) error { return results[i.Add(1)-1] }
	tg := HealthTarget{Addr: netip.MustParseAddr("198.18.1.2"), Check: Check{Type: CheckTCP, Port: 80, Interval: time.Second, Timeout: time.Second, Rise: 1, Fall: 3}}
	h, clock, rec := newFakeChecker(t, HealthConfig{Probe: probe}, tg)
	if s := mustStatus(t, h, tg); !s.Up || s.Probed {
		t.Fatalf("before probes: %+v", s)
	}
	clock.Advance(0)
	if s := mustStatus(t, h, tg); s.Up || s.Failures != 1 {
		t.Fatalf("after a failed first probe: %+v", s)
	}
	clock.Advance(4 * time.Second)
	if got, want := strings.Join(rec.transitions(), ","), "down:refused,up:ok,down:z"; got != want {
		t.Errorf("transitions %s, want %s", got, want)
	}
}

func TestHealthSetTargets(t *testing.T) {
	var calls sync.Map
	probe := func(_ context.Context, t HealthTarget) error {
		n, _ := calls.LoadOrStore(t.Addr, new(atomic.Int32))
		n.(*atomic.Int32).Add(1)
		return errors.New("refused")
	}
	a := HealthTarget{Addr: netip.MustParseAddr("198.18.1.2"), Check: Check{Type: CheckTCP, Port: 80, Interval: time.Second, Timeout: time.Second, Rise: 1, Fall: 1}}
	b := a
	b.Addr = netip.MustParseAddr("198.18.1.3")
	h, clock, _ := newFakeChecker(t, HealthConfig{Probe: probe}, a, b)
	clock.Advance(0)
	if mustStatus(t, h, a).Up {
		t.Fatal("a should be down")
	}
	// a with a longer interval inherits the down state; b is removed.
	a2 := a
	a2.Check.Interval = 2 * time.Second
	h.SetTargets([]HealthTarget{a2})
	if s := mustStatus(t, h, a2); s.Up || s.Reason != "refused" {
		t.Errorf("retuned target lost its state: %+v", s)
	}
	if _, ok := h.Status(b); ok {
		t.Error("removed target still has a status")
	}
	clock.Advance(10 * time.Second)
	nb, _ := calls.Load(b.Addr)
	if n := nb.(*atomic.Int32).Load(); n != 1 {
		t.Errorf("removed target probed %d times, want 1 (before removal)", n)
	}
	na, _ := calls.Load(a.Addr)
	if n := na.(*atomic.Int32).Load(); n != 1+5+1 {
		// 1 before, then first probe at once and every 2s for 10s.
		t.Errorf("target probed %d times, want 7", n)
	}
}

func TestHealthPanic(t *testing.T) {
	tg := HealthTarget{Addr: netip.MustParseAddr("198.18.1.2"), Check: Check{Type: CheckTCP, Port: 80, Interval: time.Second, Timeout: time.Second, Rise: 1, Fall: 1}}
	h, clock, _ := newFakeChecker(t, HealthConfig{Probe: func(context.Context, HealthTarget) error { panic("oops") }}, tg)
	clock.Advance(0)
	if s := mustStatus(t, h, tg); s.Up || s.Reason != "probe panic: oops" {
		t.Errorf("%+v", s)
	}
}

// TestHealthCloseCancels: Close cancels a probe in flight, waits for it,
// and discards its result.
func TestHealthCloseCancels(t *testing.T) {
	started := make(chan struct{})
	probe := func(ctx context.Context, _ HealthTarget) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}
	tg := HealthTarget{Addr: netip.MustParseAddr("198.18.1.2"), Check: Check{Type: CheckTCP, Port: 80, Interval: time.Second, Timeout: time.Hour, Rise: 1, Fall: 1}}
	h, clock, rec := newFakeChecker(t, HealthConfig{Probe: probe}, tg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		clock.Advance(0)
	}()
	<-started
	h.Close()
	<-done
	if s := mustStatus(t, h, tg); s.Probed || rec.probes != 0 {
		t.Errorf("a canceled probe's result was applied: %+v", s)
	}
	if n := clock.PendingTimers(); n != 0 {
		t.Errorf("%d timers left after Close", n)
	}
}

// TestHealthRealClock runs the real schedule against a closed port.
func TestHealthRealClock(t *testing.T) {
	down := make(chan HealthChange, 1)
	tg := loopbackTarget(t, CheckTCP, closedPort(t))
	tg.Check.Interval, tg.Check.Timeout, tg.Check.Fall = 20*time.Millisecond, 20*time.Millisecond, 2
	h := NewHealthChecker(HealthConfig{OnChange: func(c HealthChange) {
		select {
		case down <- c:
		default:
		}
	}})
	defer h.Close()
	h.SetTargets([]HealthTarget{tg})
	h.Start()
	select {
	case c := <-down:
		if c.New.Up || c.New.Reason != "connection refused" || c.New.Failures != 1 || c.Old.Probed {
			t.Errorf("change %+v", c.New)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no down transition within 10s")
	}
}
