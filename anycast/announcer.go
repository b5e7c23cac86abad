package anycast

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

type phase uint8

const (
	phaseIdle     phase = iota // New returned; Run not called
	phaseRunning               // the speaker is up
	phaseDraining              // Shutdown is draining
	phaseClosed                // the speaker is stopped for good
)

var phaseNames = [...]string{"idle", "running", "draining", "stopped"}

// flushTimeout bounds the wait for withdrawals to be written before the
// sessions close.
const flushTimeout = time.Second

// Announcer announces VIPs to BGP peers. Its methods are safe for
// concurrent use.
type Announcer struct {
	cfg Config
	log *slog.Logger

	mu          sync.Mutex
	phase       phase
	sp          *speaker // non-nil while running or draining
	vips        map[netip.Prefix]*vipEntry
	transitions [len(stateNames)]uint64
	runDone     chan struct{} // closed when Run returns (nil before Run)
	stopping    chan struct{} // closed when Shutdown begins
	closed      chan struct{} // closed when the speaker has stopped for good

	descs metricDescs
}

// vipEntry is one VIP's wanted and actual state.
type vipEntry struct {
	attrs  vipAttrs
	state  State
	reason string
	since  time.Time
	inRIB  *api.Path // the path in the speaker's RIB, nil when withdrawn
}

