package dnsserver

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
)

// clientIOTimeout bounds every client read in these tests; reaching it is a failure.
const clientIOTimeout = 5 * time.Second

// fakeHandler answers with miekg/dns: a reply to the question carrying one
// TXT record "<transport> <client address>". Hooks change that per test.
type fakeHandler struct {
	// reply, if set, replaces the default answer; it may block or panic.
	reply func(q *dns.Msg, src netip.AddrPort, t Transport) *dns.Msg
	// stream, if set, is ServeStream.
	stream func(req []byte, src netip.AddrPort, send func([]byte) error) bool
}

func (h *fakeHandler) ServeDNS(out, req []byte, src netip.AddrPort, t Transport) []byte {
	q := new(dns.Msg)
	if err := q.Unpack(req); err != nil {
		return nil
	}
	var r *dns.Msg
	if h.reply != nil {
		r = h.reply(q, src, t)
	} else {
		r = fakeTXTReply(q, t.String()+" "+src.String())
	}
	if r == nil {
		return nil
	}
	b, err := r.Pack()
	if err != nil {
		panic(err)
	}
	return append(out[:0], b...)
}

func (h *fakeHandler) ServeStream(req []byte, src netip.AddrPort, send func([]byte) error) bool {
	if h.stream == nil {
		return false
	}
	return h.stream(req, src, send)
}

func fakeTXTReply(q *dns.Msg, txt ...string) *dns.Msg {
	r := new(dns.Msg)
	r.SetReply(q)
	if len(q.Question) == 1 {
		r.Answer = append(r.Answer, &dns.TXT{
			Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET},
			Txt: txt,
		})
	}
	return r
}

// transportEcho returns the query with QR set: the cheapest possible handler.
type transportEcho struct{}

func (transportEcho) ServeDNS(out, req []byte, _ netip.AddrPort, _ Transport) []byte {
	out = append(out[:0], req...)
	out[2] |= 0x80
	return out
}

func (transportEcho) ServeStream([]byte, netip.AddrPort, func([]byte) error) bool { return false }

func buildQuery(t testing.TB, id uint16, name string) []byte {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeTXT)
	m.Id = id
	b, err := m.Pack()
	if err != nil {
		t.Fatalf("pack query: %v", err)
	}
	return b
}

func unpackMsg(t testing.TB, b []byte) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		t.Fatalf("unpack reply: %v", err)
	}
	return m
}

func answerTXT(t testing.TB, m *dns.Msg) string {
	t.Helper()
	if len(m.Answer) != 1 {
		t.Fatalf("reply %d has %d answers, want 1", m.Id, len(m.Answer))
	}
	return strings.Join(m.Answer[0].(*dns.TXT).Txt, " ")
}

// runningServer is a Server bound and serving, stopped and leak-checked at cleanup.
type runningServer struct {
	*Server
	done     chan struct{}
	serveErr error
}

func startTransport(t testing.TB, cfg TransportConfig, h Handler, opts ...func(*Server)) *runningServer {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	next := slog.DiscardHandler
	if cfg.Logger != nil {
		next = cfg.Logger.Handler()
	}
	ready := &readyHandler{next: next, ready: make(chan struct{}), once: new(sync.Once)}
	cfg.Logger = slog.New(ready)
	s, err := NewServer(cfg, h)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	for _, o := range opts {
		o(s)
	}
	if err := s.Listen(); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ts := &runningServer{Server: s, done: make(chan struct{})}
	go func() {
		ts.serveErr = s.Serve(context.Background())
		close(ts.done)
	}()
	// Serve logs once its goroutines exist; later leak snapshots (another
	// server in the same test) then include them.
	select {
	case <-ready.ready:
	case <-ts.done:
		t.Fatalf("Serve returned at once: %v", ts.serveErr)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := ts.wait(t); err != nil {
			t.Errorf("Serve: %v", err)
		}
		goleak.VerifyNone(t, ignore)
	})
	return ts
}

// readyHandler passes records on to next and closes ready when Serve
// reports that it is serving.
type readyHandler struct {
	next  slog.Handler
	ready chan struct{}
	once  *sync.Once
}

