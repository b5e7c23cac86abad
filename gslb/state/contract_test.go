package state

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The Store contract: tests every implementation must pass, run by
// TestBoltContract and TestEtcdContract.

// storeHarness opens stores of one implementation.
type storeHarness struct {
	// open returns a new, empty store on clock, closed when the test
	// ends, and reopen, which opens another store on the same data (after
	// the first is closed, for an implementation that locks its data).
	open func(t *testing.T, clock func() time.Time) (s Store, reopen func(*testing.T) Store)
	// shortTTL is a short vantage report ttl the store honours (etcd's
	// leases have whole seconds).
	shortTTL time.Duration
}

// openEmpty opens a new, empty store on a fake clock at t0.
func (h storeHarness) openEmpty(t *testing.T) (Store, *fakeClock) {
	t.Helper()
	clk := &fakeClock{now: t0}
	s, _ := h.open(t, clk.Now)
	return s, clk
}

var contractTests = []struct {
	name string
	fn   func(*testing.T, storeHarness)
}{
	{"PutOverrideRejects", contractPutOverrideRejects},
	{"PutAssignsIDAndCreated", contractPutAssignsIDAndCreated},
	{"ReplacePerTarget", contractReplacePerTarget},
	{"ClearOverride", contractClearOverride},
	{"Expiry", contractExpiry},
	{"AuditPaging", contractAuditPaging},
	{"Watch", contractWatch},
	{"WatchClosed", contractWatchClosed},
	{"DurableAcrossRestart", contractDurableAcrossRestart},
	{"VantagesLapse", contractVantagesLapse},
}

func runContract(t *testing.T, h storeHarness) {
	for _, tc := range contractTests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

var boltHarness = storeHarness{
	open: func(t *testing.T, clock func() time.Time) (Store, func(*testing.T) Store) {
		path := filepath.Join(t.TempDir(), "state.db")
		reopen := func(t *testing.T) Store { return openBoltAt(t, path, clock) }
		return openBoltAt(t, path, clock), reopen
	},
	shortTTL: 200 * time.Millisecond,
}

func TestBoltContract(t *testing.T) { runContract(t, boltHarness) }

func contractPutOverrideRejects(t *testing.T, h storeHarness) {
	tests := []struct {
		name      string
		mut       func(*Override)
		wantField string
	}{
		{"reason", func(o *Override) { o.Reason = "" }, "reason"},
		{"ramp", func(o *Override) { o.Ramp = time.Second }, "ramp"},
		{"expires", func(o *Override) { o.Expires = t0.Add(-time.Second) }, "expires"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := h.openEmpty(t)
			o := validOverride()
			tt.mut(&o)
			_, err := b.PutOverride(t.Context(), o)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.wantField {
				t.Fatalf("PutOverride err = %v, want FieldError on %q", err, tt.wantField)
			}
			if got, _ := b.Overrides(t.Context(), t0); len(got) != 0 {
				t.Errorf("rejected override stored: %v", got)
			}
			if got := auditSummary(t, b); len(got) != 0 {
				t.Errorf("rejected override audited: %v", got)
			}
		})
	}
}

func contractPutAssignsIDAndCreated(t *testing.T, h storeHarness) {
	b, clk := h.openEmpty(t)
	clk.Advance(time.Minute)
	in := validOverride()
	in.ID, in.Created = "caller-id", t0.Add(-time.Hour) // ignored
	a := mustPut(t, b, in)
	c := mustPut(t, b, Override{Target: Target{TargetPool, "web"}, Kind: KindUp, Reason: "r", Author: "a"})
	if a.ID == "caller-id" || a.ID == "" || a.ID == c.ID {
		t.Errorf("IDs not assigned uniquely: %q %q", a.ID, c.ID)
	}
	if !a.Created.Equal(t0.Add(time.Minute)) {
		t.Errorf("Created = %v, want the clock's %v", a.Created, t0.Add(time.Minute))
	}
}

