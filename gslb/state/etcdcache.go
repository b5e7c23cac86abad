package state

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Back-off between reloads while etcd is unavailable.
const (
	reloadFirst = 100 * time.Millisecond
	reloadMax   = 2 * time.Second
)

// etcdCache is the local copy of the overrides and vantage reports, by
// etcd key, as of revision rev.
type etcdCache struct {
	mu        sync.Mutex
	rev       int64 // every change up to rev is applied
	overrides map[string]Override
	reports   map[string]VantageReport
	advanced  chan struct{} // closed and replaced when rev grows
	inTouch   bool          // the last load succeeded and the watch has not failed since
	lastHeard time.Time     // last answer from etcd (wall clock, not Clock)
}

func (c *etcdCache) init() {
	c.overrides = map[string]Override{}
	c.reports = map[string]VantageReport{}
	c.advanced = make(chan struct{})
}

func (c *etcdCache) activeOverrides(now time.Time) []Override {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Override, 0, len(c.overrides))
	for _, o := range c.overrides {
		if o.Active(now) {
			out = append(out, o)
		}
	}
	return out
}

func (c *etcdCache) listReports() []VantageReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]VantageReport, 0, len(c.reports))
	for _, r := range c.reports {
		out = append(out, r.clone())
	}
	return out
}

// live reports whether the store is in touch with etcd and has heard
// from it within staleAfter.
func (c *etcdCache) live(staleAfter time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inTouch && time.Since(c.lastHeard) < staleAfter
}

func (c *etcdCache) lostTouch() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inTouch = false
}

// advance records that every change up to rev is applied and wakes the
// waiters. Called with mu held.
func (c *etcdCache) advance(rev int64) {
	if rev <= c.rev {
		return
	}
	c.rev = rev
	close(c.advanced)
	c.advanced = make(chan struct{})
}

// probeEvery is how often the store reads etcd to check that it is in
// touch with a quorum; staleAfter is how long without an answer (probe
// or watch) makes it unhealthy.
func (e *Etcd) probeEvery() time.Duration { return e.reqTimeout / 2 }
func (e *Etcd) staleAfter() time.Duration { return 3 * e.probeEvery() }

func (c *etcdCache) heard() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastHeard = time.Now()
}

// catchUp waits until the cache has applied revision rev (a change just
// made through this store), so that the caller's next read sees it and
// Watch has signalled it. It gives up when the watch is down or after
// RequestTimeout: the change is committed either way and arrives later.
func (e *Etcd) catchUp(ctx context.Context, rev int64) {
	ctx, cancel := context.WithTimeout(ctx, e.reqTimeout)
	defer cancel()
	for {
		e.cache.mu.Lock()
		caught, inTouch, ch := e.cache.rev >= rev, e.cache.inTouch, e.cache.advanced
		e.cache.mu.Unlock()
		if caught || !inTouch {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			e.log.Debug("state cache behind a change made here", "revision", rev)
			return
		case <-e.done:
			return
		}
	}
}

// load reads every override and vantage report in one linearizable read
// and replaces the cache with them. It returns the read's revision.
func (e *Etcd) load(ctx context.Context) (int64, error) {
	var resp *clientv3.TxnResponse
	_, err := e.do(ctx, verbAnswer, func(ctx context.Context) (int64, bool, error) {
		var err error
		resp, err = e.cli.Txn(ctx).Then(
			clientv3.OpGet(e.keys.overrides, clientv3.WithPrefix()),
			clientv3.OpGet(e.keys.vantage, clientv3.WithPrefix())).Commit()
		return 0, false, err
	})
	if err != nil {
		return 0, err
	}
	ovs := map[string]Override{}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		if o, ok := e.decodeOverride(kv); ok {
			ovs[string(kv.Key)] = o
		}
	}
	rs := map[string]VantageReport{}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		if r, ok := e.decodeReport(kv); ok {
			rs[string(kv.Key)] = r
		}
	}
	c := &e.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	c.overrides, c.reports = ovs, rs
	c.inTouch, c.lastHeard = true, time.Now()
	// Receivers re-read everything; one signal covers whatever changed
	// while the watch was down.
	e.w.notify()
	c.advance(resp.Header.Revision)
	return resp.Header.Revision, nil
}

func (e *Etcd) decodeOverride(kv *mvccKV) (Override, bool) {
	var o Override
	if err := json.Unmarshal(kv.Value, &o); err != nil {
		e.log.Warn("ignoring undecodable override in etcd", "key", string(kv.Key), "error", err)
		return o, false
	}
	return o, true
}

