package test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// gslbdBIRD is BIRD 2 on a loopback high port with its own control socket,
// playing the site's router for gslbd's embedded announcer. Its import
// filter maps the graceful-shutdown community to local_pref 0 (BIRD does
// not act on 65535:0 by itself).
type gslbdBIRD struct {
	sock string
	port string
}

func startGslbdBIRD(t *testing.T) *gslbdBIRD {
	t.Helper()
	bird := requireTool(t, "bird")
	requireTool(t, "birdc")
	dir := t.TempDir()
	b := &gslbdBIRD{sock: filepath.Join(dir, "bird.ctl"), port: freeTCPPort(t)}
	conf := fmt.Sprintf(`router id 127.0.0.1;
protocol device {}
protocol direct { ipv4; interface "lo"; }
filter gslbd_import {
  if (65535, 0) ~ bgp_community then bgp_local_pref = 0;
  accept;
}
protocol bgp gslbd {
  local 127.0.0.1 port %s as 65000;
  neighbor 127.0.0.2 as 65000;
  passive on;
  error wait time 1, 5;
  ipv4 { import filter gslbd_import; export none; };
}
`, b.port)
	cf := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bird, "-f", "-c", cf, "-s", b.sock)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, 10*time.Second, "BIRD's control socket", func() bool {
		_, err := os.Stat(b.sock)
		return err == nil
	})
	return b
}

func freeTCPPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, p, _ := net.SplitHostPort(ln.Addr().String())
	return p
}

// route returns `birdc show route all` for prefix ("" when absent).
func (b *gslbdBIRD) route(t *testing.T, prefix string) string {
	out, err := exec.Command("birdc", "-s", b.sock, "show", "route", prefix, "all").CombinedOutput()
	if err != nil && !strings.Contains(string(out), "Network not found") {
		t.Fatalf("birdc: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), prefix) {
		return ""
	}
	return string(out)
}

// TestAnycastFollowsHealthInBIRD: gslbd announces its VIP while its DNS
// answers and the site's L7 tier (a TCP listener here) is up, withdraws it
// when the tier fails, announces it again when it recovers, and on SIGTERM
// drains with 65535:0 (local_pref 0 in BIRD) before withdrawing and exiting.
func TestAnycastFollowsHealthInBIRD(t *testing.T) {
	b := startGslbdBIRD(t)
	tier, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tierAddr := tier.Addr().String()
	cfg := writeConfig(t, fmt.Sprintf(`anycast:
  router_id: 127.0.0.2
  local_asn: 65000
  next_hop: 127.0.0.2
  drain: 2s
  peers:
    - {address: 127.0.0.1, asn: 65000, port: %s, local_address: 127.0.0.2, hold_time: 3s, keepalive: 1s, connect_retry: 1s}
  vips:
    - prefix: 203.0.113.10/32
      interval: 200ms
      rise: 2
      fall: 2
      healthy:
        dns: {name: www.example.com}
        pools: {web: "1"}
        tcp: ["%s"]
`, b.port, tierAddr))
	g := startGslbd(t, "-config", cfg)
	const vip = "203.0.113.10/32"
	waitFor(t, 10*time.Second, "BIRD to learn the VIP", func() bool {
		r := b.route(t, vip)
		return strings.Contains(r, "BGP.local_pref: 100")
	})
	tier.Close() // the L7 tier dies: fall 2 x 200ms
	start := time.Now()
	waitFor(t, 5*time.Second, "the VIP to be withdrawn", func() bool { return b.route(t, vip) == "" })
	t.Logf("withdrawn %v after the tier failed (interval 200ms x fall 2)", time.Since(start).Round(10*time.Millisecond))
	tier, err = net.Listen("tcp", tierAddr)
	if err != nil {
		t.Fatalf("reopen the tier on %s: %v", tierAddr, err)
	}
	defer tier.Close()
	waitFor(t, 5*time.Second, "the VIP to come back", func() bool { return b.route(t, vip) != "" })

	g.Signal(t, syscall.SIGTERM)
	waitFor(t, 2*time.Second, "the drain (local_pref 0)", func() bool {
		return strings.Contains(b.route(t, vip), "BGP.local_pref: 0")
	})
	waitFor(t, 6*time.Second, "the withdrawal after the drain", func() bool { return b.route(t, vip) == "" })
	select {
	case err := <-g.done:
		g.stopped = true
		if err != nil {
			t.Errorf("gslbd exit: %v\n%s", err, g.Logs())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("gslbd did not exit after the drain\n%s", g.Logs())
	}
	for _, want := range []string{"to=announced reason=healthy", "reason=\"unhealthy: tcp " + tierAddr, "reason=\"draining for shutdown\"", "to=withdrawn reason=shutdown"} {
		if !strings.Contains(g.Logs(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
}
