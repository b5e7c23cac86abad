package health

import (
	"context"
	"crypto/x509"
	"encoding/binary"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// Real probes, against servers the tests start on loopback only.

const testTimeout = 300 * time.Millisecond

func mustAddrPort(t *testing.T, s string) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

func serverTarget(t *testing.T, srv *httptest.Server, m Monitor) Target {
	t.Helper()
	ap := mustAddrPort(t, srv.Listener.Addr().String())
	m.Port = ap.Port()
	if m.Interval == 0 {
		m.Interval = time.Second
		m.Timeout = testTimeout
	}
	return Target{Addr: ap.Addr(), Monitor: m}
}

func checkOnce(t *testing.T, cfg Config, tg Target) Result {
	t.Helper()
	c, err := NewChecker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Check(context.Background(), tg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestProbeHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/down":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/redirect":
			http.Redirect(w, r, "/down", http.StatusFound)
		case "/hang":
			<-r.Context().Done()
		case "/header":
			io.WriteString(w, r.Header.Get("X-Probe")+" "+r.Method)
		default:
			io.WriteString(w, "all systems nominal")
		}
	}))
	defer srv.Close()
	tests := []struct {
		name   string
		m      Monitor
		ok     bool
		reason string
	}{
		{"200", Monitor{Kind: KindHTTP}, true, "ok"},
		{"503", Monitor{Kind: KindHTTP, Path: "/down"}, false, "status 503"},
		{"503 expected", Monitor{Kind: KindHTTP, Path: "/down", Expect: []StatusRange{{503, 503}}}, true, "ok"},
		{"redirect not followed", Monitor{Kind: KindHTTP, Path: "/redirect"}, true, "ok"},
		{"redirect not expected", Monitor{Kind: KindHTTP, Path: "/redirect", Expect: []StatusRange{{200, 299}}}, false, "status 302"},
		{"body match", Monitor{Kind: KindHTTP, BodyContains: "nominal"}, true, "ok"},
		{"body mismatch", Monitor{Kind: KindHTTP, BodyContains: "degraded"}, false, "body mismatch"},
		{"headers and method", Monitor{Kind: KindHTTP, Path: "/header", Method: "POST",
			Headers: map[string]string{"X-Probe": "yes"}, BodyContains: "yes POST"}, true, "ok"},
		{"timeout", Monitor{Kind: KindHTTP, Path: "/hang"}, false, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := checkOnce(t, Config{}, serverTarget(t, srv, tt.m))
			if r.OK != tt.ok || r.Reason != tt.reason {
				t.Fatalf("result %+v, want ok=%t reason %q", r, tt.ok, tt.reason)
			}
			if r.RTT <= 0 {
				t.Fatalf("rtt %v", r.RTT)
			}
		})
	}
}

func TestProbeHTTPHostHeader(t *testing.T) {
	tests := []struct {
		name, listen, host string
		want               func(port string) string
	}{
		{"v4 default", "127.0.0.1:0", "", func(p string) string { return "127.0.0.1:" + p }},
		{"v6 default bracketed", "[::1]:0", "", func(p string) string { return "[::1]:" + p }},
		{"explicit", "127.0.0.1:0", "www.example.com", func(string) string { return "www.example.com" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", tt.listen)
			if err != nil {
				t.Skipf("no %s: %v", tt.listen, err)
			}
			got := make(chan string, 1)
			srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				got <- r.Host
			})}}
			srv.Start()
			defer srv.Close()
			r := checkOnce(t, Config{}, serverTarget(t, srv, Monitor{Kind: KindHTTP, Host: tt.host}))
			if !r.OK {
				t.Fatalf("probe failed: %s", r.Reason)
			}
			_, port, _ := net.SplitHostPort(ln.Addr().String())
			if h := <-got; h != tt.want(port) {
				t.Fatalf("Host header %q, want %q", h, tt.want(port))
			}
		})
	}
}

