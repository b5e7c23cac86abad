package health

import (
	"context"
	"slices"
	"testing"
	"time"
)

var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func TestFakeClockFiresInOrder(t *testing.T) {
	c := NewFakeClock(epoch)
	var got []string
	at := func(name string) func() {
		return func() { got = append(got, name+"@"+c.Now().Sub(epoch).String()) }
	}
	c.AfterFunc(3*time.Second, at("c"))
	c.AfterFunc(time.Second, at("a"))
	c.AfterFunc(time.Second, at("b")) // same deadline: creation order
	stopped := c.AfterFunc(2*time.Second, at("stopped"))
	c.AfterFunc(2*time.Second, func() {
		got = append(got, "nest@"+c.Now().Sub(epoch).String())
		c.AfterFunc(500*time.Millisecond, at("inner")) // due within this Advance
		c.AfterFunc(10*time.Second, at("late"))
	})
	if !stopped.Stop() {
		t.Fatal("Stop of a pending timer returned false")
	}
	c.Advance(3 * time.Second)
	want := []string{"a@1s", "b@1s", "nest@2s", "inner@2.5s", "c@3s"}
	if !slices.Equal(got, want) {
		t.Fatalf("fired %v, want %v", got, want)
	}
	if now := c.Now(); !now.Equal(epoch.Add(3 * time.Second)) {
		t.Fatalf("Now = %v, want epoch+3s", now)
	}
	if stopped.Stop() {
		t.Fatal("second Stop returned true")
	}
	if n := c.PendingTimers(); n != 1 {
		t.Fatalf("pending timers = %d, want 1 (late)", n)
	}
}

func TestFakeClockZeroDelayFiresOnNextAdvance(t *testing.T) {
	c := NewFakeClock(epoch)
	fired := false
	c.AfterFunc(0, func() { fired = true })
	if fired {
		t.Fatal("fired inside AfterFunc")
	}
	c.Advance(0)
	if !fired {
		t.Fatal("did not fire on Advance(0)")
	}
}

func TestFakeClockWaitForTimers(t *testing.T) {
	c := NewFakeClock(epoch)
	done := make(chan error, 1)
	go func() { done <- c.WaitForTimers(context.Background(), 2) }()
	c.AfterFunc(time.Second, func() {})
	c.AfterFunc(time.Second, func() {})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.WaitForTimers(ctx, 3); err == nil {
		t.Fatal("WaitForTimers with a done context returned nil")
	}
}
