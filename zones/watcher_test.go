package zones

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const waitTimeout = 10 * time.Second

func zoneText(serial uint32, extra string) string {
	return fmt.Sprintf("$TTL 300\n@ SOA ns1 hostmaster %d 7200 3600 1209600 300\n@ NS ns1\nns1 A 192.0.2.1\n%s", serial, extra)
}

// harness runs a Watcher over a temporary directory.
type harness struct {
	t       *testing.T
	dir     string
	w       *Watcher
	events  chan ReloadEvent
	initial []ReloadEvent // events of the initial load
	cancel  context.CancelFunc
	done    chan error
}

// newHarness writes files and creates the watcher (the initial load runs).
func newHarness(t *testing.T, files map[string]string, poll time.Duration) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), events: make(chan ReloadEvent, 1000)}
	for name, text := range files {
		h.write(name, text)
	}
	w, err := NewWatcher(WatcherConfig{
		Dir:      h.dir,
		Logger:   slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		Debounce: 10 * time.Millisecond,
		Poll:     poll,
		OnReload: func(ev ReloadEvent) { h.events <- ev },
	})
	if err != nil {
		t.Fatal(err)
	}
	h.w = w
	for len(h.events) > 0 { // the initial load's events
		h.initial = append(h.initial, <-h.events)
	}
	return h
}

// run starts Run and waits until it watches the directory.
func (h *harness) run() {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- h.w.Run(ctx) }()
	h.t.Cleanup(h.stop)
	select {
	case <-h.w.started:
	case err := <-h.done:
		h.t.Fatalf("Run returned early: %v", err)
	case <-time.After(waitTimeout):
		h.t.Fatal("Run did not start")
	}
}

// stop cancels Run and checks that it returns.
func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run = %v", err)
		}
	case <-time.After(waitTimeout):
		h.t.Error("Run did not return after cancel")
	}
}

// write replaces a file atomically, as editors and git do.
func (h *harness) write(name, text string) {
	h.t.Helper()
	path := filepath.Join(h.dir, filepath.FromSlash(name))
	must(h.t, os.MkdirAll(filepath.Dir(path), 0o755))
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	must(h.t, err)
	_, err = f.WriteString(text)
	must(h.t, err)
	must(h.t, f.Close())
	must(h.t, os.Rename(f.Name(), path))
}

// waitSet waits for a published Set that satisfies ok.
func (h *harness) waitSet(what string, ok func(*Set) bool) *Set {
	h.t.Helper()
	timeout := time.After(waitTimeout)
	for {
		select {
		case s := <-h.w.Updates():
			if ok(s) {
				return s
			}
		case <-timeout:
			h.t.Fatalf("timed out waiting for a Set with %s", what)
		}
	}
}

