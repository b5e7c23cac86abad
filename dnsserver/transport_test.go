package dnsserver

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestTransportString(t *testing.T) {
	for tr, want := range map[Transport]string{UDP: "udp", TCP: "tcp", 7: "transport(7)"} {
		if got := tr.String(); got != want {
			t.Errorf("Transport(%d).String() = %q, want %q", tr, got, want)
		}
	}
}

func TestNewServerValidation(t *testing.T) {
	ok := []string{"127.0.0.1:0"}
	cases := []struct {
		name    string
		cfg     TransportConfig
		wantErr string // "" means valid
	}{
		{"minimal", TransportConfig{Addrs: ok}, ""},
		{"all forms", TransportConfig{Addrs: []string{"127.0.0.1:5353", "[::1]:5353", ":5353", "0.0.0.0:0", "[::]:0"}}, ""},
		{"no addrs", TransportConfig{}, "Addrs: at least one"},
		{"no port", TransportConfig{Addrs: []string{"127.0.0.1"}}, `Addrs[0] "127.0.0.1"`},
		{"bad port", TransportConfig{Addrs: []string{"127.0.0.1:99999"}}, `Addrs[0] "127.0.0.1:99999": port`},
		{"not an ip", TransportConfig{Addrs: []string{"127.0.0.1:53", "localhost:53"}}, `Addrs[1] "localhost:53": host must be an IP`},
		{"duplicate", TransportConfig{Addrs: []string{"127.0.0.1:53", "127.0.0.1:53"}}, `Addrs[1] "127.0.0.1:53": same address as Addrs[0]`},
		{"negative workers", TransportConfig{Addrs: ok, Workers: -1}, "Workers"},
		{"too many workers", TransportConfig{Addrs: ok, Workers: 100000}, "Workers"},
		{"negative max conns", TransportConfig{Addrs: ok, TCPMaxConns: -1}, "TCPMaxConns"},
		{"negative idle", TransportConfig{Addrs: ok, TCPIdleTimeout: -time.Second}, "TCPIdleTimeout"},
		{"negative read", TransportConfig{Addrs: ok, TCPReadTimeout: -time.Second}, "TCPReadTimeout"},
		{"negative write", TransportConfig{Addrs: ok, TCPWriteTimeout: -time.Second}, "TCPWriteTimeout"},
		{"negative max queries", TransportConfig{Addrs: ok, TCPMaxQueries: -1}, "TCPMaxQueries"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewServer(tc.cfg, transportEcho{})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("NewServer: %v", err)
				}
				if s.cfg.Workers < 1 || s.cfg.TCPMaxConns != 1024 || s.cfg.TCPIdleTimeout != 10*time.Second ||
					s.cfg.TCPReadTimeout != 3*time.Second || s.cfg.TCPWriteTimeout != 5*time.Second || s.log == nil {
					t.Errorf("defaults not applied: %+v", s.cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("NewServer error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
	if _, err := NewServer(TransportConfig{Addrs: ok}, nil); err == nil {
		t.Error("NewServer accepted a nil handler")
	}
}

func TestListenErrors(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyAddr := busy.Addr().String()

	s, err := NewServer(TransportConfig{Addrs: []string{"127.0.0.1:0", busyAddr}}, transportEcho{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(context.Background()); err == nil {
		t.Error("Serve before Listen succeeded")
	}
	err = s.Listen()
	if err == nil || !strings.Contains(err.Error(), "listen tcp "+busyAddr) {
		t.Fatalf("Listen error = %v, want one naming %s", err, busyAddr)
	}
	if len(s.Addrs()) != 0 {
		t.Errorf("Addrs after a failed Listen = %v, want none", s.Addrs())
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown of a server that never served: %v", err)
	}
}

// TestListenSamePort: ":0" gives one port that answers on UDP and TCP.
func TestListenSamePort(t *testing.T) {
	s := startTransport(t, TransportConfig{Addrs: []string{"127.0.0.1:0", "127.0.0.1:0"}}, &fakeHandler{})
	addrs := s.Addrs()
	if len(addrs) != 2 || addrs[0].Port() == 0 || addrs[0] == addrs[1] {
		t.Fatalf("Addrs() = %v, want two distinct bound addresses", addrs)
	}
	for _, a := range addrs {
		if r := exchangeUDP(t, dialUDPClient(t, a), buildQuery(t, 1, "p.example.")); !strings.HasPrefix(answerTXT(t, r), "udp ") {
			t.Errorf("udp on %v: %v", a, r)
		}
		if r := exchangeTCP(t, dialTCPClient(t, a), buildQuery(t, 2, "p.example.")); !strings.HasPrefix(answerTXT(t, r), "tcp ") {
			t.Errorf("tcp on %v: %v", a, r)
		}
	}
	if err := s.Listen(); err == nil {
		t.Error("second Listen succeeded")
	}
	if err := s.Serve(context.Background()); err == nil {
		t.Error("second Serve succeeded")
	}
}

// blockingHandler holds queries for "slow.example." until release is closed.
type blockingHandler struct {
	fakeHandler
	entered chan struct{}
	release chan struct{}
}

func newBlockingHandler() *blockingHandler {
	h := &blockingHandler{entered: make(chan struct{}, 1), release: make(chan struct{})}
	h.reply = func(q *dns.Msg, src netip.AddrPort, tr Transport) *dns.Msg {
		if q.Question[0].Name == "slow.example." {
			h.entered <- struct{}{}
			<-h.release
		}
		return fakeTXTReply(q, "done")
	}
	return h
}

// TestShutdownFinishesInFlight: Shutdown closes idle connections at once but
// waits for a query being handled, whose reply still goes out.
func TestShutdownFinishesInFlight(t *testing.T) {
	for _, tr := range []Transport{UDP, TCP} {
		t.Run(tr.String(), func(t *testing.T) {
			h := newBlockingHandler()
			s := startTransport(t, TransportConfig{Addrs: []string{"127.0.0.1:0"}, Workers: 1}, h)
			addr := s.Addrs()[0]
			idle := dialTCPClient(t, addr)
			exchangeTCP(t, idle, buildQuery(t, 1, "idle.example.")) // now waiting for its next message

			var slow net.Conn
			if tr == UDP {
				slow = dialUDPClient(t, addr)
				writeRaw(t, slow, buildQuery(t, 2, "slow.example."))
			} else {
				slow = dialTCPClient(t, addr)
				writeFramed(t, slow, buildQuery(t, 2, "slow.example."))
			}
			<-h.entered

			shut := make(chan error, 1)
			go func() { shut <- s.Shutdown(context.Background()) }()
			expectServerClose(t, idle) // Shutdown has begun
			if _, err := net.DialTimeout("tcp", addr.String(), clientIOTimeout); err == nil {
				t.Error("new connection accepted during shutdown")
			}
			select {
			case err := <-shut:
				t.Fatalf("Shutdown returned (%v) while a query was in flight", err)
			default:
			}
			close(h.release)

			var reply []byte
			if tr == UDP {
				reply = readUDPReply(t, slow.(*net.UDPConn))
			} else {
				var err error
				if reply, err = readFramed(slow); err != nil {
					t.Fatalf("in-flight TCP reply lost: %v", err)
				}
			}
			if r := unpackMsg(t, reply); r.Id != 2 {
				t.Fatalf("in-flight reply has id %d, want 2", r.Id)
			}
			if err := <-shut; err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			if err := s.wait(t); err != nil {
				t.Fatalf("Serve: %v", err)
			}
		})
	}
}

// TestShutdownGivesUp: a handler that does not return makes Shutdown give
// up at its deadline; the stuck connection is closed.
func TestShutdownGivesUp(t *testing.T) {
	h := newBlockingHandler()
	s := startTransport(t, TransportConfig{Addrs: []string{"127.0.0.1:0"}}, h)
	c := dialTCPClient(t, s.Addrs()[0])
	writeFramed(t, c, buildQuery(t, 1, "slow.example."))
	<-h.entered

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want context.DeadlineExceeded", err)
	}
	expectServerClose(t, c)
	close(h.release)
	if err := s.wait(t); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func TestServeStopsWithContext(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s, err := NewServer(TransportConfig{Addrs: []string{"127.0.0.1:0"}}, &fakeHandler{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	addr := s.Addrs()[0]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	exchangeTCP(t, dialTCPClient(t, addr), buildQuery(t, 1, "ctx.example."))
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve = %v, want nil", err)
		}
	case <-time.After(clientIOTimeout):
		t.Fatal("Serve did not return after its context ended")
	}
	if c, err := net.Dial("tcp", addr.String()); err == nil {
		c.Close()
		t.Error("listener still open after Serve returned")
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown after Serve returned: %v", err)
	}
}

// TestTransportCollector checks the metric set through a pedantic registry.
func TestTransportCollector(t *testing.T) {
	s, err := NewServer(TransportConfig{Addrs: []string{"127.0.0.1:0"}}, transportEcho{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, mf := range mfs {
		got[mf.GetName()] = len(mf.GetMetric())
	}
	want := map[string]int{
		"gslbd_dns_tcp_connections":                1,
		"gslbd_dns_tcp_connections_total":          1,
		"gslbd_dns_tcp_connections_rejected_total": 1,
		"gslbd_dns_tcp_timeouts_total":             3,
		"gslbd_dns_udp_errors_total":               2,
		"gslbd_dns_panics_total":                   1,
	}
	if len(got) != len(want) {
		t.Errorf("metric families %v, want %v", got, want)
	}
	for name, n := range want {
		if got[name] != n {
			t.Errorf("%s has %d series, want %d", name, got[name], n)
		}
	}
}

// TestListenAnyBothFamilies: "0.0.0.0" and "[::]" on one port coexist,
// which needs IPV6_V6ONLY on the IPv6 sockets.
func TestListenAnyBothFamilies(t *testing.T) {
	skipNoIPv6Loopback(t)
	v4 := startTransport(t, TransportConfig{Addrs: []string{"0.0.0.0:0"}}, &fakeHandler{})
	port := v4.Addrs()[0].Port()
	v6 := startTransport(t, TransportConfig{Addrs: []string{net.JoinHostPort("::", strconv.Itoa(int(port)))}}, &fakeHandler{})
	for _, a := range []netip.AddrPort{clientAddr(v4.Addrs()[0]), clientAddr(v6.Addrs()[0])} {
		if r := exchangeUDP(t, dialUDPClient(t, a), buildQuery(t, 1, "any.example.")); r.Id != 1 {
			t.Errorf("udp %v: reply id %d", a, r.Id)
		}
		if r := exchangeTCP(t, dialTCPClient(t, a), buildQuery(t, 2, "any.example.")); r.Id != 2 {
			t.Errorf("tcp %v: reply id %d", a, r.Id)
		}
	}
}
