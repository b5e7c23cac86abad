package state

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/gslbd/gslbd/gslb/state/etcdtest"
	"go.uber.org/goleak"
)

// shared is the etcd cluster the non-destructive etcd tests share, each
// under its own key prefix: starting one per test would cost more than
// the tests. Started on first use, closed by TestMain.
var shared struct {
	once sync.Once
	c    *etcdtest.Cluster
	err  error
}

func sharedCluster(t *testing.T) *etcdtest.Cluster {
	t.Helper()
	shared.once.Do(func() { shared.c, shared.err = etcdtest.Start(3) })
	if shared.err != nil {
		t.Fatalf("shared etcd cluster: %v", shared.err)
	}
	return shared.c
}

// TestMain checks for leaked goroutines after closing the shared
// cluster: the stores' watch loops, the etcd clients and the embedded
// servers all stop on Close, so no goroutine needs ignoring.
func TestMain(m *testing.M) {
	code := m.Run()
	if shared.c != nil {
		shared.c.Close()
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// testLogger logs to t (shown with -v or on failure) until the test ends;
// later records, from goroutines still winding down, are dropped rather
// than panicking the test binary.
func testLogger(t *testing.T) *slog.Logger {
	w := &testLogWriter{t: t}
	t.Cleanup(w.stop) // registered first, so it runs after the stores' Close
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testLogWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *testLogWriter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
}
