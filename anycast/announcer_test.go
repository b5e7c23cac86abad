package anycast

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/anypb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	routerASN   = 65000
	siteASN     = 65001
	waitTimeout = 15 * time.Second // session set-up takes 1-2 s (gobgp's first connect)
)

var (
	loopback = netip.MustParseAddr("127.0.0.1")
	vip4     = VIP{
		Prefix:       netip.MustParsePrefix("192.0.2.10/32"),
		Communities:  []string{"65000:100"},
		MED:          10,
		DrainMED:     50,
		DrainPrepend: 2,
	}
	vip6 = VIP{Prefix: netip.MustParsePrefix("2001:db8:100::/48"), Communities: []string{"65000:600"}}
	nh6  = netip.MustParseAddr("2001:db8::1")
)

func siteConfig(t testing.TB, r *testRouter) Config {
	return Config{
		RouterID: netip.MustParseAddr("192.0.2.1"),
		LocalASN: siteASN,
		Peers: []PeerConfig{{
			Address: loopback, ASN: routerASN, Port: r.port,
			HoldTime: 3 * time.Second, ConnectRetry: time.Second,
		}},
		NextHop6: nh6,
		Logger:   testLogger(t, "announcer"),
	}
}

// runAnnouncer starts Run; wait returns its result.
func runAnnouncer(t testing.TB, a *Announcer) (cancel context.CancelFunc, wait func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	wait = sync.OnceValue(func() error { return <-done })
	t.Cleanup(func() {
		cancel()
		wait()
	})
	return cancel, wait
}

// ribSize counts the routes in the announcer's own table.
func (a *Announcer) ribSize(t testing.TB) int {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, fam := range []*api.Family{familyIPv4, familyIPv6} {
		err := a.sp.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: fam},
			func(d *api.Destination) { n += len(d.Paths) })
		if err != nil {
			t.Fatal(err)
		}
	}
	return n
}

func waitEstablished(t testing.TB, a *Announcer) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		st := a.Status()
		up := len(st.Peers) > 0
		for _, p := range st.Peers {
			up = up && p.Up
		}
		if up {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions not established within %v: %+v", waitTimeout, st.Peers)
		}
		<-tick.C
	}
}

func present(rs []route) bool { return len(rs) == 1 }
func absent(rs []route) bool  { return len(rs) == 0 }

