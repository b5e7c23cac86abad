package xdp

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/gslbd/gslbd/dataplane"
)

// requirePrivileges skips a test that needs to load BPF programs and
// make network namespaces when the process cannot; in CI (CI=true) the
// missing privilege is a failure, so the tests cannot silently vanish.
func requirePrivileges(t testing.TB) {
	t.Helper()
	var reason string
	if os.Geteuid() != 0 {
		reason = "needs root"
	} else {
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			reason = fmt.Sprintf("capget: %v", err)
		} else {
			var missing []string
			for _, c := range []struct {
				bit  uint
				name string
			}{{unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN"}, {unix.CAP_NET_ADMIN, "CAP_NET_ADMIN"}, {unix.CAP_BPF, "CAP_BPF"}} {
				if data[c.bit/32].Effective&(1<<(c.bit%32)) == 0 {
					missing = append(missing, c.name)
				}
			}
			if len(missing) > 0 {
				reason = "needs " + strings.Join(missing, ", ")
			}
		}
		if _, err := exec.LookPath("ip"); reason == "" && err != nil {
			reason = "needs iproute2 (ip)"
		}
	}
	if reason == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: privileged tests must run)", reason)
	}
	t.Skip(reason)
}

// mountBPFFS mounts a private bpf filesystem for one test and returns a
// pin path on it.
func mountBPFFS(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		t.Fatalf("mount bpffs at %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return filepath.Join(dir, "lbd")
}

// Addresses of the test network: everything in 198.18.0.0/15 and
// 2001:db8::/32, VIPs in 192.0.2.0/24 and 2001:db8:ffff::/48.
var (
	macA     = mustMAC("02:00:00:00:00:01") // lxa: where packets come in
	macA2    = mustMAC("02:00:00:00:00:02") // next hop on lxa's segment
	macC     = mustMAC("02:00:00:00:00:11") // lxc: another attached interface
	macC2    = mustMAC("02:00:00:00:00:12")
	macD     = mustMAC("02:00:00:00:00:21") // lxd: an interface lbd is not on
	macD2    = mustMAC("02:00:00:00:00:22")
	macRtr   = mustMAC("02:00:00:00:00:aa") // the upstream router
	tun4     = netip.MustParsePrefix("198.18.255.0/24")
	tun6     = netip.MustParsePrefix("2001:db8:ffff:ffff::/64")
	client4  = netip.MustParseAddr("198.18.5.5")
	client6  = netip.MustParseAddr("2001:db8:5::5")
	vip4     = netip.MustParseAddr("192.0.2.10")
	vip6     = netip.MustParseAddr("2001:db8:ffff::10")
	backend4 = []netip.Addr{ // routed via 198.18.0.2 on lxa
		netip.MustParseAddr("198.18.1.10"), netip.MustParseAddr("198.18.1.11"), netip.MustParseAddr("198.18.1.12"),
	}
	backend6 = []netip.Addr{
		netip.MustParseAddr("2001:db8:1::10"), netip.MustParseAddr("2001:db8:1::11"), netip.MustParseAddr("2001:db8:1::12"),
	}
	viaC4    = netip.MustParseAddr("198.18.2.10")    // routed via lxc
	viaC6    = netip.MustParseAddr("2001:db8:2::10") // routed via lxc
	viaD4    = netip.MustParseAddr("198.18.3.10")    // routed via lxd
	noNeigh4 = netip.MustParseAddr("198.18.4.10")    // next hop without a neighbour entry
)

// testNet is a network namespace with veth pairs, addresses, routes and
// permanent neighbours, so that bpf_fib_lookup in BPF_PROG_TEST_RUN has
// something to find. Its name carries a per-run prefix; it is deleted by
// name.
type testNet struct {
	name          string
	fd            int
	ifA, ifC, ifD int
}

func newTestNet(t testing.TB) *testNet {
	t.Helper()
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	n := &testNet{name: fmt.Sprintf("lbdxdp-%d-%s", os.Getpid(), hex.EncodeToString(rnd[:]))}
	mustRun(t, "ip", "netns", "add", n.name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", n.name, err, out)
		}
	})
	ip := func(args ...string) { mustRun(t, "ip", append([]string{"-n", n.name}, args...)...) }
	ip("link", "set", "lo", "up")
	for _, p := range []struct {
		a, b   string
		ma, mb net.HardwareAddr
	}{{"lxa", "lxb", macA, macA2}, {"lxc", "lxcp", macC, macC2}, {"lxd", "lxdp", macD, macD2}} {
		ip("link", "add", p.a, "address", p.ma.String(), "type", "veth", "peer", "name", p.b, "address", p.mb.String())
		ip("link", "set", p.a, "up")
		ip("link", "set", p.b, "up")
	}
	for _, c := range [][]string{
		{"addr", "add", "198.18.0.1/24", "dev", "lxa"},
		{"addr", "add", "2001:db8::1/64", "dev", "lxa", "nodad"},
		{"addr", "add", "198.18.10.1/24", "dev", "lxc"},
		{"addr", "add", "2001:db8:10::1/64", "dev", "lxc", "nodad"},
		{"addr", "add", "198.18.20.1/24", "dev", "lxd"},
		{"neigh", "replace", "198.18.0.2", "lladdr", macA2.String(), "dev", "lxa", "nud", "permanent"},
		{"neigh", "replace", "2001:db8::2", "lladdr", macA2.String(), "dev", "lxa", "nud", "permanent"},
		{"neigh", "replace", "198.18.10.2", "lladdr", macC2.String(), "dev", "lxc", "nud", "permanent"},
		{"neigh", "replace", "2001:db8:10::2", "lladdr", macC2.String(), "dev", "lxc", "nud", "permanent"},
		{"neigh", "replace", "198.18.20.2", "lladdr", macD2.String(), "dev", "lxd", "nud", "permanent"},
		{"route", "add", "198.18.1.0/24", "via", "198.18.0.2", "dev", "lxa"},
		{"route", "add", "2001:db8:1::/64", "via", "2001:db8::2", "dev", "lxa"},
		{"route", "add", "198.18.2.0/24", "via", "198.18.10.2", "dev", "lxc"},
		{"route", "add", "2001:db8:2::/64", "via", "2001:db8:10::2", "dev", "lxc"},
		{"route", "add", "198.18.3.0/24", "via", "198.18.20.2", "dev", "lxd"},
		{"route", "add", "198.18.4.0/24", "via", "198.18.0.99", "dev", "lxa"},
	} {
		ip(c...)
	}
	mustRun(t, "ip", "netns", "exec", n.name, "sysctl", "-q", "-w",
		"net.ipv4.conf.all.forwarding=1", "net.ipv6.conf.all.forwarding=1")
	fd, err := unix.Open("/run/netns/"+n.name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open netns %s: %v", n.name, err)
	}
	n.fd = fd
	t.Cleanup(func() { unix.Close(fd) })
	n.do(t, func() {
		for name, p := range map[string]*int{"lxa": &n.ifA, "lxc": &n.ifC, "lxd": &n.ifD} {
			ifi, err := net.InterfaceByName(name)
			if err != nil {
				t.Fatalf("netns %s: %v", n.name, err)
			}
			*p = ifi.Index
		}
	})
	return n
}

