package state

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Defaults of EtcdConfig.
const (
	defaultEtcdPrefix         = "/gslbd/"
	defaultEtcdDialTimeout    = 2 * time.Second
	defaultEtcdRequestTimeout = 2 * time.Second
)

const (
	// gRPC keepalive pings, so that a dead TCP path (no RST) is noticed
	// and the client fails over to another endpoint. etcd's server
	// refuses pings more often than every 5s.
	etcdKeepAliveTime    = 10 * time.Second
	etcdKeepAliveTimeout = 5 * time.Second
	// maxExpirePerTxn keeps ExpireDue's transactions (2 ops and 1
	// compare per override) under etcd's default --max-txn-ops 128.
	maxExpirePerTxn = 50
)

// Key layout under the prefix (see Etcd).
const (
	etcdOverridesKeyPrefix = "overrides/"
	etcdVantageKeyPrefix   = "vantage/"
	etcdAuditKeyPrefix     = "audit/"
	etcdAuditSeqKeyName    = "audit_seq"
	etcdAuditSeqWidth      = 20 // decimal digits of the largest uint64
)

// EtcdConfig configures OpenEtcd. Zero fields take the defaults given.
type EtcdConfig struct {
	// Endpoints are the etcd members' client addresses, "host:port" or
	// URLs ("https://10.0.0.1:2379"). Required.
	Endpoints []string
	// Prefix is put before every key; gslbd that share state use the same
	// one. Default "/gslbd/"; a missing trailing "/" is added.
	Prefix string
	// DialTimeout bounds connecting (and authenticating) in OpenEtcd.
	// Default 2s.
	DialTimeout time.Duration
	// RequestTimeout bounds every call that talks to etcd, retries
	// included: when it passes the call fails with ErrUnavailable.
	// Default 2s.
	RequestTimeout time.Duration
	// Username and Password authenticate to etcd when both are set.
	Username, Password string
	// TLS is the client TLS configuration, for https endpoints. Default none.
	TLS *tls.Config
	// Clock stamps Created, audit times and decides expiry. Default time.Now.
	Clock func() time.Time
	// Logger receives the store's and the etcd client's logs. Default: none.
	Logger *slog.Logger
}

// Etcd is the cluster Store: several gslbd share overrides, the audit log
// and each other's vantage reports through an etcd cluster.
//
// Key layout under the prefix P (default "/gslbd/"):
//
//	P overrides/<type>/<name>  JSON Override; one key per target
//	P vantage/<vantage>        JSON VantageReport, attached to a lease of its ttl
//	P audit/<seq>              JSON AuditEntry; seq zero-padded to 20 digits
//	P audit_seq                the last audit Seq handed out, decimal
//
// Every change to overrides is one etcd transaction that also appends its
// audit entries and advances audit_seq. It commits only if audit_seq
// still has the mod revision it was read at, and otherwise is read and
// built again: every change advances audit_seq, so changes from all gslbd
// are serialized, Seq is gap-free and strictly increasing, and a change
// (an expiry, say) is never applied or audited twice. The transaction
// also compares the mod revision of each override it touches, which
// catches edits made outside gslbd (etcdctl).
//
// Overrides and Vantages are served from a local cache that a watch on
// the overrides and vantage keys keeps current. They are fast, and when
// etcd loses quorum or cannot be reached they keep answering from the
// last state seen, while writes and Audit fail with ErrUnavailable and
// Healthy reports false; the cache reloads when etcd is back. A change
// made through this Etcd is in its cache when the call returns.
type Etcd struct {
	cli        *clientv3.Client
	keys       etcdKeys
	endpoints  string // for error messages
	reqTimeout time.Duration
	clock      func() time.Time
	log        *slog.Logger

	cache etcdCache
	w     watchers

	leaseMu sync.Mutex
	leases  map[string]vantageLease // by vantage name; guarded by leaseMu

	cancel    context.CancelFunc // stops run
	done      chan struct{}      // closed when run has returned
	closing   atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*Etcd)(nil)

type vantageLease struct {
	id  clientv3.LeaseID
	ttl int64 // seconds
}

