package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type mvccKV = mvccpb.KeyValue

// etcdKeys is the key layout under one prefix (see Etcd).
type etcdKeys struct {
	prefix    string
	overrides string // prefix of the override keys
	vantage   string // prefix of the vantage report keys
	audit     string // prefix of the audit entry keys
	seq       string // the audit counter
	cachedEnd string // end of the range the cache watches: overrides through vantage
}

func newEtcdKeys(prefix string) etcdKeys {
	k := etcdKeys{
		prefix:    prefix,
		overrides: prefix + etcdOverridesKeyPrefix,
		vantage:   prefix + etcdVantageKeyPrefix,
		audit:     prefix + etcdAuditKeyPrefix,
		seq:       prefix + etcdAuditSeqKeyName,
	}
	// "overrides/" sorts before "vantage/", and neither audit key falls
	// between them, so one watch covers both with one range.
	k.cachedEnd = clientv3.GetPrefixRangeEnd(k.vantage)
	return k
}

func (k etcdKeys) override(t Target) string { return k.overrides + t.Type + "/" + t.Name }

// auditEntry zero-pads seq so that key order is Seq order.
func (k etcdKeys) auditEntry(seq uint64) string {
	return fmt.Sprintf("%s%0*d", k.audit, etcdAuditSeqWidth, seq)
}

// etcdTxn builds one change: its writes, the audit entries that record
// them, and the compares that make it commit only on the state it was
// built from. The audit counter's compare is always there: every change
// advances it, so two changes built from the same state cannot both
// commit, and Seq never repeats.
type etcdTxn struct {
	keys etcdKeys
	seq  uint64 // last Seq used
	cmps []clientv3.Cmp
	ops  []clientv3.Op
}

// newTxn starts a change on the audit counter as read (no key: Seq 0).
func (e *Etcd) newTxn(counter []*mvccKV) (*etcdTxn, error) {
	t := &etcdTxn{keys: e.keys}
	var mod int64
	if len(counter) == 1 {
		n, err := strconv.ParseUint(string(counter[0].Value), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("audit counter %s: %w", e.keys.seq, err)
		}
		t.seq, mod = n, counter[0].ModRevision
	}
	t.unchanged(e.keys.seq, mod)
	return t, nil
}

// unchanged makes the change depend on key still having mod revision mod
// (0: still absent).
func (t *etcdTxn) unchanged(key string, mod int64) {
	t.cmps = append(t.cmps, clientv3.Compare(clientv3.ModRevision(key), "=", mod))
}

func (t *etcdTxn) put(key, val string) { t.ops = append(t.ops, clientv3.OpPut(key, val)) }
func (t *etcdTxn) del(key string)      { t.ops = append(t.ops, clientv3.OpDelete(key)) }

// audit appends a with the next Seq.
func (t *etcdTxn) audit(a AuditEntry) error {
	t.seq++
	a.Seq = t.seq
	data, err := json.Marshal(a)
	if err != nil {
		return err
	}
	t.put(t.keys.auditEntry(t.seq), string(data))
	return nil
}

// commit runs the transaction. again is true when a compare failed:
// another writer got in first, and the caller must read and build anew.
func (t *etcdTxn) commit(ctx context.Context, kv clientv3.KV) (rev int64, again bool, err error) {
	ops := append(t.ops, clientv3.OpPut(t.keys.seq, strconv.FormatUint(t.seq, 10)))
	resp, err := kv.Txn(ctx).If(t.cmps...).Then(ops...).Commit()
	if err != nil {
		return 0, false, err
	}
	if !resp.Succeeded {
		return 0, true, nil
	}
	return resp.Header.Revision, false, nil
}

// What a failed call says etcd did not do in time.
const (
	verbCommit = "commit"
	verbAnswer = "answer"
)

// Back-off between attempts after a transient error.
const (
	retryFirst = 20 * time.Millisecond
	retryMax   = 250 * time.Millisecond
)

// do runs attempt until it succeeds, retrying at once when it reports a
// conflict and after a short back-off on transient errors, all within
// RequestTimeout (or ctx's deadline if sooner). It returns the revision
// the attempt reports.
//
// Each attempt gets half of RequestTimeout: a write that reaches a member
// just as the leader dies is forwarded to the dead leader and answered by
// nobody; a second attempt, once a new leader is elected, commits.
// Attempts must therefore be safe to repeat after one that may have
// committed without our hearing it.
func (e *Etcd) do(ctx context.Context, verb string, attempt func(context.Context) (rev int64, again bool, err error)) (int64, error) {
	budget := e.reqTimeout
	if dl, ok := ctx.Deadline(); ok {
		budget = max(min(budget, time.Until(dl)), 0)
	}
	rctx, cancel := context.WithTimeout(ctx, e.reqTimeout)
	defer cancel()
	var last error // last transient error, for the message
	wait := retryFirst
	for {
		actx, acancel := context.WithTimeout(rctx, max(e.reqTimeout/2, time.Millisecond))
		rev, again, err := attempt(actx)
		acancel()
		switch {
		case err == nil && !again:
			return rev, nil
		case err == nil:
			if rctx.Err() == nil {
				continue // lost a race: re-read at once
			}
		case errors.Is(err, ErrNotFound):
			return 0, err
		case ctx.Err() == nil && rctx.Err() == nil && !retryable(err):
			return 0, e.permanent(err)
		default:
			last = err
		}
		if rctx.Err() != nil {
			return 0, e.unavailable(ctx, verb, budget, last)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-rctx.Done():
			t.Stop()
			return 0, e.unavailable(ctx, verb, budget, last)
		}
		wait = min(2*wait, retryMax)
	}
}

// retryable reports whether err is transient: etcd (or the connection to
// it) could not serve the request now, or an attempt timed out.
func retryable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, rpctypes.ErrTooManyRequests) {
		return true
	}
	return grpcCode(err) == codes.Unavailable
}

func grpcCode(err error) codes.Code {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code()
	}
	return status.Code(err)
}

// unavailable is the error of a call that ran out of time (or whose
// caller went away, which is reported as such).
func (e *Etcd) unavailable(ctx context.Context, verb string, budget time.Duration, last error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return ctx.Err()
	}
	if e.closing.Load() {
		return fmt.Errorf("%w: closed", ErrUnavailable)
	}
	err := fmt.Errorf("%w: etcd did not %s within %s (no quorum, or none of %s reachable?): %w",
		ErrUnavailable, verb, budget.Round(time.Millisecond), e.endpoints, context.DeadlineExceeded)
	if last != nil && !errors.Is(last, context.DeadlineExceeded) {
		err = fmt.Errorf("%w; last error: %w", err, last)
	}
	return err
}

// permanent classifies an error that retrying would not cure.
func (e *Etcd) permanent(err error) error {
	switch {
	case e.closing.Load():
		return fmt.Errorf("%w: closed", ErrUnavailable)
	case errors.Is(err, rpctypes.ErrNoSpace):
		// etcd takes no writes until an operator compacts, defragments
		// and disarms the alarm: a long outage, but an outage.
		return fmt.Errorf("%w: etcd refuses writes: %w", ErrUnavailable, err)
	case grpcCode(err) == codes.Unknown:
		return err // not from etcd: a corrupt counter, say
	}
	return fmt.Errorf("etcd: %w", err)
}
