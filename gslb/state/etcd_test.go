package state

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gslbd/gslbd/gslb/state/etcdtest"
)

// newPrefix returns a key prefix no other test uses, so that tests can
// share a cluster.
func newPrefix() string { return "/gslbd-test/" + rand.Text() + "/" }

// openEtcd opens a store, closed when the test ends; cfg.Logger defaults
// to the test's log.
func openEtcd(t *testing.T, cfg EtcdConfig) *Etcd {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	e, err := OpenEtcd(t.Context(), cfg)
	if err != nil {
		t.Fatalf("OpenEtcd: %v", err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func etcdHarness(c *etcdtest.Cluster) storeHarness {
	return storeHarness{
		open: func(t *testing.T, clock func() time.Time) (Store, func(*testing.T) Store) {
			cfg := EtcdConfig{Endpoints: c.Endpoints(), Prefix: newPrefix(), Clock: clock}
			reopen := func(t *testing.T) Store { return openEtcd(t, cfg) }
			return openEtcd(t, cfg), reopen
		},
		shortTTL: time.Second, // etcd's shortest lease
	}
}

func TestEtcdContract(t *testing.T) { runContract(t, etcdHarness(sharedCluster(t))) }

// waitSignal fails the test unless ch signals within d.
func waitSignal(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatalf("%s: watch closed", what)
		}
	case <-time.After(d):
		t.Fatalf("%s: no watch signal within %s", what, d)
	}
}

// eventually polls cond every 20 ms until it holds or d passes. For
// states that have no event to wait on (Healthy).
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(d)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%s: not within %s", what, d)
		}
	}
}

func TestEtcdTwoClientsOverrides(t *testing.T) {
	c := sharedCluster(t)
	cfg := EtcdConfig{Endpoints: c.Endpoints(), Prefix: newPrefix()}
	a, b := openEtcd(t, cfg), openEtcd(t, cfg)
	ctx := t.Context()

	wb := b.Watch(ctx)
	start := time.Now()
	o, err := a.PutOverride(ctx, Override{Target: Target{TargetSite, "fra"}, Kind: KindDrain, Ramp: time.Minute, Reason: "move", Author: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	waitSignal(t, wb, time.Second, "b after a's put")
	got, err := b.Overrides(ctx, time.Now())
	if err != nil || len(got) != 1 || got[0].ID != o.ID || got[0].Ramp != time.Minute || !got[0].Created.Equal(o.Created) {
		t.Fatalf("b.Overrides = %+v, %v; want [%+v]", got, err, o)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("put on a to Overrides on b took %s, want under 1s", d)
	}

	wa := a.Watch(ctx)
	if err := b.ClearOverride(ctx, o.ID, "bob", "done"); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, wa, time.Second, "a after b's clear")
	if got, _ := a.Overrides(ctx, time.Now()); len(got) != 0 {
		t.Fatalf("a.Overrides after b's clear = %+v, want none", got)
	}
	// One log, whoever wrote and whoever reads.
	for name, s := range map[string]*Etcd{"a": a, "b": b} {
		if got, want := auditSummary(t, s), []string{"override.set site/fra by alice", "override.clear site/fra by bob"}; !slices.Equal(got, want) {
			t.Errorf("%s's audit = %q, want %q", name, got, want)
		}
	}
}

func TestEtcdTwoClientsVantages(t *testing.T) {
	c := sharedCluster(t)
	cfg := EtcdConfig{Endpoints: c.Endpoints(), Prefix: newPrefix()}
	a, b := openEtcd(t, cfg), openEtcd(t, cfg)
	ctx := t.Context()
	const ttl = time.Second
	report := func(name string, up bool) VantageReport {
		return VantageReport{Vantage: name, Published: time.Now(),
			Endpoints: map[string]EndpointView{"web-" + name: {Up: up, Reason: "probe"}}}
	}

	wb := b.Watch(ctx)
	published := time.Now()
	if err := a.PublishHealth(ctx, report("lon-1", true), ttl); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, wb, time.Second, "b after a's publish")
	if err := a.PublishHealth(ctx, report("fra-1", false), ttl); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Second, "b sees both reports", func() bool {
		got, _ := b.Vantages(ctx)
		return len(got) == 2 && got[0].Vantage == "fra-1" && !got[0].Endpoints["web-fra-1"].Up && got[1].Endpoints["web-lon-1"].Up
	})

	// fra-1 keeps publishing, lon-1 stops: only lon-1's report lapses.
	republish := time.NewTicker(ttl / 4)
	defer republish.Stop()
	deadline := time.After(ttl + 5*time.Second)
	for lapsed := false; !lapsed; {
		select {
		case <-republish.C:
			if err := a.PublishHealth(ctx, report("fra-1", true), ttl); err != nil {
				t.Fatal(err)
			}
		case <-wb:
			got, _ := b.Vantages(ctx)
			if lapsed = len(got) == 1; lapsed && got[0].Vantage != "fra-1" {
				t.Fatalf("b.Vantages = %+v, want only the republished fra-1", got)
			}
			if lapsed && time.Since(published) < ttl {
				t.Fatalf("lon-1 lapsed after %s, before its ttl %s", time.Since(published), ttl)
			}
		case <-deadline:
			got, _ := b.Vantages(ctx)
			t.Fatalf("lon-1 did not lapse; b.Vantages = %+v", got)
		}
	}
	if got, _ := b.Vantages(ctx); len(got) != 1 || !got[0].Endpoints["web-fra-1"].Up {
		t.Fatalf("b.Vantages = %+v, want fra-1's latest report (up)", got)
	}

	// a dies (Close does not withdraw its report): fra-1 lapses too.
	died := time.Now()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, wb, ttl+5*time.Second, "b after a died")
	if got, _ := b.Vantages(ctx); len(got) != 0 {
		t.Fatalf("b.Vantages = %+v after a died, want none", got)
	}
	if d := time.Since(died); d > ttl+2*time.Second {
		t.Errorf("dead a's report lapsed after %s, want about its ttl %s", d, ttl)
	}
}