func contractReplacePerTarget(t *testing.T, h storeHarness) {
	b, clk := h.openEmpty(t)
	fra := Target{TargetSite, "fra"}
	a := mustPut(t, b, Override{Target: fra, Kind: KindDown, Reason: "r1", Author: "alice"})
	clk.Advance(time.Second)
	bb := mustPut(t, b, Override{Target: fra, Kind: KindDrain, Ramp: time.Minute, Reason: "r2", Author: "bob"})
	clk.Advance(time.Second)
	c := mustPut(t, b, Override{Target: Target{TargetEndpoint, "fra"}, Kind: KindUp, Reason: "r3", Author: "carol"})

	got, err := b.Overrides(t.Context(), clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{bb.ID, c.ID}; !slices.Equal(ids(got), want) {
		t.Errorf("Overrides = %v, want %v (b replaced a; same name, other type kept)", ids(got), want)
	}
	want := []string{
		"override.set site/fra by alice",
		"override.clear site/fra by bob",
		"override.set site/fra by bob",
		"override.set endpoint/fra by carol",
	}
	if got := auditSummary(t, b); !slices.Equal(got, want) {
		t.Errorf("audit = %q, want %q", got, want)
	}
	es, _ := b.Audit(t.Context(), 1, 1)
	if len(es) != 1 || !strings.Contains(es[0].Reason, "replaced by "+bb.ID) || !strings.Contains(es[0].Detail, a.ID) {
		t.Errorf("replacement audit entry = %+v, want the old override replaced by %s", es, bb.ID)
	}
}

func contractClearOverride(t *testing.T, h storeHarness) {
	tests := []struct {
		name           string
		id             string // "" = the stored override's ID
		author, reason string
		wantErr        error
		wantField      string
	}{
		{name: "ok", author: "bob", reason: "fixed"},
		{name: "unknown id", id: "nope", author: "bob", reason: "fixed", wantErr: ErrNotFound},
		{name: "no author", reason: "fixed", wantErr: ErrInvalid, wantField: "author"},
		{name: "no reason", author: "bob", wantErr: ErrInvalid, wantField: "reason"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, _ := h.openEmpty(t)
			o := mustPut(t, b, validOverride())
			id := tt.id
			if id == "" {
				id = o.ID
			}
			err := b.ClearOverride(t.Context(), id, tt.author, tt.reason)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ClearOverride err = %v, want %v", err, tt.wantErr)
			}
			var fe *FieldError
			if tt.wantField != "" && (!errors.As(err, &fe) || fe.Field != tt.wantField) {
				t.Fatalf("ClearOverride err = %v, want field %q", err, tt.wantField)
			}
			got, _ := b.Overrides(t.Context(), t0)
			audit := auditSummary(t, b)
			if tt.wantErr != nil {
				if len(got) != 1 || len(audit) != 1 {
					t.Errorf("failed clear changed state: overrides %v, audit %v", ids(got), audit)
				}
				return
			}
			if len(got) != 0 {
				t.Errorf("override still there: %v", ids(got))
			}
			es, _ := b.Audit(t.Context(), 1, 10)
			if len(es) != 1 || es[0].Action != ActionClear || es[0].Author != "bob" || es[0].Reason != "fixed" || es[0].Target != "site/fra" {
				t.Errorf("clear audit = %+v", es)
			}
			if err := b.ClearOverride(t.Context(), id, "bob", "again"); !errors.Is(err, ErrNotFound) {
				t.Errorf("second clear err = %v, want ErrNotFound", err)
			}
		})
	}
}

func contractExpiry(t *testing.T, h storeHarness) {
	b, clk := h.openEmpty(t)
	exp := mustPut(t, b, Override{Target: Target{TargetSite, "fra"}, Kind: KindDown, Reason: "r", Author: "a", Expires: t0.Add(time.Hour)})
	clk.Advance(time.Nanosecond) // Created orders the list
	keep := mustPut(t, b, Override{Target: Target{TargetSite, "ams"}, Kind: KindDown, Reason: "r", Author: "a"})

	steps := []struct {
		advance     time.Duration
		wantExpired int
		wantActive  []string
	}{
		{30 * time.Minute, 0, []string{exp.ID, keep.ID}},
		{30*time.Minute - 2*time.Nanosecond, 0, []string{exp.ID, keep.ID}},
		{time.Nanosecond, 1, []string{keep.ID}},
		{time.Hour, 0, []string{keep.ID}},
	}
	for i, s := range steps {
		clk.Advance(s.advance)
		// Overrides hides expired ones even before ExpireDue sweeps them.
		got, err := b.Overrides(t.Context(), clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ids(got), s.wantActive) {
			t.Errorf("step %d: Overrides = %v, want %v", i, ids(got), s.wantActive)
		}
		n, err := b.ExpireDue(t.Context())
		if err != nil || n != s.wantExpired {
			t.Errorf("step %d: ExpireDue = %d, %v; want %d", i, n, err, s.wantExpired)
		}
	}
	es, _ := b.Audit(t.Context(), 2, 10)
	if len(es) != 1 || es[0].Action != ActionExpire || es[0].Author != SystemAuthor || !strings.Contains(es[0].Detail, exp.ID) {
		t.Errorf("expire audit = %+v", es)
	}
	// An expired override no longer blocks its target.
	if _, err := b.PutOverride(t.Context(), Override{Target: Target{TargetSite, "fra"}, Kind: KindUp, Reason: "r", Author: "a"}); err != nil {
		t.Fatal(err)
	}
}

