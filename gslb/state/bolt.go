package state

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// lockTimeout is how long OpenBolt waits for another process's file lock.
const lockTimeout = time.Second

// ErrLocked is returned (wrapped) by OpenBolt when another process holds the file.
var ErrLocked = errors.New("locked by another process")

// ErrCorrupt is returned (wrapped) by OpenBolt when the file is not a valid bbolt database.
var ErrCorrupt = errors.New("corrupt or not a state database")

var (
	bucketOverrides = []byte("overrides") // ID -> JSON Override
	bucketAudit     = []byte("audit")     // big-endian Seq -> JSON AuditEntry
)

// Bolt is the one-node Store on an embedded bbolt file. Every change is one
// bbolt transaction, durable (fsynced) when the method returns.
type Bolt struct {
	db     *bolt.DB
	path   string
	clock  func() time.Time
	w      watchers
	vant   vantages
	closed atomic.Bool
}

var _ Store = (*Bolt)(nil)

// OpenBolt opens or creates (mode 0600) the state file at path. clock may
// be nil for time.Now. It fails with an error naming path and wrapping
// ErrLocked if another process holds the file for more than a second, or
// ErrCorrupt if the file is not a valid database.
func OpenBolt(path string, clock func() time.Time) (*Bolt, error) {
	if clock == nil {
		clock = time.Now
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("open state db %s: %w (waited %s): %w", path, ErrLocked, lockTimeout, err)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum),
		errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrInvalidMapping):
		return nil, fmt.Errorf("open state db %s: %w: %w", path, ErrCorrupt, err)
	case err != nil:
		return nil, fmt.Errorf("open state db %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketOverrides, bucketAudit} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("bucket %s: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open state db %s: %w", path, err)
	}
	b := &Bolt{db: db, path: path, clock: clock}
	b.vant.clock, b.vant.onLapse = clock, b.w.notify
	return b, nil
}

// Path returns the file the store was opened on.
func (b *Bolt) Path() string { return b.path }

// Healthy reports whether the store is open. A local file has no outage
// to report; this gives the bolt backend the same up metric as etcd.
func (b *Bolt) Healthy() bool { return !b.closed.Load() }

// Close closes the file and every Watch channel.
func (b *Bolt) Close() error {
	b.closed.Store(true)
	b.vant.close()
	b.w.close()
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("close state db %s: %w", b.path, err)
	}
	return nil
}

// Watch implements Store.
func (b *Bolt) Watch(ctx context.Context) <-chan struct{} { return b.w.add(ctx) }

// PublishHealth implements Store. Reports are kept in memory: one node is
// its own only vantage point and re-probes after a restart.
func (b *Bolt) PublishHealth(ctx context.Context, r VantageReport, ttl time.Duration) error {
	if err := b.vant.publish(ctx, r, ttl); err != nil {
		return err
	}
	b.w.notify()
	return nil
}

// Vantages implements Store.
func (b *Bolt) Vantages(ctx context.Context) ([]VantageReport, error) { return b.vant.list(ctx) }

// PutOverride implements Store.
func (b *Bolt) PutOverride(ctx context.Context, o Override) (Override, error) {
	if err := ctx.Err(); err != nil {
		return Override{}, fmt.Errorf("put override: %w", err)
	}
	now := b.clock()
	if err := o.validate(now); err != nil {
		return Override{}, fmt.Errorf("put override: %w", err)
	}
	o.ID = rand.Text()
	o.Created = now
	err := b.db.Update(func(tx *bolt.Tx) error {
		ovs := tx.Bucket(bucketOverrides)
		olds, err := scanOverrides(ovs, func(x Override) bool { return x.Target == o.Target })
		if err != nil {
			return err
		}
		for _, old := range olds {
			reason := fmt.Sprintf("replaced by %s: %s", o.ID, o.Reason)
			if err := deleteAudited(tx, old, now, o.Author, ActionClear, reason); err != nil {
				return err
			}
		}
		data, err := json.Marshal(o)
		if err != nil {
			return err
		}
		if err := ovs.Put([]byte(o.ID), data); err != nil {
			return err
		}
		return appendAudit(tx, AuditEntry{Time: now, Author: o.Author, Action: ActionSet,
			Target: o.Target.String(), Detail: string(data), Reason: o.Reason})
	})
	if err != nil {
		return Override{}, fmt.Errorf("put override %s: %w", o.Target, err)
	}
	b.w.notify()
	return o, nil
}

