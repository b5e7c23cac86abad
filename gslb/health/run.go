package health

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"sync"
)

// Run probes the targets until ctx is done, then stops the timers, cancels
// the running probes (their results are discarded), waits for them and
// returns nil. It may be called again after it returned, not concurrently.
func (c *Checker) Run(ctx context.Context) error {
	if err := c.start(); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for {
		c.dispatch(ctx, &wg)
		select {
		case <-ctx.Done():
			c.stop()
			wg.Wait()
			c.mu.Lock()
			evs := c.takeEvents()
			c.mu.Unlock()
			c.deliver(evs)
			return nil
		case <-c.wake:
		}
	}
}

// start schedules the first probe of every target.
func (c *Checker) start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		return errors.New("run health checker: already running")
	}
	c.running = true
	c.epoch++
	c.due = nil
	now := c.clock.Now()
	for _, k := range slices.Sorted(maps.Keys(c.targets)) {
		c.scheduleFirst(c.targets[k], now)
	}
	return nil
}

// stop stops every timer; running probes see Run's context done.
func (c *Checker) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.running = false
	c.epoch++
	c.due = nil
	for _, tg := range c.targets {
		if tg.timer != nil {
			tg.timer.Stop()
			tg.timer = nil
		}
	}
}

// dispatch starts the due probes that fit under MaxConcurrent and delivers
// the pending callbacks.
func (c *Checker) dispatch(ctx context.Context, wg *sync.WaitGroup) {
	type start struct {
		tg  *target
		ctx context.Context
	}
	var starts []start
	c.mu.Lock()
	for c.inflight < c.maxConc && len(c.due) > 0 {
		tg := c.due[0]
		c.due = c.due[1:]
		if c.targets[tg.key] != tg || tg.cancel != nil {
			continue // removed meanwhile
		}
		pctx, cancel := context.WithTimeout(ctx, tg.t.Monitor.Timeout)
		tg.cancel = cancel
		c.inflight++
		starts = append(starts, start{tg, pctx})
	}
	evs := c.takeEvents()
	c.mu.Unlock()
	for _, s := range starts {
		wg.Go(func() {
			o := safeProbe(s.ctx, c.probe, s.tg.t)
			c.complete(ctx, s.tg, o)
		})
	}
	c.deliver(evs)
}

// complete applies a probe outcome and schedules the next probe, unless the
// target was removed or Run is stopping.
func (c *Checker) complete(runCtx context.Context, tg *target, o outcome) {
	c.mu.Lock()
	cancel := tg.cancel
	tg.cancel = nil
	c.inflight--
	current := runCtx.Err() == nil && c.targets[tg.key] == tg
	var (
		old, cur Status
		flipped  bool
	)
	if current {
		m := tg.t.Monitor
		now := c.clock.Now()
		next := tg.due.Add(m.Interval)
		if next.Before(now) {
			next = now // behind schedule (a queue for slots): catch up
		}
		old = tg.status
		cur, flipped = step(old, m, o, now, next)
		tg.status = cur
		c.schedule(tg, now, next)
		if flipped {
			c.events = append(c.events, event{change: &Change{Key: tg.key, Target: tg.t, Old: old, New: cur}})
		}
		c.events = append(c.events, event{key: tg.key, status: cur})
		c.metrics.observe(m.Kind, o, flipped, cur.Up)
	}
	c.mu.Unlock()
	cancel()
	c.signal()
	if !current {
		return
	}
	c.logProbe(tg, o, cur, flipped)
}

func (c *Checker) logProbe(tg *target, o outcome, s Status, flipped bool) {
	attrs := []slog.Attr{
		slog.String("target", tg.t.addrPort().String()),
		slog.String("kind", string(tg.t.Monitor.Kind)),
		slog.String("reason", o.reason),
	}
	switch m := tg.t.Monitor; m.Kind {
	case KindHTTP, KindHTTPS:
		attrs = append(attrs, slog.String("path", m.Path))
	case KindDNS:
		attrs = append(attrs, slog.String("query", m.Query+" "+m.QueryType))
	}
	switch {
	case flipped:
		state := "down"
		if s.Up {
			state = "up"
		}
		c.log.LogAttrs(context.Background(), slog.LevelInfo, "health target "+state, append(attrs,
			slog.Uint64("transitions", s.Transitions))...)
	case !o.ok:
		c.log.LogAttrs(context.Background(), slog.LevelDebug, "health probe failed", append(attrs,
			slog.Int("failures", s.Failures), slog.Bool("up", s.Up))...)
	}
}

// takeEvents returns and clears the pending callbacks. Called with c.mu held.
func (c *Checker) takeEvents() []event {
	evs := c.events
	c.events = nil
	return evs
}

func (c *Checker) deliver(evs []event) {
	for _, ev := range evs {
		switch {
		case ev.change != nil && c.onChange != nil:
			c.onChange(*ev.change)
		case ev.change == nil && c.onProbe != nil:
			c.onProbe(ev.key, ev.status)
		}
	}
}