func contractAuditPaging(t *testing.T, h storeHarness) {
	b, clk := h.openEmpty(t)
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		clk.Advance(time.Second)
		mustPut(t, b, Override{Target: Target{TargetSite, name}, Kind: KindDown, Reason: "r " + name, Author: "x"})
	}
	tests := []struct {
		since    uint64
		limit    int
		wantSeqs []uint64
	}{
		{0, 10, []uint64{1, 2, 3, 4, 5}},
		{0, 2, []uint64{1, 2}},
		{2, 2, []uint64{3, 4}},
		{4, 2, []uint64{5}},
		{5, 2, nil},
		{1 << 63, 2, nil},
		{^uint64(0), 2, nil},
	}
	for _, tt := range tests {
		es, err := b.Audit(t.Context(), tt.since, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []uint64
		for i, e := range es {
			seqs = append(seqs, e.Seq)
			if want := t0.Add(time.Duration(e.Seq) * time.Second); !e.Time.Equal(want) || e.Reason != "r "+string(rune('a'+e.Seq-1)) {
				t.Errorf("entry %d = %+v, want time %v", i, e, want)
			}
		}
		if !slices.Equal(seqs, tt.wantSeqs) {
			t.Errorf("Audit(%d, %d) seqs = %v, want %v", tt.since, tt.limit, seqs, tt.wantSeqs)
		}
	}
	if _, err := b.Audit(t.Context(), 0, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("Audit limit 0 err = %v, want ErrInvalid", err)
	}
}

// pending reports whether ch holds a signal, without blocking: notify runs
// before the changing method returns, so no waiting is needed.
func pending(ch <-chan struct{}) bool {
	select {
	case _, ok := <-ch:
		return ok
	default:
		return false
	}
}

