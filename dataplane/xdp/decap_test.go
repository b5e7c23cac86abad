package xdp

import (
	"net/netip"
	"testing"

	"github.com/gslbd/gslbd/dataplane"
)

func loadDecapForTest(t *testing.T, local []netip.Addr) *decapObjects {
	t.Helper()
	requirePrivileges(t)
	objs, err := loadDecapWith(local)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
	return objs
}

// outerFrame wraps an inner L3 packet the way lb sends it to a proxy.
func outerFrame(vlan uint16, outer []byte) []byte {
	typ := uint16(0x0800)
	if outer[0]>>4 == 6 {
		typ = 0x86dd
	}
	return append(ethHdr{dst: macA2, src: macA, vlan: vlan, typ: typ}.bytes(), outer...)
}

func TestDecap(t *testing.T) {
	all := loadDecapForTest(t, nil)
	filtered := loadDecapForTest(t, []netip.Addr{backend4[0], backend6[0]})

	inner4 := tcp4(client4, 40000, vip4, 80, tcpSYN)[14:]
	inner6 := tcp6(client6, 40000, vip6, 443, tcpSYN)[14:]
	ipip := func(dst netip.Addr, inner []byte) []byte {
		return ip4Hdr{src: tunnelSrc4(7), dst: dst, proto: 4, flags: ipDF}.bytes(inner)
	}
	ip6ip6 := func(dst netip.Addr, inner []byte) []byte {
		return ip6Hdr{src: tunnelSrc6(7), dst: dst, next: 41}.bytes(inner)
	}
	withOptions := ip4Hdr{src: tunnelSrc4(7), dst: backend4[0], proto: 4, options: []byte{1, 1, 1, 0}}.bytes(inner4)
	badSum := ipip(backend4[0], inner4)
	badSum[10] ^= 0xff
	fragment := ip4Hdr{src: tunnelSrc4(7), dst: backend4[0], proto: 4, flags: 0x2000}.bytes(inner4)
	sixInFour := ip4Hdr{src: tunnelSrc4(7), dst: backend4[0], proto: 4}.bytes(inner6)

	stripped := func(vlan uint16, inner []byte) []byte { return outerFrame(vlan, inner) }
	for _, tc := range []struct {
		name     string
		in       []byte
		filtered []byte // expected from the filtering program; nil: untouched
		all      []byte // expected from the accept-all program; nil: untouched
	}{
		{"ipv4 in ipv4", outerFrame(0, ipip(backend4[0], inner4)), stripped(0, inner4), stripped(0, inner4)},
		{"ipv6 in ipv6", outerFrame(0, ip6ip6(backend6[0], inner6)), stripped(0, inner6), stripped(0, inner6)},
		{"vlan tag kept", outerFrame(42, ipip(backend4[0], inner4)), stripped(42, inner4), stripped(42, inner4)},
		{"outer options", outerFrame(0, withOptions), stripped(0, inner4), stripped(0, inner4)},
		{"not a local address", outerFrame(0, ipip(backend4[1], inner4)), nil, stripped(0, inner4)},
		{"ipv6 not local", outerFrame(0, ip6ip6(backend6[1], inner6)), nil, stripped(0, inner6)},
		{"bad outer checksum", outerFrame(0, badSum), nil, nil},
		{"outer fragment", outerFrame(0, fragment), nil, nil},
		{"ipv6 inside protocol 4", outerFrame(0, sixInFour), nil, nil},
		{"plain tcp", tcp4(client4, 1, backend4[0], 80, tcpSYN), nil, nil},
		{"plain ipv6", tcp6(client6, 1, backend6[0], 80, tcpSYN), nil, nil},
	} {
		for _, p := range []struct {
			name string
			objs *decapObjects
			want []byte
		}{{"filtered", filtered, tc.filtered}, {"all", all, tc.all}} {
			want := p.want
			if want == nil {
				want = tc.in
			}
			act, out := runProg(t, nil, p.objs.Decap, tc.in)
			expectFrame(t, tc.name+" ("+p.name+")", act, out, xdpPass, want)
		}
	}
}

// What lb encapsulates, decap turns back into the packet the client sent
// (with the LB's MACs).
func TestEncapDecapRoundTrip(t *testing.T) {
	f := newFixture(t)
	dec := loadDecapForTest(t, []netip.Addr{backend4[0], backend4[1], backend6[0], backend6[1]})
	f.set(t, service(vipTCP4, dataplane.ModeIPIP, []uint32{0, 1}, 7))
	f.set(t, service(vipTCP6, dataplane.ModeIPIP, []uint32{0, 1}, 7))
	for name, in := range map[string][]byte{
		"ipv4": pkt4(ip4Hdr{src: client4, dst: vip4, proto: 6, flags: ipDF, tos: 3}, tcpSeg(40000, 80, tcpSYN, 33)),
		"ipv6": pkt6(ip6Hdr{src: client6, dst: vip6, next: 6, tclass: 9, flowLabel: 77}, tcpSeg(40000, 443, tcpSYN, 33)),
	} {
		act, enc := f.run(t, in)
		if act != xdpTX {
			t.Fatalf("%s: lb action %s", name, actionName(act))
		}
		act, got := runProg(t, nil, dec.Decap, enc)
		want := append(ethHdr{dst: macA2, src: macA, typ: uint16(in[12])<<8 | uint16(in[13])}.bytes(), in[14:]...)
		expectFrame(t, name, act, got, xdpPass, want)
	}
}
