package dnsserver

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestTCPAnswers(t *testing.T) {
	cases := []struct {
		name, listen string
		ipv6         bool
	}{
		{"ipv4", "127.0.0.1:0", false},
		{"ipv6", "[::1]:0", true},
		{"dual-stack", ":0", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.ipv6 {
				skipNoIPv6Loopback(t)
			}
			s := startTransport(t, TransportConfig{Addrs: []string{tc.listen}}, &fakeHandler{})
			c := dialTCPClient(t, clientAddr(s.Addrs()[0]))
			local := c.LocalAddr().(*net.TCPAddr).AddrPort()
			for id := range uint16(3) {
				r := exchangeTCP(t, c, buildQuery(t, id, "t.example."))
				if r.Id != id {
					t.Fatalf("reply id %d, want %d", r.Id, id)
				}
				if got, want := answerTXT(t, r), "tcp "+local.String(); got != want {
					t.Fatalf("handler saw %q, want %q", got, want)
				}
			}
			if got := transportMetric(t, s.Collector(), "gslbd_dns_tcp_connections"); got != 1 {
				t.Errorf("gslbd_dns_tcp_connections = %v, want 1", got)
			}
		})
	}
}

// TestTCPPipelining writes 100 queries at once and wants 100 replies in order.
func TestTCPPipelining(t *testing.T) {
	s := startTransport(t, TransportConfig{Addrs: []string{"127.0.0.1:0"}}, &fakeHandler{})
	c := dialTCPClient(t, s.Addrs()[0])
	const n = 100
	qs := make([][]byte, n)
	for i := range qs {
		qs[i] = buildQuery(t, uint16(1000+i), "pipe.example.")
	}
	writeFramed(t, c, qs...)
	for i := range n {
		b, err := readFramed(c)
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if r := unpackMsg(t, b); r.Id != uint16(1000+i) {
			t.Fatalf("reply %d has id %d, want %d", i, r.Id, 1000+i)
		}
	}
}

// TestTCPTimeouts: each case must end with the server closing the
// connection and counting the right timeout.
func TestTCPTimeouts(t *testing.T) {
	const short, long = 100 * time.Millisecond, time.Minute
	cases := []struct {
		name       string
		idle, read time.Duration
		send       func(t *testing.T, c net.Conn)
		kind       string
	}{
		{"idle before any query", short, long, func(*testing.T, net.Conn) {}, "idle"},
		{"idle after a query", short, long, func(t *testing.T, c net.Conn) {
			exchangeTCP(t, c, buildQuery(t, 1, "x.example."))
		}, "idle"},
		{"slow-loris one byte", long, short, func(t *testing.T, c net.Conn) {
			writeRaw(t, c, []byte{0})
		}, "read"},
		{"slow-loris partial message", long, short, func(t *testing.T, c net.Conn) {
			q := buildQuery(t, 1, "x.example.")
			writeRaw(t, c, binary.BigEndian.AppendUint16(nil, uint16(len(q))))
			writeRaw(t, c, q[:5])
		}, "read"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := TransportConfig{Addrs: []string{"127.0.0.1:0"}, TCPIdleTimeout: tc.idle, TCPReadTimeout: tc.read}
			s := startTransport(t, cfg, &fakeHandler{})
			c := dialTCPClient(t, s.Addrs()[0])
			tc.send(t, c)
			expectServerClose(t, c)
			for _, kind := range []string{"idle", "read", "write"} {
				want := 0.0
				if kind == tc.kind {
					want = 1
				}
				if got := transportMetric(t, s.Collector(), "gslbd_dns_tcp_timeouts_total", "kind", kind); got != want {
					t.Errorf("timeouts{kind=%q} = %v, want %v", kind, got, want)
				}
			}
		})
	}
}

func writeRaw(t *testing.T, c net.Conn, b []byte) {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func TestTCPConnLimit(t *testing.T) {
	s := startTransport(t, TransportConfig{Addrs: []string{"127.0.0.1:0"}, TCPMaxConns: 2}, &fakeHandler{})
	for i := range 2 {
		c := dialTCPClient(t, s.Addrs()[0])
		exchangeTCP(t, c, buildQuery(t, uint16(i), "limit.example.")) // served, so counted as open
	}
	// Reset at once: on loopback the reset may even beat connect's return.
	over, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(s.Addrs()[0]))
	switch {
	case errors.Is(err, syscall.ECONNRESET):
	case err != nil:
		t.Fatalf("dial: %v", err)
	default:
		defer over.Close()
		expectServerClose(t, over)
	}
	for _, m := range []struct {
		name string
		want float64
	}{
		{"gslbd_dns_tcp_connections", 2},
		{"gslbd_dns_tcp_connections_total", 2},
		{"gslbd_dns_tcp_connections_rejected_total", 1},
	} {
		if got := transportMetric(t, s.Collector(), m.name); got != m.want {
			t.Errorf("%s = %v, want %v", m.name, got, m.want)
		}
	}
}

