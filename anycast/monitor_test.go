package anycast

import (
	"context"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// monitorHarness runs a Monitor over an Announcer that was never started
// (Set records the state; Status reports it), driven round by round.
type monitorHarness struct {
	t     *testing.T
	a     *Announcer
	tick  chan time.Time
	rdone chan struct{}
	done  chan struct{}
	vip   netip.Prefix
}

func newMonitorHarness(t *testing.T, healthy, degraded *atomic.Bool, draining *atomic.Bool, guard Guard) *monitorHarness {
	t.Helper()
	a := newIdleAnnouncer(t)
	vip := netip.MustParsePrefix("203.0.113.10/32")
	check := func(b *atomic.Bool, name string) Check {
		return Check{Name: name, Fn: func(context.Context) (bool, string) {
			if b.Load() {
				return true, ""
			}
			return false, "refused"
		}}
	}
	p := VIPPolicy{VIP: VIP{Prefix: vip}, Healthy: []Check{check(healthy, "dns")}, Rise: 2, Fall: 3}
	if degraded != nil {
		p.Degraded = []Check{check(degraded, "l7")}
	}
	if draining != nil {
		p.Draining = draining.Load
	}
	h := &monitorHarness{t: t, a: a, tick: make(chan time.Time), rdone: make(chan struct{}), done: make(chan struct{}), vip: vip}
	m, err := NewMonitor(a, MonitorConfig{Policies: []VIPPolicy{p}, Guard: guard, Tick: h.tick, RoundDone: h.rdone})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { m.Run(ctx); close(h.done) }()
	t.Cleanup(func() { cancel(); <-h.done })
	return h
}

// newIdleAnnouncer is an announcer that is never started: its peer is a
// documentation address nobody dials.
func newIdleAnnouncer(t *testing.T) *Announcer {
	t.Helper()
	a, err := New(Config{RouterID: netip.MustParseAddr("192.0.2.1"), LocalASN: 65001,
		Peers: []PeerConfig{{Address: netip.MustParseAddr("192.0.2.254"), ASN: 65000}}})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// round runs one evaluation round and returns the VIP's state and reason.
func (h *monitorHarness) round() (State, string) {
	h.tick <- time.Time{}
	<-h.rdone
	for _, v := range h.a.Status().VIPs {
		if v.Prefix == h.vip {
			return v.State, v.Reason
		}
	}
	return Withdrawn, "absent"
}

func TestMonitorHysteresis(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	h := newMonitorHarness(t, &healthy, nil, nil, nil)
	if s, why := h.round(); s != Withdrawn || !strings.Contains(why, "waiting for 2") {
		t.Fatalf("after 1 passing round (rise 2): %v %q, want withdrawn", s, why)
	}
	if s, why := h.round(); s != Announced || why != "healthy" {
		t.Fatalf("after 2 passing rounds: %v %q, want announced", s, why)
	}
	healthy.Store(false)
	h.round()
	if s, _ := h.round(); s != Announced {
		t.Errorf("after 2 failing rounds (fall 3): %v, want still announced", s)
	}
	if s, why := h.round(); s != Withdrawn || !strings.Contains(why, "dns: refused") {
		t.Errorf("after 3 failing rounds: %v %q, want withdrawn with the reason", s, why)
	}
	healthy.Store(true)
	h.round()
	if s, _ := h.round(); s != Announced {
		t.Errorf("after 2 passing rounds: %v, want announced again", s)
	}
}

func TestMonitorStartsWithdrawn(t *testing.T) {
	var healthy atomic.Bool
	h := newMonitorHarness(t, &healthy, nil, nil, nil)
	if s, why := h.round(); s != Withdrawn || !strings.Contains(why, "dns: refused") {
		t.Errorf("never healthy: %v %q, want withdrawn", s, why)
	}
}

func TestMonitorDegradedAndDraining(t *testing.T) {
	var healthy, degraded, draining atomic.Bool
	healthy.Store(true)
	degraded.Store(true)
	h := newMonitorHarness(t, &healthy, &degraded, &draining, nil)
	h.round()
	if s, _ := h.round(); s != Announced {
		t.Fatalf("healthy: %v", s)
	}
	degraded.Store(false)
	if s, why := h.round(); s != Depreferred || !strings.Contains(why, "degraded: l7: refused") {
		t.Errorf("degraded: %v %q, want depreferred", s, why)
	}
	degraded.Store(true)
	draining.Store(true)
	if s, why := h.round(); s != Depreferred || why != "draining" {
		t.Errorf("draining: %v %q", s, why)
	}
}

func TestMonitorLastSiteGuard(t *testing.T) {
	var healthy, others, known atomic.Bool
	healthy.Store(true)
	known.Store(true)
	guard := func(netip.Prefix) (bool, bool) { return others.Load(), known.Load() }
	h := newMonitorHarness(t, &healthy, nil, nil, guard)
	h.round()
	if s, _ := h.round(); s != Announced {
		t.Fatalf("healthy: %v", s)
	}
	healthy.Store(false)
	h.round()
	h.round()
	if s, why := h.round(); s != Depreferred || !strings.Contains(why, "last site announcing") {
		t.Errorf("unhealthy but last site: %v %q, want depreferred by the guard", s, why)
	}
	others.Store(true) // another site announces again: withdraw
	if s, _ := h.round(); s != Withdrawn {
		t.Errorf("unhealthy with another site up: %v, want withdrawn", s)
	}
	known.Store(false) // shared state unknown: trust local health
	others.Store(false)
	if s, _ := h.round(); s != Withdrawn {
		t.Errorf("guard unknown: %v, want withdrawn", s)
	}
}

func TestMonitorGuardNeverAnnouncesUnhealthy(t *testing.T) {
	var healthy atomic.Bool
	guard := func(netip.Prefix) (bool, bool) { return false, true }
	h := newMonitorHarness(t, &healthy, nil, nil, guard)
	h.round()
	if s, _ := h.round(); s != Withdrawn {
		t.Errorf("never healthy, last site: %v, want withdrawn (the guard only keeps what was announced)", s)
	}
}

func TestNewMonitorErrors(t *testing.T) {
	a := newIdleAnnouncer(t)
	ok := []Check{{Name: "x", Fn: func(context.Context) (bool, string) { return true, "" }}}
	vip := VIP{Prefix: netip.MustParsePrefix("203.0.113.10/32")}
	for _, tc := range []struct {
		name string
		ps   []VIPPolicy
		want string
	}{
		{"no checks", []VIPPolicy{{VIP: vip}}, "no health checks"},
		{"twice", []VIPPolicy{{VIP: vip, Healthy: ok}, {VIP: vip, Healthy: ok}}, "listed twice"},
		{"timeout", []VIPPolicy{{VIP: vip, Healthy: ok, Interval: time.Second, Timeout: 2 * time.Second}}, "longer than the interval"},
	} {
		if _, err := NewMonitor(a, MonitorConfig{Policies: tc.ps}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
