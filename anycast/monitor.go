package anycast

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// Check is one local health condition of a VIP: a DNS query to this
// gslbd, GSLB endpoints or pools being up, a TCP/HTTP check of the site's
// L4/L7 tier. It must honour ctx's deadline.
type Check struct {
	Name string
	Fn   func(ctx context.Context) (ok bool, reason string)
}

// Guard reports whether another site announces prefix right now (from the
// shared state). known is false when nobody can tell (no shared state, or
// it is unreachable): then the monitor withdraws as health says.
type Guard func(prefix netip.Prefix) (others bool, known bool)

// VIPPolicy says when a VIP is announced, de-preferred or withdrawn.
type VIPPolicy struct {
	VIP VIP
	// Healthy checks must all pass (for Rise rounds in a row) to announce;
	// Fall failing rounds in a row withdraw.
	Healthy []Check
	// Degraded checks, when one fails, keep the VIP announced but
	// de-preferred (65535:0 plus DrainMED/DrainPrepend).
	Degraded []Check
	// Draining, when set and true, de-prefers the VIP (an operator's drain).
	Draining func() bool
	Interval time.Duration // 1s
	Timeout  time.Duration // Interval/2: per round, for all checks
	Rise     int           // 2
	Fall     int           // 3
}

// MonitorConfig configures a Monitor.
type MonitorConfig struct {
	Policies []VIPPolicy
	Guard    Guard // nil: no last-site guard
	Logger   *slog.Logger
	// Tick, for tests, replaces the per-policy timers: each receive runs
	// one round of every policy, then RoundDone (if set) is sent to.
	Tick      <-chan time.Time
	RoundDone chan<- struct{}
}

// Monitor evaluates each VIP's checks on its interval, applies rise/fall
// hysteresis and sets the announcer's state, logging every transition with
// its reason. The VIP starts withdrawn: it is announced only after Rise
// passing rounds.
type Monitor struct {
	a      *Announcer
	cfg    MonitorConfig
	log    *slog.Logger
	mu     sync.Mutex
	states []vipHealth
}

type vipHealth struct {
	healthy       bool // after hysteresis
	okRun, badRun int
	reason        string
	announced     bool // the last state set was not Withdrawn
}

// NewMonitor validates the policies; it starts nothing.
func NewMonitor(a *Announcer, cfg MonitorConfig) (*Monitor, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	seen := map[netip.Prefix]bool{}
	for i := range cfg.Policies {
		p := &cfg.Policies[i]
		if _, err := a.cfg.compile(p.VIP); err != nil {
			return nil, fmt.Errorf("anycast: vips[%d]: %w", i, err)
		}
		if seen[p.VIP.Prefix.Masked()] {
			return nil, fmt.Errorf("anycast: vips[%d]: %v is listed twice", i, p.VIP.Prefix)
		}
		seen[p.VIP.Prefix.Masked()] = true
		if len(p.Healthy) == 0 {
			return nil, fmt.Errorf("anycast: vips[%d]: %v has no health checks (it would be announced unconditionally)", i, p.VIP.Prefix)
		}
		p.Interval = cmpDur(p.Interval, time.Second)
		p.Timeout = cmpDur(p.Timeout, p.Interval/2)
		p.Rise, p.Fall = cmpInt(p.Rise, 2), cmpInt(p.Fall, 3)
		if p.Timeout > p.Interval {
			return nil, fmt.Errorf("anycast: vips[%d].timeout %v is longer than the interval %v", i, p.Timeout, p.Interval)
		}
	}
	return &Monitor{a: a, cfg: cfg, log: cfg.Logger, states: make([]vipHealth, len(cfg.Policies))}, nil
}

func cmpDur(v, d time.Duration) time.Duration {
	if v <= 0 {
		return d
	}
	return v
}

func cmpInt(v, d int) int {
	if v <= 0 {
		return d
	}
	return v
}

