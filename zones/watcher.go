package zones

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// WatcherConfig configures a Watcher.
type WatcherConfig struct {
	Dir      string        // zones directory on disk
	Logger   *slog.Logger  // nil => discard
	Debounce time.Duration // default 200ms: coalesce bursts of fs events (editors, git checkout)
	Poll     time.Duration // default 0 = off; if >0 also rescan periodically (for filesystems without inotify)
	// OnReload is called after each reload attempt, once per zone attempted
	// (a metrics hook). It runs on the watcher's goroutine: it must not
	// block long.
	OnReload func(ev ReloadEvent)
}

// ReloadEvent reports one reload attempt of one zone.
type ReloadEvent struct {
	Zone    string // origin ("" when the file name is not a zone name)
	File    string
	Err     error  // the new version was rejected; the previous good version, if any, keeps serving
	Serial  uint32 // serial of the version now served from this file (0 if none)
	Changed bool   // a new version of the zone is served
	// SerialUnchanged: the content changed but the serial did not go up
	// (RFC 1982 comparison), so secondaries will not pick up the change.
	SerialUnchanged bool
	Removed         bool // the file was deleted; its zone is no longer served
}

const (
	defaultDebounce = 200 * time.Millisecond
	// maxDebounces bounds how long a steady stream of events can postpone a
	// rescan: at most this many debounce periods after the first event.
	maxDebounces = 10
)

// fileState is what the watcher remembers about one zone file.
type fileState struct {
	origin string
	zone   *Zone    // last good version, nil if none
	digest [32]byte // digest of the last attempt (good or not)
	reads  []string // files the last attempt read
}

// Watcher keeps the zones of a directory loaded and reloads them when they
// change. NewWatcher loads synchronously; Run watches until its context is
// done.
type Watcher struct {
	cfg  WatcherConfig
	fsys fs.FS
	log  *slog.Logger

	cur     atomic.Pointer[Set]
	updates chan *Set
	trigger chan struct{}
	started chan struct{} // closed once Run watches the directory (for tests)
	once    sync.Once

	mu    sync.Mutex // serialises rescans; guards files
	files map[string]*fileState
}

