package dnsserver

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// udpLoopVariants runs a test against the batched loop (Linux) and the portable one.
var udpLoopVariants = []struct {
	name string
	opts []func(*Server)
}{
	{"batched", nil},
	{"simple", []func(*Server){withSimpleUDP}},
}

func TestUDPAnswers(t *testing.T) {
	v4 := netip.MustParseAddr("127.0.0.1")
	v6 := netip.IPv6Loopback()
	cases := []struct {
		name    string
		listen  string
		workers int
		dst     netip.Addr // zero: the bound address
		ipv6    bool
	}{
		{name: "ipv4", listen: "127.0.0.1:0", workers: 1},
		{name: "ipv4 several workers", listen: "127.0.0.1:0", workers: 4},
		{name: "ipv6", listen: "[::1]:0", workers: 2, ipv6: true},
		{name: "ipv4 any", listen: "0.0.0.0:0", workers: 2, dst: v4},
		{name: "ipv6 any", listen: "[::]:0", workers: 2, dst: v6, ipv6: true},
		{name: "dual-stack via ipv4", listen: ":0", workers: 2, dst: v4, ipv6: true},
		{name: "dual-stack via ipv6", listen: ":0", workers: 2, dst: v6, ipv6: true},
	}
	for _, loop := range udpLoopVariants {
		for _, tc := range cases {
			t.Run(loop.name+"/"+tc.name, func(t *testing.T) {
				if tc.ipv6 {
					skipNoIPv6Loopback(t)
				}
				s := startTransport(t, TransportConfig{Addrs: []string{tc.listen}, Workers: tc.workers},
					&fakeHandler{}, loop.opts...)
				to := s.Addrs()[0]
				if tc.dst.IsValid() {
					to = netip.AddrPortFrom(tc.dst, to.Port())
				}
				c := dialUDPClient(t, to)
				local := c.LocalAddr().(*net.UDPAddr).AddrPort()
				for id := range uint16(10) {
					r := exchangeUDP(t, c, buildQuery(t, id, "a.example."))
					if r.Id != id || !r.Response || r.Question[0].Name != "a.example." {
						t.Fatalf("reply %v does not answer query %d", r, id)
					}
					if got, want := answerTXT(t, r), "udp "+local.String(); got != want {
						t.Fatalf("handler saw %q, want %q", got, want)
					}
				}
			})
		}
	}
}

// TestUDPWorkersConcurrent shows that several workers answer: the handler
// holds every query until two are being handled at once, which one worker
// (or one socket) can never do.
func TestUDPWorkersConcurrent(t *testing.T) {
	for _, loop := range udpLoopVariants {
		t.Run(loop.name, func(t *testing.T) {
			var inFlight atomic.Int32
			two := make(chan struct{})
			var once sync.Once
			h := &fakeHandler{reply: func(q *dns.Msg, src netip.AddrPort, tr Transport) *dns.Msg {
				if inFlight.Add(1) >= 2 {
					once.Do(func() { close(two) })
				}
				<-two
				inFlight.Add(-1)
				return fakeTXTReply(q, "ok")
			}}
			s := startTransport(t, TransportConfig{Addrs: []string{"127.0.0.1:0"}, Workers: 4}, h, loop.opts...)
			// Many source ports spread the queries over the SO_REUSEPORT sockets.
			const clients = 64
			conns := make([]*net.UDPConn, clients)
			for i := range conns {
				conns[i] = dialUDPClient(t, s.Addrs()[0])
				if _, err := conns[i].Write(buildQuery(t, uint16(i), "w.example.")); err != nil {
					t.Fatal(err)
				}
			}
			for i, c := range conns {
				if r := unpackMsg(t, readUDPReply(t, c)); r.Id != uint16(i) {
					t.Fatalf("client %d got reply id %d", i, r.Id)
				}
			}
		})
	}
}

