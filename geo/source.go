package geo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Defaults of the Source fields.
const (
	DefaultPollInterval = 30 * time.Second
	DefaultDebounce     = 250 * time.Millisecond
)

// Source holds the current geolocation database and, while Run runs,
// replaces it when its file changes: the new DB is opened on the side and
// swapped in atomically; if it fails to open, the old one keeps serving and
// the error is logged with the path. Swapped-out DBs are not closed (lookups
// may still hold them); the garbage collector reclaims them.
//
// Set the exported fields before calling Run.
type Source struct {
	// PollInterval: Run also checks the file's identity, size and mtime
	// this often, for file systems where fsnotify sees nothing (NFS, some
	// container volumes). Default (0) DefaultPollInterval; negative: no polling.
	PollInterval time.Duration
	// Debounce: Run reloads this long after the last of a burst of file
	// events, so a file being written is read once, when complete.
	// Default (0) DefaultDebounce.
	Debounce time.Duration
	// OnReload, when set, is called from Run after every reload attempt with
	// its outcome (nil: the new DB is serving). For metrics and tests.
	OnReload func(err error)

	path       string
	log        *slog.Logger
	db         atomic.Pointer[DB]
	ready      chan struct{} // closed once Run watches the file
	once       sync.Once
	noFsnotify bool // tests: poll only, as without inotify

	mu      sync.Mutex  // serialises reloads; guards seen and missing
	seen    os.FileInfo // the file last read, whether it opened or not
	missing bool        // the last check could not stat the file (logged once)
}

// NewSource opens the database at path ("" for the embedded default) and
// returns a Source serving it. It fails when the database does not open.
// A nil logger discards. Run starts the watching.
func NewSource(path string, logger *slog.Logger) (*Source, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Source{path: path, log: logger, ready: make(chan struct{})}
	if path == "" {
		db, err := Default()
		if err != nil {
			return nil, err
		}
		s.db.Store(db)
		return s, nil
	}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// DB returns the database currently serving. It never returns nil.
func (s *Source) DB() *DB { return s.db.Load() }

// Path is the database file, "" for the embedded default.
func (s *Source) Path() string { return s.path }

// Reload opens the file now, whether or not it changed, and swaps it in;
// on failure the current DB stays and the error is returned. With the
// embedded default it does nothing.
func (s *Source) Reload() error {
	if s.path == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fi, err := os.Stat(s.path)
	if err != nil {
		return fmt.Errorf("reload geo database: %w", err)
	}
	return s.load(fi)
}

// load opens the file last seen as fi and swaps it in. Called with mu held.
func (s *Source) load(fi os.FileInfo) error {
	s.seen, s.missing = fi, false
	db, err := Open(s.path)
	if err != nil {
		return err
	}
	s.db.Store(db)
	return nil
}

// Run follows changes to the database file until ctx is done: fsnotify
// events in its directory (so atomic renames and Kubernetes ConfigMap
// symlink swaps are seen), debounced, plus polling every PollInterval. It
// returns nil once ctx is done. Without inotify it polls only, or fails if
// polling is disabled. With the embedded default it just waits for ctx.
func (s *Source) Run(ctx context.Context) error {
	if s.path == "" {
		s.once.Do(func() { close(s.ready) })
		<-ctx.Done()
		return nil
	}
	poll := s.PollInterval
	if poll == 0 {
		poll = DefaultPollInterval
	}
	fw, err := s.watch()
	if err != nil {
		if poll < 0 {
			return fmt.Errorf("watch geo database %s: %w", s.path, err)
		}
		s.log.Warn("geo database: fsnotify unavailable, polling only", "path", s.path, "poll", poll, "err", err)
	}
	if fw != nil {
		defer fw.Close() // waits for fsnotify's reader goroutine
	}
	s.once.Do(func() { close(s.ready) })
	var tick <-chan time.Time
	if poll > 0 {
		t := time.NewTicker(poll)
		defer t.Stop()
		tick = t.C
	}
	s.check() // a change between NewSource and now
	s.loop(ctx, fw, tick)
	return nil
}

// watch starts fsnotify on the file's directory.
func (s *Source) watch() (*fsnotify.Watcher, error) {
	if s.noFsnotify {
		return nil, errors.New("fsnotify disabled")
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := fw.Add(filepath.Dir(s.path)); err != nil {
		_ = fw.Close()
		return nil, err
	}
	return fw, nil
}

// loop serves file events and polls until ctx is done.
func (s *Source) loop(ctx context.Context, fw *fsnotify.Watcher, tick <-chan time.Time) {
	var events <-chan fsnotify.Event
	var errs <-chan error
	if fw != nil {
		events, errs = fw.Events, fw.Errors
	}
	debounce := s.Debounce
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			s.check()
		case <-timer.C:
			s.check()
		case _, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			timer.Reset(debounce) // any change in the directory: a stat decides
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			s.log.Warn("geo database watcher error, checking the file", "path", s.path, "err", err)
			timer.Reset(debounce)
		}
	}
}

// check reloads the file if its identity, size or mtime changed since it
// was last read, logs the outcome and reports it to OnReload.
func (s *Source) check() {
	s.mu.Lock()
	fi, err := os.Stat(s.path)
	if err != nil {
		if !s.missing {
			s.log.Error("geo database unreadable, keeping the loaded one", "path", s.path, "err", err)
		}
		s.missing = true
		s.mu.Unlock()
		return
	}
	if !s.missing && s.seen != nil && sameFile(s.seen, fi) {
		s.mu.Unlock()
		return
	}
	err = s.load(fi)
	s.mu.Unlock()
	if err != nil {
		s.log.Error("geo database reload failed, keeping the loaded one", "path", s.path, "err", err)
	} else {
		s.log.Info("geo database reloaded", "path", s.path, "db", s.DB().Describe())
	}
	if s.OnReload != nil {
		s.OnReload(err)
	}
}

func sameFile(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}