// do runs fn on an OS thread switched into the namespace: the BPF test
// runs, route lookups, devmap updates and links resolve interfaces in the
// caller's namespace.
func (n *testNet) do(t testing.TB, fn func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("open own netns: %v", err)
	}
	defer unix.Close(orig)
	if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("setns %s: %v", n.name, err)
	}
	defer func() {
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it dies with the goroutine
			// instead of serving others in the wrong namespace.
			t.Errorf("setns back: %v", err)
			return
		}
		runtime.UnlockOSThread()
	}()
	fn()
}

func mustRun(t testing.TB, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// fixture is a loaded (not attached) load balancer and its test network.
type fixture struct {
	l   *Loader
	net *testNet
	pin string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	return newFixtureWith(t, nil)
}

// newFixtureWith lets the caller adjust the configuration.
func newFixtureWith(t testing.TB, mod func(*Config)) *fixture {
	t.Helper()
	requirePrivileges(t)
	f := &fixture{net: newTestNet(t), pin: mountBPFFS(t)}
	cfg := f.config()
	if mod != nil {
		mod(&cfg)
	}
	l, err := load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	f.l = l
	f.net.do(t, func() {
		if err := l.syncTxPorts(map[string]int{"lxa": f.net.ifA, "lxc": f.net.ifC}); err != nil {
			t.Fatal(err)
		}
	})
	return f
}

func (f *fixture) config() Config {
	return Config{Interfaces: []string{"lxa", "lxc"}, PinPath: f.pin, TunnelSource4: tun4, TunnelSource6: tun6, ConntrackSize: 4096}
}

// xdpMd is struct xdp_md as BPF_PROG_TEST_RUN takes it.
type xdpMd struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// run runs lb once on pkt as if it came in on lxa and returns the
// action and the frame after it.
func (f *fixture) run(t testing.TB, pkt []byte) (uint32, []byte) {
	t.Helper()
	return runProg(t, f.net, f.l.objs.Lb, pkt)
}

// runProg runs prog once on pkt, in n (coming in on lxa) or, with n nil,
// in the test's own namespace.
func runProg(t testing.TB, n *testNet, prog *ebpf.Program, pkt []byte) (uint32, []byte) {
	t.Helper()
	md := xdpMd{DataEnd: uint32(len(pkt))}
	if n != nil {
		md.IngressIfindex = uint32(n.ifA)
	}
	opts := &ebpf.RunOptions{Data: pkt, DataOut: make([]byte, len(pkt)+256), Repeat: 1, Context: md}
	var ret uint32
	var err error
	// Always on CPU 0: per-CPU state (the next-hop cache) must not depend
	// on where the scheduler puts the test.
	run := func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var old, cpu0 unix.CPUSet
		if err := unix.SchedGetaffinity(0, &old); err != nil {
			t.Fatalf("sched_getaffinity: %v", err)
		}
		cpu0.Set(0)
		if err := unix.SchedSetaffinity(0, &cpu0); err != nil {
			t.Fatalf("sched_setaffinity: %v", err)
		}
		defer unix.SchedSetaffinity(0, &old)
		ret, err = prog.Run(opts)
	}
	if n != nil {
		n.do(t, run)
	} else {
		run()
	}
	if err != nil {
		t.Fatalf("run %s: %v", prog, err)
	}
	return ret, opts.DataOut
}

