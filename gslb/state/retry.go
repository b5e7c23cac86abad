package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Retrying is a Store that is opened in the background: a gslbd whose
// shared store is unreachable at start (etcd without quorum after a power
// cut) still serves DNS from its zones and its own probes. Until the store
// opens, reads and writes fail with ErrUnavailable (the API answers 503)
// and no overrides are known, which is logged loudly; once it opens, Watch
// signals and everything reaches the engine through the usual path.
type Retrying struct {
	open  func(ctx context.Context) (Store, error)
	log   *slog.Logger
	every time.Duration

	mu     sync.Mutex
	s      Store // nil until opened
	w      watchers
	cancel context.CancelFunc
	done   chan struct{}
}

var _ Store = (*Retrying)(nil)

// OpenRetrying tries open once; when that fails with ErrUnavailable it
// returns a Retrying store that keeps trying every `every` (and logs each
// failure once) instead of failing. Other errors (bad configuration) are
// returned as they are.
func OpenRetrying(ctx context.Context, open func(ctx context.Context) (Store, error), every time.Duration, log *slog.Logger) (Store, error) {
	s, err := open(ctx)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, ErrUnavailable) {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log.Error("state store unreachable at start: serving without overrides or other vantage points until it opens; writes are refused", "err", err)
	runCtx, cancel := context.WithCancel(context.Background())
	r := &Retrying{open: open, log: log, every: every, cancel: cancel, done: make(chan struct{})}
	go r.run(runCtx)
	return r, nil
}

func (r *Retrying) run(ctx context.Context) {
	defer close(r.done)
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		octx, cancel := context.WithTimeout(ctx, max(r.every, 5*time.Second))
		s, err := r.open(octx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				r.log.Debug("state store still unreachable", "err", err)
			}
			continue
		}
		r.mu.Lock()
		if ctx.Err() != nil { // closed meanwhile
			r.mu.Unlock()
			_ = s.Close()
			return
		}
		r.s = s
		r.mu.Unlock()
		r.log.Info("state store opened: overrides and vantage points now apply")
		r.w.notify()
		for range s.Watch(ctx) {
			r.w.notify()
		}
		return
	}
}

func (r *Retrying) store() (Store, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.s == nil {
		return nil, fmt.Errorf("%w: not opened yet (unreachable at start, retrying every %s)", ErrUnavailable, r.every)
	}
	return r.s, nil
}

// PutOverride implements Store.
func (r *Retrying) PutOverride(ctx context.Context, o Override) (Override, error) {
	s, err := r.store()
	if err != nil {
		// Validate first, so a bad request is still a 400, not a 503.
		if verr := o.validate(time.Now()); verr != nil {
			return Override{}, fmt.Errorf("put override: %w", verr)
		}
		return Override{}, fmt.Errorf("put override %s: %w", o.Target, err)
	}
	return s.PutOverride(ctx, o)
}

// ClearOverride implements Store.
func (r *Retrying) ClearOverride(ctx context.Context, id, author, reason string) error {
	s, err := r.store()
	if err != nil {
		return fmt.Errorf("clear override %s: %w", id, err)
	}
	return s.ClearOverride(ctx, id, author, reason)
}

// ExpireDue implements Store.
func (r *Retrying) ExpireDue(ctx context.Context) (int, error) {
	s, err := r.store()
	if err != nil {
		return 0, nil // nothing known, nothing to expire
	}
	return s.ExpireDue(ctx)
}

// Overrides implements Store.
func (r *Retrying) Overrides(ctx context.Context, now time.Time) ([]Override, error) {
	s, err := r.store()
	if err != nil {
		return nil, fmt.Errorf("overrides: %w", err)
	}
	return s.Overrides(ctx, now)
}

// Audit implements Store.
func (r *Retrying) Audit(ctx context.Context, since uint64, limit int) ([]AuditEntry, error) {
	s, err := r.store()
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return s.Audit(ctx, since, limit)
}

// PublishHealth implements Store.
func (r *Retrying) PublishHealth(ctx context.Context, rep VantageReport, ttl time.Duration) error {
	s, err := r.store()
	if err != nil {
		return fmt.Errorf("publish health: %w", err)
	}
	return s.PublishHealth(ctx, rep, ttl)
}

// Vantages implements Store.
func (r *Retrying) Vantages(ctx context.Context) ([]VantageReport, error) {
	s, err := r.store()
	if err != nil {
		return nil, fmt.Errorf("vantages: %w", err)
	}
	return s.Vantages(ctx)
}

// Watch implements Store: it signals when the store opens, then on every
// change of the opened store.
func (r *Retrying) Watch(ctx context.Context) <-chan struct{} { return r.w.add(ctx) }

// Healthy is false until the store opens, then the opened store's.
func (r *Retrying) Healthy() bool {
	s, err := r.store()
	if err != nil {
		return false
	}
	if h, ok := s.(interface{ Healthy() bool }); ok {
		return h.Healthy()
	}
	return true
}

// Close stops retrying and closes the opened store, if any.
func (r *Retrying) Close() error {
	r.cancel()
	<-r.done
	r.w.close()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.s != nil {
		return r.s.Close()
	}
	return nil
}
