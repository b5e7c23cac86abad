package dataplane

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// CheckType is how a backend is probed.
type CheckType string

// Check types.
const (
	CheckTCP  CheckType = "tcp"  // a TCP connect succeeds
	CheckHTTP CheckType = "http" // GET answers the expected status
	CheckNone CheckType = "none" // not probed: always up
)

// Check says how to probe a backend. It is comparable: with the probed
// address it is the key of a HealthTarget.
type Check struct {
	Type CheckType
	// Address is probed instead of the backend's address when valid (a
	// management address, or the proxy's address when the backend address
	// is a tunnel endpoint).
	Address      netip.Addr
	Port         uint16
	Path         string // http: the request path ("/")
	Host         string // http: the Host header ("" = the address)
	ExpectStatus int    // http: the status that means healthy (200)
	Interval     time.Duration
	Timeout      time.Duration
	Rise, Fall   int // consecutive successes to go up, failures to go down
}

// HealthTarget is one probed thing: an address and how to probe it. Two
// VIPs with the same backend and check share one target, so it is probed
// once per interval.
type HealthTarget struct {
	Addr  netip.Addr
	Check Check
}

// HealthTarget returns the target that decides b's health.
func (b BackendConfig) HealthTarget() HealthTarget {
	addr := b.Addr
	if b.Check.Address.IsValid() {
		addr = b.Check.Address
	}
	return HealthTarget{Addr: addr, Check: b.Check}
}

func (t HealthTarget) String() string {
	if t.Check.Type == CheckNone {
		return string(CheckNone) + " " + t.Addr.String()
	}
	s := string(t.Check.Type) + " " + netip.AddrPortFrom(t.Addr, t.Check.Port).String()
	if t.Check.Type == CheckHTTP {
		s += t.Check.Path
	}
	return s
}

// HealthStatus is the state of one target.
type HealthStatus struct {
	Up bool
	// Reason is "ok" after a success, else why the last probe failed
	// ("connection refused", "timeout", "status 503"...); "initial" before
	// the first probe, "unchecked" for CheckNone.
	Reason    string
	Since     time.Time // when Up last changed, or when the target was added
	LastProbe time.Time
	LastRTT   time.Duration
	// Successes and Failures are the current streaks (one is zero once
	// probed).
	Successes, Failures int
	Probed              bool
}

// HealthChange is an Up flip of a target.
type HealthChange struct {
	Target   HealthTarget
	Old, New HealthStatus
}

// HealthConfig configures a HealthChecker. The zero value works.
type HealthConfig struct {
	Clock  Clock        // RealClock()
	Logger *slog.Logger // discards when nil
	// InitialDown presumes new targets down until their first probe. By
	// default they are presumed up: a start or a reload must not empty the
	// Maglev tables of healthy backends. Either way the first probe's
	// result decides at once (a known-dead backend is not kept for Fall
	// intervals); Rise and Fall apply from then on.
	InitialDown bool
	// OnChange is called on every Up flip with its reason. Calls are
	// serialized (never two at once), in order for each target. It must
	// not call Close.
	OnChange func(HealthChange)
	// OnProbe, optional, is called after every probe result is applied,
	// serialized with OnChange (tests wait on it).
	OnProbe func(HealthTarget, HealthStatus)
	// Probe replaces the built-in probes (tests). It returns nil when the
	// target is healthy, else an error whose text is the reason.
	Probe func(context.Context, HealthTarget) error
	// FirstProbe returns the delay of a new target's first probe, given
	// its interval. Nil draws it at random within the interval so that a
	// start or a reload does not probe every backend at once.
	FirstProbe func(interval time.Duration) time.Duration
}

// HealthChecker probes targets on their schedules and keeps their state
// with rise/fall hysteresis. NewHealthChecker, SetTargets, Start, Close.
type HealthChecker struct {
	clock      Clock
	log        *slog.Logger
	initialUp  bool
	onChange   func(HealthChange)
	onProbe    func(HealthTarget, HealthStatus)
	probe      func(context.Context, HealthTarget) error
	firstProbe func(time.Duration) time.Duration
	client     *http.Client

	cbMu sync.Mutex // serializes callbacks

	mu      sync.Mutex
	targets map[HealthTarget]*hcTarget
	started bool
	closed  bool
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup // running probes
}

