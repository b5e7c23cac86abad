package test

// Network-namespace helpers for the lbd end-to-end tests and the
// data-path benchmark.
//
// Every namespace and link made here is named with a per-run prefix
// ("lbe" and 4 random hex digits) and is deleted by that prefix only, in a
// cleanup that runs even when the test fails. Links are always created
// inside those namespaces (never in the host's), so deleting the
// namespaces deletes them; the cleanup also sweeps the host's link list for
// the prefix, in case an interrupted command left one behind. XDP is only
// ever attached to links inside these namespaces.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// cmdTimeout bounds every external command the helpers run.
const cmdTimeout = 20 * time.Second

// requireNetLab skips the test (fails it in CI) unless it can make
// network namespaces, load BPF programs and run the tools it needs.
func requireNetLab(t testing.TB, tools ...string) {
	t.Helper()
	var reason string
	if os.Geteuid() != 0 {
		reason = "needs root (network namespaces, XDP)"
	} else {
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			reason = fmt.Sprintf("capget: %v", err)
		} else {
			for _, c := range []struct {
				bit  uint
				name string
			}{{unix.CAP_SYS_ADMIN, "CAP_SYS_ADMIN"}, {unix.CAP_NET_ADMIN, "CAP_NET_ADMIN"}, {unix.CAP_BPF, "CAP_BPF"}} {
				if data[c.bit/32].Effective&(1<<(c.bit%32)) == 0 {
					reason = "needs " + c.name
					break
				}
			}
		}
	}
	if reason != "" {
		if inCI() {
			t.Fatalf("%s (CI=true: these tests must run)", reason)
		}
		t.Skip(reason)
	}
	// The helpers run ip, ethtool, sysctl and nginx by name, also inside
	// "ip netns exec": make sure the sbin directories are searched.
	if _, err := exec.LookPath("ip"); err != nil {
		if tb, ok := t.(interface{ Setenv(k, v string) }); ok {
			tb.Setenv("PATH", os.Getenv("PATH")+":/usr/sbin:/sbin")
		}
	}
	for _, tool := range append([]string{"ip", "ethtool", "sysctl"}, tools...) {
		requireTool(t, tool)
	}
}

// netLab makes namespaces and links under one random prefix.
type netLab struct {
	t      testing.TB
	prefix string
}

// newNetLab picks a fresh prefix and registers the cleanup that deletes
// everything carrying it. Register it before anything that must stop
// before the namespaces go (processes, XDP links): cleanups run last
// registered first.
func newNetLab(t testing.TB) *netLab {
	t.Helper()
	var rnd [2]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	l := &netLab{t: t, prefix: "lbe" + hex.EncodeToString(rnd[:])}
	t.Cleanup(l.destroy)
	return l
}

// destroy deletes the namespaces (and with them their links) and any host
// link named with the prefix.
func (l *netLab) destroy() {
	out, err := boundedOutput("ip", "netns", "list")
	if err != nil {
		l.t.Errorf("ip netns list: %v", err)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], l.prefix+"-") {
			continue
		}
		if out, err := boundedOutput("ip", "netns", "del", f[0]); err != nil {
			l.t.Errorf("ip netns del %s: %v: %s", f[0], err, out)
		}
	}
	out, _ = boundedOutput("ip", "-o", "link", "show")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if strings.HasPrefix(name, l.prefix) {
			_, _ = boundedOutput("ip", "link", "del", name)
		}
	}
}

