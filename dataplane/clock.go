package dataplane

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Clock is time, injected into the health checker and the feed so that
// their tests run on a FakeClock instead of sleeping.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine (for FakeClock: in the
	// goroutine calling Advance) once d has elapsed.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop prevents the call if it has not started; it reports whether it
	// did.
	Stop() bool
}

type realClock struct{}

// RealClock is the wall clock.
func RealClock() Clock { return realClock{} }

func (realClock) Now() time.Time                            { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// FakeClock is a Clock that moves only when Advance is called. Advance runs
// the due timers synchronously in deadline order (then creation order),
// with Now reading each timer's deadline while it runs; a timer set for
// d <= 0 fires at the next Advance, even Advance(0). Timer functions run
// without the clock's lock, so they may call Now and AfterFunc.
type FakeClock struct {
	mu      sync.Mutex
	now     time.Time
	seq     uint64
	timers  []*fakeTimer
	changed chan struct{} // closed when timers are added or removed
}

type fakeTimer struct {
	c    *FakeClock
	when time.Time
	seq  uint64
	f    func()
}

// NewFakeClock returns a FakeClock reading t.
func NewFakeClock(t time.Time) *FakeClock { return &FakeClock{now: t} }

// Now returns the fake time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc schedules f to run when the clock has advanced by d.
func (c *FakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &fakeTimer{c: c, when: c.now.Add(max(d, 0)), seq: c.seq, f: f}
	c.timers = append(c.timers, t)
	c.notify()
	return t
}

// Stop removes the timer if it has not fired.
func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if i := slices.Index(t.c.timers, t); i >= 0 {
		t.c.timers = slices.Delete(t.c.timers, i, i+1)
		t.c.notify()
		return true
	}
	return false
}

// Advance moves the clock forward by d, running every timer due by then,
// including those that timers set within the window.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		t := c.popDue(end)
		if t == nil {
			c.now = end
			c.mu.Unlock()
			return
		}
		if t.when.After(c.now) {
			c.now = t.when
		}
		c.mu.Unlock()
		t.f()
	}
}

// popDue removes and returns the earliest timer due by end, or nil. Called
// with c.mu held.
func (c *FakeClock) popDue(end time.Time) *fakeTimer {
	if len(c.timers) == 0 {
		return nil
	}
	i := 0
	for j, t := range c.timers {
		if e := c.timers[i]; t.when.Before(e.when) || t.when.Equal(e.when) && t.seq < e.seq {
			i = j
		}
	}
	t := c.timers[i]
	if t.when.After(end) {
		return nil
	}
	c.timers = slices.Delete(c.timers, i, i+1)
	c.notify()
	return t
}

// PendingTimers reports how many timers wait to fire.
func (c *FakeClock) PendingTimers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// WaitForTimers blocks until at least n timers are pending, so that a test
// knows the code under test has scheduled its work before it advances the
// clock, or until ctx is done.
func (c *FakeClock) WaitForTimers(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		if len(c.timers) >= n {
			c.mu.Unlock()
			return nil
		}
		if c.changed == nil {
			c.changed = make(chan struct{})
		}
		ch := c.changed
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for %d timers: %w", n, ctx.Err())
		}
	}
}

// notify wakes WaitForTimers. Called with c.mu held.
func (c *FakeClock) notify() {
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
}
