package dataplane

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Errors of the operator actions (Drain, Undrain, Remove).
var (
	ErrUnknownVIP     = errors.New("no such vip")
	ErrUnknownBackend = errors.New("no such backend")
	ErrNotDraining    = errors.New("backend is not draining: drain it first")
	ErrStateNotSaved  = errors.New("operator state not saved, nothing changed")
)

// ProgramError is a failure of the data path to take a service. The
// controller keeps the wanted state and retries (Run).
type ProgramError struct {
	VIP VIP
	Err error
}

func (e *ProgramError) Error() string { return fmt.Sprintf("program %s: %v", e.VIP, e.Err) }
func (e *ProgramError) Unwrap() error { return e.Err }

// HealthSource gives the health of a target (HealthChecker does).
type HealthSource interface {
	Status(HealthTarget) (HealthStatus, bool)
}

// ControllerConfig configures a Controller.
type ControllerConfig struct {
	Programmer Programmer   // required
	Health     HealthSource // nil: every backend is up
	Logger     *slog.Logger // discards when nil
	Clock      Clock        // RealClock()
	// StateFile persists slots and operator actions (see persistedState);
	// "" keeps them in memory.
	StateFile string
	// RetryInterval is how often Run retries services the data path
	// refused (5s).
	RetryInterval time.Duration
	// WarmUp bounds how long a VIP the data path already has (pinned by an
	// earlier run of lbd) keeps its old tables while its backends get
	// their first probe (10s). Pushing at once would put backends that
	// died meanwhile back in the table, presumed up; the old tables are
	// the better guess for the second this takes.
	WarmUp time.Duration
}

// Controller turns the configuration, the health verdicts and the
// operator's drains into one Service per VIP and pushes it to the
// Programmer when, and only when, it changed.
//
// Per VIP, a backend is in Service.Backends when it is healthy and not
// removed; it also gets Maglev entries when it is not draining and its
// weight is not 0. Each configured backend keeps its slot (Index) while it
// stays configured, across rebuilds, reloads and restarts (StateFile); a
// new backend takes the lowest free slot.
type Controller struct {
	prog      Programmer
	health    HealthSource
	log       *slog.Logger
	clock     Clock
	stateFile string
	retry     time.Duration
	warmEnd   time.Time // end of the warm-up (see ControllerConfig.WarmUp)

	mu    sync.Mutex
	cfg   *Config
	vips  map[VIP]*vipState
	ops   map[BackendKey]operatorOp
	saved savedState // slots from the state file, used by the first SetConfig
}

// vipState is the controller's record of one VIP.
type vipState struct {
	cfg   *VIPConfig // nil: no longer configured, to delete from the data path
	slots map[netip.Addr]uint32
	// pushed is the service the data path has (nil: none yet).
	pushed *Service
	// entries counts the table entries of pushed per Index.
	entries map[uint32]int
	err     error // the last push's error, nil after a success
	// waiting: held back during the warm-up (the data path keeps the
	// tables of the previous run until the backends are probed).
	waiting bool
	// programmed: the data path may have this VIP (a push was tried, or
	// the previous run of lbd programmed it), so removing it from the
	// configuration deletes it.
	programmed bool
	// The table cache: rebuilding is skipped when the Maglev inputs are
	// the same as last time (a health flip of another VIP's backend).
	tableKey     string
	table        []uint32
	tableEntries map[uint32]int
}

