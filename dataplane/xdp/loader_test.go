package xdp

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/gslbd/gslbd/dataplane"
)

func openIn(t *testing.T, n *testNet, cfg Config) (*Loader, error) {
	t.Helper()
	var l *Loader
	var err error
	n.do(t, func() { l, err = Open(cfg) })
	if err != nil {
		t.Logf("Open: %v", err)
	}
	return l, err
}

func mustOpen(t *testing.T, n *testNet, cfg Config) *Loader {
	t.Helper()
	l, err := openIn(t, n, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func linkInfo(t *testing.T, l *Loader, iface string) *link.Info {
	t.Helper()
	info, err := l.links[iface].Info()
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func TestOpenRestartDetach(t *testing.T) {
	requirePrivileges(t)
	n := newTestNet(t)
	cfg := Config{Interfaces: []string{"lxa", "lxc"}, PinPath: mountBPFFS(t),
		TunnelSource4: tun4, TunnelSource6: tun6, ConntrackSize: 4096}

	l := mustOpen(t, n, cfg)
	if got := l.Modes(); got["lxa"] != modeDriver || got["lxc"] != modeDriver || len(got) != 2 {
		t.Errorf("modes %v, want driver on lxa and lxc (veth has native XDP)", got)
	}
	n.do(t, func() {
		for _, i := range []int{n.ifA, n.ifC} {
			if m, err := xdpMode(i); err != nil || m != modeDriver {
				t.Errorf("ifindex %d: XDP mode %q, %v; want driver", i, m, err)
			}
		}
	})
	linkID, progID := linkInfo(t, l, "lxa").ID, linkInfo(t, l, "lxa").Program
	s := service(vipTCP4, dataplane.ModeIPIP, []uint32{0, 1, 2}, 7)
	if err := l.SetService(s); err != nil {
		t.Fatal(err)
	}
	f := &fixture{l: l, net: n}
	first := f.backendOf(t, tcp4(client4, 40000, vip4, 80, tcpSYN))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// lbd restarts: same services, same flows, same links with the new
	// program in them.
	l = mustOpen(t, n, cfg)
	f.l = l
	if got := l.Installed(); !slices.Equal(got, []dataplane.VIP{vipTCP4}) {
		t.Fatalf("installed after restart: %v, want [%s]", got, vipTCP4)
	}
	if info := linkInfo(t, l, "lxa"); info.ID != linkID || info.Program == progID {
		t.Errorf("link %d with program %d after restart; want link %d kept, program replaced (was %d)",
			info.ID, info.Program, linkID, progID)
	}
	if got := l.Modes()["lxa"]; got != modeDriver {
		t.Errorf("mode of the kept link: %q, want driver", got)
	}
	// The flow survives a table that would send it elsewhere.
	for i := range s.Table {
		s.Table[i] = (first + 1) % 3
	}
	if err := l.SetService(s); err != nil {
		t.Fatal(err)
	}
	if got := f.backendOf(t, tcp4(client4, 40000, vip4, 80, tcpACK)); got != first {
		t.Errorf("established flow went to backend %d after restart, want %d", got, first)
	}
	if c := mustCounters(t, l).VIPs[vipTCP4]; c.Packets != 2 || c.NewFlows != 1 {
		t.Errorf("counters after restart %+v, want 2 packets (one from before) and 1 new flow", c)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// lxc leaves the configuration: its link goes.
	cfg.Interfaces = []string{"lxa"}
	l = mustOpen(t, n, cfg)
	if _, err := os.Stat(filepath.Join(cfg.PinPath, linkPrefix+"lxc")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("link pin of lxc: %v, want it removed", err)
	}
	n.do(t, func() {
		if m, err := xdpMode(n.ifC); err == nil {
			t.Errorf("lxc still has XDP (%s) after leaving the configuration", m)
		}
	})

	if err := l.Detach(); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(cfg.PinPath)
	if err != nil || len(entries) != 0 {
		t.Errorf("pin path after Detach: %v, %v; want empty", entries, err)
	}
	n.do(t, func() {
		if m, err := xdpMode(n.ifA); err == nil {
			t.Errorf("lxa still has XDP (%s) after Detach", m)
		}
	})
}

func TestOpenErrors(t *testing.T) {
	requirePrivileges(t)
	n := newTestNet(t)
	pin := mountBPFFS(t)
	cfg := Config{Interfaces: []string{"lxa"}, PinPath: pin, TunnelSource4: tun4, ConntrackSize: 4096}

	bad := cfg
	bad.Interfaces = []string{"lxa", "nosuch0"}
	if _, err := openIn(t, n, bad); err == nil || !strings.Contains(err.Error(), "nosuch0") {
		t.Errorf("Open with a missing interface: %v, want an error naming it", err)
	}
	n.do(t, func() {
		if m, err := xdpMode(n.ifA); err == nil {
			t.Errorf("lxa has XDP (%s) after a failed Open", m)
		}
	})

	// lxc is taken by another XDP program: nothing may stay attached.
	n.do(t, func() {
		if err := AttachDecap("lxc", pin, nil); err != nil {
			t.Fatal(err)
		}
	})
	bad = cfg
	bad.Interfaces = []string{"lxa", "lxc"}
	_, err := openIn(t, n, bad)
	if err == nil || !strings.Contains(err.Error(), "attach to lxc") {
		t.Errorf("Open with lxc taken: %v, want an error about attaching to lxc", err)
	}
	n.do(t, func() {
		if m, err := xdpMode(n.ifA); err == nil {
			t.Errorf("lxa has XDP (%s) after a failed Open", m)
		}
		if err := DetachDecap("lxc", pin); err != nil {
			t.Error(err)
		}
	})
	if _, err := os.Stat(filepath.Join(pin, linkPrefix+"lxa")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("link pin of lxa after a failed Open: %v, want none", err)
	}

	bad = cfg
	bad.PinPath = filepath.Join(t.TempDir(), "lbd")
	if _, err := openIn(t, n, bad); err == nil || !strings.Contains(err.Error(), "not a bpf filesystem") {
		t.Errorf("Open with a pin path off bpffs: %v", err)
	}

	l := mustOpen(t, n, cfg)
	l.Close()
	bad = cfg
	bad.ConntrackSize = 8192
	if _, err := openIn(t, n, bad); err == nil || !strings.Contains(err.Error(), "conntrack size") {
		t.Errorf("Open with another conntrack size over pinned maps: %v", err)
	}

	// Maps pinned by an lbd with another layout are refused.
	layout := filepath.Join(pin, layoutPin)
	l = mustOpen(t, n, cfg)
	l.Close()
	if err := putPinnedU64(layout, 12345); err != nil {
		t.Fatal(err)
	}
	if _, err := openIn(t, n, cfg); err == nil || !strings.Contains(err.Error(), "different map layout") {
		t.Errorf("Open over maps of another layout: %v", err)
	}
	if err := putPinnedU64(layout, 0); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, n, cfg)
	if err := l.Detach(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigCheck(t *testing.T) {
	ok := Config{Interfaces: []string{"eth0"}, PinPath: "/sys/fs/bpf/lbd"}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no interfaces", func(c *Config) { c.Interfaces = nil }, "no interfaces"},
		{"duplicate", func(c *Config) { c.Interfaces = []string{"eth0", "eth0"} }, "listed twice"},
		{"relative pin path", func(c *Config) { c.PinPath = "lbd" }, "not absolute"},
		{"v6 prefix as v4", func(c *Config) { c.TunnelSource4 = tun6 }, "not an IPv4 prefix"},
		{"v4 prefix as v6", func(c *Config) { c.TunnelSource6 = tun4 }, "not an IPv6 prefix"},
		{"tiny conntrack", func(c *Config) { c.ConntrackSize = 10 }, "conntrack size 10"},
	} {
		c := ok
		c.Interfaces = slices.Clone(ok.Interfaces)
		tc.mod(&c)
		if err := c.check(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
	if err := ok.check(); err != nil {
		t.Errorf("valid config: %v", err)
	}
}

func TestValidateService(t *testing.T) {
	l := &Loader{cfg: Config{TunnelSource4: tun4}}
	good := service(vipTCP4, dataplane.ModeIPIP, []uint32{0, 1, 2}, 7)
	if err := l.validate(good); err != nil {
		t.Fatalf("valid service: %v", err)
	}
	dsr := service(vipTCP4, dataplane.ModeDSR, []uint32{0, 1}, 7)
	if err := l.validate(dsr); err != nil {
		t.Fatalf("valid DSR service: %v", err)
	}
	mod := func(s dataplane.Service, f func(*dataplane.Service)) dataplane.Service {
		s.Backends = slices.Clone(s.Backends)
		s.Table = slices.Clone(s.Table)
		f(&s)
		return s
	}
	for _, tc := range []struct {
		name string
		s    dataplane.Service
		want string
	}{
		{"no tunnel source for v6", service(vipTCP6, dataplane.ModeIPIP, []uint32{0}, 7), "TunnelSource6"},
		{"bad protocol", mod(good, func(s *dataplane.Service) { s.VIP.Proto = 1 }), "protocol 1"},
		{"mapped VIP", mod(good, func(s *dataplane.Service) { s.VIP.Addr = netip.MustParseAddr("::ffff:192.0.2.1") }), "IPv4-mapped"},
		{"family mismatch", mod(good, func(s *dataplane.Service) { s.Backends[1].Addr = backend6[1] }), "backend 1 (2001:db8:1::11): IPIP needs a backend of the VIP's address family"},
		{"DSR without MAC", mod(dsr, func(s *dataplane.Service) { s.Backends[0].MAC = nil }), "DSR needs its 6-byte MAC"},
		{"DSR multicast MAC", mod(dsr, func(s *dataplane.Service) { s.Backends[0].MAC = mustMAC("01:00:5e:00:00:01") }), "not a unicast"},
		{"index out of range", mod(good, func(s *dataplane.Service) { s.Backends[0].Index = MaxBackends }), "index 1024 is out of range"},
		{"duplicate index", mod(good, func(s *dataplane.Service) { s.Backends[1].Index = 0 }), "index 0 appears twice"},
		{"duplicate address", mod(good, func(s *dataplane.Service) { s.Backends[1].Addr = s.Backends[0].Addr }), "same address"},
		{"table not prime", mod(good, func(s *dataplane.Service) { s.Table = s.Table[:6] }), "size 6 is not a prime"},
		{"table entry without backend", mod(good, func(s *dataplane.Service) { s.Table[3] = 9 }), "entry 3 refers to backend index 9"},
		{"unknown mode", mod(good, func(s *dataplane.Service) { s.Mode = 7 }), "unknown mode 7"},
	} {
		err := l.validate(tc.s)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.s.VIP.String()) {
			t.Errorf("%s: %v, want an error naming %s and containing %q", tc.name, err, tc.s.VIP, tc.want)
		}
	}
}

func TestLoadErrorTrimsVerifierLog(t *testing.T) {
	var log []string
	for i := range 100 {
		log = append(log, fmt.Sprintf("%d: (b7) r0 = 0", i))
	}
	log = append(log, "invalid access to packet, off=14 size=1")
	cause := errors.New("permission denied")
	err := loadError("lb", "/sys/fs/bpf/lbd", &ebpf.VerifierError{Cause: cause, Log: log})
	msg := err.Error()
	if !errors.Is(err, cause) || !strings.Contains(msg, "load lb: the verifier rejected the program") ||
		!strings.Contains(msg, "invalid access to packet") || strings.Contains(msg, "\t80: ") || !strings.Contains(msg, "\t81: ") {
		t.Errorf("error %q: want the last %d lines of the log, wrapping the cause", msg, verifierLines)
	}
}
