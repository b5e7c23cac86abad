package zones

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Run follows changes to the zones directory until ctx is done: fsnotify on
// Dir and its subdirectories (for $INCLUDE files, hidden ones excepted),
// Reload requests, and the Poll interval when set. Bursts of events are
// coalesced for Debounce. Run owns all its goroutines and returns nil once
// ctx is done and they have stopped. Without inotify (fsnotify fails to
// start) Run falls back to polling when Poll is set, and fails otherwise.
func (w *Watcher) Run(ctx context.Context) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		if w.cfg.Poll <= 0 {
			return fmt.Errorf("run zones watcher: %w", err)
		}
		w.log.Warn("fsnotify unavailable, polling only", "dir", w.cfg.Dir, "poll", w.cfg.Poll, "err", err)
		fw = nil
	}
	if fw != nil {
		defer fw.Close() // waits for fsnotify's reader goroutine
		w.addWatches(fw)
	}
	w.once.Do(func() { close(w.started) })
	var poll <-chan time.Time
	if w.cfg.Poll > 0 {
		t := time.NewTicker(w.cfg.Poll)
		defer t.Stop()
		poll = t.C
	}
	d := newDebouncer(w.cfg.Debounce)
	defer d.stop()
	w.loop(ctx, fw, poll, d)
	return nil
}

// loop serves events, Reload requests and polls until ctx is done.
func (w *Watcher) loop(ctx context.Context, fw *fsnotify.Watcher, poll <-chan time.Time, d *debouncer) {
	var events <-chan fsnotify.Event
	var errs <-chan error
	if fw != nil {
		events, errs = fw.Events, fw.Errors
	}
	rescan := func() {
		d.stop()
		if fw != nil {
			w.addWatches(fw) // before reading, so no later write is missed
		}
		w.rescan()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.trigger:
			rescan()
		case <-d.c:
			rescan()
		case <-poll:
			rescan()
		case ev, ok := <-events:
			if !ok {
				events = nil
			} else if relevantEvent(ev) {
				d.event()
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			w.log.Warn("zones watcher error, rescanning", "dir", w.cfg.Dir, "err", err)
			d.event()
		}
	}
}

// debouncer coalesces bursts of events: c fires one period after the last
// event, or maxDebounces periods after the first one of a steady stream.
type debouncer struct {
	period time.Duration
	timer  *time.Timer
	c      <-chan time.Time // nil while nothing is pending
	first  time.Time        // first event of the pending burst
}

func newDebouncer(period time.Duration) *debouncer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &debouncer{period: period, timer: t}
}

func (d *debouncer) event() {
	now := time.Now()
	if d.c == nil {
		d.first = now
	}
	if d.c == nil || now.Sub(d.first) < maxDebounces*d.period {
		d.timer.Reset(d.period)
	}
	d.c = d.timer.C
}

func (d *debouncer) stop() {
	d.timer.Stop()
	d.c = nil
}

// relevantEvent filters out events on editor swap files, which change on
// every keystroke. Hidden names are kept: Kubernetes ConfigMap volumes swap
// a hidden "..data" symlink to update the visible files.
func relevantEvent(ev fsnotify.Event) bool {
	base := filepath.Base(ev.Name)
	lower := strings.ToLower(base)
	switch {
	case strings.HasSuffix(lower, ".swp"), strings.HasSuffix(lower, ".swx"),
		strings.HasSuffix(base, "~"), base == "4913": // vim probes writability with "4913"
		return false
	}
	return true
}

// addWatches watches Dir and its subdirectories (not hidden ones such as
// .git). Adding a directory that is already watched is harmless; removed
// directories drop out of the watch list by themselves.
func (w *Watcher) addWatches(fw *fsnotify.Watcher) {
	err := filepath.WalkDir(w.cfg.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == w.cfg.Dir {
				return err
			}
			return nil // a directory vanished while walking: the next rescan sees it
		}
		if !d.IsDir() {
			return nil
		}
		if p != w.cfg.Dir && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if err := fw.Add(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			w.log.Warn("cannot watch zones subdirectory", "dir", p, "err", err)
		}
		return nil
	})
	if err != nil {
		w.log.Warn("cannot watch zones directory", "dir", w.cfg.Dir, "err", err)
	}
}