func TestEtcdOneMemberDown(t *testing.T) {
	c := etcdtest.StartCluster(t, 3)
	cfg := EtcdConfig{Endpoints: c.Endpoints(), Prefix: newPrefix()}
	a, b := openEtcd(t, cfg), openEtcd(t, cfg)
	ctx := t.Context()
	before := mustPut(t, a, Override{Target: Target{TargetSite, "fra"}, Kind: KindDown, Reason: "r", Author: "alice"})

	// The leader, the worst member to lose: writes wait for an election.
	down := c.Leader()
	if err := c.Stop(down); err != nil {
		t.Fatal(err)
	}
	checkWorks := func(t *testing.T) {
		t.Helper()
		wb := b.Watch(ctx)
		o := mustPut(t, a, Override{Target: Target{TargetPool, "web"}, Kind: KindUp, Reason: "r", Author: "alice"})
		waitSignal(t, wb, 2*time.Second, "b after a's put")
		got, err := b.Overrides(ctx, time.Now())
		if err != nil || !slices.Equal(ids(got), []string{before.ID, o.ID}) {
			t.Fatalf("b.Overrides = %v, %v; want %v", ids(got), err, []string{before.ID, o.ID})
		}
		if err := b.ClearOverride(ctx, o.ID, "bob", "r"); err != nil {
			t.Fatal(err)
		}
		if err := b.PublishHealth(ctx, VantageReport{Vantage: "b", Published: time.Now()}, time.Minute); err != nil {
			t.Fatal(err)
		}
		if _, err := a.ExpireDue(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := a.Audit(ctx, 0, 100); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "both healthy", func() bool { return a.Healthy() && b.Healthy() })
	}
	checkWorks(t)

	// The member rejoins and catches up; losing another is fine too.
	if err := c.Restart(down); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop((down + 1) % 3); err != nil {
		t.Fatal(err)
	}
	checkWorks(t)
}

