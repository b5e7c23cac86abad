package xdp

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"strconv"
	"testing"

	"github.com/gslbd/gslbd/dataplane"
)

var (
	vipTCP4 = dataplane.VIP{Addr: vip4, Proto: dataplane.ProtoTCP, Port: 80}
	vipUDP4 = dataplane.VIP{Addr: vip4, Proto: dataplane.ProtoUDP, Port: 0}
	vipTCP6 = dataplane.VIP{Addr: vip6, Proto: dataplane.ProtoTCP, Port: 443}
	vipDSR4 = dataplane.VIP{Addr: netip.MustParseAddr("192.0.2.11"), Proto: dataplane.ProtoTCP, Port: 443}
)

const ipDF = 0x4000

// pkt4 is a frame from the router to the LB carrying an IPv4 packet.
func pkt4(ip ip4Hdr, l4 []byte) []byte {
	return append(ethHdr{dst: macA, src: macRtr, typ: 0x0800}.bytes(), ip.bytes(l4)...)
}

func pkt6(ip ip6Hdr, l4 []byte) []byte {
	return append(ethHdr{dst: macA, src: macRtr, typ: 0x86dd}.bytes(), ip.bytes(l4)...)
}

func tcp4(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, flags uint8) []byte {
	return pkt4(ip4Hdr{src: src, dst: dst, proto: 6, flags: ipDF}, tcpSeg(sport, dport, flags, 0))
}

func tcp6(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, flags uint8) []byte {
	return pkt6(ip6Hdr{src: src, dst: dst, next: 6}, tcpSeg(sport, dport, flags, 0))
}

// tunnelSrc4 and tunnelSrc6 are the outer sources lb.c derives from a
// flow hash within tun4 and tun6.
func tunnelSrc4(h uint32) netip.Addr {
	a := tun4.Addr().As4()
	a[3] = byte(h)
	return netip.AddrFrom4(a)
}

func tunnelSrc6(h uint32) netip.Addr {
	a := tun6.Addr().As16()
	binary.BigEndian.PutUint32(a[12:], h)
	return netip.AddrFrom16(a)
}

// encap4 is the frame lb must emit for in (untagged) sent to backend be
// through the next hop on lxa.
func encap4(in []byte, h uint32, be netip.Addr, flags uint16) []byte {
	inner := in[14:]
	return append(ethHdr{dst: macA2, src: macA, typ: 0x0800}.bytes(),
		ip4Hdr{src: tunnelSrc4(h), dst: be, proto: 4, tos: inner[1], flags: flags}.bytes(inner)...)
}

func encap6(in []byte, h uint32, be netip.Addr) []byte {
	inner := in[14:]
	tclass := inner[0]<<4 | inner[1]>>4
	return append(ethHdr{dst: macA2, src: macA, typ: 0x86dd}.bytes(),
		ip6Hdr{src: tunnelSrc6(h), dst: be, next: 41, tclass: tclass, flowLabel: h & 0xfffff}.bytes(inner)...)
}

func expectFrame(t *testing.T, what string, gotAct uint32, got []byte, wantAct uint32, want []byte) {
	t.Helper()
	if gotAct != wantAct {
		t.Errorf("%s: action %s, want %s", what, actionName(gotAct), actionName(wantAct))
	}
	if want != nil && !bytes.Equal(got, want) {
		t.Errorf("%s: frame differs\n got: %s\nwant: %s", what, hex.EncodeToString(got), hex.EncodeToString(want))
	}
}