func TestAnnouncerFollowsStateAtRouter(t *testing.T) {
	r := startRouter(t, routerASN, routerNeighbor{addr: loopback, asn: siteASN})
	a, err := New(siteConfig(t, r))
	if err != nil {
		t.Fatal(err)
	}
	// Recorded before Run, announced when it starts.
	if err := a.Set(vip4, Announced, "healthy"); err != nil {
		t.Fatal(err)
	}
	_, runDone := runAnnouncer(t, a)
	waitEstablished(t, a)
	if port := a.listenPort(t); port != -1 {
		t.Fatalf("gobgp listen port %d, want -1 (not listening)", port)
	}

	// Announced: the VIP's community and MED, next hop the session address.
	rs := r.waitRoute(t, vip4.Prefix, waitTimeout, "announced", present)
	if got := rs[0]; got.nextHop != "127.0.0.1" || !got.hasMED || got.med != 10 ||
		!got.hasCommunity(65000<<16|100) || got.hasCommunity(gracefulShutdown) || len(got.asPath) != 1 {
		t.Fatalf("announced route: %v", got)
	}

	// Depreferred: 65535:0 added, drain MED, two extra prepends.
	if err := a.Set(vip4, Depreferred, "degraded: 1/3 backends"); err != nil {
		t.Fatal(err)
	}
	rs = r.waitRoute(t, vip4.Prefix, waitTimeout, "de-preferred", func(rs []route) bool {
		return len(rs) == 1 && rs[0].hasCommunity(gracefulShutdown)
	})
	if got := rs[0]; got.med != 50 || !got.hasCommunity(65000<<16|100) || joinASNs(got.asPath) != "65001 65001 65001" {
		t.Fatalf("de-preferred route: %v", got)
	}

	// Withdrawn.
	if err := a.Set(vip4, Withdrawn, "down: dns self-check failed"); err != nil {
		t.Fatal(err)
	}
	r.waitRoute(t, vip4.Prefix, waitTimeout, "withdrawn", absent)

	// IPv6 over MP-BGP, with the configured IPv6 next hop.
	if err := a.Set(vip6, Announced, "healthy"); err != nil {
		t.Fatal(err)
	}
	rs = r.waitRoute(t, vip6.Prefix, waitTimeout, "announced", present)
	if got := rs[0]; got.nextHop != nh6.String() || !got.hasCommunity(65000<<16|600) || got.hasMED {
		t.Fatalf("announced IPv6 route: %v", got)
	}
	if err := a.Set(vip4, Announced, "healthy again"); err != nil {
		t.Fatal(err)
	}
	r.waitRoute(t, vip4.Prefix, waitTimeout, "announced again", func(rs []route) bool {
		return len(rs) == 1 && !rs[0].hasCommunity(gracefulShutdown)
	})

	// Idempotent: the same state again is no transition, only a new reason.
	before := a.transitionsCopy()
	if err := a.Set(vip4, Announced, "still healthy"); err != nil {
		t.Fatal(err)
	}
	if after := a.transitionsCopy(); after != before {
		t.Fatalf("repeated Set counted a transition: %v -> %v", before, after)
	}

	// The trap: the router sends a route; the import policy rejects it
	// while the announcer's own routes still go out.
	injectRoute(t, r, "198.51.100.0/24")
	st := waitStatus(t, a, func(st Status) bool { return st.Peers[0].Received == 1 && st.Peers[0].Advertised == 2 })
	if p := st.Peers[0]; p.State != "established" || p.Since.IsZero() {
		t.Fatalf("peer status: %+v", p)
	}
	if n := a.ribSize(t); n != 2 {
		t.Fatalf("announcer table holds %d routes, want its own 2 only", n)
	}
	if st.Phase != "running" || len(st.VIPs) != 2 || st.VIPs[0].Prefix != vip4.Prefix || st.VIPs[0].State != Announced ||
		st.VIPs[0].Reason != "still healthy" || !st.VIPs[0].Active || st.VIPs[1].State != Announced {
		t.Fatalf("status: %+v", st)
	}
	checkMetrics(t, a, `
gslbd_anycast_announced{prefix="192.0.2.10/32"} 1
gslbd_anycast_announced{prefix="2001:db8:100::/48"} 1
gslbd_anycast_depreferred{prefix="192.0.2.10/32"} 0
gslbd_anycast_peer_up{peer="127.0.0.1"} 1
gslbd_anycast_transitions_total{to="announced"} 3
gslbd_anycast_transitions_total{to="depreferred"} 1
gslbd_anycast_transitions_total{to="withdrawn"} 1
`)

	// Shutdown: 65535:0 on everything for the drain, then withdrawn.
	const drain = 1500 * time.Millisecond
	start := time.Now()
	shut := make(chan error, 1)
	go func() { shut <- a.Shutdown(context.Background(), drain) }()
	for _, p := range []netip.Prefix{vip4.Prefix, vip6.Prefix} {
		r.waitRoute(t, p, drain, "drained with 65535:0", func(rs []route) bool {
			return len(rs) == 1 && rs[0].hasCommunity(gracefulShutdown)
		})
	}
	if err := a.Set(vip4, Announced, "too late"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Set during drain: %v, want ErrClosed", err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if took := time.Since(start); took < drain {
		t.Fatalf("Shutdown returned after %v, before the %v drain", took, drain)
	}
	// Shutdown closed the sessions: nothing can still be announced.
	for _, p := range []netip.Prefix{vip4.Prefix, vip6.Prefix} {
		r.waitRoute(t, p, waitTimeout, "withdrawn after shutdown", absent)
	}
	// And it withdrew both explicitly before closing (one withdrawal
	// earlier, two at shutdown).
	if n := r.withdrawalsReceived(t); n != 3 {
		t.Fatalf("router received %d withdrawals, want 3", n)
	}
	if err := runDone(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	st = a.Status()
	if st.Phase != "stopped" || st.VIPs[0].State != Withdrawn || st.VIPs[0].Reason != "shutdown" || st.VIPs[0].Active {
		t.Fatalf("status after shutdown: %+v", st)
	}
	if err := a.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Shutdown: %v, want ErrClosed", err)
	}
	r.close()
	goleak.VerifyNone(t)
}