// OpenEtcd connects to etcd, loads the current overrides and vantage
// reports, and starts the watch that keeps them current (stopped by
// Close). ctx bounds the initial load only. It fails with an error
// wrapping ErrUnavailable if etcd does not answer within RequestTimeout.
func OpenEtcd(ctx context.Context, cfg EtcdConfig) (*Etcd, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("open etcd state store: %w", err)
	}
	e := &Etcd{
		keys:       newEtcdKeys(cfg.Prefix),
		endpoints:  strings.Join(cfg.Endpoints, ","),
		reqTimeout: cfg.RequestTimeout,
		clock:      cfg.Clock,
		log:        cfg.Logger,
		leases:     map[string]vantageLease{},
		done:       make(chan struct{}),
	}
	e.cache.init()
	e.cli, err = clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		DialTimeout:          cfg.DialTimeout,
		DialKeepAliveTime:    etcdKeepAliveTime,
		DialKeepAliveTimeout: etcdKeepAliveTimeout,
		Username:             cfg.Username,
		Password:             cfg.Password,
		TLS:                  cfg.TLS,
		Logger:               newZapToSlog(cfg.Logger.With("component", "etcd-client")),
	})
	if err != nil {
		// New only talks to etcd to authenticate; a timeout there is an
		// outage, anything else (bad credentials, bad URL) is not.
		if retryable(err) || errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: etcd did not answer within %s (endpoints %s): %w", ErrUnavailable, cfg.DialTimeout, e.endpoints, err)
		}
		return nil, fmt.Errorf("open etcd state store: %w", err)
	}
	rev, err := e.load(ctx)
	if err != nil {
		_ = e.cli.Close()
		return nil, fmt.Errorf("open etcd state store: load %s: %w", e.keys.prefix, err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	go e.run(runCtx, rev)
	return e, nil
}

func (cfg EtcdConfig) withDefaults() (EtcdConfig, error) {
	if len(cfg.Endpoints) == 0 {
		return cfg, fmt.Errorf("endpoints: required")
	}
	for i, ep := range cfg.Endpoints {
		if strings.TrimSpace(ep) == "" {
			return cfg, fmt.Errorf("endpoints[%d]: empty", i)
		}
	}
	switch {
	case cfg.DialTimeout < 0:
		return cfg, fmt.Errorf("dial_timeout: negative (%s)", cfg.DialTimeout)
	case cfg.RequestTimeout < 0:
		return cfg, fmt.Errorf("request_timeout: negative (%s)", cfg.RequestTimeout)
	}
	cfg.Endpoints = slices.Clone(cfg.Endpoints)
	cfg.Prefix = cmp.Or(cfg.Prefix, defaultEtcdPrefix)
	if !strings.HasSuffix(cfg.Prefix, "/") {
		cfg.Prefix += "/"
	}
	cfg.DialTimeout = cmp.Or(cfg.DialTimeout, defaultEtcdDialTimeout)
	cfg.RequestTimeout = cmp.Or(cfg.RequestTimeout, defaultEtcdRequestTimeout)
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

// Prefix returns the key prefix the store uses, with its trailing "/".
func (e *Etcd) Prefix() string { return e.keys.prefix }

// Healthy reports whether the store is in touch with a quorum: its last
// load succeeded, its watch has not failed since (etcd cancels it when
// its member loses the leader), and etcd answered within the last 1.5
// RequestTimeouts (a linearizable read every half RequestTimeout). While
// it is false, Overrides and Vantages serve the last state seen.
func (e *Etcd) Healthy() bool {
	return !e.closing.Load() && e.cache.live(e.staleAfter())
}

// Close stops the watch, closes every Watch channel and the connection.
// Vantage reports published through it stay until their ttl runs out.
func (e *Etcd) Close() error {
	e.closeOnce.Do(func() {
		e.closing.Store(true)
		e.cancel()
		<-e.done
		e.w.close()
		if err := e.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
			e.closeErr = fmt.Errorf("close etcd state store: %w", err)
		}
	})
	return e.closeErr
}

// Watch implements Store. Signals come from the etcd watch, so changes
// made by other gslbd (and reports lapsing) are seen too.
func (e *Etcd) Watch(ctx context.Context) <-chan struct{} { return e.w.add(ctx) }

// usable is the check every method starts with.
func (e *Etcd) usable(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if e.closing.Load() {
		return fmt.Errorf("%w: closed", ErrUnavailable)
	}
	return nil
}

// Overrides implements Store, from the cache: see Etcd.
func (e *Etcd) Overrides(ctx context.Context, now time.Time) ([]Override, error) {
	if err := e.usable(ctx); err != nil {
		return nil, fmt.Errorf("list overrides: %w", err)
	}
	out := e.cache.activeOverrides(now)
	slices.SortFunc(out, func(a, b Override) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Vantages implements Store, from the cache: a report is gone once etcd
// has deleted it at the end of its lease.
func (e *Etcd) Vantages(ctx context.Context) ([]VantageReport, error) {
	if err := e.usable(ctx); err != nil {
		return nil, fmt.Errorf("list vantages: %w", err)
	}
	out := e.cache.listReports()
	slices.SortFunc(out, func(a, b VantageReport) int { return strings.Compare(a.Vantage, b.Vantage) })
	return out, nil
}

// PutOverride implements Store.
func (e *Etcd) PutOverride(ctx context.Context, o Override) (Override, error) {
	if err := e.usable(ctx); err != nil {
		return Override{}, fmt.Errorf("put override: %w", err)
	}
	now := e.clock()
	if err := o.validate(now); err != nil {
		return Override{}, fmt.Errorf("put override: %w", err)
	}
	o.ID = rand.Text()
	o.Created = now
	data, err := json.Marshal(o)
	if err != nil {
		return Override{}, fmt.Errorf("put override %s: %w", o.Target, err)
	}
	key := e.keys.override(o.Target)
	rev, err := e.do(ctx, verbCommit, func(ctx context.Context) (int64, bool, error) {
		resp, err := e.cli.Txn(ctx).Then(clientv3.OpGet(key), clientv3.OpGet(e.keys.seq)).Commit()
		if err != nil {
			return 0, false, err
		}
		old, seq := resp.Responses[0].GetResponseRange().Kvs, resp.Responses[1].GetResponseRange().Kvs
		tx, err := e.newTxn(seq)
		if err != nil {
			return 0, false, err
		}
		var oldMod int64
		if len(old) == 1 {
			oldMod = old[0].ModRevision
			var prev Override
			if json.Unmarshal(old[0].Value, &prev) == nil && prev.ID == o.ID {
				// An earlier attempt committed but its answer was lost.
				return oldMod, false, nil
			}
			// Detail is the stored JSON as is, which also covers a value
			// that no longer decodes.
			err = tx.audit(AuditEntry{Time: now, Author: o.Author, Action: ActionClear, Target: o.Target.String(),
				Detail: string(old[0].Value), Reason: fmt.Sprintf("replaced by %s: %s", o.ID, o.Reason)})
			if err != nil {
				return 0, false, err
			}
		}
		tx.unchanged(key, oldMod)
		tx.put(key, string(data))
		err = tx.audit(AuditEntry{Time: now, Author: o.Author, Action: ActionSet,
			Target: o.Target.String(), Detail: string(data), Reason: o.Reason})
		if err != nil {
			return 0, false, err
		}
		return tx.commit(ctx, e.cli)
	})
	if err != nil {
		return Override{}, fmt.Errorf("put override %s: %w", o.Target, err)
	}
	e.catchUp(ctx, rev)
	return o, nil
}

// ClearOverride implements Store. IDs are random, so it scans the
// overrides for the one with that ID.
func (e *Etcd) ClearOverride(ctx context.Context, id, author, reason string) error {
	if err := e.usable(ctx); err != nil {
		return fmt.Errorf("clear override %s: %w", id, err)
	}
	switch {
	case strings.TrimSpace(author) == "":
		return fmt.Errorf("clear override %s: %w", id, fieldErr("author", "required"))
	case strings.TrimSpace(reason) == "":
		return fmt.Errorf("clear override %s: %w", id, fieldErr("reason", "required"))
	}
	now := e.clock()
	uncertain := false // an attempt may have committed without our hearing
	rev, err := e.do(ctx, verbCommit, func(ctx context.Context) (int64, bool, error) {
		resp, err := e.cli.Txn(ctx).Then(
			clientv3.OpGet(e.keys.overrides, clientv3.WithPrefix()), clientv3.OpGet(e.keys.seq)).Commit()
		if err != nil {
			return 0, false, err
		}
		ovs, seq := resp.Responses[0].GetResponseRange().Kvs, resp.Responses[1].GetResponseRange().Kvs
		i := slices.IndexFunc(ovs, func(kv *mvccKV) bool {
			var o Override
			return json.Unmarshal(kv.Value, &o) == nil && o.ID == id
		})
		if i < 0 {
			if uncertain {
				// Gone after an attempt whose answer was lost: most likely
				// ours; either way the override is cleared, as asked. At
				// an unknown revision: nothing for catchUp to wait for.
				return 0, false, nil
			}
			return 0, false, ErrNotFound
		}
		tx, err := e.newTxn(seq)
		if err != nil {
			return 0, false, err
		}
		var o Override
		_ = json.Unmarshal(ovs[i].Value, &o) // decoded above
		tx.unchanged(string(ovs[i].Key), ovs[i].ModRevision)
		tx.del(string(ovs[i].Key))
		err = tx.audit(AuditEntry{Time: now, Author: author, Action: ActionClear,
			Target: o.Target.String(), Detail: string(ovs[i].Value), Reason: reason})
		if err != nil {
			return 0, false, err
		}
		rev, again, err := tx.commit(ctx, e.cli)
		uncertain = uncertain || err != nil
		return rev, again, err
	})
	if err != nil {
		return fmt.Errorf("clear override %s: %w", id, err)
	}
	e.catchUp(ctx, rev)
	return nil
}

// ExpireDue removes the overrides expired at the store's clock, auditing
// each as override.expire by SystemAuthor, and returns how many it
// removed. Every gslbd may run it periodically: each expiry is committed
// (and audited) by exactly one of them, the others' transactions fail
// their compare and find nothing left to do. Overrides already hides
// expired ones. After a lost answer from etcd the count may miss removals
// that did happen; the audit log has them.
func (e *Etcd) ExpireDue(ctx context.Context) (int, error) {
	if err := e.usable(ctx); err != nil {
		return 0, fmt.Errorf("expire overrides: %w", err)
	}
	now := e.clock()
	total := 0
	for {
		n, more, err := e.expireBatch(ctx, now)
		total += n
		if err != nil {
			return total, fmt.Errorf("expire overrides: %w", err)
		}
		if !more {
			return total, nil
		}
	}
}

// expireBatch expires up to maxExpirePerTxn overrides in one transaction;
// more reports whether others were due beyond the batch.
func (e *Etcd) expireBatch(ctx context.Context, now time.Time) (n int, more bool, err error) {
	rev, err := e.do(ctx, verbCommit, func(ctx context.Context) (int64, bool, error) {
		n, more = 0, false
		resp, err := e.cli.Txn(ctx).Then(
			clientv3.OpGet(e.keys.overrides, clientv3.WithPrefix()), clientv3.OpGet(e.keys.seq)).Commit()
		if err != nil {
			return 0, false, err
		}
		ovs, seq := resp.Responses[0].GetResponseRange().Kvs, resp.Responses[1].GetResponseRange().Kvs
		tx, err := e.newTxn(seq)
		if err != nil {
			return 0, false, err
		}
		due := 0
		for _, kv := range ovs {
			var o Override
			if json.Unmarshal(kv.Value, &o) != nil || o.Active(now) {
				continue
			}
			if due++; due > maxExpirePerTxn {
				more = true
				break
			}
			tx.unchanged(string(kv.Key), kv.ModRevision)
			tx.del(string(kv.Key))
			err := tx.audit(AuditEntry{Time: now, Author: SystemAuthor, Action: ActionExpire, Target: o.Target.String(),
				Detail: string(kv.Value), Reason: "expired at " + o.Expires.UTC().Format(time.RFC3339)})
			if err != nil {
				return 0, false, err
			}
		}
		if due == 0 {
			return 0, false, nil
		}
		rev, again, err := tx.commit(ctx, e.cli)
		if err == nil && !again {
			n = min(due, maxExpirePerTxn)
		}
		return rev, again, err
	})
	if err != nil {
		return 0, false, err
	}
	if n > 0 {
		e.catchUp(ctx, rev)
	}
	return n, more, nil
}

// Audit implements Store. It reads etcd (the log is not cached), so it
// fails with ErrUnavailable without a quorum.
func (e *Etcd) Audit(ctx context.Context, since uint64, limit int) ([]AuditEntry, error) {
	if err := e.usable(ctx); err != nil {
		return nil, fmt.Errorf("read audit: %w", err)
	}
	if limit <= 0 {
		return nil, fmt.Errorf("read audit: %w", fieldErr("limit", "must be positive"))
	}
	var out []AuditEntry
	if since == math.MaxUint64 {
		return out, nil
	}
	var kvs []*mvccKV
	_, err := e.do(ctx, verbAnswer, func(ctx context.Context) (int64, bool, error) {
		resp, err := e.cli.Get(ctx, e.keys.auditEntry(since+1),
			clientv3.WithRange(clientv3.GetPrefixRangeEnd(e.keys.audit)), clientv3.WithLimit(int64(limit)))
		if err != nil {
			return 0, false, err
		}
		kvs = resp.Kvs
		return resp.Header.Revision, false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("read audit: %w", err)
	}
	for _, kv := range kvs {
		var a AuditEntry
		if err := json.Unmarshal(kv.Value, &a); err != nil {
			return nil, fmt.Errorf("read audit: decode %s: %w", kv.Key, err)
		}
		out = append(out, a)
	}
	return out, nil
}