func TestIPIPEncapsulation(t *testing.T) {
	f := newFixture(t)
	s4 := service(vipTCP4, dataplane.ModeIPIP, []uint32{0, 1, 2}, 7)
	s6 := service(vipTCP6, dataplane.ModeIPIP, []uint32{0, 1, 2}, 11)
	su := service(vipUDP4, dataplane.ModeIPIP, []uint32{1, 2}, 13)
	for _, s := range []dataplane.Service{s4, s6, su} {
		f.set(t, s)
	}
	for _, tc := range []struct {
		name  string
		in    []byte
		hash  uint32
		table []uint32
		v6    bool
		flags uint16
	}{
		{
			name: "tcp4 syn", in: tcp4(client4, 40000, vip4, 80, tcpSYN),
			hash: flowHash(client4, vip4, 40000, 80, 6), table: s4.Table, flags: ipDF,
		},
		{
			name: "tcp4 with tos and payload",
			in:   pkt4(ip4Hdr{src: client4, dst: vip4, proto: 6, flags: ipDF, tos: 0xb9, ttl: 7}, tcpSeg(40001, 80, tcpACK|tcpPSH, 100)),
			hash: flowHash(client4, vip4, 40001, 80, 6), table: s4.Table, flags: ipDF,
		},
		{
			name: "udp4 any port",
			in:   pkt4(ip4Hdr{src: client4, dst: vip4, proto: 17, flags: ipDF}, udpDgram(5353, 4433, 30)),
			hash: flowHash(client4, vip4, 5353, 4433, 17), table: su.Table, flags: ipDF,
		},
		{
			name: "tcp6 syn", in: tcp6(client6, 40000, vip6, 443, tcpSYN),
			hash: flowHash(client6, vip6, 40000, 443, 6), table: s6.Table, v6: true,
		},
		{
			name: "tcp6 traffic class and flow label",
			in:   pkt6(ip6Hdr{src: client6, dst: vip6, next: 6, tclass: 0xa5, flowLabel: 0x12345, hop: 3}, tcpSeg(40002, 443, tcpACK, 10)),
			hash: flowHash(client6, vip6, 40002, 443, 6), table: s6.Table, v6: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			act, out := f.run(t, tc.in)
			idx := tc.table[tc.hash%uint32(len(tc.table))]
			var want []byte
			if tc.v6 {
				want = encap6(tc.in, tc.hash, backend6[idx])
			} else {
				want = encap4(tc.in, tc.hash, backend4[idx], tc.flags)
			}
			expectFrame(t, tc.name, act, out, xdpTX, want)
		})
	}
}

// Without DF the outer header gets a random ID (it may be fragmented on
// the way): everything else is exact, and the checksum must hold.
func TestIPIPWithoutDF(t *testing.T) {
	f := newFixture(t)
	s := service(vipTCP4, dataplane.ModeIPIP, []uint32{0, 1, 2}, 7)
	f.set(t, s)
	in := pkt4(ip4Hdr{src: client4, dst: vip4, proto: 6, id: 77}, tcpSeg(40000, 80, tcpSYN, 0))
	act, out := f.run(t, in)
	h := flowHash(client4, vip4, 40000, 80, 6)
	want := encap4(in, h, backend4[s.Table[h%7]], 0)
	if act != xdpTX || len(out) != len(want) {
		t.Fatalf("action %s, %d bytes; want TX, %d bytes", actionName(act), len(out), len(want))
	}
	if ipChecksum(out[14:34]) != 0 {
		t.Errorf("outer IPv4 checksum does not verify: %x", out[14:34])
	}
	for _, r := range [][2]int{{0, 18}, {20, 24}, {26, 34 + len(in) - 14}} { // all but ID and checksum
		if !bytes.Equal(out[r[0]:r[1]], want[r[0]:r[1]]) {
			t.Errorf("bytes %d..%d: got %x, want %x", r[0], r[1], out[r[0]:r[1]], want[r[0]:r[1]])
		}
	}
}

func TestDSR(t *testing.T) {
	f := newFixture(t)
	s := service(vipDSR4, dataplane.ModeDSR, []uint32{0, 1, 2}, 7)
	f.set(t, s)
	for _, vlan := range []uint16{0, 100} {
		ip := ip4Hdr{src: client4, dst: vipDSR4.Addr, proto: 6, flags: ipDF}.bytes(tcpSeg(40000, 443, tcpSYN, 0))
		in := append(ethHdr{dst: macA, src: macRtr, vlan: vlan, typ: 0x0800}.bytes(), ip...)
		h := flowHash(client4, vipDSR4.Addr, 40000, 443, 6)
		be := s.Backends[s.Table[h%7]]
		want := append(ethHdr{dst: be.MAC, src: macA, vlan: vlan, typ: 0x0800}.bytes(), ip...)
		act, out := f.run(t, in)
		expectFrame(t, "dsr vlan "+strconv.Itoa(int(vlan)), act, out, xdpTX, want)
	}
}