// waitEvent waits for a ReloadEvent that satisfies ok.
func (h *harness) waitEvent(what string, ok func(ReloadEvent) bool) ReloadEvent {
	h.t.Helper()
	timeout := time.After(waitTimeout)
	for {
		select {
		case ev := <-h.events:
			if ok(ev) {
				return ev
			}
		case <-timeout:
			h.t.Fatalf("timed out waiting for a reload event: %s", what)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func serialIs(origin string, serial uint32) func(*Set) bool {
	return func(s *Set) bool { z := s.Zones[origin]; return z != nil && z.Serial == serial }
}

func hasA(z *Zone, addr string) bool {
	for _, r := range z.Records {
		if a, ok := r.RR.(*dns.A); ok && a.A.String() == addr {
			return true
		}
	}
	return false
}

func TestWatcherEditKeepsUntouchedZones(t *testing.T) {
	h := newHarness(t, map[string]string{"a.example.zone": zoneText(1, ""), "b.example.zone": zoneText(1, "")}, 0)
	h.run()
	before := h.w.Current()
	b := before.Zones["b.example."]
	if b == nil || before.Zones["a.example."] == nil {
		t.Fatalf("initial zones: %v", before.Zones)
	}
	h.write("a.example.zone", zoneText(2, "www A 192.0.2.80\n"))
	s := h.waitSet("a.example. serial 2", serialIs("a.example.", 2))
	if s.Zones["b.example."] != b {
		t.Error("untouched zone b.example. was re-parsed (pointer changed)")
	}
	if !hasA(s.Zones["a.example."], "192.0.2.80") {
		t.Error("new record missing")
	}
	ev := h.waitEvent("a changed", func(ev ReloadEvent) bool { return ev.File == "a.example.zone" && ev.Serial == 2 })
	if !ev.Changed || ev.Err != nil || ev.SerialUnchanged || ev.Zone != "a.example." {
		t.Errorf("event = %+v", ev)
	}
	if before.Zones["a.example."].Serial != 1 {
		t.Error("the old Set was mutated")
	}
}

func TestWatcherBrokenFileKeepsServing(t *testing.T) {
	h := newHarness(t, map[string]string{"a.example.zone": zoneText(1, ""), "b.example.zone": zoneText(1, "")}, 0)
	h.run()
	old := h.w.Current().Zones["a.example."]
	h.write("a.example.zone", zoneText(2, "www A 192.0.2.80\nbad A 192.0.2.300\n"))
	ev := h.waitEvent("a rejected", func(ev ReloadEvent) bool { return ev.File == "a.example.zone" && ev.Err != nil })
	if !strings.Contains(ev.Err.Error(), `a.example.zone:6: bad A A: "192.0.2.300"`) {
		t.Errorf("Err = %v, want file:line", ev.Err)
	}
	var le *LoadError
	if !errors.As(ev.Err, &le) || ev.Changed || ev.Serial != 1 {
		t.Errorf("event = %+v", ev)
	}
	if got := h.w.Current().Zones["a.example."]; got != old {
		t.Errorf("serving %v, want the previous good version", got)
	}
	// A validation error (not a syntax error) behaves the same.
	h.write("a.example.zone", zoneText(3, "www A 192.0.2.80\nwww CNAME x.example.net.\n"))
	ev = h.waitEvent("a rejected again", func(ev ReloadEvent) bool {
		return ev.File == "a.example.zone" && ev.Err != nil && strings.Contains(ev.Err.Error(), "CNAME")
	})
	if !strings.Contains(ev.Err.Error(), "a.example.zone:6: www.a.example. has a CNAME and other data") {
		t.Errorf("Err = %v", ev.Err)
	}
	if got := h.w.Current().Zones["a.example."]; got != old {
		t.Errorf("serving %v, want the previous good version", got)
	}
	// Fixing the file serves the new version.
	h.write("a.example.zone", zoneText(4, ""))
	h.waitSet("a.example. serial 4", serialIs("a.example.", 4))
}

func TestWatcherIncludeEdit(t *testing.T) {
	h := newHarness(t, map[string]string{
		"c.example.zone": zoneText(1, "$INCLUDE inc/c.inc\n"),
		"d.example.zone": zoneText(1, ""),
		"inc/c.inc":      "www A 192.0.2.80\n",
	}, 0)
	h.run()
	old := h.w.Current()
	if z := old.Zones["c.example."]; z == nil || !hasA(z, "192.0.2.80") || !strings.Contains(strings.Join(z.Includes, ","), "inc/c.inc") {
		t.Fatalf("initial c.example.: %+v", z)
	}
	h.write("inc/c.inc", "www A 192.0.2.81\n")
	s := h.waitSet("the include's new record", func(s *Set) bool {
		z := s.Zones["c.example."]
		return z != nil && hasA(z, "192.0.2.81")
	})
	if s.Zones["d.example."] != old.Zones["d.example."] {
		t.Error("d.example. was re-parsed")
	}
	ev := h.waitEvent("c changed", func(ev ReloadEvent) bool { return ev.File == "c.example.zone" && ev.Changed })
	if !ev.SerialUnchanged {
		t.Errorf("event = %+v; the serial did not change", ev)
	}
}

func TestWatcherDelete(t *testing.T) {
	h := newHarness(t, map[string]string{"a.example.zone": zoneText(1, ""), "b.example.zone": zoneText(1, "")}, 0)
	h.run()
	b := h.w.Current().Zones["b.example."]
	must(t, os.Remove(filepath.Join(h.dir, "a.example.zone")))
	s := h.waitSet("a.example. removed", func(s *Set) bool { return s.Zones["a.example."] == nil })
	if s.Zones["b.example."] != b {
		t.Error("b.example. changed")
	}
	ev := h.waitEvent("a removed", func(ev ReloadEvent) bool { return ev.File == "a.example.zone" })
	if !ev.Removed || ev.Zone != "a.example." {
		t.Errorf("event = %+v", ev)
	}
}

func TestWatcherSerialUnchanged(t *testing.T) {
	h := newHarness(t, map[string]string{"a.example.zone": zoneText(10, "")}, 0)
	h.run()
	tests := []struct {
		serial    uint32
		addr      string
		unchanged bool
	}{
		{10, "192.0.2.80", true},             // same serial, new content
		{9, "192.0.2.81", true},              // serial went down
		{11, "192.0.2.82", false},            // a proper increase
		{11 + 1<<31 + 5, "192.0.2.83", true}, // more than 2^31 ahead of 11: behind it in RFC 1982
		{5, "192.0.2.84", false},             // wraps past 2^32, less than 2^31 ahead: an increase
	}
	for _, tt := range tests {
		h.write("a.example.zone", zoneText(tt.serial, "www A "+tt.addr+"\n"))
		ev := h.waitEvent("serial "+fmt.Sprint(tt.serial), func(ev ReloadEvent) bool {
			return ev.File == "a.example.zone" && ev.Changed && ev.Serial == tt.serial
		})
		if ev.SerialUnchanged != tt.unchanged || ev.Err != nil {
			t.Errorf("serial %d: event = %+v, want SerialUnchanged %v", tt.serial, ev, tt.unchanged)
		}
		if z := h.w.Current().Zones["a.example."]; z == nil || !hasA(z, tt.addr) {
			t.Errorf("serial %d: the new content is not served", tt.serial)
		}
	}
}

func TestSerialLess(t *testing.T) {
	tests := []struct {
		a, b uint32
		want bool
	}{
		{1, 2, true}, {2, 1, false}, {1, 1, false},
		{0xFFFFFFFF, 0, true}, {0, 0xFFFFFFFF, false},
		{0, 1 << 31, false}, {1 << 31, 0, false}, // undefined: neither is less
		{0, 1<<31 - 1, true},
	}
	for _, tt := range tests {
		if got := serialLess(tt.a, tt.b); got != tt.want {
			t.Errorf("serialLess(%d, %d) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestWatcherInitialLoad(t *testing.T) {
	h := newHarness(t, map[string]string{
		"a.example.zone": zoneText(1, ""),
		"b.example.zone": zoneText(1, "www CNAME x.example.net.\nwww TXT \"x\"\n"),
		"notes.md":       "not a zone",
	}, 0)
	cur := h.w.Current()
	if len(cur.Zones) != 1 || cur.Zones["a.example."] == nil {
		t.Errorf("initial Set = %v", cur.Zones)
	}
	got := map[string]ReloadEvent{}
	for _, ev := range h.initial {
		got[ev.File] = ev
	}
	if ev := got["a.example.zone"]; !ev.Changed || ev.Err != nil || ev.Serial != 1 {
		t.Errorf("a: %+v", ev)
	}
	if ev := got["b.example.zone"]; ev.Err == nil || !strings.Contains(ev.Err.Error(), "b.example.zone:5:") {
		t.Errorf("b: %+v", ev)
	}
	if len(got) != 2 {
		t.Errorf("events = %v", got)
	}
}

func TestWatcherDuplicateOriginKeepsIncumbent(t *testing.T) {
	h := newHarness(t, map[string]string{"a.example.zone": zoneText(1, "")}, 0)
	h.run()
	old := h.w.Current().Zones["a.example."]
	h.write("a.example", zoneText(5, ""))
	ev := h.waitEvent("newcomer rejected", func(ev ReloadEvent) bool { return ev.File == "a.example" })
	if ev.Err == nil || !strings.Contains(ev.Err.Error(), "a.example: zone a.example. is also defined by a.example.zone") || ev.Changed {
		t.Errorf("event = %+v", ev)
	}
	if h.w.Current().Zones["a.example."] != old {
		t.Error("the incumbent file no longer serves the zone")
	}
	// Removing the incumbent lets the other file serve.
	must(t, os.Remove(filepath.Join(h.dir, "a.example.zone")))
	h.waitSet("a.example. from the remaining file", serialIs("a.example.", 5))
}

// TestWatcherReload: a change made before Run watched the directory is
// invisible to fsnotify; Reload picks it up.
func TestWatcherReload(t *testing.T) {
	h := newHarness(t, map[string]string{"a.example.zone": zoneText(1, "")}, 0)
	h.w.Reload() // no Run yet: must not block
	h.w.Reload()
	h.write("a.example.zone", zoneText(2, ""))
	h.run()
	h.w.Reload()
	h.waitSet("a.example. serial 2", serialIs("a.example.", 2))
}

// TestWatcherPoll: the same unseen change is picked up by polling.
func TestWatcherPoll(t *testing.T) {
	h := newHarness(t, map[string]string{"a.example.zone": zoneText(1, "")}, 20*time.Millisecond)
	h.write("a.example.zone", zoneText(2, ""))
	h.run()
	h.waitSet("a.example. serial 2", serialIs("a.example.", 2))
}

func TestWatcherUpdatesLatestWins(t *testing.T) {
	h := newHarness(t, nil, 0)
	s1, s2 := &Set{Zones: map[string]*Zone{}}, &Set{Zones: map[string]*Zone{}}
	h.w.publish(s1)
	h.w.publish(s2)
	if got := <-h.w.Updates(); got != s2 {
		t.Errorf("Updates gave %p, want the latest %p", got, s2)
	}
	select {
	case s := <-h.w.Updates():
		t.Errorf("a stale Set %p was still pending", s)
	default:
	}
	if h.w.Current() != s2 {
		t.Error("Current is not the latest Set")
	}
}

func TestNewWatcherErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	must(t, os.WriteFile(file, nil, 0o644))
	tests := []struct {
		name string
		cfg  WatcherConfig
	}{
		{"empty dir", WatcherConfig{}},
		{"missing dir", WatcherConfig{Dir: filepath.Join(t.TempDir(), "missing")}},
		{"not a dir", WatcherConfig{Dir: file}},
		{"negative debounce", WatcherConfig{Dir: t.TempDir(), Debounce: -1}},
		{"negative poll", WatcherConfig{Dir: t.TempDir(), Poll: -1}},
	}
	for _, tt := range tests {
		if w, err := NewWatcher(tt.cfg); err == nil {
			t.Errorf("%s: NewWatcher = %v, want an error", tt.name, w)
		}
	}
	w, err := NewWatcher(WatcherConfig{Dir: t.TempDir()})
	if err != nil || w.Current() == nil || len(w.Current().Zones) != 0 {
		t.Errorf("empty directory: %v, %v", w, err)
	}
}

// TestWatcherRescanSkipsUnchanged drives rescans directly: a file is parsed
// again only when its bytes or its includes' bytes changed, broken files
// included (so they are not re-logged on every event), and a missing
// include that appears is noticed.
func TestWatcherRescanSkipsUnchanged(t *testing.T) {
	broken := zoneText(1, "www CNAME x.example.net.\nwww TXT \"x\"\n")
	h := newHarness(t, map[string]string{
		"a.example.zone": zoneText(1, ""),
		"b.example.zone": broken,
		"a..b.zone":      zoneText(1, ""),
		"e.example.zone": zoneText(1, "$INCLUDE inc/e.inc\n"),
	}, 0)
	if len(h.initial) != 4 {
		t.Fatalf("initial events: %+v", h.initial)
	}
	drain := func() []ReloadEvent {
		var evs []ReloadEvent
		for len(h.events) > 0 {
			evs = append(evs, <-h.events)
		}
		return evs
	}
	h.w.rescan()
	if evs := drain(); len(evs) != 0 {
		t.Errorf("nothing changed, yet: %+v", evs)
	}
	h.write("b.example.zone", broken) // same bytes, new inode and mtime
	h.write("inc/e.inc", "www A 192.0.2.80\n")
	h.w.rescan()
	evs := drain()
	if len(evs) != 1 || evs[0].File != "e.example.zone" || !evs[0].Changed {
		t.Errorf("events = %+v, want e.example.zone loaded", evs)
	}
	if z := h.w.Current().Zones["e.example."]; z == nil || !hasA(z, "192.0.2.80") {
		t.Error("e.example. not served after its include appeared")
	}
}