// TestUDPBurst sends 1000 queries at once from 50 sockets and wants every one answered.
func TestUDPBurst(t *testing.T) {
	for _, loop := range udpLoopVariants {
		t.Run(loop.name, func(t *testing.T) {
			s := startTransport(t, TransportConfig{Addrs: []string{"127.0.0.1:0"}, Workers: 4}, transportEcho{}, loop.opts...)
			const clients, perClient = 50, 20
			conns := make([]*net.UDPConn, clients)
			for i := range conns {
				conns[i] = dialUDPClient(t, s.Addrs()[0])
			}
			start := make(chan struct{})
			errs := make(chan error, clients)
			var wg sync.WaitGroup
			for i, c := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- burstClient(c, start, uint16(i*perClient), perClient)
				}()
			}
			close(start)
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func burstClient(c *net.UDPConn, start <-chan struct{}, firstID uint16, n int) error {
	want := make(map[uint16]bool, n)
	queries := make([][]byte, n)
	for i := range n {
		m := new(dns.Msg)
		m.SetQuestion("burst.example.", dns.TypeA)
		m.Id = firstID + uint16(i)
		b, err := m.Pack()
		if err != nil {
			return err
		}
		queries[i], want[m.Id] = b, true
	}
	<-start
	for _, q := range queries {
		if _, err := c.Write(q); err != nil {
			return fmt.Errorf("write: %w", err)
		}
	}
	buf := make([]byte, 512)
	for len(want) > 0 {
		_ = c.SetReadDeadline(time.Now().Add(clientIOTimeout))
		if _, err := c.Read(buf); err != nil {
			return fmt.Errorf("ids from %d: %d of %d unanswered: %w", firstID, len(want), len(queries), err)
		}
		id := uint16(buf[0])<<8 | uint16(buf[1])
		if !want[id] {
			return fmt.Errorf("unexpected or repeated reply id %d", id)
		}
		delete(want, id)
	}
	return nil
}

func TestUDPHandlerPanic(t *testing.T) {
	for _, loop := range udpLoopVariants {
		t.Run(loop.name, func(t *testing.T) {
			var logs syncLogBuffer
			h := &fakeHandler{reply: func(q *dns.Msg, src netip.AddrPort, tr Transport) *dns.Msg {
				if q.Question[0].Name == "panic.example." {
					panic("test panic")
				}
				return fakeTXTReply(q, "ok")
			}}
			s := startTransport(t, TransportConfig{Addrs: []string{"127.0.0.1:0"}, Workers: 1, Logger: logs.logger()}, h, loop.opts...)
			c := dialUDPClient(t, s.Addrs()[0])
			if _, err := c.Write(buildQuery(t, 1, "panic.example.")); err != nil {
				t.Fatal(err)
			}
			// Same socket, same worker, in order: this reply comes after the panic.
			if r := exchangeUDP(t, c, buildQuery(t, 2, "fine.example.")); r.Id != 2 {
				t.Fatalf("got reply id %d, want 2 (the panicking query must get none)", r.Id)
			}
			if got := transportMetric(t, s.Collector(), "gslbd_dns_panics_total"); got != 1 {
				t.Errorf("gslbd_dns_panics_total = %v, want 1", got)
			}
			if out := logs.String(); !strings.Contains(out, "test panic") || !strings.Contains(out, "stack=") {
				t.Errorf("panic not logged with its stack; log:\n%s", out)
			}
		})
	}
}

// TestUDPDatagramSize: a datagram that fills the receive buffer is served,
// a larger one is dropped rather than handed over truncated.
func TestUDPDatagramSize(t *testing.T) {
	for _, loop := range udpLoopVariants {
		t.Run(loop.name, func(t *testing.T) {
			var mu sync.Mutex
			seen := map[uint16]int{} // id -> length the handler saw
			h := transportHandlerFunc(func(out, req []byte, _ netip.AddrPort, _ Transport) []byte {
				id := uint16(req[0])<<8 | uint16(req[1])
				mu.Lock()
				seen[id] = len(req)
				mu.Unlock()
				return append(out[:0], req[:minMsgLen]...)
			})
			s := startTransport(t, TransportConfig{Addrs: []string{"127.0.0.1:0"}, Workers: 1}, h, loop.opts...)
			c := dialUDPClient(t, s.Addrs()[0])
			for _, tc := range []struct {
				id     uint16
				size   int
				served bool
			}{{1, 512, true}, {2, udpRecvSize, true}, {3, udpRecvSize + 1, false}, {4, 9000, false}, {5, 100, true}} {
				dgram := make([]byte, tc.size)
				dgram[0], dgram[1] = byte(tc.id>>8), byte(tc.id)
				if _, err := c.Write(dgram); err != nil {
					t.Fatalf("write %d bytes: %v", tc.size, err)
				}
				if !tc.served {
					continue
				}
				// Replies come in order, so a dropped datagram never shows up here.
				if b := readUDPReply(t, c); uint16(b[0])<<8|uint16(b[1]) != tc.id {
					t.Fatalf("got reply %d, want %d", uint16(b[0])<<8|uint16(b[1]), tc.id)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			want := map[uint16]int{1: 512, 2: udpRecvSize, 5: 100}
			if fmt.Sprint(seen) != fmt.Sprint(want) {
				t.Errorf("handler saw %v, want %v", seen, want)
			}
		})
	}
}

func TestUDPNilReplySendsNothing(t *testing.T) {
	for _, loop := range udpLoopVariants {
		t.Run(loop.name, func(t *testing.T) {
			h := &fakeHandler{reply: func(q *dns.Msg, _ netip.AddrPort, _ Transport) *dns.Msg {
				if q.Question[0].Name == "drop.example." {
					return nil
				}
				return fakeTXTReply(q, "ok")
			}}
			s := startTransport(t, TransportConfig{Addrs: []string{"127.0.0.1:0"}, Workers: 1}, h, loop.opts...)
			c := dialUDPClient(t, s.Addrs()[0])
			if _, err := c.Write(buildQuery(t, 1, "drop.example.")); err != nil {
				t.Fatal(err)
			}
			if r := exchangeUDP(t, c, buildQuery(t, 2, "keep.example.")); r.Id != 2 {
				t.Fatalf("got reply id %d, want 2", r.Id)
			}
		})
	}
}

// BenchmarkUDPRoundTrip measures one query and reply over loopback with a
// trivial handler. allocs/op counts client and server together.
func BenchmarkUDPRoundTrip(b *testing.B) {
	for _, loop := range udpLoopVariants {
		b.Run(loop.name, func(b *testing.B) {
			s := startTransport(b, TransportConfig{Addrs: []string{"127.0.0.1:0"}, Workers: 1}, transportEcho{}, loop.opts...)
			c := dialUDPClient(b, s.Addrs()[0])
			q := buildQuery(b, 7, "bench.example.")
			buf := make([]byte, 512)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := c.Write(q); err != nil {
					b.Fatal(err)
				}
				if _, err := c.Read(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUDPWindow keeps 32 queries in flight from one client socket, so
// the server sees batches: ns/op is per query answered.
func BenchmarkUDPWindow(b *testing.B) {
	const window = 32
	for _, loop := range udpLoopVariants {
		b.Run(loop.name, func(b *testing.B) {
			s := startTransport(b, TransportConfig{Addrs: []string{"127.0.0.1:0"}, Workers: 1}, transportEcho{}, loop.opts...)
			c := dialUDPClient(b, s.Addrs()[0])
			_ = c.SetReadDeadline(time.Now().Add(time.Minute))
			q := buildQuery(b, 7, "bench.example.")
			buf := make([]byte, 512)
			send := func() {
				if _, err := c.Write(q); err != nil {
					b.Fatal(err)
				}
			}
			recv := func() {
				if _, err := c.Read(buf); err != nil {
					b.Fatal(err)
				}
			}
			for range window {
				send()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				recv()
				send()
			}
			b.StopTimer()
			for range window {
				recv()
			}
		})
	}
}

// transportHandlerFunc adapts a function to Handler (no streams).
type transportHandlerFunc func(out, req []byte, src netip.AddrPort, t Transport) []byte

func (f transportHandlerFunc) ServeDNS(out, req []byte, src netip.AddrPort, t Transport) []byte {
	return f(out, req, src, t)
}

func (transportHandlerFunc) ServeStream([]byte, netip.AddrPort, func([]byte) error) bool {
	return false
}