func (f *fixture) set(t testing.TB, s dataplane.Service) {
	t.Helper()
	if err := f.l.SetService(s); err != nil {
		t.Fatal(err)
	}
}

// service builds a service over the first n test backends of the VIP's
// family with a table of size m filled round robin.
func service(vip dataplane.VIP, mode dataplane.Mode, idx []uint32, m int) dataplane.Service {
	s := dataplane.Service{VIP: vip, Mode: mode}
	for _, i := range idx {
		b := dataplane.Backend{Index: i, Addr: backend4[i], MAC: mustMAC(fmt.Sprintf("02:00:00:00:01:%02x", i))}
		if vip.Addr.Is6() {
			b.Addr = backend6[i]
		}
		s.Backends = append(s.Backends, b)
	}
	if len(idx) > 0 {
		for j := range m {
			s.Table = append(s.Table, idx[j%len(idx)])
		}
	}
	return s
}

var xdpActions = map[uint32]string{0: "ABORTED", 1: "DROP", 2: "PASS", 3: "TX", 4: "REDIRECT"}

func actionName(a uint32) string {
	if s, ok := xdpActions[a]; ok {
		return s
	}
	return fmt.Sprint(a)
}

const (
	xdpAborted = iota
	xdpDrop
	xdpPass
	xdpTX
	xdpRedirect
)

// putPinnedU64 overwrites entry 0 of a pinned one-entry u64 array.
func putPinnedU64(pin string, v uint64) error {
	m, err := ebpf.LoadPinnedMap(pin, nil)
	if err != nil {
		return err
	}
	defer m.Close()
	return m.Put(uint32(0), v)
}
