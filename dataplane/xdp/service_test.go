package xdp

import (
	"net/netip"
	"testing"

	"github.com/gslbd/gslbd/dataplane"
)

func TestDeleteServiceAndReuse(t *testing.T) {
	f := newFixture(t)
	f.set(t, service(vipTCP4, dataplane.ModeIPIP, []uint32{0, 1, 2}, 7))
	syn := tcp4(client4, 40000, vip4, 80, tcpSYN)
	if act, _ := f.run(t, syn); act != xdpTX {
		t.Fatalf("before delete: %s", actionName(act))
	}
	if err := f.l.DeleteService(vipTCP4); err != nil {
		t.Fatal(err)
	}
	if err := f.l.DeleteService(vipTCP4); err != nil {
		t.Errorf("deleting again: %v, want nil", err)
	}
	for name, in := range map[string][]byte{
		"syn":             syn,
		"established ack": tcp4(client4, 40000, vip4, 80, tcpACK),
		"malformed":       pkt4(ip4Hdr{src: client4, dst: vip4, proto: 6}, tcpSeg(1, 80, tcpSYN, 0)[:10]),
	} {
		act, out := f.run(t, in)
		expectFrame(t, "after delete: "+name, act, out, xdpPass, in)
	}
	if got := f.l.Installed(); len(got) != 0 {
		t.Errorf("installed after delete: %v", got)
	}
	if c := mustCounters(t, f.l); len(c.VIPs) != 0 || len(c.Backends) != 0 {
		t.Errorf("counters after delete: %+v", c)
	}

	// Another VIP takes the freed index: it starts from zero, and none
	// of the old VIP's backend slots are present for it.
	other := dataplane.VIP{Addr: netip.MustParseAddr("192.0.2.30"), Proto: dataplane.ProtoTCP, Port: 80}
	s := dataplane.Service{VIP: other, Mode: dataplane.ModeIPIP,
		Backends: []dataplane.Backend{{Index: 5, Addr: backend4[2]}}, Table: []uint32{5, 5, 5}}
	f.set(t, s)
	if got := f.l.vips[other].index; got != 0 {
		t.Fatalf("new VIP got index %d, want the freed 0", got)
	}
	for i := range uint32(3) {
		if _, ok := f.l.vips[other].backends[i]; ok {
			t.Errorf("slot %d of the new VIP is present", i)
		}
		var b lbBackend
		if err := f.l.objs.Backends.Lookup(i, &b); err != nil || b.Flags&backendPresent != 0 {
			t.Errorf("backend slot %d: %+v, %v; want absent", i, b, err)
		}
	}
	if c := mustCounters(t, f.l).VIPs[other]; c.Packets != 0 {
		t.Errorf("new VIP counters %+v, want zero", c)
	}
	if got := f.backendOf(t, tcp4(client4, 40000, other.Addr, 80, tcpACK)); got != 2 {
		t.Errorf("new VIP sent to backend %d, want 2", got)
	}

	// And the deleted one comes back.
	f.set(t, service(vipTCP4, dataplane.ModeIPIP, []uint32{0, 1, 2}, 7))
	if act, _ := f.run(t, syn); act != xdpTX {
		t.Errorf("re-added VIP: %s, want TX", actionName(act))
	}
}

func TestModeChangeKeepsFlows(t *testing.T) {
	f := newFixture(t)
	ipip := service(vipTCP4, dataplane.ModeIPIP, []uint32{0, 1, 2}, 7)
	f.set(t, ipip)
	first := f.backendOf(t, tcp4(client4, 40000, vip4, 80, tcpSYN))
	dsr := service(vipTCP4, dataplane.ModeDSR, []uint32{0, 1, 2}, 7)
	for i := range dsr.Table {
		dsr.Table[i] = (first + 1) % 3
	}
	f.set(t, dsr)
	// The slots were emptied and rewritten: the flow's entry still names
	// its backend, which is present again, now reached by MAC.
	in := tcp4(client4, 40000, vip4, 80, tcpACK)
	want := append([]byte{}, in...)
	copy(want[0:6], dsr.Backends[first].MAC)
	copy(want[6:12], macA)
	act, out := f.run(t, in)
	expectFrame(t, "established flow after IPIP -> DSR", act, out, xdpTX, want)
}

func TestOpenGeneric(t *testing.T) {
	requirePrivileges(t)
	n := newTestNet(t)
	l := mustOpen(t, n, Config{Interfaces: []string{"lxa"}, PinPath: mountBPFFS(t), Generic: true, ConntrackSize: 4096})
	if got := l.Modes()["lxa"]; got != modeGeneric {
		t.Errorf("mode %q, want generic", got)
	}
	n.do(t, func() {
		if m, err := xdpMode(n.ifA); err != nil || m != modeGeneric {
			t.Errorf("kernel says %q, %v; want generic", m, err)
		}
	})
	if err := l.Detach(); err != nil {
		t.Fatal(err)
	}
}
