package xdp

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/gslbd/gslbd/dataplane"
)

func TestFIBEgress(t *testing.T) {
	f := newFixture(t)
	vip := func(last byte) dataplane.VIP {
		return dataplane.VIP{Addr: netip.AddrFrom4([4]byte{192, 0, 2, last}), Proto: dataplane.ProtoTCP, Port: 80}
	}
	one := func(v dataplane.VIP, be netip.Addr) {
		f.set(t, dataplane.Service{VIP: v, Mode: dataplane.ModeIPIP,
			Backends: []dataplane.Backend{{Index: 0, Addr: be}}, Table: []uint32{0, 0, 0}})
	}
	one(vip(20), viaC4)
	one(vip(21), viaD4)
	one(vip(22), noNeigh4)
	f.set(t, dataplane.Service{VIP: dataplane.VIP{Addr: netip.MustParseAddr("2001:db8:ffff::20"), Proto: dataplane.ProtoTCP, Port: 80},
		Mode: dataplane.ModeIPIP, Backends: []dataplane.Backend{{Index: 0, Addr: viaC6}}, Table: []uint32{0, 0, 0}})

	t.Run("other attached interface", func(t *testing.T) {
		in := tcp4(client4, 1, vip(20).Addr, 80, tcpSYN)
		h := flowHash(client4, vip(20).Addr, 1, 80, 6)
		want := encap4(in, h, viaC4, ipDF)
		copy(want[0:], macC2)
		copy(want[6:], macC)
		act, out := f.run(t, in)
		expectFrame(t, "redirect", act, out, xdpRedirect, want)

		in6 := tcp6(client6, 1, netip.MustParseAddr("2001:db8:ffff::20"), 80, tcpSYN)
		h = flowHash(client6, netip.MustParseAddr("2001:db8:ffff::20"), 1, 80, 6)
		want = encap6(in6, h, viaC6)
		copy(want[0:], macC2)
		copy(want[6:], macC)
		act, out = f.run(t, in6)
		expectFrame(t, "redirect v6", act, out, xdpRedirect, want)
	})
	// The kernel forwards what XDP cannot send: the frame stays addressed
	// to this host.
	for name, v := range map[string]dataplane.VIP{"interface lbd is not on": vip(21), "no neighbour entry yet": vip(22)} {
		t.Run(name, func(t *testing.T) {
			be := viaD4
			if v == vip(22) {
				be = noNeigh4
			}
			in := tcp4(client4, 1, v.Addr, 80, tcpSYN)
			h := flowHash(client4, v.Addr, 1, 80, 6)
			want := encap4(in, h, be, ipDF)
			copy(want[0:12], in[0:12])
			act, out := f.run(t, in)
			expectFrame(t, name, act, out, xdpPass, want)
		})
	}
	stats, err := f.l.FIBStats()
	if err != nil {
		t.Fatal(err)
	}
	if stats["success"] != 3 || stats["no_neighbour"] != 1 {
		t.Errorf("fib stats %v, want 3 success (2 redirects, 1 to lxd) and 1 no_neighbour", stats)
	}
}

func TestFIBCache(t *testing.T) {
	one := dataplane.Service{VIP: vipTCP4, Mode: dataplane.ModeIPIP,
		Backends: []dataplane.Backend{{Index: 0, Addr: backend4[0]}}, Table: []uint32{0, 0, 0}}
	newMAC := mustMAC("02:00:00:00:00:99")
	small := tcp4(client4, 40000, vip4, 80, tcpACK)
	large := pkt4(ip4Hdr{src: client4, dst: vip4, proto: 6, flags: ipDF}, tcpSeg(40000, 80, tcpACK, 100))
	dmac := func(t *testing.T, f *fixture, in []byte) string {
		t.Helper()
		act, out := f.run(t, in)
		if act != xdpTX {
			t.Fatalf("action %s, want TX", actionName(act))
		}
		return mustMACString(out[0:6])
	}
	stats := func(t *testing.T, f *fixture) (lookups, cached uint64) {
		t.Helper()
		s, err := f.l.FIBStats()
		if err != nil {
			t.Fatal(err)
		}
		return s["success"], s["cached"]
	}
	moveNeighbour := func(t *testing.T, f *fixture) {
		mustRun(t, "ip", "-n", f.net.name, "neigh", "replace", "198.18.0.2", "lladdr", newMAC.String(), "dev", "lxa", "nud", "permanent")
	}

	t.Run("cached", func(t *testing.T) {
		f := newFixtureWith(t, func(c *Config) { c.fibCacheTTL = time.Hour })
		f.set(t, one)
		for i, want := range []string{macA2.String(), macA2.String()} {
			if got := dmac(t, f, small); got != want {
				t.Fatalf("packet %d to %s, want %s", i, got, want)
			}
		}
		if l, c := stats(t, f); l != 1 || c != 1 {
			t.Errorf("%d lookups, %d cached; want 1, 1", l, c)
		}
		moveNeighbour(t, f)
		if got := dmac(t, f, small); got != macA2.String() {
			t.Errorf("within the cache time, packet to %s, want the cached %s", got, macA2)
		}
		// Longer than any packet the lookup checked: looked up again
		// (the MTU check is never skipped), which also refreshes it.
		if got := dmac(t, f, large); got != newMAC.String() {
			t.Errorf("longer packet to %s, want %s from a new lookup", got, newMAC)
		}
		if got := dmac(t, f, small); got != newMAC.String() {
			t.Errorf("after the refresh, packet to %s, want %s", got, newMAC)
		}
		if l, c := stats(t, f); l != 2 || c != 3 {
			t.Errorf("%d lookups, %d cached; want 2, 3", l, c)
		}
		// The counter slot (the cache key) goes to another backend: the
		// entry is not reused for it.
		f.set(t, dataplane.Service{VIP: vipTCP4, Mode: dataplane.ModeIPIP})
		other := one
		other.Backends = []dataplane.Backend{{Index: 0, Addr: backend4[1]}}
		f.set(t, other)
		act, out := f.run(t, small)
		if act != xdpTX || netip.AddrFrom4([4]byte(out[30:34])) != backend4[1] {
			t.Fatalf("action %s, outer destination %x; want TX to %s", actionName(act), out[30:34], backend4[1])
		}
		if l, _ := stats(t, f); l != 3 {
			t.Errorf("%d lookups, want 3: a new backend in a reused slot is looked up", l)
		}
	})
	t.Run("off", func(t *testing.T) {
		f := newFixtureWith(t, func(c *Config) { c.fibCacheTTL = -1 })
		f.set(t, one)
		dmac(t, f, small)
		moveNeighbour(t, f)
		if got := dmac(t, f, small); got != newMAC.String() {
			t.Errorf("packet to %s, want %s at once without a cache", got, newMAC)
		}
		if l, c := stats(t, f); l != 2 || c != 0 {
			t.Errorf("%d lookups, %d cached; want 2, 0", l, c)
		}
	})
}

func mustMACString(b []byte) string { return net.HardwareAddr(b).String() }