// TestRunContextEndWithdraws: cancelling Run without Shutdown still
// withdraws and closes the sessions, and leaves no goroutine behind.
func TestRunContextEndWithdraws(t *testing.T) {
	r := startRouter(t, routerASN, routerNeighbor{addr: loopback, asn: siteASN})
	a, err := New(siteConfig(t, r))
	if err != nil {
		t.Fatal(err)
	}
	cancel, runDone := runAnnouncer(t, a)
	if err := a.Set(vip6, Depreferred, "draining"); err != nil {
		t.Fatal(err)
	}
	r.waitRoute(t, vip6.Prefix, waitTimeout, "announced", present)
	cancel()
	if err := runDone(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	r.waitRoute(t, vip6.Prefix, waitTimeout, "withdrawn", absent)
	if st := a.Status(); st.Phase != "stopped" || st.VIPs[0].State != Withdrawn {
		t.Fatalf("status: %+v", st)
	}
	// Shutdown after Run's own stop returns at once.
	if err := a.Shutdown(context.Background(), time.Hour); err != nil {
		t.Fatal(err)
	}
	r.close()
	goleak.VerifyNone(t)
}

// TestShutdownContextCutsDrain: a drain longer than the caller's deadline
// still ends with everything withdrawn.
func TestShutdownContextCutsDrain(t *testing.T) {
	r := startRouter(t, routerASN, routerNeighbor{addr: loopback, asn: siteASN})
	a, err := New(siteConfig(t, r))
	if err != nil {
		t.Fatal(err)
	}
	_, runDone := runAnnouncer(t, a)
	if err := a.Set(vip4, Announced, "healthy"); err != nil {
		t.Fatal(err)
	}
	r.waitRoute(t, vip4.Prefix, waitTimeout, "announced", present)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := a.Shutdown(ctx, time.Hour); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want a deadline error", err)
	}
	r.waitRoute(t, vip4.Prefix, waitTimeout, "withdrawn", absent)
	if err := runDone(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestLifecycleWithoutRun(t *testing.T) {
	a, err := New(Config{
		RouterID: netip.MustParseAddr("192.0.2.1"), LocalASN: siteASN,
		Peers: []PeerConfig{{Address: loopback, ASN: routerASN}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Set(vip4, Announced, "healthy"); err != nil {
		t.Fatal(err)
	}
	st := a.Status()
	if st.Phase != "idle" || st.VIPs[0].State != Announced || st.VIPs[0].Active || st.Peers[0].State != "idle" {
		t.Fatalf("status before Run: %+v", st)
	}
	if err := a.Shutdown(context.Background(), time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := a.Set(vip4, Announced, "healthy"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Set after Shutdown: %v", err)
	}
	if err := a.Set(vip4, Withdrawn, "down"); err != nil {
		t.Fatalf("Set(Withdrawn) after Shutdown: %v", err)
	}
	if err := a.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Shutdown: %v", err)
	}
}

func (a *Announcer) transitionsCopy() [len(stateNames)]uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.transitions
}

func joinASNs(as []uint32) string {
	var b strings.Builder
	for i, n := range as {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatUint(uint64(n), 10))
	}
	return b.String()
}

func waitStatus(t testing.TB, a *Announcer, cond func(Status) bool) Status {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		st := a.Status()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("status condition not met within %v: %+v", waitTimeout, st)
		}
		<-tick.C
	}
}

// injectRoute makes the router originate prefix towards its neighbors.
func injectRoute(t testing.TB, r *testRouter, prefix string) {
	t.Helper()
	p := netip.MustParsePrefix(prefix)
	path := &api.Path{
		Family: familyIPv4,
		Nlri:   mustAny(&api.IPAddressPrefix{Prefix: p.Addr().String(), PrefixLen: uint32(p.Bits())}),
		Pattrs: []*anypb.Any{mustAny(&api.OriginAttribute{}), mustAny(&api.NextHopAttribute{NextHop: "127.0.0.1"})},
	}
	if _, err := r.sp.AddPath(context.Background(), &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path}); err != nil {
		t.Fatal(err)
	}
}