func TestEtcdQuorumLost(t *testing.T) {
	c := etcdtest.StartCluster(t, 3)
	const reqTimeout = time.Second
	cfg := EtcdConfig{Endpoints: c.Endpoints(), Prefix: newPrefix(), RequestTimeout: reqTimeout}
	s := openEtcd(t, cfg)
	ctx := t.Context()
	o := mustPut(t, s, Override{Target: Target{TargetSite, "fra"}, Kind: KindDown, Reason: "r", Author: "alice"})
	if err := s.PublishHealth(ctx, VantageReport{Vantage: "lon-1", Published: time.Now()}, time.Minute); err != nil {
		t.Fatal(err)
	}

	for _, i := range []int{0, 1} {
		if err := c.Stop(i); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	_, err := s.PutOverride(ctx, Override{Target: Target{TargetPool, "web"}, Kind: KindUp, Reason: "r", Author: "alice"})
	took := time.Since(start)
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "no quorum") || !strings.Contains(err.Error(), "within 1s") {
		t.Fatalf("PutOverride without quorum: err = %v; want ErrUnavailable saying no quorum within 1s", err)
	}
	if took > reqTimeout+500*time.Millisecond {
		t.Errorf("PutOverride without quorum failed after %s, want about RequestTimeout %s", took, reqTimeout)
	}
	t.Logf("without quorum: %v (after %s)", err, took.Round(time.Millisecond))

	// Reads keep serving the last state seen.
	if got, err := s.Overrides(ctx, time.Now()); err != nil || !slices.Equal(ids(got), []string{o.ID}) {
		t.Errorf("Overrides without quorum = %v, %v; want the last known [%s]", ids(got), err, o.ID)
	}
	if got, err := s.Vantages(ctx); err != nil || len(got) != 1 {
		t.Errorf("Vantages without quorum = %+v, %v; want the last known lon-1", got, err)
	}
	eventually(t, 5*time.Second, "Healthy false", func() bool { return !s.Healthy() })
	if err := s.ClearOverride(ctx, o.ID, "bob", "r"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("ClearOverride without quorum: err = %v, want ErrUnavailable", err)
	}
	if _, err := s.Audit(ctx, 0, 10); !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "did not answer") {
		t.Errorf("Audit without quorum: err = %v, want ErrUnavailable (did not answer)", err)
	}
	if _, err := OpenEtcd(ctx, EtcdConfig{Endpoints: c.Endpoints(), Prefix: cfg.Prefix, RequestTimeout: reqTimeout}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("OpenEtcd without quorum: err = %v, want ErrUnavailable", err)
	}

	// Quorum back: the store reloads and takes writes again.
	if err := c.Restart(1); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "Healthy again", s.Healthy)
	mustPut(t, s, Override{Target: Target{TargetPool, "web"}, Kind: KindUp, Reason: "r", Author: "alice"})
}

