package health

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// harness runs a Checker on a FakeClock. Probe results are scripted per
// address unless the config brings its own Probe.
type harness struct {
	t      *testing.T
	clock  *FakeClock
	c      *Checker
	probed chan probeEvent

	mu      sync.Mutex
	changes []Change
	results map[netip.Addr]error
	calls   map[netip.Addr]int

	stopOnce sync.Once
	cancel   context.CancelFunc
	done     chan error
}

type probeEvent struct {
	key    TargetKey
	status Status
}

func newHarness(t *testing.T, cfg Config, targets []Target) *harness {
	t.Helper()
	h := &harness{t: t, clock: NewFakeClock(epoch), probed: make(chan probeEvent, 1000),
		results: make(map[netip.Addr]error), calls: make(map[netip.Addr]int)}
	cfg.Clock = h.clock
	cfg.OnProbe = func(k TargetKey, s Status) { h.probed <- probeEvent{k, s} }
	cfg.OnChange = func(ch Change) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.changes = append(h.changes, ch)
	}
	if cfg.Probe == nil {
		cfg.Probe = h.scriptedProbe
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(1, 2))
	}
	c, err := NewChecker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	c.SetTargets(targets)
	n := len(c.Statuses())
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- c.Run(ctx) }()
	h.waitTimers(n)
	t.Cleanup(h.stop)
	return h
}

func (h *harness) scriptedProbe(_ context.Context, t Target) (time.Duration, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls[t.Addr]++
	return time.Millisecond, h.results[t.Addr]
}

func (h *harness) setResult(a netip.Addr, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.results[a] = err
}

func (h *harness) callCount(a netip.Addr) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[a]
}

func (h *harness) takeChanges() []Change {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := h.changes
	h.changes = nil
	return ch
}

func (h *harness) stop() {
	h.stopOnce.Do(func() {
		h.cancel()
		if err := <-h.done; err != nil {
			h.t.Errorf("Run: %v", err)
		}
	})
}

func (h *harness) waitTimers(n int) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.clock.WaitForTimers(ctx, n); err != nil {
		h.t.Fatal(err)
	}
}

// due is when the target's next probe is due.
func (h *harness) due(k TargetKey) time.Time {
	h.t.Helper()
	h.c.mu.Lock()
	defer h.c.mu.Unlock()
	tg, ok := h.c.targets[k]
	if !ok {
		h.t.Fatalf("no target %s", k)
	}
	return tg.due
}

// probeNext advances the clock exactly to k's next probe and returns its
// applied status (other targets due by then are probed too).
func (h *harness) probeNext(k TargetKey) Status {
	h.t.Helper()
	at := h.due(k)
	h.c.mu.Lock()
	n := 0
	for _, tg := range h.c.targets {
		if tg.timer != nil && !tg.due.After(at) {
			n++
		}
	}
	h.c.mu.Unlock()
	h.clock.Advance(at.Sub(h.clock.Now()))
	for _, ev := range h.wait(n) {
		if ev.key == k {
			return ev.status
		}
	}
	h.t.Fatalf("no probe of %s", k)
	return Status{}
}

// wait returns the next n probe events.
func (h *harness) wait(n int) []probeEvent {
	h.t.Helper()
	timeout := time.NewTimer(10 * time.Second) // a failure bound, not synchronization
	defer timeout.Stop()
	var evs []probeEvent
	for len(evs) < n {
		select {
		case ev := <-h.probed:
			evs = append(evs, ev)
		case <-timeout.C:
			h.t.Fatalf("got %d probe events, want %d", len(evs), n)
		}
	}
	return evs
}
