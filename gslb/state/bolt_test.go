package state

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock safe for concurrent use.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func openTest(t *testing.T) (*Bolt, *fakeClock, string) {
	t.Helper()
	clk := &fakeClock{now: t0}
	path := filepath.Join(t.TempDir(), "state.db")
	b, err := OpenBolt(path, clk.Now)
	if err != nil {
		t.Fatalf("OpenBolt: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b, clk, path
}

func mustPut(t *testing.T, b *Bolt, o Override) Override {
	t.Helper()
	got, err := b.PutOverride(t.Context(), o)
	if err != nil {
		t.Fatalf("PutOverride: %v", err)
	}
	return got
}

func ids(os []Override) []string {
	var out []string
	for _, o := range os {
		out = append(out, o.ID)
	}
	return out
}

func auditSummary(t *testing.T, b *Bolt) []string {
	t.Helper()
	es, err := b.Audit(t.Context(), 0, 1000)
	if err != nil {
		t.Fatalf("Audit: %v", err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Action+" "+e.Target+" by "+e.Author)
	}
	return out
}

func TestPutOverrideRejects(t *testing.T) {
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
			b, _, _ := openTest(t)
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

func TestPutAssignsIDAndCreated(t *testing.T) {
	b, clk, _ := openTest(t)
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

func TestReplacePerTarget(t *testing.T) {
	b, clk, _ := openTest(t)
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

func TestClearOverride(t *testing.T) {
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
			b, _, _ := openTest(t)
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

func TestExpiry(t *testing.T) {
	b, clk, _ := openTest(t)
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

func TestAuditPaging(t *testing.T) {
	b, clk, _ := openTest(t)
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

func TestWatch(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, b *Bolt, clk *fakeClock, o Override)
		want   bool
	}{
		{"put", func(t *testing.T, b *Bolt, _ *fakeClock, _ Override) {
			mustPut(t, b, Override{Target: Target{TargetPool, "p"}, Kind: KindUp, Reason: "r", Author: "a"})
		}, true},
		{"clear", func(t *testing.T, b *Bolt, _ *fakeClock, o Override) {
			if err := b.ClearOverride(t.Context(), o.ID, "a", "r"); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"expire", func(t *testing.T, b *Bolt, clk *fakeClock, _ Override) {
			clk.Advance(2 * time.Hour)
			if n, err := b.ExpireDue(t.Context()); n != 1 || err != nil {
				t.Fatalf("ExpireDue = %d, %v", n, err)
			}
		}, true},
		{"expire nothing due", func(t *testing.T, b *Bolt, _ *fakeClock, _ Override) {
			if n, err := b.ExpireDue(t.Context()); n != 0 || err != nil {
				t.Fatalf("ExpireDue = %d, %v", n, err)
			}
		}, false},
		{"failed put", func(t *testing.T, b *Bolt, _ *fakeClock, _ Override) {
			if _, err := b.PutOverride(t.Context(), Override{}); err == nil {
				t.Fatal("empty override accepted")
			}
		}, false},
		{"failed clear", func(t *testing.T, b *Bolt, _ *fakeClock, _ Override) {
			if err := b.ClearOverride(t.Context(), "nope", "a", "r"); err == nil {
				t.Fatal("unknown clear accepted")
			}
		}, false},
		{"two puts coalesce", func(t *testing.T, b *Bolt, _ *fakeClock, _ Override) {
			mustPut(t, b, Override{Target: Target{TargetPool, "p"}, Kind: KindUp, Reason: "r", Author: "a"})
			mustPut(t, b, Override{Target: Target{TargetPool, "q"}, Kind: KindUp, Reason: "r", Author: "a"})
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, clk, _ := openTest(t)
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

func TestWatchClosed(t *testing.T) {
	b, _, _ := openTest(t)
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

func TestDurableAcrossRestart(t *testing.T) {
	b, clk, path := openTest(t)
	a := mustPut(t, b, Override{Target: Target{TargetSite, "fra"}, Kind: KindDrain, Ramp: time.Hour, Reason: "move", Author: "alice", Expires: t0.Add(24 * time.Hour)})
	c := mustPut(t, b, Override{Target: Target{TargetEndpoint, "web1"}, Kind: KindMaintenance, Reason: "disk", Author: "bob"})
	if err := b.ClearOverride(t.Context(), c.ID, "bob", "done"); err != nil {
		t.Fatal(err)
	}
	wantAudit := auditSummary(t, b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b2, err := OpenBolt(path, clk.Now)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer b2.Close()
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

func TestOpenBoltFileMode(t *testing.T) {
	_, _, path := openTest(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("mode = %v, want 0600", perm)
	}
}

func TestOpenBoltLocked(t *testing.T) {
	_, _, path := openTest(t)
	// flock is per open file, so a second open in this process conflicts
	// like another process would; it gives up after lockTimeout.
	b2, err := OpenBolt(path, nil)
	if err == nil {
		b2.Close()
		t.Fatal("second open of a locked file succeeded")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path) {
		t.Errorf("err = %v, want ErrLocked naming %s", err, path)
	}
}

func TestOpenBoltCorrupt(t *testing.T) {
	tests := []struct {
		name    string
		content []byte
	}{
		{"text", []byte(strings.Repeat("this is not a database\n", 2000))},
		{"zeros", make([]byte, 64<<10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			if err := os.WriteFile(path, tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			b, err := OpenBolt(path, nil)
			if err == nil {
				b.Close()
				t.Fatal("corrupt file opened")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
				t.Errorf("err = %v, want ErrCorrupt naming %s", err, path)
			}
		})
	}
}

func TestBoltVantagesLapse(t *testing.T) {
	b, err := OpenBolt(filepath.Join(t.TempDir(), "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := t.Context()
	w := b.Watch(ctx)
	if err := b.PublishHealth(ctx, VantageReport{Vantage: "", Published: time.Now()}, time.Second); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty vantage: got %v, want ErrInvalid", err)
	}
	r := VantageReport{Vantage: "lon-1", Published: time.Now(), Endpoints: map[string]EndpointView{"web-lon-1": {Up: true, Reason: "ok"}}}
	if err := b.PublishHealth(ctx, r, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := b.PublishHealth(ctx, VantageReport{Vantage: "fra-1", Published: time.Now()}, time.Hour); err != nil {
		t.Fatal(err)
	}
	<-w
	got, err := b.Vantages(ctx)
	if err != nil || len(got) != 2 || got[0].Vantage != "fra-1" || !got[1].Endpoints["web-lon-1"].Up {
		t.Fatalf("Vantages = %+v, %v; want fra-1 then lon-1 (web-lon-1 up)", got, err)
	}
	select {
	case <-w: // the lapse of lon-1's report is a change
	case <-time.After(5 * time.Second):
		t.Fatal("no watch signal when lon-1's report lapsed")
	}
	got, _ = b.Vantages(ctx)
	if len(got) != 1 || got[0].Vantage != "fra-1" {
		t.Fatalf("after lapse Vantages = %+v; want only fra-1", got)
	}
}