// checkMetrics gathers a's metrics, lints them and compares the samples
// of the families in want ("name{label=\"value\"} number" lines).
func checkMetrics(t testing.TB, a *Announcer, want string) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(a.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if problems, err := promlint.NewWithMetricFamilies(mfs).Lint(); err != nil || len(problems) > 0 {
		t.Fatalf("metric lint: %v %v", err, problems)
	}
	got := map[string]string{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+strconv.Quote(l.GetValue()))
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			got[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = strconv.FormatFloat(v, 'g', -1, 64)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(want), "\n") {
		key, val, _ := strings.Cut(strings.TrimSpace(line), " ")
		if got[key] != val {
			t.Errorf("metric %s = %q, want %s", key, got[key], val)
		}
	}
}

// listenPort is the port gobgp was started with (-1: not listening).
func (a *Announcer) listenPort(t testing.TB) int32 {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	g, err := a.sp.GetBgp(context.Background(), &api.GetBgpRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return g.Global.ListenPort
}

// TestTCPMD5: a session with a TCP-MD5 password; the router's listener
// only accepts segments signed for the announcer's address.
func TestTCPMD5(t *testing.T) {
	cfg := Config{RouterID: netip.MustParseAddr("192.0.2.1"), LocalASN: siteASN, Logger: testLogger(t, "announcer"),
		Peers: []PeerConfig{{Address: loopback, ASN: routerASN, Port: 1, Password: "gslbd-md5"}}}
	if md5Err := md5Supported(); md5Err != nil {
		// This kernel cannot sign segments: Run must say so, not retry
		// silently forever.
		a, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		err = a.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "peers[0].password: TCP-MD5 is not available") {
			t.Fatalf("Run without kernel TCP-MD5: %v", err)
		}
		t.Skipf("TCP-MD5 session not tested: %v", md5Err)
	}
	if err := listenerMD5(); err != nil {
		t.Skipf("this kernel cannot sign on a listening socket (%v), so the router cannot check the announcer", err)
	}
	r := startRouter(t, routerASN, routerNeighbor{addr: loopback, asn: siteASN, password: "gslbd-md5"})
	cfg.Peers[0].Port = r.port
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runAnnouncer(t, a)
	waitEstablished(t, a)
	if err := a.Set(vip4, Announced, "healthy"); err != nil {
		t.Fatal(err)
	}
	r.waitRoute(t, vip4.Prefix, waitTimeout, "announced", present)
}

// listenerMD5 probes TCP-MD5 on a listening socket, as the router needs.
func listenerMD5() error {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer l.Close()
	sc, err := l.(*net.TCPListener).SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	sig := unix.TCPMD5Sig{Keylen: 1}
	sig.Addr.Family = unix.AF_INET
	copy(sig.Addr.Data[2:6], []byte{127, 0, 0, 1})
	if err := sc.Control(func(fd uintptr) {
		serr = unix.SetsockoptTCPMD5Sig(int(fd), unix.IPPROTO_TCP, unix.TCP_MD5SIG, &sig)
	}); err != nil {
		return err
	}
	return serr
}

// TestListenPort: told to listen, the announcer accepts connections there.
func TestListenPort(t *testing.T) {
	port := freePort(t)
	a, err := New(Config{RouterID: netip.MustParseAddr("192.0.2.1"), LocalASN: siteASN,
		ListenPort: int32(port), ListenAddresses: []netip.Addr{loopback},
		Peers: []PeerConfig{{Address: netip.MustParseAddr("127.0.0.9"), ASN: routerASN, Port: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	runAnnouncer(t, a)
	waitStatus(t, a, func(st Status) bool { return st.Phase == "running" })
	if got := a.listenPort(t); got != int32(port) {
		t.Fatalf("gobgp listen port %d, want %d", got, port)
	}
	c, err := net.Dial("tcp", netip.AddrPortFrom(loopback, port).String())
	if err != nil {
		t.Fatalf("announcer does not listen on %d: %v", port, err)
	}
	c.Close()
}