// ClearOverride implements Store.
func (b *Bolt) ClearOverride(ctx context.Context, id, author, reason string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("clear override %s: %w", id, err)
	}
	switch {
	case strings.TrimSpace(author) == "":
		return fmt.Errorf("clear override %s: %w", id, fieldErr("author", "required"))
	case strings.TrimSpace(reason) == "":
		return fmt.Errorf("clear override %s: %w", id, fieldErr("reason", "required"))
	}
	now := b.clock()
	err := b.db.Update(func(tx *bolt.Tx) error {
		data := tx.Bucket(bucketOverrides).Get([]byte(id))
		if data == nil {
			return ErrNotFound
		}
		var o Override
		if err := json.Unmarshal(data, &o); err != nil {
			return fmt.Errorf("decode: %w", err)
		}
		return deleteAudited(tx, o, now, author, ActionClear, reason)
	})
	if err != nil {
		return fmt.Errorf("clear override %s: %w", id, err)
	}
	b.w.notify()
	return nil
}

// ExpireDue removes the overrides expired at the store's clock, auditing
// each as override.expire by SystemAuthor, and returns how many it removed.
// The caller runs it periodically; Overrides already hides expired ones.
func (b *Bolt) ExpireDue(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("expire overrides: %w", err)
	}
	now := b.clock()
	expired := func(o Override) bool { return !o.Active(now) }
	// gslbd calls this every second: look first, so that an idle store
	// is not rewritten (and fsynced) each time.
	var any bool
	if err := b.db.View(func(tx *bolt.Tx) error {
		due, err := scanOverrides(tx.Bucket(bucketOverrides), expired)
		any = len(due) > 0
		return err
	}); err != nil {
		return 0, fmt.Errorf("expire overrides: %w", err)
	}
	if !any {
		return 0, nil
	}
	var n int
	err := b.db.Update(func(tx *bolt.Tx) error {
		due, err := scanOverrides(tx.Bucket(bucketOverrides), expired)
		if err != nil {
			return err
		}
		for _, o := range due {
			if err := deleteAudited(tx, o, now, SystemAuthor, ActionExpire, "expired at "+o.Expires.UTC().Format(time.RFC3339)); err != nil {
				return err
			}
		}
		n = len(due)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("expire overrides: %w", err)
	}
	if n > 0 {
		b.w.notify()
	}
	return n, nil
}

// Overrides implements Store.
func (b *Bolt) Overrides(ctx context.Context, now time.Time) ([]Override, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list overrides: %w", err)
	}
	var out []Override
	err := b.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = scanOverrides(tx.Bucket(bucketOverrides), func(o Override) bool { return o.Active(now) })
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list overrides: %w", err)
	}
	slices.SortFunc(out, func(a, b Override) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// Audit implements Store.
func (b *Bolt) Audit(ctx context.Context, since uint64, limit int) ([]AuditEntry, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("read audit: %w", err)
	}
	if limit <= 0 {
		return nil, fmt.Errorf("read audit: %w", fieldErr("limit", "must be positive"))
	}
	var out []AuditEntry
	if since == math.MaxUint64 {
		return out, nil
	}
	err := b.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.Seek(seqKey(since + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			var e AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode entry %x: %w", k, err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read audit: %w", err)
	}
	return out, nil
}

// scanOverrides decodes the overrides that keep accepts.
func scanOverrides(bk *bolt.Bucket, keep func(Override) bool) ([]Override, error) {
	var out []Override
	err := bk.ForEach(func(k, v []byte) error {
		var o Override
		if err := json.Unmarshal(v, &o); err != nil {
			return fmt.Errorf("decode override %s: %w", k, err)
		}
		if keep(o) {
			out = append(out, o)
		}
		return nil
	})
	return out, err
}

// deleteAudited removes o and appends its audit entry, in tx.
func deleteAudited(tx *bolt.Tx, o Override, now time.Time, author, action, reason string) error {
	data, err := json.Marshal(o)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketOverrides).Delete([]byte(o.ID)); err != nil {
		return err
	}
	return appendAudit(tx, AuditEntry{Time: now, Author: author, Action: action,
		Target: o.Target.String(), Detail: string(data), Reason: reason})
}

func appendAudit(tx *bolt.Tx, e AuditEntry) error {
	bk := tx.Bucket(bucketAudit)
	seq, err := bk.NextSequence()
	if err != nil {
		return err
	}
	e.Seq = seq
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return bk.Put(seqKey(seq), data)
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }
