package state

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// fakeClock is a settable clock safe for concurrent use.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func openTest(t *testing.T) (*Bolt, *fakeClock, string) {
	t.Helper()
	clk := &fakeClock{now: t0}
	path := filepath.Join(t.TempDir(), "state.db")
	return openBoltAt(t, path, clk.Now), clk, path
}

// openBoltAt opens the store at path, closed when the test ends.
func openBoltAt(t *testing.T, path string, clock func() time.Time) *Bolt {
	t.Helper()
	b, err := OpenBolt(path, clock)
	if err != nil {
		t.Fatalf("OpenBolt: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func mustPut(t *testing.T, b Store, o Override) Override {
	t.Helper()
	got, err := b.PutOverride(t.Context(), o)
	if err != nil {
		t.Fatalf("PutOverride: %v", err)
	}
	return got
}

func ids(os []Override) []string {
	var out []string
	for _, o := range os {
		out = append(out, o.ID)
	}
	return out
}

func auditSummary(t *testing.T, b Store) []string {
	t.Helper()
	es, err := b.Audit(t.Context(), 0, 1000)
	if err != nil {
		t.Fatalf("Audit: %v", err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Action+" "+e.Target+" by "+e.Author)
	}
	return out
}

func TestOpenBoltFileMode(t *testing.T) {
	_, _, path := openTest(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("mode = %v, want 0600", perm)
	}
}

func TestOpenBoltLocked(t *testing.T) {
	_, _, path := openTest(t)
	// flock is per open file, so a second open in this process conflicts
	// like another process would; it gives up after lockTimeout.
	b2, err := OpenBolt(path, nil)
	if err == nil {
		b2.Close()
		t.Fatal("second open of a locked file succeeded")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path) {
		t.Errorf("err = %v, want ErrLocked naming %s", err, path)
	}
}

func TestOpenBoltCorrupt(t *testing.T) {
	tests := []struct {
		name    string
		content []byte
	}{
		{"text", []byte(strings.Repeat("this is not a database\n", 2000))},
		{"zeros", make([]byte, 64<<10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.db")
			if err := os.WriteFile(path, tt.content, 0o600); err != nil {
				t.Fatal(err)
			}
			b, err := OpenBolt(path, nil)
			if err == nil {
				b.Close()
				t.Fatal("corrupt file opened")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
				t.Errorf("err = %v, want ErrCorrupt naming %s", err, path)
			}
		})
	}
}

// gslbd calls ExpireDue every second: with nothing due it must not commit
// (and fsync) a write transaction.
func TestBoltExpireDueIdleDoesNotWrite(t *testing.T) {
	b, err := OpenBolt(filepath.Join(t.TempDir(), "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	txid := func() int {
		var id int
		b.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
		return id
	}
	before := txid()
	for range 5 {
		if n, err := b.ExpireDue(t.Context()); n != 0 || err != nil {
			t.Fatalf("ExpireDue on an empty store: %d, %v", n, err)
		}
	}
	if after := txid(); after != before {
		t.Errorf("idle ExpireDue committed %d write transactions", after-before)
	}
}