func (e *Etcd) decodeReport(kv *mvccKV) (VantageReport, bool) {
	var r VantageReport
	if err := json.Unmarshal(kv.Value, &r); err != nil {
		e.log.Warn("ignoring undecodable vantage report in etcd", "key", string(kv.Key), "error", err)
		return r, false
	}
	return r, true
}

// run keeps the cache current until ctx ends: it follows the watch from
// rev+1 and, whenever the watch fails (no leader, compaction, closed),
// reloads everything and follows again. While etcd is unavailable the
// cache keeps the last state seen. It also runs probe.
func (e *Etcd) run(ctx context.Context, rev int64) {
	var wg sync.WaitGroup
	wg.Go(func() { e.probe(ctx) })
	defer close(e.done)
	defer wg.Wait()
	for {
		err := e.follow(ctx, rev+1)
		e.cache.lostTouch()
		if ctx.Err() != nil {
			return
		}
		e.log.Warn("state watch lost, reloading from etcd", "error", err)
		var ok bool
		if rev, ok = e.reload(ctx); !ok {
			return
		}
	}
}

// probe reads one key every probeEvery, linearizably (the leader confirms
// its leadership with a quorum), until ctx ends. Its answers are what
// keeps Healthy true on a quiet cluster, and their absence is what turns
// it false when every endpoint is unreachable: the watch then just goes
// quiet while the client reconnects. (Watch progress requests cannot do
// this: etcd leaves them unanswered until some write anywhere moves the
// revision past the watch's start.)
func (e *Etcd) probe(ctx context.Context) {
	tick := time.NewTicker(e.probeEvery())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		pctx, cancel := context.WithTimeout(ctx, e.probeEvery())
		_, err := e.cli.Get(pctx, e.keys.seq, clientv3.WithCountOnly())
		cancel()
		switch {
		case err == nil:
			e.cache.heard()
		case ctx.Err() == nil:
			e.log.Debug("state store probe failed", "error", err)
		}
	}
}

// reload loads until it succeeds (ok) or ctx ends, backing off between
// failures, and logs the outage once rather than on every attempt.
func (e *Etcd) reload(ctx context.Context) (rev int64, ok bool) {
	wait, failed := reloadFirst, false
	for {
		rev, err := e.load(ctx)
		if err == nil {
			if failed {
				e.log.Info("state store reachable again", "revision", rev)
			}
			return rev, true
		}
		if ctx.Err() != nil {
			return 0, false
		}
		if !failed {
			e.log.Warn("state store unreachable; serving the last state seen", "error", err)
			failed = true
		} else {
			e.log.Debug("state store still unreachable", "error", err)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, false
		}
		wait = min(2*wait, reloadMax)
	}
}

// follow applies watch responses from revision from until the watch
// fails. WithRequireLeader makes etcd cancel the watch when its member
// loses the leader, which is how a lost quorum becomes a reload (and
// Healthy false) instead of a watch that silently sees nothing.
func (e *Etcd) follow(ctx context.Context, from int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := e.cli.Watch(wctx, e.keys.overrides, clientv3.WithRange(e.keys.cachedEnd),
		clientv3.WithRev(from), clientv3.WithCreatedNotify()) // an answer: lastHeard
	for {
		select {
		case resp, ok := <-wch:
			if !ok {
				return errors.New("watch closed")
			}
			if err := resp.Err(); err != nil {
				return err
			}
			if resp.Canceled {
				return errors.New("watch canceled")
			}
			e.apply(&resp)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// apply brings one watch response into the cache. Watch receivers are
// signalled before waiters in catchUp are released, so that a change
// made through this store has been signalled when its call returns.
func (e *Etcd) apply(resp *clientv3.WatchResponse) {
	c := &e.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastHeard = time.Now()
	var rev int64
	changed := false
	for _, ev := range resp.Events {
		rev = max(rev, ev.Kv.ModRevision)
		key := string(ev.Kv.Key)
		switch {
		case strings.HasPrefix(key, e.keys.overrides):
			changed = true
			delete(c.overrides, key)
			if ev.Type == mvccpb.PUT {
				if o, ok := e.decodeOverride(ev.Kv); ok {
					c.overrides[key] = o
				}
			}
		case strings.HasPrefix(key, e.keys.vantage):
			changed = true
			delete(c.reports, key)
			if ev.Type == mvccpb.PUT {
				if r, ok := e.decodeReport(ev.Kv); ok {
					c.reports[key] = r
				}
			}
		}
	}
	if changed {
		e.w.notify()
	}
	// Not the header's revision: a catching-up watch may send a batch
	// with the current revision while later events are still to come.
	c.advance(rev)
}
