package state

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gslbd/gslbd/gslb/state/etcdtest"
)

// A gslbd started while etcd has no quorum serves (its store refuses with
// ErrUnavailable, validation errors stay 400s) and picks the store up once
// quorum is back.
func TestOpenRetryingWithoutQuorum(t *testing.T) {
	c := etcdtest.StartCluster(t, 3)
	for _, i := range []int{0, 1} {
		if err := c.Stop(i); err != nil {
			t.Fatal(err)
		}
	}
	open := func(ctx context.Context) (Store, error) {
		return OpenEtcd(ctx, EtcdConfig{Endpoints: c.Endpoints(), Prefix: "/retry/", RequestTimeout: 500 * time.Millisecond, DialTimeout: 500 * time.Millisecond})
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	s, err := OpenRetrying(ctx, open, 200*time.Millisecond, testLogger(t))
	if err != nil {
		t.Fatalf("OpenRetrying without quorum: %v; want a store that retries", err)
	}
	defer s.Close()
	r, ok := s.(*Retrying)
	if !ok {
		t.Fatalf("got %T, want *Retrying", s)
	}
	w := s.Watch(t.Context())
	ov := Override{Target: Target{Type: TargetSite, Name: "lon"}, Kind: KindDown, Reason: "r", Author: "a"}
	if _, err := s.PutOverride(t.Context(), ov); !errors.Is(err, ErrUnavailable) {
		t.Errorf("put before the store opened: %v, want ErrUnavailable", err)
	}
	if _, err := s.PutOverride(t.Context(), Override{Target: ov.Target, Kind: "sideways", Reason: "r", Author: "a"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("invalid put before the store opened: %v, want ErrInvalid (a 400, not a 503)", err)
	}
	if _, err := s.Overrides(t.Context(), time.Now()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("overrides before the store opened: %v", err)
	}
	if r.Healthy() {
		t.Error("healthy before the store opened")
	}
	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w:
	case <-time.After(15 * time.Second):
		t.Fatal("no watch signal within 15s of quorum coming back")
	}
	if _, err := s.PutOverride(t.Context(), ov); err != nil {
		t.Fatalf("put after the store opened: %v", err)
	}
	if ovs, err := s.Overrides(t.Context(), time.Now()); err != nil || len(ovs) != 1 {
		t.Errorf("overrides after the put: %v, %v", ovs, err)
	}
	// A bad configuration is an error at once, not a retry loop.
	_, err = OpenRetrying(ctx, func(ctx context.Context) (Store, error) {
		return OpenEtcd(ctx, EtcdConfig{})
	}, time.Second, nil)
	if err == nil || errors.Is(err, ErrUnavailable) {
		t.Errorf("open without endpoints: %v, want a plain error", err)
	}
}
