package health

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// DefaultMaxConcurrent bounds the probes in flight when Config leaves it 0.
const DefaultMaxConcurrent = 64

// Config configures a Checker. The zero value works.
type Config struct {
	Clock  Clock        // RealClock()
	Logger *slog.Logger // discards when nil
	// MaxConcurrent is the most probes in flight at once (64); due probes
	// wait their turn in order.
	MaxConcurrent int
	// InitialDown makes targets down until Rise successes. By default a
	// target is up until Fall failures: a restart or a reload must not
	// blackhole healthy endpoints (the price: a dead endpoint is served for
	// up to Fall intervals after a restart).
	InitialDown bool
	// OnChange is called on every Up flip, from Run's goroutine, in order;
	// it must not block long (probes are dispatched by the same goroutine).
	OnChange func(Change)
	// OnProbe, optional, is called after every probe result is applied (and
	// after the OnChange it caused), from Run's goroutine. Tests use it to
	// wait for probes.
	OnProbe func(TargetKey, Status)
	// Probe replaces the built-in probes (tests, or an engine's simulation).
	Probe ProbeFunc
	// RootCAs verifies HTTPS targets (a private CA, tests); nil is the
	// system pool.
	RootCAs *x509.CertPool
	// Rand draws the first-probe offsets; nil is seeded at random. It is
	// used under the Checker's lock only.
	Rand *rand.Rand
}

// Checker probes targets and keeps their state. Create it with NewChecker,
// give it targets with SetTargets, and Run it.
type Checker struct {
	clock     Clock
	log       *slog.Logger
	maxConc   int
	initialUp bool
	onChange  func(Change)
	onProbe   func(TargetKey, Status)
	probe     ProbeFunc
	metrics   *metrics
	wake      chan struct{}

	mu       sync.Mutex
	rnd      *rand.Rand
	targets  map[TargetKey]*target
	due      []*target // fired, waiting for a slot
	inflight int
	running  bool
	epoch    uint64 // bumped by each start and stop; stale timers see it
	events   []event
}

// target is the Checker's record of one Target.
type target struct {
	key    TargetKey
	t      Target
	status Status
	timer  Timer              // pending probe timer, nil when none
	due    time.Time          // when the pending or running probe was due
	cancel context.CancelFunc // the running probe's, nil when idle
}

// event is a callback to deliver from Run's goroutine.
type event struct {
	change *Change
	key    TargetKey
	status Status
}

// Result is the outcome of one probe.
type Result struct {
	OK     bool
	RTT    time.Duration
	Reason string // "ok" or why it failed
}

