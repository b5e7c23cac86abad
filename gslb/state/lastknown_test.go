package state

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// downStore is a Store that can be made unavailable.
type downStore struct {
	Store
	down bool
}

func (d *downStore) Overrides(ctx context.Context, now time.Time) ([]Override, error) {
	if d.down {
		return nil, ErrUnavailable
	}
	return d.Store.Overrides(ctx, now)
}

// The overrides seen last are applied after a restart while the store is
// unreachable; expired ones are not.
func TestLastKnownOverrides(t *testing.T) {
	dir := t.TempDir()
	b, err := OpenBolt(filepath.Join(dir, "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := t.Context()
	down := Override{Target: Target{Type: TargetEndpoint, Name: "fra-1"}, Kind: KindDown, Reason: "disk", Author: "ops"}
	short := Override{Target: Target{Type: TargetSite, Name: "lon"}, Kind: KindMaintenance, Reason: "r", Author: "ops", Expires: time.Now().Add(time.Hour)}
	for _, o := range []Override{down, short} {
		if _, err := b.PutOverride(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "overrides.json")
	ds := &downStore{Store: b}
	l := WithLastKnown(ds, path, nil)
	if ovs, err := l.Overrides(ctx, time.Now()); err != nil || len(ovs) != 2 {
		t.Fatalf("Overrides: %v %v", ovs, err)
	}
	if data, err := os.ReadFile(path); err != nil || !strings.Contains(string(data), "fra-1") {
		t.Fatalf("saved file: %v %s", err, data)
	}
	// "Restart" with the store unreachable: a new wrapper on the same file.
	ds.down = true
	l2 := WithLastKnown(ds, path, nil)
	ovs, err := l2.Overrides(ctx, time.Now())
	if err != nil || len(ovs) != 2 {
		t.Fatalf("last known while down: %v %v; want both", ovs, err)
	}
	if ovs, _ = l2.Overrides(ctx, time.Now().Add(2*time.Hour)); len(ovs) != 1 || ovs[0].Target.Name != "fra-1" {
		t.Errorf("two hours later: %+v; want only the override without expiry", ovs)
	}
	// Nothing saved yet: nothing known, no error.
	l3 := WithLastKnown(ds, filepath.Join(dir, "none.json"), nil)
	if ovs, err := l3.Overrides(ctx, time.Now()); err != nil || len(ovs) != 0 {
		t.Errorf("without a file: %v %v", ovs, err)
	}
	// A corrupt file is an error that names it.
	os.WriteFile(path, []byte("{"), 0o600)
	if _, err := l2.Overrides(ctx, time.Now()); err == nil || !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "overrides.json") {
		t.Errorf("corrupt file: %v", err)
	}
}