// New validates cfg and returns an announcer; it starts nothing.
func New(cfg Config) (*Announcer, error) {
	c, err := cfg.validate()
	if err != nil {
		return nil, fmt.Errorf("anycast config: %w", err)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &Announcer{
		cfg:      c,
		log:      c.Logger,
		vips:     map[netip.Prefix]*vipEntry{},
		stopping: make(chan struct{}),
		closed:   make(chan struct{}),
		descs:    newMetricDescs(),
	}, nil
}

// Run starts the BGP speaker and its sessions, announces what Set asked
// for, and returns once ctx is done or Shutdown has stopped the speaker,
// with everything withdrawn and every session closed. If ctx ends while
// Shutdown is draining, Run waits for the drain to finish. Run may be
// called once.
func (a *Announcer) Run(ctx context.Context) error {
	a.mu.Lock()
	switch a.phase {
	case phaseClosed:
		a.mu.Unlock()
		return ErrClosed
	case phaseRunning, phaseDraining:
		a.mu.Unlock()
		return errors.New("anycast: Run called twice")
	}
	for i, p := range a.cfg.Peers {
		if p.Password == "" {
			continue
		}
		if err := md5Supported(); err != nil {
			a.mu.Unlock()
			return fmt.Errorf("anycast: peers[%d].password: TCP-MD5 is not available here: %w", i, err)
		}
	}
	sp := newSpeaker(a.log, nil)
	if err := sp.start(ctx, &a.cfg); err != nil {
		sp.close()
		a.mu.Unlock()
		return fmt.Errorf("anycast: %w", err)
	}
	a.sp, a.phase = sp, phaseRunning
	a.runDone = make(chan struct{})
	defer close(a.runDone)
	for _, e := range a.sorted() {
		if e.state != Withdrawn {
			if err := a.applyLocked(ctx, e, e.state); err != nil {
				a.log.Error("anycast announce failed", "prefix", e.attrs.prefix.String(), "err", err)
			}
		}
	}
	a.log.Info("anycast announcer started", "router_id", a.cfg.RouterID.String(), "local_asn", a.cfg.LocalASN, "peers", len(a.cfg.Peers))
	a.mu.Unlock()

	select {
	case <-ctx.Done():
		a.mu.Lock()
		if a.phase == phaseRunning {
			a.stopLocked("announcer stopped")
		}
		a.mu.Unlock()
	case <-a.stopping:
	}
	<-sp.done // Shutdown, if draining, stops the speaker after the drain
	return nil
}

// Set declares the state a VIP should be in; reason says why (it is logged
// with the transition, counted by target state, and shown by Status).
// Setting the same state and attributes again changes nothing but the
// reason. Before Run, the state is recorded and applied when Run starts.
// Once Shutdown has begun, only Withdrawn is accepted.
func (a *Announcer) Set(v VIP, s State, reason string) error {
	if int(s) >= len(stateNames) {
		return fmt.Errorf("anycast: set %v: unknown state %d", v.Prefix, s)
	}
	va, err := a.cfg.compile(v)
	if err != nil {
		return fmt.Errorf("anycast: vip %v: %w", v.Prefix, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.vips[va.prefix]
	if e == nil {
		e = &vipEntry{attrs: va, state: Withdrawn, since: time.Now()}
		a.vips[va.prefix] = e
	}
	if a.phase >= phaseDraining && s != Withdrawn {
		return ErrClosed
	}
	if e.state == s && e.attrs.equal(va) {
		e.reason = reason
		return nil
	}
	e.attrs = va
	if a.sp != nil {
		if err := a.applyLocked(context.Background(), e, s); err != nil {
			return fmt.Errorf("anycast: set %v %v: %w", va.prefix, s, err)
		}
	}
	a.transitionLocked(e, s, reason)
	return nil
}

// applyLocked makes the speaker's RIB hold e's path for state s (or none).
func (a *Announcer) applyLocked(ctx context.Context, e *vipEntry, s State) error {
	if s == Withdrawn {
		if e.inRIB == nil {
			return nil
		}
		if err := a.sp.withdraw(ctx, e.inRIB); err != nil {
			return err
		}
		e.inRIB = nil
		return nil
	}
	p := a.buildPath(e.attrs, s)
	if err := a.sp.announce(ctx, p); err != nil {
		return err
	}
	e.inRIB = p
	return nil
}

// transitionLocked records a state change: log, count, reason, since.
func (a *Announcer) transitionLocked(e *vipEntry, s State, reason string) {
	e.reason = reason
	if e.state == s {
		a.log.Info("anycast vip attributes changed", "prefix", e.attrs.prefix.String(), "state", s.String(), "reason", reason)
		return
	}
	a.log.Info("anycast transition", "prefix", e.attrs.prefix.String(), "from", e.state.String(), "to", s.String(), "reason", reason)
	a.transitions[s]++
	e.state, e.since = s, time.Now()
}

// Shutdown drains and stops the announcer: everything announced is
// re-announced with 65535:0 (and the drain MED and prepend), Shutdown waits
// for drain, then withdraws everything and closes the sessions. It does not
// return while anything is still announced; if ctx ends during the drain,
// it withdraws and stops at once and returns ctx's error. Shutdown before
// Run just closes the announcer.
func (a *Announcer) Shutdown(ctx context.Context, drain time.Duration) error {
	a.mu.Lock()
	switch a.phase {
	case phaseIdle:
		a.phase = phaseClosed
		close(a.stopping)
		close(a.closed)
		a.mu.Unlock()
		return nil
	case phaseDraining, phaseClosed: // another Shutdown or Run's own stop
		a.mu.Unlock()
		<-a.closed // bounded: the other stop finishes without waiting on peers
		return nil
	}
	a.phase = phaseDraining
	close(a.stopping)
	announced := 0
	for _, e := range a.sorted() {
		if e.inRIB == nil {
			continue
		}
		announced++
		if err := a.applyLocked(context.Background(), e, Depreferred); err != nil {
			a.log.Error("anycast drain announce failed", "prefix", e.attrs.prefix.String(), "err", err)
			continue
		}
		if e.state != Depreferred {
			a.transitionLocked(e, Depreferred, "draining for shutdown")
		}
	}
	a.log.Info("anycast draining", "vips", announced, "drain", drain.String())
	a.mu.Unlock()

	var err error
	if announced > 0 && drain > 0 {
		t := time.NewTimer(drain)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			err = fmt.Errorf("anycast: shutdown: drain cut short: %w", ctx.Err())
		}
	}
	a.mu.Lock()
	a.stopLocked("shutdown")
	runDone := a.runDone
	a.mu.Unlock()
	if runDone != nil {
		<-runDone // Run returns as soon as the speaker is stopped
	}
	return err
}

// stopLocked withdraws every VIP, closes the sessions and stops the speaker.
func (a *Announcer) stopLocked(reason string) {
	if a.phase == phaseClosed {
		return
	}
	var before sentUpdates
	if a.sp != nil {
		before = a.sp.sentUpdates(context.Background())
	}
	for _, e := range a.sorted() {
		if e.inRIB != nil {
			if err := a.applyLocked(context.Background(), e, Withdrawn); err != nil {
				// The sessions close below, which withdraws it anyway.
				a.log.Warn("anycast withdraw failed", "prefix", e.attrs.prefix.String(), "err", err)
			}
		}
		e.inRIB = nil
		if e.state != Withdrawn {
			a.transitionLocked(e, Withdrawn, reason)
		}
	}
	if a.sp != nil {
		if !a.sp.flushWithdrawals(before, flushTimeout) {
			a.log.Debug("anycast withdrawals not all written before closing the sessions")
		}
		a.sp.close()
		a.sp = nil
	}
	if a.phase != phaseDraining {
		close(a.stopping)
	}
	a.phase = phaseClosed
	close(a.closed)
	a.log.Info("anycast announcer stopped", "reason", reason)
}

// sorted returns the VIPs in prefix order (stable logs and status).
func (a *Announcer) sorted() []*vipEntry {
	out := make([]*vipEntry, 0, len(a.vips))
	for _, e := range a.vips {
		out = append(out, e)
	}
	sortEntries(out)
	return out
}
