package dataplane

import (
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"
)

// fakeProgrammer records what the controller pushes.
type fakeProgrammer struct {
	mu       sync.Mutex
	services map[VIP]Service
	sets     int
	deletes  []VIP
	failSet  error
	pushed   chan Service // optional: every successful SetService

	counters    Counters
	countersErr error
	rtt         []RTTSample
	rttErr      error
}

func newFakeProgrammer() *fakeProgrammer {
	return &fakeProgrammer{services: make(map[VIP]Service)}
}

func (f *fakeProgrammer) SetService(s Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sets++
	if f.failSet != nil {
		return f.failSet
	}
	f.services[s.VIP] = s
	if f.pushed != nil {
		f.pushed <- s
	}
	return nil
}

func (f *fakeProgrammer) DeleteService(v VIP) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.services[v]; !ok {
		// Like a BPF map delete of a missing key.
		f.deletes = append(f.deletes, v)
		return nil
	}
	delete(f.services, v)
	f.deletes = append(f.deletes, v)
	return nil
}

func (f *fakeProgrammer) Counters() (Counters, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counters, f.countersErr
}

func (f *fakeProgrammer) RTT() ([]RTTSample, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.rtt
	f.rtt = nil
	return out, f.rttErr
}

func (f *fakeProgrammer) service(t *testing.T, v VIP) Service {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.services[v]
	if !ok {
		t.Fatalf("%s is not programmed; have %v", v, slices.Collect(maps.Keys(f.services)))
	}
	return s
}

func (f *fakeProgrammer) setCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sets
}

func (f *fakeProgrammer) setFail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failSet = err
}

// fakeHealth is a HealthSource the test sets by hand.
type fakeHealth struct {
	mu       sync.Mutex
	down     map[HealthTarget]string // reason
	unprobed map[HealthTarget]bool   // not probed yet (presumed up)
}

func (h *fakeHealth) Status(t HealthTarget) (HealthStatus, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.unprobed[t] {
		return HealthStatus{Up: true, Reason: "initial"}, true
	}
	if r, ok := h.down[t]; ok {
		return HealthStatus{Up: false, Reason: r, Probed: true}, true
	}
	return HealthStatus{Up: true, Reason: "ok", Probed: true}, true
}

func (h *fakeHealth) setProbed(t HealthTarget, probed bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.unprobed == nil {
		h.unprobed = make(map[HealthTarget]bool)
	}
	h.unprobed[t] = !probed
}

func (h *fakeHealth) set(t HealthTarget, up bool, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down == nil {
		h.down = make(map[HealthTarget]string)
	}
	if up {
		delete(h.down, t)
	} else {
		h.down[t] = reason
	}
}

var errBoom = errors.New("map update failed")