func TestPassUntouched(t *testing.T) {
	f := newFixture(t)
	f.set(t, service(vipTCP4, dataplane.ModeIPIP, []uint32{0}, 7))
	f.set(t, service(vipTCP6, dataplane.ModeIPIP, []uint32{0}, 7))
	other := netip.MustParseAddr("192.0.2.99")
	arp := append(ethHdr{dst: mustMAC("ff:ff:ff:ff:ff:ff"), src: macRtr, typ: 0x0806}.bytes(), make([]byte, 28)...)
	for name, in := range map[string][]byte{
		"not a VIP":                        tcp4(client4, 40000, other, 80, tcpSYN),
		"wrong port":                       tcp4(client4, 40000, vip4, 81, tcpSYN),
		"udp to a tcp VIP":                 pkt4(ip4Hdr{src: client4, dst: vip4, proto: 17}, udpDgram(40000, 80, 4)),
		"icmp echo to a VIP":               pkt4(ip4Hdr{src: client4, dst: vip4, proto: 1}, []byte{8, 0, 0, 0, 0, 1, 0, 1}),
		"fragment, no VIP of the protocol": pkt4(ip4Hdr{src: client4, dst: vip4, proto: 17, flags: 0x2000}, udpDgram(1, 2, 20)),
		"ipv6 not a VIP":                   tcp6(client6, 40000, netip.MustParseAddr("2001:db8:ffff::99"), 443, tcpSYN),
		"ipv6 wrong port":                  tcp6(client6, 40000, vip6, 80, tcpSYN),
		"arp":                              arp,
		"short frame":                      {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x08, 0x00},
		"encapsulated already":             pkt4(ip4Hdr{src: tun4.Addr(), dst: backend4[0], proto: 4}, tcp4(client4, 1, vip4, 80, tcpSYN)[14:]),
		"ipv4 header truncated":            append(ethHdr{dst: macA, src: macRtr, typ: 0x0800}.bytes(), 0x45, 0, 0, 40),
	} {
		act, out := f.run(t, in)
		expectFrame(t, name, act, out, xdpPass, in)
	}
}