// TestTCPClosesConnection lists what ends a connection early.
func TestTCPClosesConnection(t *testing.T) {
	h := &fakeHandler{reply: func(q *dns.Msg, _ netip.AddrPort, _ Transport) *dns.Msg {
		switch q.Question[0].Name {
		case "drop.example.":
			return nil
		case "panic.example.":
			panic("tcp test panic")
		}
		return fakeTXTReply(q, "ok")
	}}
	cases := []struct {
		name       string
		maxQueries int
		msgs       [][]byte
		replies    int // answered before the close
	}{
		{"max queries", 3, [][]byte{buildQuery(t, 1, "a."), buildQuery(t, 2, "a."), buildQuery(t, 3, "a."), buildQuery(t, 4, "a.")}, 3},
		{"length under a header", 0, [][]byte{buildQuery(t, 1, "a."), make([]byte, 11), buildQuery(t, 3, "a.")}, 1},
		{"nil reply", 0, [][]byte{buildQuery(t, 1, "a."), buildQuery(t, 2, "drop.example."), buildQuery(t, 3, "a.")}, 1},
		{"handler panic", 0, [][]byte{buildQuery(t, 1, "panic.example."), buildQuery(t, 2, "a.")}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := TransportConfig{Addrs: []string{"127.0.0.1:0"}, TCPMaxQueries: tc.maxQueries}
			s := startTransport(t, cfg, h)
			c := dialTCPClient(t, s.Addrs()[0])
			writeFramed(t, c, tc.msgs...)
			for i := range tc.replies {
				b, err := readFramed(c)
				if err != nil {
					t.Fatalf("reply %d: %v", i, err)
				}
				if r := unpackMsg(t, b); r.Id != uint16(i+1) {
					t.Fatalf("reply %d has id %d", i, r.Id)
				}
			}
			expectServerClose(t, c)
			// The server itself carries on.
			exchangeTCP(t, dialTCPClient(t, s.Addrs()[0]), buildQuery(t, 7, "after.example."))
		})
	}
}

func TestTCPHandlerPanicCounted(t *testing.T) {
	var logs syncLogBuffer
	h := &fakeHandler{
		reply: func(*dns.Msg, netip.AddrPort, Transport) *dns.Msg { panic("dns panic") },
		stream: func(req []byte, _ netip.AddrPort, _ func([]byte) error) bool {
			if bytes.Contains(req, []byte("\x06stream")) {
				panic("stream panic")
			}
			return false
		},
	}
	s := startTransport(t, TransportConfig{Addrs: []string{"127.0.0.1:0"}, Logger: logs.logger()}, h)
	for _, name := range []string{"stream.example.", "dns.example."} {
		c := dialTCPClient(t, s.Addrs()[0])
		writeFramed(t, c, buildQuery(t, 1, name))
		expectServerClose(t, c)
	}
	if got := transportMetric(t, s.Collector(), "gslbd_dns_panics_total"); got != 2 {
		t.Errorf("gslbd_dns_panics_total = %v, want 2", got)
	}
	if !strings.Contains(logs.String(), "stream panic") {
		t.Errorf("first panic not logged:\n%s", logs.String())
	}
}

