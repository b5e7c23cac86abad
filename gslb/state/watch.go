package state

import (
	"context"
	"sync"
)

// watchers fans change signals out to Watch channels. It owns no
// goroutines: unsubscription runs from context.AfterFunc.
type watchers struct {
	mu     sync.Mutex
	closed bool
	subs   map[chan struct{}]func() bool // channel -> stop of its AfterFunc
}

func (w *watchers) add(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || ctx.Err() != nil {
		close(ch)
		return ch
	}
	if w.subs == nil {
		w.subs = make(map[chan struct{}]func() bool)
	}
	w.subs[ch] = context.AfterFunc(ctx, func() { w.remove(ch) })
	return ch
}

func (w *watchers) remove(ch chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.subs[ch]; ok {
		delete(w.subs, ch)
		close(ch)
	}
}

// notify signals every watcher without blocking; a pending signal already
// covers this change.
func (w *watchers) notify() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (w *watchers) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	for ch, stop := range w.subs {
		stop()
		close(ch)
	}
	w.subs = nil
}