func TestProbeHTTPS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.TLS.ServerName)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the failing handshakes are expected
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate()) // valid for example.com, 127.0.0.1 and ::1
	tests := []struct {
		name   string
		pool   *x509.CertPool
		m      Monitor
		ok     bool
		reason string // prefix
	}{
		{"verified by address", pool, Monitor{Kind: KindHTTPS}, true, "ok"},
		{"sni from host", pool, Monitor{Kind: KindHTTPS, Host: "example.com", BodyContains: "example.com"}, true, "ok"},
		{"explicit sni", pool, Monitor{Kind: KindHTTPS, Host: "www.other.test", SNI: "example.com"}, true, "ok"},
		{"bad name", pool, Monitor{Kind: KindHTTPS, SNI: "wrong.example"}, false, "tls: "},
		{"unknown authority", nil, Monitor{Kind: KindHTTPS}, false, "tls: "},
		{"skip verify", nil, Monitor{Kind: KindHTTPS, SNI: "wrong.example", TLSSkipVerify: true}, true, "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := checkOnce(t, Config{RootCAs: tt.pool}, serverTarget(t, srv, tt.m))
			if r.OK != tt.ok || !strings.HasPrefix(r.Reason, tt.reason) {
				t.Fatalf("result %+v, want ok=%t reason %q...", r, tt.ok, tt.reason)
			}
		})
	}
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := mustAddrPort(t, ln.Addr().String())
	ln.Close()
	return ap
}

func TestProbeTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	open := mustAddrPort(t, ln.Addr().String())
	closed := closedPort(t)
	tests := []struct {
		name   string
		ap     netip.AddrPort
		kind   Kind
		ok     bool
		reason string
	}{
		{"open", open, KindTCP, true, "ok"},
		{"refused", closed, KindTCP, false, "connection refused"},
		{"http refused", closed, KindHTTP, false, "connection refused"},
	}
	for _, tt := range tests {
		tg := Target{Addr: tt.ap.Addr(), Monitor: Monitor{Kind: tt.kind, Port: tt.ap.Port(), Interval: time.Second, Timeout: testTimeout}}
		if r := checkOnce(t, Config{}, tg); r.OK != tt.ok || r.Reason != tt.reason {
			t.Errorf("%s: result %+v, want ok=%t reason %q", tt.name, r, tt.ok, tt.reason)
		}
	}
}

// dnsResponder answers UDP (and, if tcp, TCP on the same port) queries
// with reply(query); a nil reply is silence.
type dnsResponder struct {
	ap netip.AddrPort
	pc net.PacketConn
	ln net.Listener
	wg sync.WaitGroup
}

func startDNS(t *testing.T, listen string, tcp bool, reply func(q []byte, overTCP bool) []byte) *dnsResponder {
	t.Helper()
	pc, err := net.ListenPacket("udp", listen)
	if err != nil {
		t.Skipf("no udp %s: %v", listen, err)
	}
	d := &dnsResponder{pc: pc, ap: mustAddrPort(t, pc.LocalAddr().String())}
	if tcp {
		if d.ln, err = net.Listen("tcp", d.ap.String()); err != nil {
			pc.Close()
			t.Skipf("tcp port %v taken: %v", d.ap, err)
		}
		d.wg.Go(func() { d.serveTCP(reply) })
	}
	d.wg.Go(func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if r := reply(buf[:n], false); r != nil {
				pc.WriteTo(r, from)
			}
		}
	})
	t.Cleanup(func() {
		pc.Close()
		if d.ln != nil {
			d.ln.Close()
		}
		d.wg.Wait()
	})
	return d
}

func (d *dnsResponder) serveTCP(reply func([]byte, bool) []byte) {
	for {
		conn, err := d.ln.Accept()
		if err != nil {
			return
		}
		var l [2]byte
		if _, err := io.ReadFull(conn, l[:]); err == nil {
			q := make([]byte, binary.BigEndian.Uint16(l[:]))
			if _, err := io.ReadFull(conn, q); err == nil {
				r := reply(q, true)
				conn.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(r))), r...))
			}
		}
		conn.Close()
	}
}

