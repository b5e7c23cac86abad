package anycast

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// testRouter is a second gobgp speaker in the test process playing the
// router: it listens on 127.0.0.1 at a free high port and accepts the
// announcer as a passive neighbor.
type testRouter struct {
	sp   *speaker
	port uint16
	// msgs is signalled (without blocking) each time the router has
	// handled a BGP message, so waiters re-read the RIB only on news.
	msgs   chan struct{}
	closed bool
}

// routerNeighbor is a neighbor the router accepts.
type routerNeighbor struct {
	addr     netip.Addr
	asn      uint32
	password string // TCP-MD5
}

func startRouter(t testing.TB, asn uint32, neighbors ...routerNeighbor) *testRouter {
	t.Helper()
	r := &testRouter{msgs: make(chan struct{}, 1)}
	observe := func(op server.FSMOperation) {
		if op == server.FSMMessage {
			select {
			case r.msgs <- struct{}{}:
			default:
			}
		}
	}
	var err error
	for try := 0; try < 5; try++ { // the free port may be taken in between
		r.port = freePort(t)
		r.sp = newSpeaker(testLogger(t, "router"), observe)
		err = r.sp.StartBgp(context.Background(), &api.StartBgpRequest{Global: &api.Global{
			Asn: asn, RouterId: "127.0.0.254", ListenPort: int32(r.port), ListenAddresses: []string{"127.0.0.1"},
		}})
		if err == nil {
			break
		}
		r.sp.close()
	}
	if err != nil {
		t.Fatalf("start router: %v", err)
	}
	t.Cleanup(r.close)
	for _, n := range neighbors {
		p := &api.Peer{
			Conf:      &api.PeerConf{NeighborAddress: n.addr.String(), PeerAsn: n.asn, AuthPassword: n.password},
			Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: 9, KeepaliveInterval: 3, ConnectRetry: 1}},
			Transport: &api.Transport{PassiveMode: true}, // never dial port 179
			AfiSafis: []*api.AfiSafi{
				{Config: &api.AfiSafiConfig{Family: familyIPv4, Enabled: true}},
				{Config: &api.AfiSafiConfig{Family: familyIPv6, Enabled: true}},
			},
		}
		if err := r.sp.AddPeer(context.Background(), &api.AddPeerRequest{Peer: p}); err != nil {
			t.Fatalf("router: add neighbor %v: %v", n.addr, err)
		}
	}
	return r
}

func (r *testRouter) close() {
	if !r.closed {
		r.closed = true
		r.sp.close()
	}
}

// withdrawalsReceived counts the UPDATEs with withdrawals the router got.
func (r *testRouter) withdrawalsReceived(t testing.TB) uint64 {
	t.Helper()
	var n uint64
	err := r.sp.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
		n += p.GetState().GetMessages().GetReceived().GetWithdrawUpdate()
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// freePort returns a TCP port free on 127.0.0.1 a moment ago.
func freePort(t testing.TB) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// route is a path as the router sees it.
type route struct {
	nextHop     string
	med         uint32
	hasMED      bool
	communities []uint32
	asPath      []uint32
}

func (r route) hasCommunity(c uint32) bool { return slices.Contains(r.communities, c) }

func (r route) String() string {
	var cs []string
	for _, c := range r.communities {
		cs = append(cs, fmt.Sprintf("%d:%d", c>>16, c&0xffff))
	}
	return fmt.Sprintf("nh=%s med=%d(%v) comm=%v aspath=%v", r.nextHop, r.med, r.hasMED, cs, r.asPath)
}

// routes returns the router's paths for prefix (empty when withdrawn).
func (r *testRouter) routes(t testing.TB, prefix netip.Prefix) []route {
	t.Helper()
	fam := familyIPv4
	if prefix.Addr().Is6() {
		fam = familyIPv6
	}
	var out []route
	err := r.sp.ListPath(context.Background(), &api.ListPathRequest{
		TableType: api.TableType_GLOBAL, Family: fam,
		Prefixes: []*api.TableLookupPrefix{{Prefix: prefix.String(), Type: api.TableLookupPrefix_EXACT}},
	}, func(d *api.Destination) {
		for _, p := range d.Paths {
			if !p.IsWithdraw {
				out = append(out, decodeRoute(t, p))
			}
		}
	})
	if err != nil {
		t.Fatalf("router: list %v: %v", prefix, err)
	}
	return out
}

func decodeRoute(t testing.TB, p *api.Path) route {
	var rt route
	for _, a := range p.Pattrs {
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatalf("decode attribute: %v", err)
		}
		switch v := m.(type) {
		case *api.NextHopAttribute:
			rt.nextHop = v.NextHop
		case *api.MpReachNLRIAttribute:
			rt.nextHop = strings.Join(v.NextHops, ",")
		case *api.MultiExitDiscAttribute:
			rt.med, rt.hasMED = v.Med, true
		case *api.CommunitiesAttribute:
			rt.communities = v.Communities
		case *api.AsPathAttribute:
			for _, s := range v.Segments {
				rt.asPath = append(rt.asPath, s.Numbers...)
			}
		}
	}
	return rt
}

// waitRoute waits, re-reading the RIB whenever the router handles a
// message, until cond holds for prefix's paths; it fails after timeout.
func (r *testRouter) waitRoute(t testing.TB, prefix netip.Prefix, timeout time.Duration, what string, cond func([]route) bool) []route {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond) // covers changes made by other means (session close)
	defer tick.Stop()
	for {
		rs := r.routes(t, prefix)
		if cond(rs) {
			return rs
		}
		select {
		case <-r.msgs:
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("router: %v: not %s within %v; paths: %v", prefix, what, timeout, rs)
		}
	}
}

// testLogger logs to t until the test ends (gobgp goroutines may outlive a
// failed test by a moment).
func testLogger(t testing.TB, who string) *slog.Logger {
	if _, bench := t.(*testing.B); bench { // benchmarks print every log line
		return slog.New(slog.DiscardHandler)
	}
	w := &testLogWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	var out io.Writer = w
	return slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelInfo})).With("who", who)
}

type testLogWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}
