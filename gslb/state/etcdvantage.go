package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// PublishHealth implements Store. The report is attached to an etcd
// lease of ttl, rounded up to whole seconds (etcd may raise very short
// ones to its minimum, 1.5 election timeouts). A vantage keeps its lease
// while it republishes with the same ttl: each publication renews it, so
// the report lapses ttl after the last one.
func (e *Etcd) PublishHealth(ctx context.Context, r VantageReport, ttl time.Duration) error {
	if err := e.usable(ctx); err != nil {
		return fmt.Errorf("publish health: %w", err)
	}
	if err := checkReport(r, ttl); err != nil {
		return fmt.Errorf("publish health: %w", err)
	}
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("publish health of %s: %w", r.Vantage, err)
	}
	secs := int64(math.Ceil(ttl.Seconds()))
	key := e.keys.vantage + r.Vantage
	// One publication per store at a time: the lease map is shared.
	e.leaseMu.Lock()
	defer e.leaseMu.Unlock()
	rev, err := e.do(ctx, verbCommit, func(ctx context.Context) (int64, bool, error) {
		id, err := e.lease(ctx, r.Vantage, secs)
		if err != nil {
			return 0, false, err
		}
		resp, err := e.cli.Put(ctx, key, string(data), clientv3.WithLease(id))
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			delete(e.leases, r.Vantage) // expired between renewal and put
			return 0, true, nil
		}
		if err != nil {
			return 0, false, err
		}
		return resp.Header.Revision, false, nil
	})
	if err != nil {
		return fmt.Errorf("publish health of %s: %w", r.Vantage, err)
	}
	e.catchUp(ctx, rev)
	return nil
}

// lease returns a renewed lease of secs for the vantage, granting a new
// one when it has none, its lease expired, or the ttl changed. A lease
// given up that way expires on its own: the report moved off it.
func (e *Etcd) lease(ctx context.Context, vantage string, secs int64) (clientv3.LeaseID, error) {
	if l, ok := e.leases[vantage]; ok && l.ttl == secs {
		_, err := e.cli.KeepAliveOnce(ctx, l.id)
		if err == nil {
			return l.id, nil
		}
		if !errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return 0, err
		}
	}
	resp, err := e.cli.Grant(ctx, secs)
	if err != nil {
		return 0, err
	}
	e.leases[vantage] = vantageLease{id: resp.ID, ttl: secs}
	return resp.ID, nil
}