// NewWatcher loads the zones of cfg.Dir synchronously. It returns an error
// only when the configuration is invalid or Dir cannot be read; zones that
// fail to load are logged and reported through OnReload, and the rest are
// served. It starts nothing: call Run to follow changes.
func NewWatcher(cfg WatcherConfig) (*Watcher, error) {
	switch {
	case cfg.Dir == "":
		return nil, errors.New("new zones watcher: dir is empty")
	case cfg.Debounce < 0:
		return nil, fmt.Errorf("new zones watcher: debounce %v is negative", cfg.Debounce)
	case cfg.Poll < 0:
		return nil, fmt.Errorf("new zones watcher: poll %v is negative", cfg.Poll)
	}
	if cfg.Debounce == 0 {
		cfg.Debounce = defaultDebounce
	}
	info, err := os.Stat(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("new zones watcher: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("new zones watcher: %s is not a directory", cfg.Dir)
	}
	w := &Watcher{
		cfg:     cfg,
		fsys:    os.DirFS(cfg.Dir),
		log:     cfg.Logger,
		updates: make(chan *Set, 1),
		trigger: make(chan struct{}, 1),
		started: make(chan struct{}),
		files:   map[string]*fileState{},
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if _, err := ZoneFiles(w.fsys); err != nil {
		return nil, fmt.Errorf("new zones watcher: %w", err)
	}
	w.cur.Store(&Set{Zones: map[string]*Zone{}})
	w.rescan()
	return w, nil
}

// Current returns the Set being served. It is never nil.
func (w *Watcher) Current() *Set { return w.cur.Load() }

// Updates receives each new Set after a change. It holds at most one: when
// the reader is slow, a pending stale Set is replaced by the latest.
func (w *Watcher) Updates() <-chan *Set { return w.updates }

// Reload asks for a rescan now (on SIGHUP). It never blocks; the rescan runs
// on Run's goroutine, so it waits for Run when Run is not running.
func (w *Watcher) Reload() {
	select {
	case w.trigger <- struct{}{}:
	default: // a rescan is already pending
	}
}

// rescan reloads whatever changed and publishes the new Set if it differs.
func (w *Watcher) rescan() {
	w.mu.Lock()
	defer w.mu.Unlock()
	names, err := ZoneFiles(w.fsys)
	if err != nil {
		w.log.Error("zones rescan failed", "dir", w.cfg.Dir, "err", err)
		return
	}
	var events []ReloadEvent
	present := make(map[string]bool, len(names))
	for _, name := range names {
		present[name] = true
		if ev, attempted := w.refresh(name); attempted {
			events = append(events, ev)
		}
	}
	for _, name := range sortedKeys(w.files) {
		if present[name] {
			continue
		}
		st := w.files[name]
		delete(w.files, name)
		w.log.Info("zone removed", "zone", st.origin, "file", name)
		events = append(events, ReloadEvent{Zone: st.origin, File: name, Removed: true})
	}
	set := w.assemble(events)
	if !sameSet(w.cur.Load(), set) {
		w.publish(set)
	}
	sortEvents(events)
	if w.cfg.OnReload != nil {
		for _, ev := range events {
			w.cfg.OnReload(ev)
		}
	}
}

// refresh reloads one file if its bytes or its includes' bytes changed. It
// reports whether it attempted a load.
func (w *Watcher) refresh(name string) (ReloadEvent, bool) {
	st := w.files[name]
	if st != nil && digestFiles(w.fsys, st.reads) == st.digest {
		return ReloadEvent{}, false
	}
	res := loadFile(w.fsys, name)
	if st == nil {
		st = &fileState{}
		w.files[name] = st
	}
	st.origin, st.digest, st.reads = res.origin, res.digest, res.reads
	ev := ReloadEvent{Zone: res.origin, File: name}
	old := st.zone
	if old != nil {
		ev.Serial = old.Serial
	}
	if res.zone == nil {
		ev.Err = res.err()
		w.log.Error("zone rejected", "zone", res.origin, "file", name, "serving_previous", old != nil, "err", ev.Err)
		return ev, true
	}
	if old != nil && old.Digest == res.zone.Digest {
		return ev, true // back to the version being served: keep its pointer
	}
	z := res.zone
	st.zone = z
	ev.Changed, ev.Serial = true, z.Serial
	for _, is := range z.Warnings {
		w.log.Warn("zone warning", "zone", z.Origin, "issue", is.String())
	}
	switch {
	case old == nil:
		w.log.Info("zone loaded", "zone", z.Origin, "file", name, "serial", z.Serial)
	case z.Serial == old.Serial:
		ev.SerialUnchanged = true
		w.log.Warn("zone changed but its serial did not; secondaries will not see the change",
			"zone", z.Origin, "file", name, "serial", z.Serial)
	case !serialLess(old.Serial, z.Serial):
		ev.SerialUnchanged = true
		w.log.Warn("zone serial went backwards (RFC 1982); secondaries will not see the change",
			"zone", z.Origin, "file", name, "old_serial", old.Serial, "serial", z.Serial)
	default:
		w.log.Info("zone reloaded", "zone", z.Origin, "file", name, "old_serial", old.Serial, "serial", z.Serial)
	}
	return ev, true
}

// serialLess reports a < b in RFC 1982 serial number arithmetic. It is
// false when the comparison is undefined (the serials differ by 2^31).
func serialLess(a, b uint32) bool {
	return (a < b && b-a < 1<<31) || (a > b && a-b > 1<<31)
}

// assemble builds the Set from the last good version of each file. An
// origin defined by several files keeps being served from the file that
// served it before, if any; the other files are rejected (their events get
// the error).
func (w *Watcher) assemble(events []ReloadEvent) *Set {
	prev := w.cur.Load()
	byFile := map[string]*Zone{}
	for name, st := range w.files {
		if st.zone != nil {
			byFile[name] = st.zone
		}
	}
	set := &Set{Zones: map[string]*Zone{}}
	dup := conflicts(byFile)
	for name, z := range byFile {
		files, conflict := dup[z.Origin]
		if !conflict {
			set.Zones[z.Origin] = z
			continue
		}
		if p := prev.Zones[z.Origin]; p != nil && p.File == name {
			set.Zones[z.Origin] = z // the incumbent keeps serving
			continue
		}
		is := conflictIssue(z.Origin, name, files, "this file is ignored while both exist")
		for i := range events {
			if events[i].File == name && events[i].Err == nil {
				events[i].Err = &LoadError{Zone: z.Origin, File: name, Issues: []Issue{is}}
				events[i].Changed, events[i].SerialUnchanged, events[i].Serial = false, false, 0
				w.log.Error("zone rejected", "zone", z.Origin, "file", name, "err", events[i].Err)
			}
		}
	}
	return set
}

// sameSet reports whether two Sets serve the same zone pointers.
func sameSet(a, b *Set) bool {
	if a == nil || len(a.Zones) != len(b.Zones) {
		return false
	}
	for origin, z := range b.Zones {
		if a.Zones[origin] != z {
			return false
		}
	}
	return true
}

// publish makes set current and offers it on Updates, replacing a stale
// pending Set. Only rescan (under mu) publishes.
func (w *Watcher) publish(set *Set) {
	w.cur.Store(set)
	for {
		select {
		case w.updates <- set:
			return
		default:
		}
		select {
		case <-w.updates: // drop the stale pending Set
		default:
		}
	}
}

// sortEvents orders events by file, for deterministic reporting.
func sortEvents(events []ReloadEvent) {
	sort.SliceStable(events, func(i, j int) bool { return events[i].File < events[j].File })
}