func TestDrops(t *testing.T) {
	f := newFixture(t)
	f.set(t, service(vipTCP4, dataplane.ModeIPIP, []uint32{0, 1}, 7))
	f.set(t, service(vipTCP6, dataplane.ModeIPIP, []uint32{0, 1}, 7))
	empty := dataplane.VIP{Addr: netip.MustParseAddr("192.0.2.12"), Proto: dataplane.ProtoTCP, Port: 80}
	f.set(t, dataplane.Service{VIP: empty, Mode: dataplane.ModeIPIP})
	drained := dataplane.VIP{Addr: netip.MustParseAddr("192.0.2.13"), Proto: dataplane.ProtoUDP, Port: 53}
	ds := service(drained, dataplane.ModeIPIP, []uint32{0}, 7)
	ds.Table = nil // a backend draining, none taking new flows
	f.set(t, ds)

	truncatedTCP := tcpSeg(40000, 80, tcpSYN, 0)[:10]
	badIHL := tcp4(client4, 40000, vip4, 80, tcpSYN)
	badIHL[14] = 0x44
	longer := tcp4(client4, 40000, vip4, 80, tcpSYN)
	binary.BigEndian.PutUint16(longer[16:], 100)
	badDoff := tcp4(client4, 40000, vip4, 80, tcpSYN)
	badDoff[14+20+12] = 0x40
	fragHdr := append([]byte{6, 0, 0, 1, 0, 0, 0, 42}, tcpSeg(40000, 443, tcpSYN, 0)...)
	routing := append([]byte{6, 0, 0, 1}, make([]byte, 4)...) // segments left 1
	routing = append(routing, tcpSeg(40000, 443, tcpSYN, 0)...)
	hopByHop := append([]byte{44, 0, 1, 4, 0, 0, 0, 0}, fragHdr...)
	big := pkt4(ip4Hdr{src: client4, dst: vip4, proto: 6, flags: ipDF}, tcpSeg(40003, 80, tcpACK, 1500-40))

	for _, tc := range []struct {
		name   string
		in     []byte
		vip    dataplane.VIP
		reason string
	}{
		{"truncated tcp header", pkt4(ip4Hdr{src: client4, dst: vip4, proto: 6}, truncatedTCP), vipTCP4, "malformed"},
		{"ihl below 5", badIHL, vipTCP4, "malformed"},
		{"total length past the frame", longer, vipTCP4, "malformed"},
		{"tcp data offset below 5", badDoff, vipTCP4, "malformed"},
		{"first fragment", pkt4(ip4Hdr{src: client4, dst: vip4, proto: 6, flags: 0x2000}, tcpSeg(40000, 80, tcpSYN, 8)), vipTCP4, "fragment"},
		{"later fragment", pkt4(ip4Hdr{src: client4, dst: vip4, proto: 6, flags: 100}, make([]byte, 16)), vipTCP4, "fragment"},
		{"ipv6 fragment header", pkt6(ip6Hdr{src: client6, dst: vip6, next: 44}, fragHdr), vipTCP6, "fragment"},
		{"ipv6 fragment after hop-by-hop", pkt6(ip6Hdr{src: client6, dst: vip6, next: 0}, hopByHop), vipTCP6, "fragment"},
		{"ipv6 routing header with segments left", pkt6(ip6Hdr{src: client6, dst: vip6, next: 43}, routing), vipTCP6, "unsupported"},
		{"empty table", tcp4(client4, 40000, empty.Addr, 80, tcpSYN), empty, "no_backend"},
		{"only draining backends", pkt4(ip4Hdr{src: client4, dst: drained.Addr, proto: 17}, udpDgram(1000, 53, 10)), drained, "no_backend"},
		{"too big for the egress MTU", big, vipTCP4, "too_big"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := mustCounters(t, f.l).VIPs[tc.vip].Drops
			act, _ := f.run(t, tc.in)
			if act != xdpDrop {
				t.Fatalf("action %s, want DROP", actionName(act))
			}
			after := mustCounters(t, f.l).VIPs[tc.vip].Drops
			for _, r := range dataplane.DropReasons {
				want := before[r]
				if r == tc.reason {
					want++
				}
				if after[r] != want {
					t.Errorf("drops[%s] = %d, want %d", r, after[r], want)
				}
			}
		})
	}
}