// NewController returns a controller with no VIPs (SetConfig adds them).
// It loads the state file, if any.
func NewController(cfg ControllerConfig) (*Controller, error) {
	if cfg.Programmer == nil {
		return nil, errors.New("new controller: no programmer")
	}
	saved, err := loadState(cfg.StateFile)
	if err != nil {
		return nil, fmt.Errorf("new controller: %w", err)
	}
	c := &Controller{
		prog: cfg.Programmer, health: cfg.Health, log: cfg.Logger, clock: cfg.Clock, stateFile: cfg.StateFile,
		retry: cfg.RetryInterval, vips: make(map[VIP]*vipState), ops: saved.ops, saved: saved,
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.clock == nil {
		c.clock = RealClock()
	}
	if c.retry <= 0 {
		c.retry = 5 * time.Second
	}
	if cfg.WarmUp <= 0 {
		cfg.WarmUp = 10 * time.Second
	}
	c.warmEnd = c.clock.Now().Add(cfg.WarmUp)
	// VIPs the previous run programmed: deleted by the first Reconcile
	// unless the configuration still has them.
	for v := range saved.slots {
		c.vips[v] = &vipState{programmed: true}
	}
	if inst, ok := cfg.Programmer.(installedLister); ok {
		for _, v := range inst.Installed() {
			c.vips[v] = &vipState{programmed: true}
		}
	}
	return c, nil
}

// installedLister is implemented by a Programmer that knows the VIPs it
// already has (the XDP loader, from its pinned maps): with it, VIPs left by
// an earlier run and no longer configured are deleted even without a state
// file.
type installedLister interface {
	Installed() []VIP
}

// SetConfig installs a new configuration (validated by ParseConfig) and
// reconciles. VIPs are matched by VIP, backends by address: those that
// stay keep their slots and operator state. The error reports services the
// data path refused (the configuration is installed regardless and they
// are retried).
func (c *Controller) SetConfig(cfg *Config) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cfg = cfg
	want := make(map[VIP]*VIPConfig, len(cfg.VIPs))
	for i := range cfg.VIPs {
		want[cfg.VIPs[i].VIP] = &cfg.VIPs[i]
	}
	for v, st := range c.vips {
		if _, ok := want[v]; !ok {
			st.cfg = nil
		}
	}
	for v, vc := range want {
		st := c.vips[v]
		if st == nil {
			st = &vipState{}
			c.vips[v] = st
		}
		if st.slots == nil {
			st.slots = c.saved.slots[v]
		}
		st.cfg = vc
		st.slots = assignSlots(st.slots, vc.Backends)
	}
	c.saved.slots = nil
	for k := range c.ops {
		if !c.configured(k) {
			delete(c.ops, k)
		}
	}
	if err := c.saveState(); err != nil {
		c.log.Error("state not saved; slots will not survive a restart", "err", err)
	}
	return c.reconcile()
}

// assignSlots keeps the slots of the backends still configured and gives
// each new one the lowest free slot, in configuration order.
func assignSlots(old map[netip.Addr]uint32, backends []BackendConfig) map[netip.Addr]uint32 {
	slots := make(map[netip.Addr]uint32, len(backends))
	used := make(map[uint32]bool, len(backends))
	for _, b := range backends {
		if idx, ok := old[b.Addr]; ok {
			slots[b.Addr] = idx
			used[idx] = true
		}
	}
	next := uint32(0)
	for _, b := range backends {
		if _, ok := slots[b.Addr]; ok {
			continue
		}
		for used[next] {
			next++
		}
		slots[b.Addr] = next
		used[next] = true
	}
	return slots
}

// configured reports whether k names a configured backend. Called with
// c.mu held.
func (c *Controller) configured(k BackendKey) bool {
	st := c.vips[k.VIP]
	return st != nil && st.cfg != nil && slices.ContainsFunc(st.cfg.Backends, func(b BackendConfig) bool { return b.Addr == k.Addr })
}

// Reconcile recomputes every service and pushes those that changed or
// failed before. The health checker's OnChange calls it.
func (c *Controller) Reconcile() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reconcile()
}