func TestProbeDNS(t *testing.T) {
	a1 := []byte{192, 0, 2, 1}
	d := startDNS(t, "127.0.0.1:0", true, func(q []byte, overTCP bool) []byte {
		name, err := readName(q, dnsHeaderLen)
		if err != nil {
			return nil
		}
		switch name {
		case "ok.test.":
			return dnsReplyTo(q, 0, false, []dnsAnswer{{typeA, a1}})
		case "fail.test.":
			return dnsReplyTo(q, 2, false, nil)
		case "big.test.":
			if !overTCP {
				return dnsReplyTo(q, 0, true, nil)
			}
			return dnsReplyTo(q, 0, false, []dnsAnswer{{typeA, a1}, {typeA, []byte{192, 0, 2, 2}}})
		case "stray.test.":
			stray := dnsReplyTo(q, 0, false, nil)
			stray[0] ^= 0xff // wrong id: ignored, then silence
			return stray
		}
		return nil // silence
	})
	tests := []struct {
		name   string
		m      Monitor
		ok     bool
		reason string
	}{
		{"noerror", Monitor{Query: "ok.test"}, true, "ok"},
		{"answer", Monitor{Query: "ok.test", ExpectAnswer: []string{"192.0.2.1"}}, true, "ok"},
		{"answer mismatch", Monitor{Query: "ok.test", ExpectAnswer: []string{"192.0.2.9"}}, false, "answer mismatch"},
		{"rcode", Monitor{Query: "fail.test"}, false, "rcode SERVFAIL"},
		{"rcode expected", Monitor{Query: "fail.test", ExpectRcode: "servfail"}, true, "ok"},
		{"truncated retried over tcp", Monitor{Query: "big.test", ExpectAnswer: []string{"192.0.2.2"}}, true, "ok"},
		{"timeout", Monitor{Query: "silent.test"}, false, "timeout"},
		{"stray reply ignored", Monitor{Query: "stray.test"}, false, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.m.Kind, tt.m.Port, tt.m.Interval, tt.m.Timeout = KindDNS, d.ap.Port(), time.Second, testTimeout
			r := checkOnce(t, Config{}, Target{Addr: d.ap.Addr(), Monitor: tt.m})
			if r.OK != tt.ok || r.Reason != tt.reason {
				t.Fatalf("result %+v, want ok=%t reason %q", r, tt.ok, tt.reason)
			}
		})
	}
}

func TestProbeIPv6(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer ln.Close()
	ap := mustAddrPort(t, ln.Addr().String())
	d := startDNS(t, "[::1]:0", false, func(q []byte, _ bool) []byte {
		return dnsReplyTo(q, 0, false, []dnsAnswer{{typeAAAA, netip.IPv6Loopback().AsSlice()}})
	})
	tests := []Target{
		{Addr: ap.Addr(), Monitor: Monitor{Kind: KindTCP, Port: ap.Port()}},
		{Addr: d.ap.Addr(), Monitor: Monitor{Kind: KindDNS, Port: d.ap.Port(), Query: "v6.test.", QueryType: "AAAA", ExpectAnswer: []string{"::1"}}},
	}
	for _, tg := range tests {
		tg.Monitor.Interval, tg.Monitor.Timeout = time.Second, testTimeout
		if r := checkOnce(t, Config{}, tg); !r.OK {
			t.Errorf("%s probe of %v: %s", tg.Monitor.Kind, tg.Addr, r.Reason)
		}
	}
}

func TestCheckRejectsInvalidTarget(t *testing.T) {
	c, err := NewChecker(Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range []Target{{Monitor: Monitor{Kind: KindTCP, Port: 1}}, {Addr: netip.IPv6Loopback(), Monitor: Monitor{Kind: KindTCP}}} {
		if _, err := c.Check(context.Background(), tg); err == nil {
			t.Errorf("Check(%+v) accepted an invalid target", tg)
		}
	}
}
