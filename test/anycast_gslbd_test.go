package test

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAnycastFollowsHealthInBIRD: gslbd announces its VIP while its DNS
// answers and the site's L7 tier (a TCP listener here) is up, withdraws it
// when the tier fails, announces it again when it recovers, and on SIGTERM
// drains with 65535:0 (local_pref 0 in BIRD) before withdrawing and exiting.
func TestAnycastFollowsHealthInBIRD(t *testing.T) {
	b := startBIRD(t, birdSite{name: "gslbd", addr: netip.MustParseAddr("127.0.0.2"), asn: birdASN})
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
    - {address: 127.0.0.1, asn: 65000, port: %d, local_address: 127.0.0.2, hold_time: 3s, keepalive: 1s, connect_retry: 1s}
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
	vip := netip.MustParsePrefix("203.0.113.10/32")
	b.waitRoutes(t, vip, "learned", onePath("100"))
	tier.Close() // the L7 tier dies: fall 2 x 200ms
	start := time.Now()
	b.waitRoutes(t, vip, "withdrawn", noPath)
	t.Logf("withdrawn %v after the tier failed (interval 200ms x fall 2)", time.Since(start).Round(10*time.Millisecond))
	tier, err = net.Listen("tcp", tierAddr)
	if err != nil {
		t.Fatalf("reopen the tier on %s: %v", tierAddr, err)
	}
	defer tier.Close()
	b.waitRoutes(t, vip, "announced again", onePath("100"))

	g.Signal(t, syscall.SIGTERM)
	b.waitRoutes(t, vip, "drained (local_pref 0)", onePath("0"))
	// While the VIP drains, DNS still answers (it stops after the withdrawal).
	if got := strings.TrimSpace(dig(t, g.DNS, "+short", "+norec", "www.example.com", "A")); got != "192.0.2.80" {
		t.Errorf("DNS during the drain: %q, want an answer", got)
	}
	b.waitRoutes(t, vip, "withdrawn after the drain", noPath)
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