type hcTarget struct {
	t      HealthTarget
	status HealthStatus
	timer  Timer     // the pending probe, nil while one runs or when none
	due    time.Time // when the pending or running probe was due
}

// NewHealthChecker returns a checker; it starts nothing.
func NewHealthChecker(cfg HealthConfig) *HealthChecker {
	h := &HealthChecker{
		clock: cfg.Clock, log: cfg.Logger, initialUp: !cfg.InitialDown, onChange: cfg.OnChange, onProbe: cfg.OnProbe,
		probe: cfg.Probe, firstProbe: cfg.FirstProbe, targets: make(map[HealthTarget]*hcTarget),
	}
	if h.clock == nil {
		h.clock = RealClock()
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if h.firstProbe == nil {
		h.firstProbe = func(iv time.Duration) time.Duration { return rand.N(iv) }
	}
	h.client = newProbeClient()
	if h.probe == nil {
		h.probe = h.builtinProbe
	}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	return h
}

// SetTargets reconciles the probed set with ts: new targets start (as up,
// unless InitialDown, first probe within an interval), removed ones stop
// (an in-flight result is discarded), unchanged ones keep their state. A
// new target that differs from a removed one only in interval, timeout,
// rise or fall inherits its state, so tuning a check does not reset it.
func (h *HealthChecker) SetTargets(ts []HealthTarget) {
	h.mu.Lock()
	defer h.mu.Unlock()
	want := make(map[HealthTarget]bool, len(ts))
	for _, t := range ts {
		want[t] = true
	}
	removed := make(map[HealthTarget]*hcTarget)
	for _, k := range slices.SortedFunc(maps.Keys(h.targets), compareTargets) {
		if want[k] {
			continue
		}
		tg := h.targets[k]
		if tg.timer != nil {
			tg.timer.Stop()
		}
		delete(h.targets, k)
		removed[inheritKey(k)] = tg
	}
	now := h.clock.Now()
	for _, t := range ts {
		if _, ok := h.targets[t]; ok {
			continue
		}
		tg := &hcTarget{t: t, status: HealthStatus{Up: h.initialUp || t.Check.Type == CheckNone, Since: now, Reason: "initial"}}
		if t.Check.Type == CheckNone {
			tg.status.Reason = "unchecked"
		} else if old, ok := removed[inheritKey(t)]; ok {
			tg.status = old.status
			tg.status.Successes, tg.status.Failures = 0, 0
		}
		h.targets[t] = tg
		if h.started && !h.closed {
			h.scheduleFirst(tg, now)
		}
	}
}

func inheritKey(t HealthTarget) HealthTarget {
	t.Check.Interval, t.Check.Timeout, t.Check.Rise, t.Check.Fall = 0, 0, 0, 0
	return t
}

func compareTargets(a, b HealthTarget) int {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	return cmp.Compare(a.String(), b.String())
}

// Start schedules the first probe of every target. Probes run in their
// own goroutines until Close.
func (h *HealthChecker) Start() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.started || h.closed {
		return
	}
	h.started = true
	now := h.clock.Now()
	for _, k := range slices.SortedFunc(maps.Keys(h.targets), compareTargets) {
		h.scheduleFirst(h.targets[k], now)
	}
}

// Close stops the timers, cancels the running probes (their results are
// discarded) and waits for them. The checker cannot be restarted.
func (h *HealthChecker) Close() error {
	h.mu.Lock()
	h.closed = true
	for _, tg := range h.targets {
		if tg.timer != nil {
			tg.timer.Stop()
			tg.timer = nil
		}
	}
	h.mu.Unlock()
	h.cancel()
	h.wg.Wait()
	h.client.CloseIdleConnections()
	return nil
}