func (h *readyHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *readyHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "dns transport serving" {
		h.once.Do(func() { close(h.ready) })
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *readyHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &readyHandler{next: h.next.WithAttrs(as), ready: h.ready, once: h.once}
}

func (h *readyHandler) WithGroup(name string) slog.Handler {
	return &readyHandler{next: h.next.WithGroup(name), ready: h.ready, once: h.once}
}

// wait returns Serve's result once it has returned.
func (ts *runningServer) wait(t testing.TB) error {
	t.Helper()
	select {
	case <-ts.done:
		return ts.serveErr
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
		return nil
	}
}

func withSimpleUDP(s *Server) { s.udpSimple = true }

// clientAddr turns a bound address into one a client can send to: an
// unspecified address becomes the loopback of the same family.
func clientAddr(ap netip.AddrPort) netip.AddrPort {
	switch {
	case ap.Addr().Is4() && ap.Addr().IsUnspecified():
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ap.Port())
	case ap.Addr().IsUnspecified():
		return netip.AddrPortFrom(netip.IPv6Loopback(), ap.Port())
	}
	return ap
}

func dialUDPClient(t testing.TB, to netip.AddrPort) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		t.Fatalf("dial udp %v: %v", to, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func dialTCPClient(t testing.TB, to netip.AddrPort) *net.TCPConn {
	t.Helper()
	c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(to))
	if err != nil {
		t.Fatalf("dial tcp %v: %v", to, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// readUDPReply reads one datagram or fails the test after clientIOTimeout.
func readUDPReply(t testing.TB, c *net.UDPConn) []byte {
	t.Helper()
	buf := make([]byte, 65536)
	_ = c.SetReadDeadline(time.Now().Add(clientIOTimeout))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read udp reply: %v", err)
	}
	return buf[:n]
}

func exchangeUDP(t testing.TB, c *net.UDPConn, q []byte) *dns.Msg {
	t.Helper()
	if _, err := c.Write(q); err != nil {
		t.Fatalf("write udp query: %v", err)
	}
	return unpackMsg(t, readUDPReply(t, c))
}

func writeFramed(t testing.TB, c net.Conn, msgs ...[]byte) {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		b = binary.BigEndian.AppendUint16(b, uint16(len(m)))
		b = append(b, m...)
	}
	if _, err := c.Write(b); err != nil {
		t.Fatalf("write tcp: %v", err)
	}
}

// readFramed reads one length-prefixed message; err is io.EOF (or a reset)
// when the server closed the connection instead.
func readFramed(c net.Conn) ([]byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(clientIOTimeout))
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(hdr[:]))
	if _, err := io.ReadFull(c, b); err != nil {
		return nil, err
	}
	return b, nil
}

func exchangeTCP(t testing.TB, c net.Conn, q []byte) *dns.Msg {
	t.Helper()
	writeFramed(t, c, q)
	b, err := readFramed(c)
	if err != nil {
		t.Fatalf("read tcp reply: %v", err)
	}
	return unpackMsg(t, b)
}

// expectServerClose fails unless the server closes c (EOF or reset) before clientIOTimeout.
func expectServerClose(t testing.TB, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(clientIOTimeout))
	var b [1]byte
	_, err := c.Read(b[:])
	var ne net.Error
	switch {
	case err == nil:
		t.Fatal("read a byte from a connection the server should have closed")
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatal("server did not close the connection")
	}
}

// transportMetric gathers c through a pedantic registry (which also checks the
// collector's consistency) and returns the value of the named series.
func transportMetric(t testing.TB, c prometheus.Collector, name string, labels ...string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if metricLabelsMatch(m, labels) {
				return metricSampleValue(m)
			}
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

func metricLabelsMatch(m *dto.Metric, kv []string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == kv[i] && lp.GetValue() == kv[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func metricSampleValue(m *dto.Metric) float64 {
	if m.GetGauge() != nil {
		return m.GetGauge().GetValue()
	}
	return m.GetCounter().GetValue()
}

// syncLogBuffer collects a logger's output for assertions.
type syncLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *syncLogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *syncLogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *syncLogBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// hasIPv6Loopback reports whether ::1 can be bound here.
func hasIPv6Loopback() bool {
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		return false
	}
	_ = c.Close()
	return true
}

func skipNoIPv6Loopback(t testing.TB) {
	t.Helper()
	if !hasIPv6Loopback() {
		t.Skip("skipping: this host has no IPv6 loopback (::1)")
	}
}
