package state

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// vantages holds vantage reports in memory with their lapse times, for a
// store whose reports need not outlive the process (Bolt: one node, whose
// only vantage point is itself and re-probes after a restart). When the
// earliest report lapses it calls onLapse from a timer it owns (stopped by
// close).
type vantages struct {
	mu      sync.Mutex
	reports map[string]vantageEntry
	timer   *time.Timer
	closed  bool
	onLapse func()
	clock   func() time.Time
}

type vantageEntry struct {
	r     VantageReport
	lapse time.Time
}

// clone copies r's maps, so that neither the publisher nor a reader can
// change a stored report.
func (r VantageReport) clone() VantageReport {
	r.Endpoints = maps.Clone(r.Endpoints)
	r.Anycast = maps.Clone(r.Anycast)
	return r
}

func checkReport(r VantageReport, ttl time.Duration) error {
	if strings.TrimSpace(r.Vantage) == "" {
		return fieldErr("vantage", "required")
	}
	if ttl <= 0 {
		return fieldErr("ttl", "must be positive, got %s", ttl)
	}
	return nil
}

func (v *vantages) publish(ctx context.Context, r VantageReport, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("publish health: %w", err)
	}
	if err := checkReport(r, ttl); err != nil {
		return fmt.Errorf("publish health: %w", err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return fmt.Errorf("publish health of %s: %w: closed", r.Vantage, ErrUnavailable)
	}
	if v.reports == nil {
		v.reports = map[string]vantageEntry{}
	}
	r = r.clone()
	v.reports[r.Vantage] = vantageEntry{r: r, lapse: v.clock().Add(ttl)}
	v.arm()
	return nil
}

// arm sets the timer for the earliest lapse. Called with mu held.
func (v *vantages) arm() {
	var first time.Time
	for _, e := range v.reports {
		if first.IsZero() || e.lapse.Before(first) {
			first = e.lapse
		}
	}
	if v.timer != nil {
		v.timer.Stop()
		v.timer = nil
	}
	if first.IsZero() {
		return
	}
	v.timer = time.AfterFunc(max(first.Sub(v.clock()), 0), v.expire)
}

func (v *vantages) expire() {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return
	}
	now, dropped := v.clock(), false
	for name, e := range v.reports {
		if !now.Before(e.lapse) {
			delete(v.reports, name)
			dropped = true
		}
	}
	v.arm()
	v.mu.Unlock()
	if dropped && v.onLapse != nil {
		v.onLapse()
	}
}

func (v *vantages) list(ctx context.Context) ([]VantageReport, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list vantages: %w", err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.clock()
	out := make([]VantageReport, 0, len(v.reports))
	for _, e := range v.reports {
		if now.Before(e.lapse) {
			out = append(out, e.r.clone())
		}
	}
	slices.SortFunc(out, func(a, b VantageReport) int { return strings.Compare(a.Vantage, b.Vantage) })
	return out, nil
}

func (v *vantages) close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.closed = true
	if v.timer != nil {
		v.timer.Stop()
	}
}