// scheduleFirst sets a target's first probe. Called with h.mu held.
func (h *HealthChecker) scheduleFirst(tg *hcTarget, now time.Time) {
	if tg.t.Check.Type == CheckNone {
		return
	}
	h.schedule(tg, now, now.Add(h.firstProbe(tg.t.Check.Interval)))
}

// schedule sets tg's probe for at. Called with h.mu held.
func (h *HealthChecker) schedule(tg *hcTarget, now, at time.Time) {
	tg.due = at
	tg.timer = h.clock.AfterFunc(at.Sub(now), func() { h.run(tg) })
}

// run probes tg once, applies the result and schedules the next probe.
func (h *HealthChecker) run(tg *hcTarget) {
	h.mu.Lock()
	if h.closed || h.targets[tg.t] != tg {
		h.mu.Unlock()
		return
	}
	tg.timer = nil
	h.wg.Add(1)
	h.mu.Unlock()
	defer h.wg.Done()

	ctx, cancel := context.WithTimeout(h.ctx, tg.t.Check.Timeout)
	start := time.Now()
	err := h.safeProbe(ctx, tg.t)
	rtt := time.Since(start)
	cancel()

	h.mu.Lock()
	if h.closed || h.targets[tg.t] != tg {
		h.mu.Unlock()
		return
	}
	now := h.clock.Now()
	old := tg.status
	cur, flipped := stepHealth(old, tg.t.Check, err, now, rtt)
	tg.status = cur
	h.mu.Unlock()

	// Callbacks before the next probe is scheduled: the next result of
	// this target cannot overtake this one.
	h.cbMu.Lock()
	if flipped {
		h.logChange(tg.t, old, cur)
		if h.onChange != nil {
			h.onChange(HealthChange{Target: tg.t, Old: old, New: cur})
		}
	}
	if h.onProbe != nil {
		h.onProbe(tg.t, cur)
	}
	h.cbMu.Unlock()

	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.targets[tg.t] != tg {
		return
	}
	now = h.clock.Now()
	next := tg.due.Add(tg.t.Check.Interval)
	if next.Before(now) {
		next = now // a slow probe: do not queue up missed ones
	}
	h.schedule(tg, now, next)
}

// safeProbe runs the probe, turning a panic into a failure.
func (h *HealthChecker) safeProbe(ctx context.Context, t HealthTarget) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("probe panic: %v", r)
		}
	}()
	return h.probe(ctx, t)
}

// stepHealth applies one probe result to s and reports whether Up flipped.
// The first probe sets Up; later ones flip it after Rise successes or Fall
// failures in a row.
func stepHealth(s HealthStatus, c Check, err error, now time.Time, rtt time.Duration) (HealthStatus, bool) {
	first := !s.Probed
	s.Probed, s.LastProbe, s.LastRTT = true, now, rtt
	s.Reason = probeReason(err)
	if first {
		s.Successes, s.Failures = 0, 0
		if err == nil {
			s.Successes = 1
		} else {
			s.Failures = 1
		}
		if s.Up != (err == nil) {
			s.Up = err == nil
			s.Since = now
			return s, true
		}
		return s, false
	}
	if err == nil {
		s.Successes++
		s.Failures = 0
	} else {
		s.Failures++
		s.Successes = 0
	}
	if !s.Up && s.Successes >= c.Rise || s.Up && s.Failures >= c.Fall {
		s.Up = !s.Up
		s.Since = now
		return s, true
	}
	return s, false
}

func (h *HealthChecker) logChange(t HealthTarget, old, cur HealthStatus) {
	state := "down"
	if cur.Up {
		state = "up"
	}
	h.log.Info("backend "+state, "target", t.String(), "reason", cur.Reason,
		"first_probe", !old.Probed, "was_"+map[bool]string{true: "up", false: "down"}[old.Up]+"_since", old.Since.Format(time.RFC3339))
}

// Status returns the state of target t.
func (h *HealthChecker) Status(t HealthTarget) (HealthStatus, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	tg, ok := h.targets[t]
	if !ok {
		return HealthStatus{}, false
	}
	return tg.status, true
}