// Run evaluates the policies until ctx is done. It does not withdraw on
// exit: that is Announcer.Shutdown's job (drain, then withdraw).
func (m *Monitor) Run(ctx context.Context) error {
	if m.cfg.Tick != nil {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-m.cfg.Tick:
				for i := range m.cfg.Policies {
					m.round(ctx, i)
				}
				if m.cfg.RoundDone != nil {
					select {
					case m.cfg.RoundDone <- struct{}{}:
					case <-ctx.Done():
						return nil
					}
				}
			}
		}
	}
	var wg sync.WaitGroup
	for i := range m.cfg.Policies {
		wg.Go(func() {
			t := time.NewTicker(m.cfg.Policies[i].Interval)
			defer t.Stop()
			for {
				m.round(ctx, i)
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		})
	}
	wg.Wait()
	return nil
}

// round runs policy i's checks once and sets the VIP's state.
func (m *Monitor) round(ctx context.Context, i int) {
	p := &m.cfg.Policies[i]
	cctx, cancel := context.WithTimeout(ctx, p.Timeout)
	ok, reason := runChecks(cctx, p.Healthy)
	degradedOK, degradedReason := runChecks(cctx, p.Degraded)
	cancel()
	if ctx.Err() != nil {
		return // stopping: a cancelled check says nothing about health
	}
	m.mu.Lock()
	h := &m.states[i]
	if ok {
		h.okRun, h.badRun = h.okRun+1, 0
		if !h.healthy && h.okRun >= p.Rise {
			h.healthy = true
		}
	} else {
		h.okRun, h.badRun = 0, h.badRun+1
		if h.healthy && h.badRun >= p.Fall {
			h.healthy = false
		}
		h.reason = reason
	}
	state, why := m.decide(p, h, degradedOK, degradedReason)
	h.announced = state != Withdrawn
	m.mu.Unlock()
	if err := m.a.Set(p.VIP, state, why); err != nil && !errors.Is(err, ErrClosed) {
		m.log.Error("anycast: set vip state", "prefix", p.VIP.Prefix, "state", state, "err", err)
	}
}

// decide maps health (after hysteresis), degradation, drains and the
// last-site guard to a state and its reason.
func (m *Monitor) decide(p *VIPPolicy, h *vipHealth, degradedOK bool, degradedReason string) (State, string) {
	switch {
	case !h.healthy:
		why := "unhealthy: " + h.reason
		if h.reason == "" {
			why = fmt.Sprintf("waiting for %d passing checks", p.Rise)
		}
		// The guard keeps an announced VIP from being withdrawn when this
		// site is the last one announcing it: a broken local checker must
		// not blackhole the VIP everywhere. It never announces a VIP that
		// was not announced.
		if m.cfg.Guard != nil && h.announced {
			if others, known := m.cfg.Guard(p.VIP.Prefix.Masked()); known && !others {
				m.log.Error("anycast: last site announcing this VIP; de-preferring instead of withdrawing",
					"prefix", p.VIP.Prefix, "reason", why)
				return Depreferred, "last site announcing (guard): " + why
			}
		}
		return Withdrawn, why
	case p.Draining != nil && p.Draining():
		return Depreferred, "draining"
	case !degradedOK:
		return Depreferred, "degraded: " + degradedReason
	}
	return Announced, "healthy"
}

// runChecks runs checks in order; the first failure is the reason.
func runChecks(ctx context.Context, checks []Check) (bool, string) {
	for _, c := range checks {
		ok, reason := safeCheck(ctx, c)
		if !ok {
			return false, c.Name + ": " + reason
		}
	}
	return true, ""
}

func safeCheck(ctx context.Context, c Check) (ok bool, reason string) {
	defer func() {
		if r := recover(); r != nil {
			ok, reason = false, fmt.Sprintf("panic: %v", r)
		}
	}()
	return c.Fn(ctx)
}
