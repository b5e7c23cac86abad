package xdp

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gslbd/gslbd/dataplane"
)

// TestEndToEnd sends real TCP connections through the attached programs:
//
//	client ns            LB ns                          backend ns
//	c0 198.18.100.2 ---- l0 198.18.100.1  [lb]
//	                     l1 198.18.101.1  [lb] -------- b0 198.18.101.2 [decap]
//	                                                    lo 192.0.2.10 (VIP), echo server
//
// (and the same in IPv6). The client's SYN is encapsulated by lb on l0,
// routed to l1 (redirected there, or, while the LB has no neighbour entry
// for the backend yet, passed to the LB's kernel to forward), decapsulated
// on b0 and answered by the server from the VIP straight back through the
// LB's kernel (lb passes it: not a VIP).
func TestEndToEnd(t *testing.T) {
	requirePrivileges(t)
	if _, err := exec.LookPath("ethtool"); err != nil {
		t.Skip("needs ethtool")
	}
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	prefix := fmt.Sprintf("lbdxdp-%d-%s", os.Getpid(), hex.EncodeToString(rnd[:]))
	client, lbns, backend := newEmptyNetns(t, prefix+"-c"), newEmptyNetns(t, prefix+"-l"), newEmptyNetns(t, prefix+"-b")

	vip6e2e := netip.MustParseAddr("2001:db8:ffff::10")
	for _, c := range []struct {
		ns   *testNet
		args []string
	}{
		{lbns, []string{"link", "add", "l0", "type", "veth", "peer", "name", "c0", "netns", client.name}},
		{lbns, []string{"link", "add", "l1", "type", "veth", "peer", "name", "b0", "netns", backend.name}},
		{client, []string{"addr", "add", "198.18.100.2/24", "dev", "c0"}},
		{client, []string{"addr", "add", "2001:db8:100::2/64", "dev", "c0", "nodad"}},
		{client, []string{"link", "set", "c0", "up"}},
		{client, []string{"route", "add", "192.0.2.0/24", "via", "198.18.100.1"}},
		{client, []string{"route", "add", "2001:db8:ffff::/48", "via", "2001:db8:100::1"}},
		{lbns, []string{"addr", "add", "198.18.100.1/24", "dev", "l0"}},
		{lbns, []string{"addr", "add", "2001:db8:100::1/64", "dev", "l0", "nodad"}},
		{lbns, []string{"addr", "add", "198.18.101.1/24", "dev", "l1"}},
		{lbns, []string{"addr", "add", "2001:db8:101::1/64", "dev", "l1", "nodad"}},
		{lbns, []string{"link", "set", "l0", "up"}},
		{lbns, []string{"link", "set", "l1", "up"}},
		{backend, []string{"addr", "add", "198.18.101.2/24", "dev", "b0"}},
		{backend, []string{"addr", "add", "2001:db8:101::2/64", "dev", "b0", "nodad"}},
		{backend, []string{"addr", "add", vip4.String() + "/32", "dev", "lo"}},
		{backend, []string{"addr", "add", vip6e2e.String() + "/128", "dev", "lo"}},
		{backend, []string{"link", "set", "b0", "up"}},
		{backend, []string{"route", "add", "198.18.100.0/24", "via", "198.18.101.1"}},
		{backend, []string{"route", "add", "2001:db8:100::/64", "via", "2001:db8:101::1"}},
	} {
		mustRun(t, "ip", append([]string{"-n", c.ns.name}, c.args...)...)
	}
	mustRun(t, "ip", "netns", "exec", lbns.name, "sysctl", "-q", "-w",
		"net.ipv4.conf.all.forwarding=1", "net.ipv6.conf.all.forwarding=1")
	// Locally made TCP has only a partial checksum, which XDP on the far
	// end of a veth does not complete (ANCHORS.md, "XDP on veth").
	mustRun(t, "ip", "netns", "exec", client.name, "ethtool", "-K", "c0", "tx", "off")
	mustRun(t, "ip", "netns", "exec", backend.name, "ethtool", "-K", "b0", "tx", "off")

	// Neighbour discovery needs the interfaces' link-local addresses,
	// which the kernel adds a moment after the link comes up.
	for _, w := range []struct {
		ns  *testNet
		dev string
	}{{client, "c0"}, {lbns, "l0"}, {lbns, "l1"}, {backend, "b0"}} {
		waitLinkLocal(t, w.ns, w.dev)
	}

	pin := mountBPFFS(t)
	var l *Loader
	lbns.do(t, func() {
		var err error
		l, err = Open(Config{Interfaces: []string{"l0", "l1"}, PinPath: pin, TunnelSource4: tun4, TunnelSource6: tun6})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Cleanup(func() {
		if err := l.Detach(); err != nil {
			t.Errorf("detach: %v", err)
		}
	})
	decapPin := filepath.Join(filepath.Dir(pin), "decap")
	backend.do(t, func() {
		if err := AttachDecap("b0", decapPin, []netip.Addr{netip.MustParseAddr("198.18.101.2"), netip.MustParseAddr("2001:db8:101::2")}); err != nil {
			t.Fatal(err)
		}
	})
	t.Cleanup(func() {
		backend.do(t, func() {
			if err := DetachDecap("b0", decapPin); err != nil {
				t.Errorf("detach decap: %v", err)
			}
		})
	})

	for _, tc := range []struct {
		vip dataplane.VIP
		be  netip.Addr
	}{
		{dataplane.VIP{Addr: vip4, Proto: dataplane.ProtoTCP, Port: 80}, netip.MustParseAddr("198.18.101.2")},
		{dataplane.VIP{Addr: vip6e2e, Proto: dataplane.ProtoTCP, Port: 80}, netip.MustParseAddr("2001:db8:101::2")},
	} {
		t.Run(tc.vip.String(), func(t *testing.T) {
			if err := l.SetService(dataplane.Service{VIP: tc.vip, Mode: dataplane.ModeIPIP,
				Backends: []dataplane.Backend{{Index: 0, Addr: tc.be}}, Table: []uint32{0, 0, 0, 0, 0, 0, 0}}); err != nil {
				t.Fatal(err)
			}
			addr := netip.AddrPortFrom(tc.vip.Addr, tc.vip.Port).String()
			var ln net.Listener
			backend.do(t, func() {
				var err error
				if ln, err = net.Listen("tcp", addr); err != nil {
					t.Fatal(err)
				}
			})
			defer ln.Close()
			served := make(chan error, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					served <- err
					return
				}
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_, err = io.Copy(c, c)
				served <- err
			}()

			for i := range 3 { // the first one may go through the LB's kernel (no neighbour yet)
				var conn net.Conn
				start := time.Now()
				client.do(t, func() {
					var err error
					if conn, err = net.DialTimeout("tcp", addr, 5*time.Second); err != nil {
						t.Fatalf("connection %d to %s: %v", i, addr, err)
					}
				})
				t.Logf("connection %d: handshake %v", i, time.Since(start))
				msg := []byte(fmt.Sprintf("hello %d through %s", i, tc.vip))
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := conn.Write(msg); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(conn, got); err != nil {
					t.Fatalf("echo %d: %v", i, err)
				}
				if !bytes.Equal(got, msg) {
					t.Fatalf("echo %d: %q, want %q", i, got, msg)
				}
				conn.Close()
				if i == 0 {
					if err := <-served; err != nil {
						t.Fatalf("server: %v", err)
					}
					go func() { // serve the next ones
						for {
							c, err := ln.Accept()
							if err != nil {
								return
							}
							go func() {
								defer c.Close()
								_ = c.SetDeadline(time.Now().Add(10 * time.Second))
								_, _ = io.Copy(c, c)
							}()
						}
					}()
				}
			}
			// Real TCP stacks may retransmit, so the counts are bounds.
			c := mustCounters(t, l)
			vc := c.VIPs[tc.vip]
			t.Logf("VIP counters %+v", vc)
			if vc.NewFlows < 3 || vc.LRUHits < 3*3 || vc.Packets != vc.LRUHits+vc.LRUMisses {
				t.Errorf("VIP counters %+v, want 3 new flows or more, 3 established packets or more each", vc)
			}
			for r, n := range vc.Drops {
				if n != 0 {
					t.Errorf("%d packets dropped as %s", n, r)
				}
			}
			bc := c.Backends[dataplane.BackendKey{VIP: tc.vip, Addr: tc.be}]
			// Read after the VIP's: packets still in flight only add.
			if bc.Packets < vc.Packets || bc.NewFlows < vc.NewFlows {
				t.Errorf("backend counters %+v, want all %d packets and %d new flows", bc, vc.Packets, vc.NewFlows)
			}
			prefix := netip.MustParsePrefix("198.18.100.0/24")
			if tc.vip.Addr.Is6() {
				prefix = netip.MustParsePrefix("2001:db8:100::/48")
			}
			if rtt, err := l.RTT(); err != nil || len(rtt) != 1 || rtt[0].Prefix != prefix || rtt[0].Count < 1 || rtt[0].Min <= 0 {
				t.Errorf("RTT samples %+v, %v; want some for %s", rtt, err, prefix)
			}
		})
	}
	lbns.do(t, func() {
		if m := l.Modes(); m["l0"] != modeDriver || m["l1"] != modeDriver {
			t.Errorf("modes %v, want driver", m)
		}
	})
	stats, err := l.FIBStats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("route lookups: %v", stats)
	if stats["success"]+stats["cached"] == 0 {
		t.Errorf("no packet took the XDP redirect path: %v", stats)
	}
}

// newEmptyNetns makes a network namespace with lo up, deleted (by name)
// when the test ends.
func newEmptyNetns(t *testing.T, name string) *testNet {
	t.Helper()
	mustRun(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	mustRun(t, "ip", "-n", name, "link", "set", "lo", "up")
	// Interfaces made later skip duplicate address detection: a tentative
	// link-local address would hold up neighbour discovery for a second.
	mustRun(t, "ip", "netns", "exec", name, "sysctl", "-q", "-w", "net.ipv6.conf.default.accept_dad=0")
	fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &testNet{name: name, fd: fd}
}

// waitLinkLocal waits (up to 5 s) until dev in ns has a usable IPv6
// link-local address.
func waitLinkLocal(t *testing.T, ns *testNet, dev string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := exec.Command("ip", "-n", ns.name, "-6", "addr", "show", "dev", dev, "scope", "link").CombinedOutput()
		if err != nil {
			t.Fatalf("ip addr show %s: %v: %s", dev, err, out)
		}
		if bytes.Contains(out, []byte("fe80::")) && !bytes.Contains(out, []byte("tentative")) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has no link-local IPv6 address after 5s: %s", dev, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