func contractWatch(t *testing.T, h storeHarness) {
	tests := []struct {
		name   string
		change func(t *testing.T, b Store, clk *fakeClock, o Override)
		want   bool
	}{
		{"put", func(t *testing.T, b Store, _ *fakeClock, _ Override) {
			mustPut(t, b, Override{Target: Target{TargetPool, "p"}, Kind: KindUp, Reason: "r", Author: "a"})
		}, true},
		{"clear", func(t *testing.T, b Store, _ *fakeClock, o Override) {
			if err := b.ClearOverride(t.Context(), o.ID, "a", "r"); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"expire", func(t *testing.T, b Store, clk *fakeClock, _ Override) {
			clk.Advance(2 * time.Hour)
			if n, err := b.ExpireDue(t.Context()); n != 1 || err != nil {
				t.Fatalf("ExpireDue = %d, %v", n, err)
			}
		}, true},
		{"expire nothing due", func(t *testing.T, b Store, _ *fakeClock, _ Override) {
			if n, err := b.ExpireDue(t.Context()); n != 0 || err != nil {
				t.Fatalf("ExpireDue = %d, %v", n, err)
			}
		}, false},
		{"failed put", func(t *testing.T, b Store, _ *fakeClock, _ Override) {
			if _, err := b.PutOverride(t.Context(), Override{}); err == nil {
				t.Fatal("empty override accepted")
			}
		}, false},
		{"failed clear", func(t *testing.T, b Store, _ *fakeClock, _ Override) {
			if err := b.ClearOverride(t.Context(), "nope", "a", "r"); err == nil {
				t.Fatal("unknown clear accepted")
			}
		}, false},
		{"two puts coalesce", func(t *testing.T, b Store, _ *fakeClock, _ Override) {
			mustPut(t, b, Override{Target: Target{TargetPool, "p"}, Kind: KindUp, Reason: "r", Author: "a"})
			mustPut(t, b, Override{Target: Target{TargetPool, "q"}, Kind: KindUp, Reason: "r", Author: "a"})
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, clk := h.openEmpty(t)
			o := mustPut(t, b, Override{Target: Target{TargetSite, "fra"}, Kind: KindDown, Reason: "r", Author: "a", Expires: t0.Add(time.Hour)})
			ch := b.Watch(t.Context()) // after the setup put: starts empty
			tt.change(t, b, clk, o)
			if got := pending(ch); got != tt.want {
				t.Fatalf("signal after change = %v, want %v", got, tt.want)
			}
			if pending(ch) {
				t.Fatal("second signal pending: not coalesced")
			}
		})
	}
}

func contractWatchClosed(t *testing.T, h storeHarness) {
	b, _ := h.openEmpty(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancelled := b.Watch(ctx)
	open := b.Watch(t.Context())
	cancel()
	// The channel closes from context.AfterFunc; wait on it, with a guard.
	for name, ch := range map[string]<-chan struct{}{"cancelled": cancelled} {
		select {
		case _, ok := <-ch:
			if ok {
				t.Fatalf("%s watch: got a signal, want close", name)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s watch not closed", name)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-open; ok {
		t.Fatal("watch open after Close")
	}
	if _, ok := <-b.Watch(t.Context()); ok {
		t.Fatal("Watch after Close returned an open channel")
	}
}

func contractDurableAcrossRestart(t *testing.T, h storeHarness) {
	clk := &fakeClock{now: t0}
	b, reopen := h.open(t, clk.Now)
	a := mustPut(t, b, Override{Target: Target{TargetSite, "fra"}, Kind: KindDrain, Ramp: time.Hour, Reason: "move", Author: "alice", Expires: t0.Add(24 * time.Hour)})
	c := mustPut(t, b, Override{Target: Target{TargetEndpoint, "web1"}, Kind: KindMaintenance, Reason: "disk", Author: "bob"})
	if err := b.ClearOverride(t.Context(), c.ID, "bob", "done"); err != nil {
		t.Fatal(err)
	}
	wantAudit := auditSummary(t, b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b2 := reopen(t)
	got, err := b2.Overrides(t.Context(), clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != a.ID || got[0].Ramp != a.Ramp || !got[0].Created.Equal(a.Created) ||
		!got[0].Expires.Equal(a.Expires) || got[0].Target != a.Target || got[0].Kind != a.Kind || got[0].Reason != a.Reason || got[0].Author != a.Author {
		t.Errorf("after restart overrides = %+v, want [%+v]", got, a)
	}
	if gotAudit := auditSummary(t, b2); !slices.Equal(gotAudit, wantAudit) || len(wantAudit) != 3 {
		t.Errorf("after restart audit = %q, want %q", gotAudit, wantAudit)
	}
	// Sequence numbers continue, never reuse.
	mustPut(t, b2, Override{Target: Target{TargetPool, "p"}, Kind: KindUp, Reason: "r", Author: "a"})
	if es, _ := b2.Audit(t.Context(), 3, 10); len(es) != 1 || es[0].Seq != 4 {
		t.Errorf("audit after restart = %+v, want seq 4", es)
	}
}

func contractVantagesLapse(t *testing.T, h storeHarness) {
	// Lapses run on real time (bbolt's timer, etcd's leases).
	b, _ := h.open(t, time.Now)
	ctx := t.Context()
	w := b.Watch(ctx)
	if err := b.PublishHealth(ctx, VantageReport{Vantage: "", Published: time.Now()}, time.Second); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty vantage: got %v, want ErrInvalid", err)
	}
	r := VantageReport{Vantage: "lon-1", Published: time.Now(), Endpoints: map[string]EndpointView{"web-lon-1": {Up: true, Reason: "ok"}},
		Anycast: map[string]string{"192.0.2.0/24": "announced"}}
	published := time.Now()
	if err := b.PublishHealth(ctx, r, h.shortTTL); err != nil {
		t.Fatal(err)
	}
	if err := b.PublishHealth(ctx, VantageReport{Vantage: "fra-1", Published: time.Now()}, time.Hour); err != nil {
		t.Fatal(err)
	}
	<-w
	got, err := b.Vantages(ctx)
	if err != nil || len(got) != 2 || got[0].Vantage != "fra-1" || !got[1].Endpoints["web-lon-1"].Up ||
		got[1].Anycast["192.0.2.0/24"] != "announced" {
		t.Fatalf("Vantages = %+v, %v; want fra-1 then lon-1 (web-lon-1 up, 192.0.2.0/24 announced)", got, err)
	}
	// Reports are copies: changing one changes nothing stored.
	got[1].Endpoints["web-lon-1"] = EndpointView{}
	got[1].Anycast["192.0.2.0/24"] = "withdrawn"
	r.Anycast["192.0.2.0/24"] = "withdrawn"
	if again, _ := b.Vantages(ctx); !again[1].Endpoints["web-lon-1"].Up || again[1].Anycast["192.0.2.0/24"] != "announced" {
		t.Fatalf("stored report changed through a copy: %+v", again[1])
	}
	select {
	case <-w: // the lapse of lon-1's report is a change
		if d := time.Since(published); d < h.shortTTL {
			t.Errorf("lon-1's report lapsed after %s, before its ttl %s", d, h.shortTTL)
		}
	case <-time.After(h.shortTTL + 5*time.Second):
		t.Fatal("no watch signal when lon-1's report lapsed")
	}
	got, _ = b.Vantages(ctx)
	if len(got) != 1 || got[0].Vantage != "fra-1" {
		t.Fatalf("after lapse Vantages = %+v; want only fra-1", got)
	}
}
