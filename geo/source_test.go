package geo

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"go.uber.org/goleak"
)

// syncBuffer is a log sink safe for the Run goroutine and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// countryFixture maps 192.0.2.0/24 to one country.
func countryFixture(t testing.TB, cc string) []byte {
	return buildMMDB(t, mmdbwriter.Options{DatabaseType: "GeoIP2-Country", IPVersion: 6}, []fixtureNet{
		{"192.0.2.0/24", mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String(cc)}}},
	})
}

var probe = netip.MustParseAddr("192.0.2.1")

// waitReload waits for the next reload attempt of a running Source.
func waitReload(t *testing.T, reloads <-chan error) error {
	t.Helper()
	select {
	case err := <-reloads:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("no reload within 20s")
		return nil
	}
}

func TestSourceRun(t *testing.T) {
	tests := []struct {
		name      string
		pollOnly  bool
		pollEvery time.Duration
	}{
		{"fsnotify", false, -1},
		{"polling", true, 5 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer goleak.VerifyNone(t)
			path := filepath.Join(t.TempDir(), "geo.mmdb")
			writeFile(t, path, countryFixture(t, "GB"))
			var logs syncBuffer
			s, err := NewSource(path, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			if got := s.DB().Lookup(probe).Location.Country; got != "GB" {
				t.Fatalf("initial DB says %q, want GB", got)
			}
			reloads := make(chan error, 8)
			s.PollInterval, s.Debounce, s.noFsnotify = tc.pollEvery, time.Millisecond, tc.pollOnly
			s.OnReload = func(err error) { reloads <- err }
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			<-s.ready

			// A new file is swapped in.
			writeFile(t, path, countryFixture(t, "DE"))
			if err := waitReload(t, reloads); err != nil {
				t.Fatalf("reload: %v", err)
			}
			if got := s.DB().Lookup(probe).Location.Country; got != "DE" {
				t.Fatalf("after reload the DB says %q, want DE", got)
			}

			// A corrupt one is refused: the old DB keeps serving, the error
			// is logged with the path.
			writeFile(t, path, []byte("this is not an mmdb file"))
			if err := waitReload(t, reloads); err == nil {
				t.Fatal("corrupt file reloaded without error")
			}
			if got := s.DB().Lookup(probe).Location.Country; got != "DE" {
				t.Fatalf("after a failed reload the DB says %q, want DE still", got)
			}
			if l := logs.String(); !strings.Contains(l, "reload failed") || !strings.Contains(l, "path="+path) {
				t.Errorf("log lacks the failure with the path:\n%s", l)
			}

			// Fixed again.
			writeFile(t, path, countryFixture(t, "FR"))
			if err := waitReload(t, reloads); err != nil {
				t.Fatalf("reload: %v", err)
			}
			if got := s.DB().Lookup(probe).Location.Country; got != "FR" {
				t.Fatalf("after reload the DB says %q, want FR", got)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run: %v", err)
			}
		})
	}
}

func TestSourceReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "geo.mmdb")
	writeFile(t, path, countryFixture(t, "GB"))
	s, err := NewSource(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, []byte("garbage"))
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Reload of garbage: %v, want an error naming %s", err, path)
	}
	if got := s.DB().Lookup(probe).Location.Country; got != "GB" {
		t.Fatalf("after a failed Reload the DB says %q, want GB", got)
	}
	writeFile(t, path, countryFixture(t, "DE"))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := s.DB().Lookup(probe).Location.Country; got != "DE" {
		t.Fatalf("after Reload the DB says %q, want DE", got)
	}
}

func TestNewSourceErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.mmdb")
	if _, err := NewSource(missing, nil); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("NewSource(missing) = %v, want an error naming the path", err)
	}
	bad := filepath.Join(dir, "bad.mmdb")
	writeFile(t, bad, []byte("garbage"))
	if _, err := NewSource(bad, nil); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("NewSource(bad) = %v, want an error naming the path", err)
	}
}

func TestSourceDefault(t *testing.T) {
	defer goleak.VerifyNone(t)
	s, err := NewSource("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.DB().Lookup(netip.MustParseAddr("8.8.8.8")); got.Location.Country != "US" {
		t.Errorf("default source: 8.8.8.8 -> %+v", got)
	}
	if err := s.Reload(); err != nil {
		t.Errorf("Reload of the default: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}
