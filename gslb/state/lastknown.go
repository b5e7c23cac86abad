package state

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// LastKnown is a Store whose overrides outlive an outage of the store
// behind it across a restart: every successful Overrides read is saved to
// a local file (atomically, when it changed), and when the store cannot
// answer (ErrUnavailable: etcd unreachable since this gslbd started) the
// saved overrides are returned instead, so a forced-down endpoint stays
// out of answers. Writes still go to the store and fail with it.
type LastKnown struct {
	Store
	path string
	log  *slog.Logger

	mu     sync.Mutex
	saved  []byte // what the file holds
	warned bool   // the fallback was logged
}

type lastKnownFile struct {
	Saved     time.Time  `json:"saved"`
	Overrides []Override `json:"overrides"`
}

// WithLastKnown wraps s; path is the file the overrides are kept in.
func WithLastKnown(s Store, path string, log *slog.Logger) *LastKnown {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &LastKnown{Store: s, path: path, log: log}
}

// Overrides implements Store.
func (l *LastKnown) Overrides(ctx context.Context, now time.Time) ([]Override, error) {
	ovs, err := l.Store.Overrides(ctx, now)
	if err == nil {
		l.save(ovs, now)
		return ovs, nil
	}
	if !errors.Is(err, ErrUnavailable) {
		return nil, err
	}
	saved, at, ferr := l.load()
	if ferr != nil {
		return nil, errors.Join(err, ferr)
	}
	var active []Override
	for _, o := range saved {
		if o.Active(now) {
			active = append(active, o)
		}
	}
	l.mu.Lock()
	if !l.warned {
		l.warned = true
		l.log.Warn("state store unavailable: applying the last known overrides", "file", l.path, "saved", at, "overrides", len(active))
	}
	l.mu.Unlock()
	return active, nil
}

func (l *LastKnown) save(ovs []Override, now time.Time) {
	data, err := json.Marshal(ovs)
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.warned = false
	if bytes.Equal(data, l.saved) {
		return
	}
	doc, _ := json.MarshalIndent(lastKnownFile{Saved: now, Overrides: ovs}, "", "  ")
	if err := writeAtomic(l.path, doc); err != nil {
		l.log.Error("last known overrides not saved", "file", l.path, "err", err)
		return
	}
	l.saved = data
}

func (l *LastKnown) load() ([]Override, time.Time, error) {
	data, err := os.ReadFile(l.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, time.Time{}, nil // never saved: nothing was known
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("last known overrides: %w", err)
	}
	var f lastKnownFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, time.Time{}, fmt.Errorf("last known overrides %s: %w", l.path, err)
	}
	return f.Overrides, f.Saved, nil
}

// writeAtomic writes data to path through a temporary file, fsynced and
// renamed, so a crash leaves the old file or the new one.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Healthy passes the wrapped store's Healthy through (true without one).
func (l *LastKnown) Healthy() bool {
	if h, ok := l.Store.(interface{ Healthy() bool }); ok {
		return h.Healthy()
	}
	return true
}