// reconcile is Reconcile with c.mu held.
func (c *Controller) reconcile() error {
	if c.cfg == nil {
		return nil
	}
	var errs []error
	for _, v := range slices.SortedFunc(maps.Keys(c.vips), compareVIPs) {
		st := c.vips[v]
		if st.cfg == nil {
			if err := c.delete(v, st); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if st.waiting = st.pushed == nil && st.programmed && c.unprobed(st); st.waiting {
			continue
		}
		svc, err := c.build(st)
		if err != nil {
			st.err = err
			c.log.Error("service not built", "vip", v.String(), "err", err)
			errs = append(errs, err)
			continue
		}
		if st.pushed != nil && st.err == nil && equalService(*st.pushed, svc) {
			continue
		}
		st.programmed = true
		if err := c.prog.SetService(svc); err != nil {
			st.err = &ProgramError{VIP: v, Err: err}
			c.log.Error("service not programmed; will retry", "vip", v.String(), "err", err)
			errs = append(errs, st.err)
			continue
		}
		st.pushed, st.entries, st.err = &svc, st.tableEntries, nil
		c.log.Info("service programmed", "vip", v.String(), "mode", ModeString(svc.Mode),
			"backends", len(svc.Backends), "in_table", len(st.entries), "table_size", len(svc.Table))
	}
	return errors.Join(errs...)
}

func (c *Controller) delete(v VIP, st *vipState) error {
	if !st.programmed {
		delete(c.vips, v)
		return nil
	}
	if err := c.prog.DeleteService(v); err != nil {
		st.err = &ProgramError{VIP: v, Err: err}
		c.log.Error("service not deleted; will retry", "vip", v.String(), "err", err)
		return st.err
	}
	delete(c.vips, v)
	c.log.Info("service deleted", "vip", v.String())
	return nil
}

// build computes st's service. Called with c.mu held.
func (c *Controller) build(st *vipState) (Service, error) {
	vc := st.cfg
	svc := Service{VIP: vc.VIP, Mode: vc.Mode, Backends: []Backend{}}
	var mb []MaglevBackend
	for _, b := range vc.Backends {
		k := BackendKey{VIP: vc.VIP, Addr: b.Addr}
		op := c.ops[k]
		if op.State == opRemoved || !c.backendUp(b).Up {
			continue
		}
		idx := st.slots[b.Addr]
		svc.Backends = append(svc.Backends, Backend{Index: idx, Addr: b.Addr, MAC: slices.Clone(b.MAC)})
		if op.State != opDraining && b.Weight > 0 {
			mb = append(mb, MaglevBackend{ID: b.Addr.String(), Index: idx, Weight: b.Weight})
		}
	}
	slices.SortFunc(svc.Backends, func(a, b Backend) int { return cmp.Compare(a.Index, b.Index) })
	key := fmt.Sprint(c.cfg.MaglevSize, c.cfg.MaglevSeed, mb)
	if key != st.tableKey || st.tableKey == "" {
		table, err := Maglev(mb, c.cfg.MaglevSize, c.cfg.MaglevSeed)
		if err != nil {
			return Service{}, fmt.Errorf("build %s: %w", vc.VIP, err)
		}
		st.tableKey, st.table, st.tableEntries = key, table, make(map[uint32]int, len(mb))
		for _, e := range table {
			st.tableEntries[e]++
		}
	}
	svc.Table = st.table
	return svc, nil
}

// unprobed reports whether, during the warm-up, a backend of st still
// waits for its first probe. Called with c.mu held.
func (c *Controller) unprobed(st *vipState) bool {
	if c.health == nil || !c.clock.Now().Before(c.warmEnd) {
		return false
	}
	for _, b := range st.cfg.Backends {
		if b.Check.Type == CheckNone || c.ops[BackendKey{VIP: st.cfg.VIP, Addr: b.Addr}].State == opRemoved {
			continue
		}
		if s, ok := c.health.Status(b.HealthTarget()); !ok || !s.Probed {
			return true
		}
	}
	return false
}

// HealthProbed is for HealthConfig.OnProbe: while VIPs wait for the first
// probes of their backends, each probe result reconciles; otherwise it
// returns at once.
func (c *Controller) HealthProbed() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.vips {
		if st.waiting {
			_ = c.reconcile() // logged per service
			return
		}
	}
}

// backendUp is the health of b; unknown targets (not yet given to the
// checker) count as up, like new targets do.
func (c *Controller) backendUp(b BackendConfig) HealthStatus {
	if c.health == nil || b.Check.Type == CheckNone {
		return HealthStatus{Up: true, Reason: "unchecked"}
	}
	s, ok := c.health.Status(b.HealthTarget())
	if !ok {
		return HealthStatus{Up: true, Reason: "initial"}
	}
	return s
}

func equalService(a, b Service) bool {
	return a.VIP == b.VIP && a.Mode == b.Mode && slices.Equal(a.Table, b.Table) &&
		slices.EqualFunc(a.Backends, b.Backends, func(x, y Backend) bool {
			return x.Index == y.Index && x.Addr == y.Addr && slices.Equal(x.MAC, y.MAC)
		})
}

// Drain stops new flows to a backend (it leaves the Maglev table) while
// its established flows continue. Draining a draining backend is a no-op;
// draining a removed one puts it back in Backends.
func (c *Controller) Drain(v VIP, backend netip.Addr) error {
	return c.operate("drain", v, backend, func(op operatorOp) (string, error) { return opDraining, nil })
}

// Undrain cancels a drain or a removal.
func (c *Controller) Undrain(v VIP, backend netip.Addr) error {
	return c.operate("undrain", v, backend, func(operatorOp) (string, error) { return "", nil })
}

// Remove takes a drained backend out of Backends: its remaining flows are
// re-balanced through the table. It fails with ErrNotDraining unless the
// backend is draining (or already removed).
func (c *Controller) Remove(v VIP, backend netip.Addr) error {
	return c.operate("remove", v, backend, func(op operatorOp) (string, error) {
		if op.State != opDraining && op.State != opRemoved {
			return "", ErrNotDraining
		}
		return opRemoved, nil
	})
}