func TestEtcdConcurrentExpire(t *testing.T) {
	c := sharedCluster(t)
	clk := &fakeClock{now: t0}
	cfg := EtcdConfig{Endpoints: c.Endpoints(), Prefix: newPrefix(), Clock: clk.Now}
	a, b := openEtcd(t, cfg), openEtcd(t, cfg)
	ctx := t.Context()
	// More than one transaction's worth, so batches are exercised too.
	const nExpire, nKeep = maxExpirePerTxn + 20, 5
	expiring := map[string]bool{}
	var keep []string
	for i := range nExpire + nKeep {
		o := Override{Target: Target{TargetEndpoint, fmt.Sprintf("e%03d", i)}, Kind: KindDown, Reason: "r", Author: "a"}
		if i < nExpire {
			o.Expires = t0.Add(time.Hour)
		}
		clk.Advance(time.Millisecond) // Created orders the list
		o = mustPut(t, []*Etcd{a, b}[i%2], o)
		if i < nExpire {
			expiring[o.ID] = true
		} else {
			keep = append(keep, o.ID)
		}
	}
	clk.Advance(2 * time.Hour)

	var wg sync.WaitGroup
	counts := make([]int, 4)
	errs := make([]error, 4)
	for i, s := range []*Etcd{a, b, a, b} {
		wg.Go(func() { counts[i], errs[i] = s.ExpireDue(ctx) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if sum := counts[0] + counts[1] + counts[2] + counts[3]; sum != nExpire {
		t.Errorf("ExpireDue counts %v sum to %d, want %d", counts, sum, nExpire)
	}
	es, err := a.Audit(ctx, nExpire+nKeep, 1000)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range es {
		var o Override
		if e.Action != ActionExpire || e.Author != SystemAuthor || json.Unmarshal([]byte(e.Detail), &o) != nil {
			t.Fatalf("unexpected audit entry %+v", e)
		}
		seen[o.ID]++
	}
	for id := range expiring {
		if seen[id] != 1 {
			t.Errorf("override %s: audited as expired %d times, want once", id, seen[id])
		}
	}
	if len(es) != nExpire {
		t.Errorf("%d expire entries, want %d", len(es), nExpire)
	}
	for name, s := range map[string]*Etcd{"a": a, "b": b} {
		if got, _ := s.Overrides(ctx, clk.Now()); !slices.Equal(ids(got), keep) {
			t.Errorf("%s.Overrides = %v, want %v", name, ids(got), keep)
		}
	}
}

func TestEtcdAuditSeqConcurrent(t *testing.T) {
	c := sharedCluster(t)
	cfg := EtcdConfig{Endpoints: c.Endpoints(), Prefix: newPrefix()}
	a, b := openEtcd(t, cfg), openEtcd(t, cfg)
	ctx := t.Context()
	const writers, puts = 3, 8 // per client
	same := Target{TargetSite, "contended"}
	var wg sync.WaitGroup
	errc := make(chan error, 2*writers*puts)
	for ci, s := range []*Etcd{a, b} {
		for w := range writers {
			wg.Go(func() {
				for p := range puts {
					// Half the puts fight over one target: replacement
					// (clear + set) must stay atomic under contention.
					tgt := Target{TargetEndpoint, fmt.Sprintf("c%d-w%d-p%d", ci, w, p)}
					if p%2 == 1 {
						tgt = same
					}
					if _, err := s.PutOverride(ctx, Override{Target: tgt, Kind: KindDown, Reason: "r", Author: "x"}); err != nil {
						errc <- err
					}
				}
			})
		}
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}

	total := 2 * writers * puts
	contended := total / 2
	es, err := b.Audit(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if want := total + contended - 1; len(es) != want {
		t.Fatalf("%d audit entries, want %d (%d sets, %d replacements)", len(es), want, total, contended-1)
	}
	current := checkReplaceChain(t, es, same)
	got, _ := a.Overrides(ctx, time.Now())
	if n := len(got); n != total-contended+1 {
		t.Errorf("%d overrides, want %d", n, total-contended+1)
	}
	if i := slices.IndexFunc(got, func(o Override) bool { return o.Target == same }); i < 0 || got[i].ID != current {
		t.Errorf("contended target holds %+v, want the last set %s", got, current)
	}
}

// checkReplaceChain checks es, the whole audit log: Seqs 1, 2, 3...
// without gaps, and on target tgt every set follows a clear of the
// override before it (none for the first), every clear removes the
// override of the last set. It returns the ID of the last set.
func checkReplaceChain(t *testing.T, es []AuditEntry, tgt Target) (current string) {
	t.Helper()
	for i, e := range es {
		if e.Seq != uint64(i+1) {
			t.Fatalf("entry %d has Seq %d, want %d: gaps or disorder", i, e.Seq, i+1)
		}
		if e.Target != tgt.String() {
			continue
		}
		var o Override
		if err := json.Unmarshal([]byte(e.Detail), &o); err != nil {
			t.Fatal(err)
		}
		switch e.Action {
		case ActionClear:
			if o.ID != current {
				t.Fatalf("seq %d clears %s, but %s was the current override", e.Seq, o.ID, current)
			}
			current = ""
		case ActionSet:
			if current != "" {
				t.Fatalf("seq %d sets %s over %s without clearing it", e.Seq, o.ID, current)
			}
			current = o.ID
		}
	}
	return current
}

func TestOpenEtcdErrors(t *testing.T) {
	if _, err := OpenEtcd(t.Context(), EtcdConfig{}); err == nil || !strings.Contains(err.Error(), "endpoints") {
		t.Errorf("no endpoints: err = %v, want one naming endpoints", err)
	}
	if _, err := OpenEtcd(t.Context(), EtcdConfig{Endpoints: []string{"127.0.0.1:1"}, RequestTimeout: -time.Second}); err == nil {
		t.Error("negative request timeout accepted")
	}

	// A port nobody listens on: taken and released, it refuses at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	start := time.Now()
	_, err = OpenEtcd(t.Context(), EtcdConfig{Endpoints: []string{dead}, RequestTimeout: 300 * time.Millisecond})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), dead) {
		t.Errorf("unreachable etcd: err = %v, want ErrUnavailable naming %s", err, dead)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("unreachable etcd: failed after %s, want about the request timeout", took)
	}

	e := openEtcd(t, EtcdConfig{Endpoints: sharedCluster(t).Endpoints(), Prefix: "/no-slash"})
	if e.Prefix() != "/no-slash/" {
		t.Errorf("Prefix() = %q, want /no-slash/", e.Prefix())
	}
}

func TestEtcdHealthy(t *testing.T) {
	c := etcdtest.StartCluster(t, 1)
	// Progress requested every 150 ms; unhealthy after 450 ms unanswered.
	s := openEtcd(t, EtcdConfig{Endpoints: c.Endpoints(), Prefix: newPrefix(), RequestTimeout: 300 * time.Millisecond})
	if !s.Healthy() {
		t.Fatal("not healthy right after OpenEtcd")
	}
	// Idle, the store stays healthy: progress answers keep it in touch.
	idle := time.After(time.Second)
	for tick := time.NewTicker(20 * time.Millisecond); ; {
		select {
		case <-tick.C:
			if !s.Healthy() {
				t.Fatal("idle store turned unhealthy")
			}
			continue
		case <-idle:
			tick.Stop()
		}
		break
	}

	// With every endpoint gone the watch goes quiet (the client keeps
	// reconnecting, nothing fails): staleness is what notices.
	if err := c.Stop(0); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "unhealthy with etcd gone", func() bool { return !s.Healthy() })
	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "healthy again", s.Healthy)
	mustPut(t, s, validOverride())
}