// boundedOutput runs a command with cmdTimeout and returns its combined
// output.
func boundedOutput(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// name returns prefix+suffix for a link, checking the kernel's 15-byte
// limit.
func (l *netLab) name(suffix string) string {
	n := l.prefix + suffix
	if len(n) > 15 {
		l.t.Fatalf("link name %q is longer than 15 bytes", n)
	}
	return n
}

// netns creates namespace prefix-suffix with lo up. Interfaces made in it
// later skip IPv6 duplicate address detection (a tentative address would
// hold up neighbour discovery for a second) and have reverse-path filtering
// off (set per test where it matters).
func (l *netLab) netns(suffix string) string {
	l.t.Helper()
	ns := l.prefix + "-" + suffix
	l.run("ip", "netns", "add", ns)
	l.ip(ns, "link", "set", "lo", "up")
	l.sysctl(ns, "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0")
	return ns
}

// run runs a command (bounded) and fails the test on error.
func (l *netLab) run(name string, args ...string) string {
	l.t.Helper()
	out, err := boundedOutput(name, args...)
	if err != nil {
		l.t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// ip runs "ip -n ns ARGS".
func (l *netLab) ip(ns string, args ...string) string {
	l.t.Helper()
	return l.run("ip", append([]string{"-n", ns}, args...)...)
}

// exec runs a command inside ns ("ip netns exec").
func (l *netLab) exec(ns string, args ...string) string {
	l.t.Helper()
	return l.run("ip", append([]string{"netns", "exec", ns}, args...)...)
}

func (l *netLab) sysctl(ns string, kv ...string) {
	l.t.Helper()
	l.exec(ns, append([]string{"sysctl", "-q", "-w"}, kv...)...)
}

// veth creates a veth pair with one end in each namespace; macA and macB
// may be "" for random addresses. Both ends are brought up.
func (l *netLab) veth(nsA, a, macA, nsB, b, macB string) {
	l.t.Helper()
	args := []string{"link", "add", a}
	if macA != "" {
		args = append(args, "address", macA)
	}
	args = append(args, "type", "veth", "peer", "name", b)
	if macB != "" {
		args = append(args, "address", macB)
	}
	args = append(args, "netns", nsB)
	l.ip(nsA, args...)
	l.ip(nsA, "link", "set", a, "up")
	l.ip(nsB, "link", "set", b, "up")
}

// txOff turns off tx checksum offload on a veth: locally generated TCP
// carries only a partial checksum, and when XDP on the far side
// redirects or transmits the frame (XDP_TX, a redirect), the frame loses
// the skb's "complete the checksum" note and arrives with a bad checksum
// (ANCHORS.md, "XDP on veth").
func (l *netLab) txOff(ns, dev string) {
	l.t.Helper()
	l.exec(ns, "ethtool", "-K", dev, "tx", "off")
}

// waitLinkLocal waits (bounded) until dev has its IPv6 link-local
// address, which neighbour discovery needs.
func (l *netLab) waitLinkLocal(ns, dev string) {
	l.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := l.ip(ns, "-6", "addr", "show", "dev", dev, "scope", "link")
		if strings.Contains(out, "fe80::") && !strings.Contains(out, "tentative") {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("%s in %s has no link-local IPv6 address after 5s: %s", dev, ns, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mac returns a link's MAC address.
func (l *netLab) mac(ns, dev string) string {
	l.t.Helper()
	var info []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal([]byte(l.ip(ns, "-j", "link", "show", "dev", dev)), &info); err != nil || len(info) != 1 {
		l.t.Fatalf("ip -j link show %s: %v", dev, err)
	}
	return info[0].Address
}

// xdpAttached reports whether dev has an XDP program.
func (l *netLab) xdpAttached(ns, dev string) bool {
	l.t.Helper()
	return strings.Contains(l.ip(ns, "link", "show", "dev", dev), " xdp")
}

// inNetns runs fn on an OS thread switched into network namespace ns.
// Sockets made by fn belong to ns for their whole life, whichever thread
// later serves them.
func inNetns(ns string, fn func() error) error {
	fd, err := unix.Open("/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", ns, err)
	}
	defer unix.Close(fd)
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open own netns: %w", err)
	}
	defer unix.Close(orig)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", ns, err)
	}
	ferr := fn()
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		// Keep the thread locked: it exits with the goroutine instead of
		// running others in the wrong namespace.
		return errors.Join(ferr, fmt.Errorf("setns back: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// nsDial dials from inside ns.
func nsDial(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := inNetns(ns, func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// nsHTTPClient makes every request on a new connection from inside ns.
func nsHTTPClient(ns string, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{DialContext: nsDial(ns), DisableKeepAlives: true, Proxy: nil},
	}
}

// nsProc is a process started in a namespace by "ip netns exec", which
// execs it: the PID is the process's own, and it is stopped by that PID.
type nsProc struct {
	name string
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
	err  error // valid after done is closed
}

// start runs args in ns. The process gets SIGKILL if the test binary dies;
// at cleanup it gets SIGTERM, then SIGKILL after 10 s.
func (l *netLab) start(ns, name string, args ...string) *nsProc {
	l.t.Helper()
	p := &nsProc{name: name, logs: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		l.t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	l.t.Cleanup(func() { p.stop(syscall.SIGTERM, 10*time.Second) })
	return p
}

// exited reports whether the process has ended.
func (p *nsProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop signals the process by its PID and waits up to grace for it to
// exit, then kills it. It returns the exit error (nil for a clean exit).
func (p *nsProc) stop(sig syscall.Signal, grace time.Duration) error {
	if p.exited() {
		return p.err
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return p.err
}

// waitLog waits (bounded) until the process's output contains want at
// least n times. It fails if the process exits first.
func (p *nsProc) waitLog(t testing.TB, want string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for strings.Count(p.logs.String(), want) < n {
		if p.exited() {
			t.Fatalf("%s exited (%v) before logging %q\n%s", p.name, p.err, want, p.logs)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q (%d times) within %v\n%s", p.name, want, n, timeout, p.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mountBPFFS mounts a private bpf filesystem on a temporary directory for
// lbd's pins (the host's /sys/fs/bpf is never touched). "ip netns exec"
// processes see it: their mount namespace is a copy of ours.
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
	return dir
}

// attachXDP attaches prog to dev in ns (driver mode on veth) until the
// test ends.
func attachXDP(t testing.TB, ns, dev string, prog *ebpf.Program) link.Link {
	t.Helper()
	var lk link.Link
	err := inNetns(ns, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		lk, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifi.Index, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		t.Fatalf("attach XDP to %s in %s: %v", dev, ns, err)
	}
	t.Cleanup(func() { lk.Close() })
	return lk
}

// xdpPassProgram is an XDP program that passes every frame. XDP_TX and
// redirects into a veth only deliver when its peer has an XDP program
// (which enables the peer's NAPI receive ring), so a veth whose peer's
// XDP program transmits needs one even when it has nothing to do.
func xdpPassProgram(t testing.TB) *ebpf.Program {
	t.Helper()
	return loadXDP(t, "lbe_pass", asm.Instructions{
		asm.Mov.Imm(asm.R0, int32(xdpPass)),
		asm.Return(),
	})
}

// XDP actions.
const (
	xdpAborted = iota
	xdpDrop
	xdpPass
	xdpTX
)

func loadXDP(t testing.TB, name string, insns asm.Instructions) *ebpf.Program {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: name, Type: ebpf.XDP, Instructions: insns, License: "GPL"})
	if err != nil {
		t.Fatalf("load XDP program %s: %v", name, err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog
}

// writeText writes a file under dir and returns its path.
func writeText(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// lbdProc is a running "lbd run" in a namespace.
type lbdProc struct {
	*nsProc
	ns, api string
}

// startLBD runs bin/lbd run in ns with config file cfg, detaching XDP on
// exit (so a stopped test leaves no program behind), and waits until its
// API serves. Reloads happen only on SIGHUP (-watch 0), so a test decides
// when a change applies.
func startLBD(t testing.TB, l *netLab, ns, cfg, api string) *lbdProc {
	t.Helper()
	p := &lbdProc{nsProc: l.start(ns, "lbd", filepath.Join(binDir, "lbd"), "run", "-config", cfg, "-detach-on-exit", "-watch", "0"), ns: ns, api: api}
	p.waitLog(t, "msg=\"lbd running\"", 1, 15*time.Second)
	return p
}

// stopClean stops lbd with SIGTERM and checks that it detached and
// exited 0.
func (p *lbdProc) stopClean(t testing.TB) {
	t.Helper()
	if err := p.stop(syscall.SIGTERM, 10*time.Second); err != nil {
		t.Errorf("lbd exit: %v\n%s", err, p.logs)
	}
	if !strings.Contains(p.logs.String(), "xdp detached") {
		t.Errorf("lbd did not detach on exit:\n%s", p.logs)
	}
}

// lbdVIPs is the part of "lbd vips -o json" the tests read.
type lbdVIPs struct {
	VIPs []struct {
		ID         string `json:"id"`
		VIP        string `json:"vip"`
		Mode       string `json:"mode"`
		TableSize  int    `json:"table_size"`
		Programmed bool   `json:"programmed"`
		Counters   *struct {
			Packets  uint64            `json:"packets"`
			NewFlows uint64            `json:"new_flows"`
			LRUHits  uint64            `json:"lru_hits"`
			Drops    map[string]uint64 `json:"drops"`
		} `json:"counters"`
		Backends []lbdBackend `json:"backends"`
	} `json:"vips"`
}

type lbdBackend struct {
	Address      string    `json:"address"`
	MAC          string    `json:"mac"`
	Health       string    `json:"health"`
	Reason       string    `json:"reason"`
	HealthSince  time.Time `json:"health_since"`
	State        string    `json:"state"`
	TableEntries int       `json:"table_entries"`
	Counters     *struct {
		Packets  uint64 `json:"packets"`
		NewFlows uint64 `json:"new_flows"`
	} `json:"counters"`
}

// vips runs "bin/lbd vips -api ADDR -o json" in lbd's namespace.
func (p *lbdProc) vips(t testing.TB, l *netLab) lbdVIPs {
	t.Helper()
	out := l.exec(p.ns, filepath.Join(binDir, "lbd"), "vips", "-api", p.api, "-o", "json")
	var v lbdVIPs
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("lbd vips -o json: %v\n%s", err, out)
	}
	return v
}

// backend returns a backend of a VIP ("tcp/192.0.2.10:80") from v.
func (v lbdVIPs) backend(vip, addr string) (lbdBackend, bool) {
	for _, x := range v.VIPs {
		if x.VIP != vip {
			continue
		}
		for _, b := range x.Backends {
			if b.Address == addr {
				return b, true
			}
		}
	}
	return lbdBackend{}, false
}

// waitVIPs polls lbd vips (bounded) until cond holds, and returns the last
// reading.
func (p *lbdProc) waitVIPs(t testing.TB, l *netLab, timeout time.Duration, what string, cond func(lbdVIPs) bool) lbdVIPs {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v := p.vips(t, l)
		if cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			js, _ := json.MarshalIndent(v, "", "  ")
			t.Fatalf("timed out after %v waiting for %s; lbd vips:\n%s\nlbd log:\n%s", timeout, what, js, p.logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// nginx is one proxy's nginx, run in the foreground as a single process
// (master_process off), so that stopping it by PID stops all of it.
type nginx struct {
	*nsProc
	dir string
}

// startNginx runs Debian's nginx in ns with its own config, prefix, pid
// and logs in a temp dir. It listens on listen (host:port each) and
// answers every path with a page naming the proxy, /healthz with "ok".
func startNginx(t testing.TB, l *netLab, ns, proxy string, listen []string) *nginx {
	t.Helper()
	bin := requireTool(t, "nginx")
	dir := t.TempDir()
	var ls strings.Builder
	for _, a := range listen {
		fmt.Fprintf(&ls, "    listen %s;\n", a)
	}
	conf := fmt.Sprintf(`worker_processes 1;
master_process off;
error_log %[1]s/error.log warn;
events { worker_connections 512; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  keepalive_timeout 60s;
  keepalive_requests 100000;
  default_type text/plain;
  server {
%[2]s    location = /healthz { return 200 "ok\n"; }
    # Uploads are stored whole (nginx reads the entire body first), so a
    # test can tell that every segment arrived.
    location /upload/ { root %[1]s/www; dav_methods PUT; create_full_put_path on; client_max_body_size 1m; }
    location / { add_header X-Proxy %[3]s; return 200 "%[3]s\n"; }
  }
}
`, dir, ls.String(), proxy)
	cfg := writeText(t, dir, "nginx.conf", conf)
	n := &nginx{dir: dir, nsProc: l.start(ns, "nginx "+proxy, bin, "-p", dir, "-c", cfg, "-e", dir+"/error.log",
		"-g", "daemon off; pid "+dir+"/nginx.pid;")}
	return n
}

// errLog returns nginx's error log.
func (n *nginx) errLog() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "error.log"))
	return string(b)
}

// lines splits s into lines.
func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewBufferString(s))
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// readAll reads at most 1 MiB of r.
func readAll(r io.Reader) ([]byte, error) { return io.ReadAll(io.LimitReader(r, 1<<20)) }

// Addresses of the lbd topologies: hosts in 198.18.0.0/15 and
// 2001:db8::/32, VIPs in 192.0.2.0/24 and 2001:db8:ffff::/64.
const (
	lbeVIP4       = "192.0.2.10"
	lbeVIP6       = "2001:db8:ffff::10"
	lbeClient4    = "198.18.200.2"
	lbeClient6    = "2001:db8:200::2"
	lbeClientNet4 = "198.18.200.0/24" // the /24 the RTT feed reports
	lbeClientNet6 = "2001:db8:200::/48"
	lbeTunnel4    = "198.18.255.0/24" // lbd's outer source addresses
	lbeTunnel6    = "2001:db8:fe::/64"
	lbeAPI        = "127.0.0.1:9300" // lbd's API, on the LB namespace's own loopback
)

// ipipProxy is one proxy namespace of the IPIP topology.
type ipipProxy struct {
	n            int
	name         string // "proxy-N": what its page says
	ns, dev      string // its namespace and its veth
	lbDev        string // the LB's end of that veth
	addr4, addr6 string // its own (tunnel endpoint and health check) addresses
}

// ipipTopo is
//
//	client ns                LB ns (lbd on every veth, forwarding on)         proxy ns N (N = 1..)
//	PFXc 198.18.200.2 ------ PFXl0 198.18.200.1
//	     2001:db8:200::2           2001:db8:200::1
//	                         PFXlN 198.18.(10+N).1 ----------------------- PFXpN 198.18.(10+N).2
//	                               2001:db8:(10+N)::1                            2001:db8:(10+N)::2
//	                                                                             lo: 192.0.2.10, 2001:db8:ffff::10
//
// The client routes the VIPs to the LB. lbd encapsulates (IPIP, or
// IPv6-in-IPv6) and redirects to the proxy's veth; the proxy strips the
// outer header in XDP and answers from the VIP on lo straight to the
// client through the LB namespace's kernel (a plain router for the return
// path: lbd passes packets that are not to a VIP).
type ipipTopo struct {
	l          *netLab
	client, lb string
	clientDev  string // the client's veth
	lbDev      string // the LB's end of it
	proxies    []ipipProxy
}

func newIPIPTopo(l *netLab, nProxies int) *ipipTopo {
	l.t.Helper()
	tp := &ipipTopo{l: l, client: l.netns("c"), lb: l.netns("lb"), clientDev: l.name("c"), lbDev: l.name("l0")}
	l.veth(tp.lb, tp.lbDev, "", tp.client, tp.clientDev, "")
	l.ip(tp.client, "addr", "add", lbeClient4+"/24", "dev", tp.clientDev)
	l.ip(tp.client, "addr", "add", lbeClient6+"/64", "dev", tp.clientDev, "nodad")
	l.ip(tp.client, "route", "add", "192.0.2.0/24", "via", "198.18.200.1")
	l.ip(tp.client, "route", "add", "2001:db8:ffff::/48", "via", "2001:db8:200::1")
	l.ip(tp.lb, "addr", "add", "198.18.200.1/24", "dev", tp.lbDev)
	l.ip(tp.lb, "addr", "add", "2001:db8:200::1/64", "dev", tp.lbDev, "nodad")
	// lb.c looks routes up with bpf_fib_lookup, which needs forwarding on
	// the ingress interface; the return path is routed by this kernel.
	// Reverse-path filtering off: the proxies' answers come from the VIP,
	// to which the LB namespace has no route.
	l.sysctl(tp.lb, "net.ipv4.conf.all.forwarding=1", "net.ipv6.conf.all.forwarding=1",
		"net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
	for n := 1; n <= nProxies; n++ {
		p := ipipProxy{
			n: n, name: fmt.Sprintf("proxy-%d", n), ns: l.netns(fmt.Sprintf("p%d", n)),
			dev: l.name(fmt.Sprintf("p%d", n)), lbDev: l.name(fmt.Sprintf("l%d", n)),
			addr4: fmt.Sprintf("198.18.%d.2", 10+n), addr6: fmt.Sprintf("2001:db8:%d::2", 10+n),
		}
		l.veth(tp.lb, p.lbDev, "", p.ns, p.dev, "")
		l.ip(tp.lb, "addr", "add", fmt.Sprintf("198.18.%d.1/24", 10+n), "dev", p.lbDev)
		l.ip(tp.lb, "addr", "add", fmt.Sprintf("2001:db8:%d::1/64", 10+n), "dev", p.lbDev, "nodad")
		l.ip(p.ns, "addr", "add", p.addr4+"/24", "dev", p.dev)
		l.ip(p.ns, "addr", "add", p.addr6+"/64", "dev", p.dev, "nodad")
		l.ip(p.ns, "addr", "add", lbeVIP4+"/32", "dev", "lo")
		l.ip(p.ns, "addr", "add", lbeVIP6+"/128", "dev", "lo")
		// The client's segments reach the proxy inside an outer header
		// of 20 (IPv4) or 40 (IPv6) bytes, and lbd drops what would not
		// fit the 1500-byte MTU (XDP cannot fragment). The proxy
		// advertises an MSS that leaves room for it, on its route to the
		// clients: 1500 - 20 - 20 - 20 = 1440 and 1500 - 40 - 20 - 40 = 1400.
		l.ip(p.ns, "route", "add", "198.18.200.0/24", "via", fmt.Sprintf("198.18.%d.1", 10+n), "advmss", "1440")
		l.ip(p.ns, "route", "add", "2001:db8:200::/64", "via", fmt.Sprintf("2001:db8:%d::1", 10+n), "advmss", "1400")
		tp.proxies = append(tp.proxies, p)
	}
	// Every veth here carries locally generated TCP somewhere through XDP
	// (the client's through lbd's redirect, the proxies' answers and the
	// LB's health checks through the XDP programs on the peers).
	l.txOff(tp.client, tp.clientDev)
	l.txOff(tp.lb, tp.lbDev)
	l.waitLinkLocal(tp.client, tp.clientDev)
	l.waitLinkLocal(tp.lb, tp.lbDev)
	for _, p := range tp.proxies {
		l.txOff(tp.lb, p.lbDev)
		l.txOff(p.ns, p.dev)
		l.waitLinkLocal(tp.lb, p.lbDev)
		l.waitLinkLocal(p.ns, p.dev)
	}
	return tp
}

// lbDevs is every LB-side veth, the interfaces lbd attaches to.
func (tp *ipipTopo) lbDevs() []string {
	out := []string{tp.lbDev}
	for _, p := range tp.proxies {
		out = append(out, p.lbDev)
	}
	return out
}
