package test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// xfrSecret is the TSIG secret gslbd and Knot share (base64 of 32 bytes).
const xfrSecret = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="

// freeLoopbackPort returns a port that was free on 127.0.0.1 for both UDP
// and TCP a moment ago, for a process whose port must be known in advance.
func freeLoopbackPort(t *testing.T) uint16 {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		ln.Close()
		if err == nil {
			pc.Close()
			return uint16(port)
		}
	}
	t.Fatal("no port free for both UDP and TCP in 20 tries")
	return 0
}

// knot is a knotd running in the foreground as this test's child.
type knot struct {
	cmd  *exec.Cmd
	addr netip.AddrPort
	logs *syncBuffer
	done chan error
}

// startKnot runs knotd as a secondary of example.test pulling from primary
// with TSIG and accepting NOTIFY from 127.0.0.1. It is stopped by PID at
// cleanup.
func startKnot(t *testing.T, port uint16, primary netip.AddrPort) *knot {
	t.Helper()
	bin := requireTool(t, "knotd")
	dir := t.TempDir()
	for _, d := range []string{"run", "db", "zones"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := fmt.Sprintf(`server:
    rundir: "%[1]s/run"
    listen: 127.0.0.1@%[2]d
database:
    storage: "%[1]s/db"
log:
  - target: stderr
    any: info
key:
  - id: xfr-key
    algorithm: hmac-sha256
    secret: %[3]s
remote:
  - id: gslbd
    address: %[4]s@%[5]d
    key: xfr-key
acl:
  - id: notify-from-gslbd
    address: 127.0.0.1
    action: notify
template:
  - id: default
    storage: "%[1]s/zones"
    zonefile-sync: -1
    zonefile-load: none
    journal-content: none
zone:
  - domain: example.test
    master: gslbd
    acl: notify-from-gslbd
`, dir, port, xfrSecret, primary.Addr(), primary.Port())
	confPath := filepath.Join(dir, "knot.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	k := &knot{addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), logs: &syncBuffer{}, done: make(chan error, 1)}
	k.cmd = exec.Command(bin, "-c", confPath)
	k.cmd.Stdout, k.cmd.Stderr = k.logs, k.logs
	if err := k.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { k.done <- k.cmd.Wait() }()
	t.Cleanup(func() { k.stop(t) })
	return k
}

// stop ends knotd by its PID: SIGTERM, then SIGKILL after 10s.
func (k *knot) stop(t *testing.T) {
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(10 * time.Second):
		_ = k.cmd.Process.Kill()
		<-k.done
		t.Errorf("knotd did not exit within 10s of SIGTERM")
	}
	if t.Failed() {
		t.Logf("knotd log:\n%s", k.logs)
	}
}

// tryDig runs dig once and returns its output, or an error (no server yet).
func tryDig(addr netip.AddrPort, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	path, err := exec.LookPath("dig")
	if err != nil {
		return "", err
	}
	base := []string{"@" + addr.Addr().String(), "-p", fmt.Sprint(addr.Port()), "+time=1", "+tries=1", "+norec"}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, path, append(base, args...)...)
	cmd.Stdout = &out
	err = cmd.Run()
	return out.String(), err
}

// answerSection is dig's answer section for name/qtype, one normalised
// record per line, sorted (RRset order is free).
func answerSection(t *testing.T, addr netip.AddrPort, name, qtype string) string {
	t.Helper()
	out := dig(t, addr, "+norec", "+noall", "+answer", name, qtype)
	var lines []string
	for l := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		if l = strings.Join(strings.Fields(l), " "); l != "" {
			lines = append(lines, l)
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// soaSerial returns the serial addr serves for example.test, "" if none.
func soaSerial(addr netip.AddrPort) string {
	out, err := tryDig(addr, "+short", "example.test", "SOA")
	if f := strings.Fields(out); err == nil && len(f) == 7 {
		return f[2]
	}
	return ""
}

// compareAnswers checks that Knot and gslbd give the same answer sections.
func compareAnswers(t *testing.T, g *gslbd, k *knot) {
	t.Helper()
	for _, q := range [][2]string{
		{"example.test", "SOA"}, {"example.test", "NS"}, {"example.test", "MX"}, {"example.test", "TXT"},
		{"www.example.test", "A"}, {"www.example.test", "AAAA"}, {"alias.example.test", "A"},
		{"chain1.example.test", "A"}, {"foo.wild.example.test", "A"}, {"x.wild.example.test", "A"},
		{"_sip._tcp.example.test", "SRV"}, {"big.example.test", "TXT"}, {"sub.example.test", "DS"},
		{"nothere.example.test", "A"}, {"host.sub.example.test", "A"},
	} {
		want := answerSection(t, g.DNS, q[0], q[1])
		if got := answerSection(t, k.addr, q[0], q[1]); got != want {
			t.Errorf("%s %s: knot answers\n%s\ngslbd answers\n%s", q[0], q[1], got, want)
		}
	}
}

// TestKnotSecondary runs Knot as a secondary of gslbd: it transfers the
// zone with TSIG, serves what gslbd serves, and after an edit of the zone
// file gets gslbd's NOTIFY and transfers the new version.
func TestKnotSecondary(t *testing.T) {
	requireTool(t, "knotd")
	requireTool(t, "dig")
	dir := copyZones(t)
	knotPort := freeLoopbackPort(t)
	cfg := writeConfig(t, fmt.Sprintf(`listen: ["127.0.0.1:0"]
zones: %s
reload:
  debounce: 100ms
transfers:
  keys: [{name: xfr-key, algorithm: hmac-sha256, secret: "%s"}]
  zones:
    example.test:
      allow: [{prefixes: [127.0.0.1/32], key: xfr-key}]
      notify: ["127.0.0.1:%d"]
`, dir, xfrSecret, knotPort))
	g := startGslbd(t, "-config", cfg)
	k := startKnot(t, knotPort, g.DNS)

	waitFor(t, 30*time.Second, "knot to transfer serial 2026112201", func() bool {
		return soaSerial(k.addr) == "2026112201"
	})
	if !strings.Contains(g.Logs(), "msg=\"zone transfer\"") || !strings.Contains(g.Logs(), "key=xfr-key.") {
		t.Errorf("gslbd did not log a signed zone transfer:\n%s", g.Logs())
	}
	compareAnswers(t, g, k)

	// Edit the zone: bump the serial, change an A record. gslbd reloads,
	// NOTIFYs Knot, and Knot transfers the new version. Knot's refresh
	// timer (7200s) cannot be what brings it.
	zone := filepath.Join(dir, "example.test.zone")
	orig, err := os.ReadFile(zone)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(orig), "2026112201", "2026112202", 1)
	edited = strings.Replace(edited, "192.0.2.80", "192.0.2.180", 1)
	writeFile(t, zone, edited)
	waitFor(t, 30*time.Second, "knot to serve the edited record", func() bool {
		out, err := tryDig(k.addr, "+short", "www.example.test", "A")
		return err == nil && strings.Contains(out, "192.0.2.180")
	})
	if got := soaSerial(k.addr); got != "2026112202" {
		t.Errorf("knot serial %q after the edit, want 2026112202", got)
	}
	waitFor(t, 10*time.Second, "gslbd to log the acknowledged NOTIFY", func() bool {
		return strings.Contains(g.Logs(), "msg=\"notify acknowledged\"") && strings.Contains(g.Logs(), "serial=2026112202")
	})
	compareAnswers(t, g, k)
	if t.Failed() {
		t.Logf("gslbd log:\n%s", g.Logs())
	}
}