// operate applies an operator action: next maps the current state to the
// new one ("" = none). The state is saved before it is applied; if it
// cannot be saved, nothing changes.
func (c *Controller) operate(name string, v VIP, backend netip.Addr, next func(operatorOp) (string, error)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	backend = backend.Unmap()
	st := c.vips[v]
	if st == nil || st.cfg == nil {
		return fmt.Errorf("%s %s %s: %w", name, v, backend, ErrUnknownVIP)
	}
	k := BackendKey{VIP: v, Addr: backend}
	if !c.configured(k) {
		return fmt.Errorf("%s %s %s: %w", name, v, backend, ErrUnknownBackend)
	}
	old, had := c.ops[k]
	state, err := next(old)
	if err != nil {
		return fmt.Errorf("%s %s %s: %w", name, v, backend, err)
	}
	if state == old.State {
		return c.reconcileVIP(v) // nothing new; retries a failed push
	}
	if state == "" {
		delete(c.ops, k)
	} else {
		c.ops[k] = operatorOp{State: state, Since: c.clock.Now().UTC()}
	}
	if err := c.saveState(); err != nil {
		if had {
			c.ops[k] = old
		} else {
			delete(c.ops, k)
		}
		return fmt.Errorf("%s %s %s: %w: %w", name, v, backend, ErrStateNotSaved, err)
	}
	c.log.Info("operator "+name, "vip", v.String(), "backend", backend.String(), "state", cmpState(state))
	return c.reconcileVIP(v)
}

// reconcileVIP reconciles and returns v's error only: the failures of
// other VIPs are logged and retried, not the operator's concern here.
// Called with c.mu held.
func (c *Controller) reconcileVIP(v VIP) error {
	_ = c.reconcile()
	if st := c.vips[v]; st != nil && st.err != nil {
		return st.err
	}
	return nil
}

func cmpState(s string) string {
	if s == "" {
		return "active"
	}
	return s
}

// Run retries, every RetryInterval, the services the data path refused,
// and ends the warm-up on time, until ctx is done.
func (c *Controller) Run(ctx context.Context) error {
	tick := make(chan struct{}, 1)
	for {
		delay := c.retry
		if w := c.warmEnd.Sub(c.clock.Now()); w > 0 && w < delay {
			delay = w
		}
		t := c.clock.AfterFunc(delay, func() {
			select {
			case tick <- struct{}{}:
			default:
			}
		})
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-tick:
		}
		c.mu.Lock()
		failed := false
		for _, st := range c.vips {
			failed = failed || st.err != nil || st.waiting
		}
		if failed {
			_ = c.reconcile() // logged per service
		}
		c.mu.Unlock()
	}
}

// VIPStatus is a VIP as the controller sees it, for the API and metrics.
type VIPStatus struct {
	VIP       VIP
	Mode      Mode
	TableSize int // entries in the table pushed (0: no backend available)
	// Programmed is true when the data path has the wanted service; Error
	// is the last failure otherwise. Waiting is true while the data path
	// keeps the previous run's tables until the backends are probed.
	Programmed bool
	Waiting    bool
	Error      string
	Backends   []BackendStatus
}

// BackendStatus is one backend of a VIPStatus.
type BackendStatus struct {
	Addr   netip.Addr
	Index  uint32
	Weight uint32 // configured
	MAC    net.HardwareAddr
	Check  string
	Health HealthStatus
	// State is the operator's: "active", "draining" or "removed"; Since
	// is when it was set (zero for active).
	State string
	Since time.Time
	// InService: in Service.Backends (its established flows continue).
	InService bool
	// TableEntries is its share of the pushed table.
	TableEntries int
}

// Status returns every configured VIP, sorted.
func (c *Controller) Status() []VIPStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []VIPStatus
	for _, v := range slices.SortedFunc(maps.Keys(c.vips), compareVIPs) {
		st := c.vips[v]
		if st.cfg == nil {
			continue
		}
		vs := VIPStatus{VIP: v, Mode: st.cfg.Mode, Programmed: st.pushed != nil && st.err == nil, Waiting: st.waiting}
		if st.err != nil {
			vs.Error = st.err.Error()
		}
		inService := map[uint32]bool{}
		if st.pushed != nil {
			vs.TableSize = len(st.pushed.Table)
			for _, b := range st.pushed.Backends {
				inService[b.Index] = true
			}
		}
		for _, b := range st.cfg.Backends {
			op := c.ops[BackendKey{VIP: v, Addr: b.Addr}]
			idx := st.slots[b.Addr]
			bs := BackendStatus{
				Addr: b.Addr, Index: idx, Weight: b.Weight, MAC: b.MAC, Check: b.HealthTarget().String(),
				Health: c.backendUp(b), State: cmpState(op.State), Since: op.Since, InService: inService[idx],
			}
			if inService[idx] {
				bs.TableEntries = st.entries[idx]
			}
			vs.Backends = append(vs.Backends, bs)
		}
		out = append(out, vs)
	}
	return out
}

// HealthTargets lists the targets of every backend of cfg, without
// duplicates, for HealthChecker.SetTargets.
func (cfg *Config) HealthTargets() []HealthTarget {
	var out []HealthTarget
	seen := make(map[HealthTarget]bool)
	for _, vc := range cfg.VIPs {
		for _, b := range vc.Backends {
			if t := b.HealthTarget(); !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		}
	}
	return out
}