func mustCounters(t testing.TB, l *Loader) dataplane.Counters {
	t.Helper()
	c, err := l.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// backendOf runs lb on an IPv4 packet and returns the index of the test
// backend it was encapsulated to.
func (f *fixture) backendOf(t *testing.T, in []byte) uint32 {
	t.Helper()
	act, out := f.run(t, in)
	if act != xdpTX || len(out) < 34 || out[23] != 4 {
		t.Fatalf("not an IPIP frame sent back out (action %s): %x", actionName(act), out)
	}
	dst := netip.AddrFrom4([4]byte(out[30:34]))
	for i, b := range backend4 {
		if b == dst {
			return uint32(i)
		}
	}
	t.Fatalf("%s is not a test backend", dst)
	return 0
}

func TestEstablishedFlowKeepsBackendAcrossTables(t *testing.T) {
	f := newFixture(t)
	f.set(t, service(vipTCP4, dataplane.ModeIPIP, []uint32{0, 1, 2}, 7))
	first := f.backendOf(t, tcp4(client4, 40000, vip4, 80, tcpSYN))

	// A new table that sends everything elsewhere; first stays in
	// Backends (healthy, or draining).
	other := (first + 1) % 3
	s := service(vipTCP4, dataplane.ModeIPIP, []uint32{0, 1, 2}, 7)
	for i := range s.Table {
		s.Table[i] = other
	}
	f.set(t, s)
	for i := range 3 {
		got := f.backendOf(t, tcp4(client4, 40000, vip4, 80, tcpACK))
		if got != first {
			t.Fatalf("packet %d of the established flow went to backend %d, want %d", i, got, first)
		}
	}
	if got := f.backendOf(t, tcp4(client4, 40001, vip4, 80, tcpSYN)); got != other {
		t.Errorf("new flow went to backend %d, want %d (the new table's)", got, other)
	}
	// A new connection on the old tuple follows the table.
	if got := f.backendOf(t, tcp4(client4, 40000, vip4, 80, tcpSYN)); got != other {
		t.Errorf("SYN on a reused tuple went to backend %d, want %d", got, other)
	}
}

func TestFlowOfRemovedBackendIsRepicked(t *testing.T) {
	f := newFixture(t)
	f.set(t, service(vipTCP4, dataplane.ModeIPIP, []uint32{0, 1, 2}, 7))
	first := f.backendOf(t, tcp4(client4, 40000, vip4, 80, tcpSYN))

	var rest []uint32
	for i := range uint32(3) {
		if i != first {
			rest = append(rest, i)
		}
	}
	s := service(vipTCP4, dataplane.ModeIPIP, rest, 7)
	f.set(t, s)
	before := mustCounters(t, f.l).VIPs[vipTCP4]
	h := flowHash(client4, vip4, 40000, 80, 6)
	want := s.Table[h%7]
	for i := range 2 {
		got := f.backendOf(t, tcp4(client4, 40000, vip4, 80, tcpACK))
		if got != want {
			t.Fatalf("packet %d went to backend %d, want the re-pick %d", i, got, want)
		}
	}
	after := mustCounters(t, f.l).VIPs[vipTCP4]
	// First packet: in the table, but its backend left (hit + miss); the
	// second finds the updated entry (hit).
	if d := after.LRUHits - before.LRUHits; d != 2 {
		t.Errorf("LRU hits +%d, want +2", d)
	}
	if d := after.LRUMisses - before.LRUMisses; d != 1 {
		t.Errorf("LRU misses +%d, want +1", d)
	}
	if d := after.NewFlows - before.NewFlows; d != 0 {
		t.Errorf("new flows +%d, want 0", d)
	}
}

func TestRTTSample(t *testing.T) {
	f := newFixture(t)
	f.set(t, service(vipTCP4, dataplane.ModeIPIP, []uint32{0, 1}, 7))
	f.set(t, service(vipTCP6, dataplane.ModeIPIP, []uint32{0, 1}, 7))
	f.run(t, tcp4(client4, 40000, vip4, 80, tcpSYN))
	f.run(t, tcp4(client4, 40000, vip4, 80, tcpACK))
	f.run(t, tcp4(client4, 40000, vip4, 80, tcpACK|tcpPSH)) // no second sample
	f.run(t, tcp6(client6, 40000, vip6, 443, tcpSYN))
	f.run(t, tcp6(client6, 40000, vip6, 443, tcpACK))
	// Karn: a retransmitted SYN makes the handshake ambiguous.
	other := netip.MustParseAddr("198.18.6.6")
	f.run(t, tcp4(other, 40000, vip4, 80, tcpSYN))
	f.run(t, tcp4(other, 40000, vip4, 80, tcpSYN))
	f.run(t, tcp4(other, 40000, vip4, 80, tcpACK))
	// A RST after the SYN is not an RTT sample.
	reset := netip.MustParseAddr("198.18.7.7")
	f.run(t, tcp4(reset, 40000, vip4, 80, tcpSYN))
	f.run(t, tcp4(reset, 40000, vip4, 80, tcpRST|tcpACK))

	samples, err := f.l.RTT()
	if err != nil {
		t.Fatal(err)
	}
	got := map[netip.Prefix]dataplane.RTTSample{}
	for _, s := range samples {
		got[s.Prefix] = s
	}
	if len(got) != 2 {
		t.Fatalf("samples %v, want one for 198.18.5.0/24 and one for 2001:db8:5::/48", samples)
	}
	for _, p := range []netip.Prefix{netip.MustParsePrefix("198.18.5.0/24"), netip.MustParsePrefix("2001:db8:5::/48")} {
		s, ok := got[p]
		if !ok || s.Count != 1 || s.Mean <= 0 || s.Min != s.Mean || s.Mean > 1e9 {
			t.Errorf("sample for %s = %+v, want count 1, 0 < mean = min < 1s", p, s)
		}
	}
	if again, err := f.l.RTT(); err != nil || len(again) != 0 {
		t.Errorf("second RTT() = %v, %v; want nothing (drained)", again, err)
	}
}

// icmpFragNeeded is an ICMP "fragmentation needed" from a router on the
// way to the client, quoting a packet the backend sent from the VIP.
func icmpFragNeeded(vip netip.Addr, vport uint16, client netip.Addr, cport uint16) []byte {
	quoted := ip4Hdr{src: vip, dst: client, proto: 6, flags: ipDF}.bytes(tcpSeg(vport, cport, tcpACK, 1400))[:28]
	icmp := append([]byte{3, 4, 0, 0, 0, 0, 0x05, 0x78}, quoted...)
	return pkt4(ip4Hdr{src: netip.MustParseAddr("198.18.9.9"), dst: vip, proto: 1, flags: ipDF}, icmp)
}

func icmp6TooBig(vip netip.Addr, vport uint16, client netip.Addr, cport uint16) []byte {
	quoted := ip6Hdr{src: vip, dst: client, next: 6}.bytes(tcpSeg(vport, cport, tcpACK, 1400))[:48]
	icmp := append([]byte{2, 0, 0, 0, 0, 0, 0x05, 0x00}, quoted...)
	return pkt6(ip6Hdr{src: netip.MustParseAddr("2001:db8:9::9"), dst: vip, next: 58}, icmp)
}

func TestICMPTooBigFollowsTheFlow(t *testing.T) {
	f := newFixture(t)
	s4 := service(vipTCP4, dataplane.ModeIPIP, []uint32{0, 1, 2}, 7)
	s6 := service(vipTCP6, dataplane.ModeIPIP, []uint32{0, 1, 2}, 7)
	f.set(t, s4)
	f.set(t, s6)
	h4 := flowHash(client4, vip4, 40000, 80, 6)
	h6 := flowHash(client6, vip6, 40000, 443, 6)

	// No flow yet: Maglev by the quoted flow reversed.
	in := icmpFragNeeded(vip4, 80, client4, 40000)
	act, out := f.run(t, in)
	expectFrame(t, "icmp, no flow", act, out, xdpTX, encap4(in, h4, backend4[s4.Table[h4%7]], ipDF))
	in6 := icmp6TooBig(vip6, 443, client6, 40000)
	act, out = f.run(t, in6)
	expectFrame(t, "icmpv6, no flow", act, out, xdpTX, encap6(in6, h6, backend6[s6.Table[h6%7]]))

	// An established flow whose table moved on: the ICMP follows the flow.
	f.run(t, tcp4(client4, 40000, vip4, 80, tcpSYN))
	f.run(t, tcp6(client6, 40000, vip6, 443, tcpSYN))
	first4, first6 := s4.Table[h4%7], s6.Table[h6%7]
	for _, s := range []*dataplane.Service{&s4, &s6} {
		for i := range s.Table {
			s.Table[i] = (first4 + 1) % 3
			if s.VIP.Addr.Is6() {
				s.Table[i] = (first6 + 1) % 3
			}
		}
		f.set(t, *s)
	}
	act, out = f.run(t, in)
	expectFrame(t, "icmp, established flow", act, out, xdpTX, encap4(in, h4, backend4[first4], ipDF))
	act, out = f.run(t, in6)
	expectFrame(t, "icmpv6, established flow", act, out, xdpTX, encap6(in6, h6, backend6[first6]))

	// Quoting a packet not sent from the VIP: not ours.
	spoof := icmpFragNeeded(vip4, 80, client4, 40000)
	copy(spoof[14+20+8+12:], netip.MustParseAddr("192.0.2.77").AsSlice())
	act, out = f.run(t, spoof)
	expectFrame(t, "icmp quoting another source", act, out, xdpPass, spoof)
}

func TestCounters(t *testing.T) {
	f := newFixture(t)
	s := service(vipTCP4, dataplane.ModeIPIP, []uint32{0, 1, 2}, 7)
	f.set(t, s)
	var wantBytes uint64
	perBackend := map[netip.Addr]dataplane.BackendCounters{}
	send := func(sport uint16, flags uint8, payload int, newFlow bool) {
		in := pkt4(ip4Hdr{src: client4, dst: vip4, proto: 6, flags: ipDF}, tcpSeg(sport, 80, flags, payload))
		f.run(t, in)
		n := uint64(len(in) - 14)
		wantBytes += n
		h := flowHash(client4, vip4, sport, 80, 6)
		be := backend4[s.Table[h%7]]
		c := perBackend[be]
		c.Packets++
		c.Bytes += n
		if newFlow {
			c.NewFlows++
		}
		perBackend[be] = c
	}
	for sport := uint16(50000); sport < 50010; sport++ {
		send(sport, tcpSYN, 0, true)
		send(sport, tcpACK, 0, false)
		send(sport, tcpACK|tcpPSH, 200, false)
	}
	f.run(t, tcp4(client4, 1, vip4, 81, tcpSYN)) // not a VIP: not counted

	c := mustCounters(t, f.l)
	got := c.VIPs[vipTCP4]
	want := dataplane.VIPCounters{Packets: 30, Bytes: wantBytes, NewFlows: 10, LRUHits: 20, LRUMisses: 10}
	if got.Packets != want.Packets || got.Bytes != want.Bytes || got.NewFlows != want.NewFlows ||
		got.LRUHits != want.LRUHits || got.LRUMisses != want.LRUMisses {
		t.Errorf("VIP counters %+v, want %+v", got, want)
	}
	for _, r := range dataplane.DropReasons {
		if v, ok := got.Drops[r]; !ok || v != 0 {
			t.Errorf("drops[%s] = %d (present %v), want 0 and present", r, v, ok)
		}
	}
	for _, b := range s.Backends {
		if g := c.Backends[dataplane.BackendKey{VIP: vipTCP4, Addr: b.Addr}]; g != perBackend[b.Addr] {
			t.Errorf("backend %s counters %+v, want %+v", b.Addr, g, perBackend[b.Addr])
		}
	}
	if c.ActiveFlows != 10 {
		t.Errorf("active flows %d, want 10", c.ActiveFlows)
	}
	if n, err := f.l.activeFlows(0); err != nil || n != 0 {
		t.Errorf("flows active within 0s: %d, %v; want 0", n, err)
	}

	// A removed backend's counters go; a new one at its index starts at 0.
	s2 := service(vipTCP4, dataplane.ModeIPIP, []uint32{0, 1}, 7)
	s2.Backends = append(s2.Backends, dataplane.Backend{Index: 2, Addr: netip.MustParseAddr("198.18.1.99")})
	s2.Table = []uint32{0, 1, 2, 0, 1, 2, 0}
	f.set(t, s2)
	c = mustCounters(t, f.l)
	if _, ok := c.Backends[dataplane.BackendKey{VIP: vipTCP4, Addr: backend4[2]}]; ok {
		t.Errorf("counters of the replaced backend %s are still reported", backend4[2])
	}
	if g := c.Backends[dataplane.BackendKey{VIP: vipTCP4, Addr: netip.MustParseAddr("198.18.1.99")}]; g != (dataplane.BackendCounters{}) {
		t.Errorf("new backend counters %+v, want zero", g)
	}
}

func TestDropReasonsMatchDataplane(t *testing.T) {
	if len(dataplane.DropReasons) != len(dropReasons) {
		t.Fatalf("dataplane.DropReasons %v, lb.c counts %v", dataplane.DropReasons, dropReasons)
	}
	for i, r := range dropReasons {
		if dataplane.DropReasons[i] != r {
			t.Errorf("drop reason %d: dataplane says %q, lb.c %q", i, dataplane.DropReasons[i], r)
		}
	}
}