// TestTCPStream: ServeStream sends several messages for one query; other
// queries on the same connection still reach ServeDNS.
func TestTCPStream(t *testing.T) {
	h := &fakeHandler{stream: func(req []byte, _ netip.AddrPort, send func([]byte) error) bool {
		q := new(dns.Msg)
		if q.Unpack(req) != nil || q.Question[0].Qtype != dns.TypeAXFR {
			return false
		}
		for i := range 3 {
			r := fakeTXTReply(q, strings.Repeat("x", 100*i), "part")
			b, err := r.Pack()
			if err != nil {
				panic(err)
			}
			if err := send(b); err != nil {
				return true
			}
		}
		return true
	}}
	s := startTransport(t, TransportConfig{Addrs: []string{"127.0.0.1:0"}}, h)
	c := dialTCPClient(t, s.Addrs()[0])
	axfr := new(dns.Msg)
	axfr.SetAxfr("example.")
	axfr.Id = 77
	b, err := axfr.Pack()
	if err != nil {
		t.Fatal(err)
	}
	writeFramed(t, c, b, buildQuery(t, 78, "after.example."))
	for i := range 3 {
		b, err := readFramed(c)
		if err != nil {
			t.Fatalf("stream message %d: %v", i, err)
		}
		if r := unpackMsg(t, b); r.Id != 77 || len(r.Answer[0].(*dns.TXT).Txt[0]) != 100*i {
			t.Fatalf("stream message %d is wrong: %v", i, r)
		}
	}
	b, err = readFramed(c)
	if err != nil {
		t.Fatalf("query after the stream: %v", err)
	}
	if r := unpackMsg(t, b); r.Id != 78 || !strings.HasPrefix(answerTXT(t, r), "tcp ") {
		t.Fatalf("query after the stream answered wrongly: %v", r)
	}
}

// TestTCPLargeReply: a reply bigger than the connection's buffer is framed whole.
func TestTCPLargeReply(t *testing.T) {
	h := &fakeHandler{reply: func(q *dns.Msg, _ netip.AddrPort, _ Transport) *dns.Msg {
		txt := make([]string, 100)
		for i := range txt {
			txt[i] = strings.Repeat("y", 200)
		}
		return fakeTXTReply(q, txt...)
	}}
	s := startTransport(t, TransportConfig{Addrs: []string{"127.0.0.1:0"}}, h)
	c := dialTCPClient(t, s.Addrs()[0])
	for id := range uint16(2) {
		r := exchangeTCP(t, c, buildQuery(t, id, "big.example."))
		if r.Id != id || len(r.Answer[0].(*dns.TXT).Txt) != 100 {
			t.Fatalf("large reply %d came back wrong", id)
		}
	}
}

// TestTCPWriteTimeout: a client that sends queries but never reads gets
// disconnected once a reply cannot be written within TCPWriteTimeout.
func TestTCPWriteTimeout(t *testing.T) {
	big := make([]string, 250)
	for i := range big {
		big[i] = strings.Repeat("z", 250)
	}
	h := &fakeHandler{reply: func(q *dns.Msg, _ netip.AddrPort, _ Transport) *dns.Msg {
		return fakeTXTReply(q, big...) // about 63 KB
	}}
	closed := make(chan string, 16)
	log := slog.New(closeWatcher{closed})
	cfg := TransportConfig{Addrs: []string{"127.0.0.1:0"}, TCPWriteTimeout: 100 * time.Millisecond, Logger: log}
	s := startTransport(t, cfg, h)
	c := dialTCPClient(t, s.Addrs()[0])
	if err := c.SetReadBuffer(4096); err != nil {
		t.Fatal(err)
	}
	// 400 replies of 63 KB are far more than the socket buffers hold.
	qs := make([][]byte, 400)
	for i := range qs {
		qs[i] = buildQuery(t, uint16(i), "big.example.")
	}
	writeFramed(t, c, qs...)
	select {
	case reason := <-closed:
		if !strings.Contains(reason, "i/o timeout") {
			t.Fatalf("connection closed for %q, want a write timeout", reason)
		}
	case <-time.After(clientIOTimeout):
		t.Fatal("server did not give up writing to a client that does not read")
	}
	if got := transportMetric(t, s.Collector(), "gslbd_dns_tcp_timeouts_total", "kind", "write"); got != 1 {
		t.Errorf("timeouts{kind=write} = %v, want 1", got)
	}
}

// closeWatcher is a slog.Handler passing on the reason of each closed connection.
type closeWatcher struct{ reasons chan<- string }

func (closeWatcher) Enabled(context.Context, slog.Level) bool { return true }
func (w closeWatcher) WithAttrs([]slog.Attr) slog.Handler     { return w }
func (w closeWatcher) WithGroup(string) slog.Handler          { return w }

func (w closeWatcher) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "dns tcp connection closed" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "reason" {
			select {
			case w.reasons <- a.Value.String():
			default:
			}
		}
		return true
	})
	return nil
}