// NewChecker returns a Checker; it starts nothing.
func NewChecker(cfg Config) (*Checker, error) {
	if cfg.MaxConcurrent < 0 {
		return nil, fmt.Errorf("new health checker: max_concurrent %d is negative", cfg.MaxConcurrent)
	}
	c := &Checker{
		clock: cfg.Clock, log: cfg.Logger, maxConc: cfg.MaxConcurrent, initialUp: !cfg.InitialDown,
		onChange: cfg.OnChange, onProbe: cfg.OnProbe, probe: cfg.Probe, rnd: cfg.Rand,
		metrics: newMetrics(), wake: make(chan struct{}, 1), targets: make(map[TargetKey]*target),
	}
	if c.clock == nil {
		c.clock = RealClock()
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.maxConc == 0 {
		c.maxConc = DefaultMaxConcurrent
	}
	if c.probe == nil {
		p := &prober{rootCAs: cfg.RootCAs}
		c.probe = p.probe
	}
	if c.rnd == nil {
		c.rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	c.metrics.checker = c
	return c, nil
}

// Check probes t once, now, outside the schedule and without touching any
// state (a debugging aid). The error is for an invalid target only.
func (c *Checker) Check(ctx context.Context, t Target) (Result, error) {
	t.Addr = t.Addr.Unmap()
	if err := validateTarget(&t); err != nil {
		return Result{}, fmt.Errorf("check %s: %w", t.Addr, err)
	}
	ctx, cancel := context.WithTimeout(ctx, t.Monitor.Timeout)
	defer cancel()
	o := safeProbe(ctx, c.probe, t)
	return Result{OK: o.ok, RTT: o.rtt, Reason: o.reason}, nil
}

func validateTarget(t *Target) error {
	if !t.Addr.IsValid() {
		return errors.New("address is missing")
	}
	return t.Monitor.Validate()
}

// SetTargets reconciles the probed set with ts by Key: new targets start
// (first probe at a random offset within the interval), removed ones stop
// (no more probes; an in-flight result is discarded), unchanged ones keep
// their state. A new target whose key differs from a removed one only in
// interval, timeout, rise or fall inherits its Up state. Invalid targets are
// logged and skipped (validate them first). Safe from any goroutine.
func (c *Checker) SetTargets(ts []Target) {
	want := make(map[TargetKey]Target, len(ts))
	var order []TargetKey
	for _, t := range ts {
		t.Addr = t.Addr.Unmap()
		if err := validateTarget(&t); err != nil {
			c.log.Error("health target ignored", "addr", t.Addr, "kind", t.Monitor.Kind, "err", err)
			continue
		}
		k := t.Key()
		if _, dup := want[k]; !dup {
			want[k] = t
			order = append(order, k)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	removed := make(map[string]*target)
	for _, k := range slices.Sorted(maps.Keys(c.targets)) {
		if _, ok := want[k]; ok {
			continue
		}
		tg := c.targets[k]
		c.stopTarget(tg)
		delete(c.targets, k)
		if _, ok := removed[inheritKey(tg.t)]; !ok {
			removed[inheritKey(tg.t)] = tg
		}
	}
	now := c.clock.Now()
	for _, k := range order {
		if _, ok := c.targets[k]; ok {
			continue
		}
		tg := &target{key: k, t: want[k], status: initialStatus(c.initialUp, now)}
		if old, ok := removed[inheritKey(tg.t)]; ok {
			tg.status = inherited(old.status)
		}
		c.targets[k] = tg
		if c.running {
			c.scheduleFirst(tg, now)
		}
	}
}

func inheritKey(t Target) string {
	return fmt.Sprintf("%s %s port=%d%s", t.Addr, t.Monitor.Kind, t.Monitor.Port, t.Monitor.probeKey())
}

// inherited keeps the state and history of s, not its streak.
func inherited(s Status) Status {
	s.Successes, s.Failures, s.NextChange = 0, 0, time.Time{}
	return s
}

// stopTarget stops the target's timer and cancels its running probe.
// Called with c.mu held.
func (c *Checker) stopTarget(tg *target) {
	if tg.timer != nil {
		tg.timer.Stop()
		tg.timer = nil
	}
	if tg.cancel != nil {
		tg.cancel() // complete() still runs and releases the slot
	}
}

// scheduleFirst sets the first probe at a random offset within the
// interval. Called with c.mu held.
func (c *Checker) scheduleFirst(tg *target, now time.Time) {
	off := time.Duration(c.rnd.Int64N(int64(tg.t.Monitor.Interval)))
	c.schedule(tg, now, now.Add(off))
}

// schedule sets tg's timer for at. Called with c.mu held.
func (c *Checker) schedule(tg *target, now, at time.Time) {
	tg.due = at
	epoch := c.epoch
	tg.timer = c.clock.AfterFunc(at.Sub(now), func() { c.fire(tg, epoch) })
}

// fire queues a due probe for Run.
func (c *Checker) fire(tg *target, epoch uint64) {
	c.mu.Lock()
	if !c.running || epoch != c.epoch || c.targets[tg.key] != tg {
		c.mu.Unlock()
		return
	}
	tg.timer = nil
	c.due = append(c.due, tg)
	c.mu.Unlock()
	c.signal()
}

func (c *Checker) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Status returns the state of the target with key k.
func (c *Checker) Status(k TargetKey) (Status, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	tg, ok := c.targets[k]
	if !ok {
		return Status{}, false
	}
	return tg.status, true
}

// Statuses returns a copy of every target's state.
func (c *Checker) Statuses() map[TargetKey]Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[TargetKey]Status, len(c.targets))
	for k, tg := range c.targets {
		out[k] = tg.status
	}
	return out
}
