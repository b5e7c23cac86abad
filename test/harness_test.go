package test

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

// binDir holds the binaries built once by TestMain.
var binDir string

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "gslbd-itest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	build := exec.Command("go", "build", "-o", dir+"/", "./cmd/gslbd", "./cmd/gslbctl", "./cmd/lbd")
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build binaries:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// inCI reports whether missing tools must fail rather than skip.
func inCI() bool { return os.Getenv("CI") == "true" }

// requireTool returns the path of an external tool, skipping the test when
// it is missing (failing in CI, where make test installs it).
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			if _, serr := os.Stat(filepath.Join(dir, name)); serr == nil {
				return filepath.Join(dir, name)
			}
		}
		if inCI() {
			t.Fatalf("%s is not installed (make test installs it)", name)
		}
		t.Skipf("%s is not installed; run make test to install it", name)
	}
	return p
}

// syncBuffer collects a process's output safely.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// gslbd is a running gslbd process.
type gslbd struct {
	cmd     *exec.Cmd
	DNS     netip.AddrPort // the first DNS address
	Metrics string         // host:port of /metrics
	API     string         // host:port of the REST API ("" without api:)
	logs    *syncBuffer
	done    chan error
	stopped bool
}

var listeningRE = regexp.MustCompile(`msg=listening dns=(\S+) metrics=(\S*)(?: api=(\S*))?`)

// startGslbd runs bin/gslbd with args, adding -listen 127.0.0.1:0 and
// -metrics 127.0.0.1:0 unless given (flags override a -config file), and waits until it is serving. The
// process is stopped with SIGTERM at cleanup and must exit 0.
func startGslbd(t testing.TB, args ...string) *gslbd {
	t.Helper()
	joined := " " + strings.Join(args, " ")
	if !strings.Contains(joined, " -listen") {
		args = append(args, "-listen", "127.0.0.1:0")
	}
	if !strings.Contains(joined, " -metrics") {
		args = append(args, "-metrics", "127.0.0.1:0")
	}
	g := &gslbd{logs: &syncBuffer{}, done: make(chan error, 1)}
	g.cmd = exec.Command(filepath.Join(binDir, "gslbd"), args...)
	pr, pw := io.Pipe()
	g.cmd.Stdout = g.logs
	g.cmd.Stderr = io.MultiWriter(g.logs, pw)
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { g.done <- g.cmd.Wait(); pw.Close() }()
	ready := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
				ready <- m
				break
			}
		}
		io.Copy(io.Discard, pr)
	}()
	select {
	case m := <-ready:
		g.DNS = netip.MustParseAddrPort(strings.Split(m[1], ",")[0])
		g.Metrics = m[2]
		g.API = m[3]
	case err := <-g.done:
		t.Fatalf("gslbd exited before serving: %v\n%s", err, g.logs)
	case <-time.After(15 * time.Second):
		g.cmd.Process.Kill()
		t.Fatalf("gslbd did not start within 15s\n%s", g.logs)
	}
	t.Cleanup(func() { g.stop(t) })
	return g
}

// stop sends SIGTERM and requires a clean exit within 10s. Calling it
// again is a no-op.
func (g *gslbd) stop(t testing.TB) {
	if g.stopped {
		return
	}
	g.stopped = true
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-g.done:
		if err != nil {
			t.Errorf("gslbd exit: %v\n%s", err, g.logs)
		}
	case <-time.After(10 * time.Second):
		g.cmd.Process.Kill()
		t.Errorf("gslbd did not exit within 10s of SIGTERM\n%s", g.logs)
	}
}

// Logs returns everything the process wrote so far.
func (g *gslbd) Logs() string { return g.logs.String() }

// Signal sends sig to the process.
func (g *gslbd) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := g.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond every 50ms until it is true or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runTool runs an external command with a timeout and returns its stdout.
func runTool(t testing.TB, name string, args ...string) string {
	t.Helper()
	path := requireTool(t, name)
	cmd := exec.Command(path, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), errb.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("%s %s: timed out", name, strings.Join(args, " "))
	}
	return out.String()
}

// dig queries addr with dig; args are dig's own (name, type, +options).
func dig(t testing.TB, addr netip.AddrPort, args ...string) string {
	t.Helper()
	base := []string{"@" + addr.Addr().String(), "-p", fmt.Sprint(addr.Port()), "+time=2", "+tries=1"}
	return runTool(t, "dig", append(base, args...)...)
}

// kdig queries addr with Knot's kdig.
func kdig(t testing.TB, addr netip.AddrPort, args ...string) string {
	t.Helper()
	base := []string{"@" + addr.Addr().String(), "-p", fmt.Sprint(addr.Port()), "+time=2", "+retry=0"}
	return runTool(t, "kdig", append(base, args...)...)
}
