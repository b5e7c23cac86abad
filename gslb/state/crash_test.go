package state

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

const (
	crashEnv        = "GSLBD_STATE_CRASH_DB" // set: TestHelperWriter is the child
	crashMaxWrites  = 10000
	crashReadBefore = 50
	crashPrefix     = "committed "
)

// TestHelperWriter is not a test: TestKillDuringWrites runs it in a child
// process that writes overrides until it is killed.
func TestHelperWriter(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("helper process for TestKillDuringWrites")
	}
	b, err := OpenBolt(path, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for i := range crashMaxWrites {
		o, err := b.PutOverride(context.Background(), Override{
			Target: Target{TargetEndpoint, fmt.Sprintf("e%d", i)},
			Kind:   KindDown, Reason: "crash test", Author: "child",
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		// Printed only after the commit returned: a promise that o.ID is durable.
		fmt.Fprintln(os.Stdout, crashPrefix+o.ID)
	}
	os.Exit(0)
}

func TestKillDuringWrites(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" {
		t.Skip("needs SIGKILL")
	}
	path := filepath.Join(t.TempDir(), "state.db")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second) // kills the child if we hang
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperWriter$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	r := bufio.NewReader(stdout)
	var committed []string
	killed := false
	for {
		line, err := r.ReadString('\n')
		if err != nil { // EOF after the kill; a fragment without '\n' is not a promise
			if !errors.Is(err, io.EOF) {
				t.Errorf("read child output: %v", err)
			}
			break
		}
		if id, ok := strings.CutPrefix(strings.TrimSpace(line), crashPrefix); ok {
			committed = append(committed, id)
		}
		if len(committed) == crashReadBefore && !killed {
			// SIGKILL by PID while the child keeps writing; lines already
			// in the pipe are still read below, they were committed too.
			if err := cmd.Process.Kill(); err != nil {
				t.Fatalf("kill child %d: %v", cmd.Process.Pid, err)
			}
			killed = true
		}
	}
	werr := cmd.Wait()
	if !killed {
		t.Fatalf("child exited after %d commits before the kill: %v; stderr: %s", len(committed), werr, stderr.String())
	}
	if ctx.Err() != nil {
		t.Fatalf("timed out: %v", ctx.Err())
	}
	if len(committed) >= crashMaxWrites {
		t.Fatalf("child finished all %d writes before the kill; the test did not interrupt anything", crashMaxWrites)
	}
	t.Logf("child killed (%v) after reporting %d commits", werr, len(committed))

	b, err := OpenBolt(path, nil)
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	defer b.Close()
	err = b.db.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("consistency check after kill -9: %v", err)
	}
	got, err := b.Overrides(t.Context(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	have := make(map[string]bool, len(got))
	for _, o := range got {
		have[o.ID] = true
	}
	for _, id := range committed {
		if !have[id] {
			t.Errorf("override %s reported committed but missing after kill -9", id)
		}
	}
	audit, err := b.Audit(t.Context(), 0, crashMaxWrites+1)
	if err != nil {
		t.Fatal(err)
	}
	if len(audit) != len(got) {
		t.Errorf("audit has %d entries for %d overrides; each put is one transaction", len(audit), len(got))
	}
}
