package dnsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Transport says how a query arrived.
type Transport uint8

const (
	UDP Transport = iota
	TCP
)

// String returns "udp" or "tcp".
func (t Transport) String() string {
	switch t {
	case UDP:
		return "udp"
	case TCP:
		return "tcp"
	}
	return "transport(" + strconv.Itoa(int(t)) + ")"
}

// Handler answers DNS messages given as wire bytes. Implementations are safe for concurrent use.
type Handler interface {
	// ServeDNS appends the reply to out[:0] and returns it, or returns nil to send nothing.
	// req is valid only during the call. The handler reads EDNS itself and keeps UDP replies within the client's buffer.
	ServeDNS(out, req []byte, src netip.AddrPort, t Transport) []byte
	// ServeStream is offered every TCP message first. If it returns true it has fully handled the
	// message by calling send once or more (zone transfers); otherwise ServeDNS is called.
	ServeStream(req []byte, src netip.AddrPort, send func(msg []byte) error) bool
}

// TransportConfig configures the UDP and TCP listeners of a Server.
// Zero values take the defaults written beside each field.
type TransportConfig struct {
	Addrs           []string      // "127.0.0.1:5353", "[::1]:5353", ":5353" (all addresses, dual-stack); each served on UDP and TCP
	Workers         int           // UDP sockets per address with SO_REUSEPORT, one goroutine each; default runtime.GOMAXPROCS(0)
	TCPMaxConns     int           // default 1024 open connections in total; over the limit: accept and close at once (counted)
	TCPIdleTimeout  time.Duration // default 10s: time allowed before the first byte of each message on a connection (RFC 7766 6.2.3)
	TCPReadTimeout  time.Duration // default 3s: once a message's first byte arrived, the whole message must arrive within this (no slow-loris)
	TCPWriteTimeout time.Duration // default 5s
	TCPMaxQueries   int           // per connection, 0 = unlimited
	Logger          *slog.Logger  // nil => discard
}

const (
	defaultTCPMaxConns     = 1024
	defaultTCPIdleTimeout  = 10 * time.Second
	defaultTCPReadTimeout  = 3 * time.Second
	defaultTCPWriteTimeout = 5 * time.Second
	maxWorkers             = 1024
	minMsgLen              = 12 // a DNS header; anything shorter is not a message
	listenAttempts         = 5  // tries to find a port free for both TCP and UDP when the port is 0
	errLogInterval         = time.Second
)

type serverState uint8

const (
	stateNew serverState = iota
	stateListening
	stateServing
	stateStopped
)

// Server serves a Handler over UDP and TCP. NewServer starts nothing; Listen
// binds the sockets, Serve runs the goroutines and Shutdown stops them.
type Server struct {
	cfg     TransportConfig
	addrs   []listenAddr
	h       Handler
	log     *slog.Logger
	metrics transportMetrics
	coll    *transportCollector

	panicLog logLimiter
	errLog   logLimiter

	// udpSimple selects the portable read/write loop even where the batched
	// one exists. The Linux loop falls back to it when recvmmsg is missing;
	// tests set it to cover the portable path.
	udpSimple bool

	stopping atomic.Bool   // set once by beginStop
	stopCh   chan struct{} // closed by beginStop
	doneCh   chan struct{} // closed when Serve has finished
	wg       sync.WaitGroup

	mu    sync.Mutex
	state serverState
	binds []bind
	conns map[*net.TCPConn]struct{}
}

// bind is one configured address: a TCP listener and its UDP sockets on the same port.
type bind struct {
	addr netip.AddrPort
	tcp  *net.TCPListener
	udp  []*udpSocket
}

// NewServer checks cfg, fills in defaults and returns a server that has not
// bound or started anything.
func NewServer(cfg TransportConfig, h Handler) (*Server, error) {
	if h == nil {
		return nil, errors.New("new dns server: handler is nil")
	}
	addrs, err := cfg.validate()
	if err != nil {
		return nil, fmt.Errorf("new dns server: %w", err)
	}
	cfg.setDefaults()
	s := &Server{
		cfg:      cfg,
		addrs:    addrs,
		h:        h,
		log:      cfg.Logger,
		panicLog: logLimiter{every: errLogInterval},
		errLog:   logLimiter{every: errLogInterval},
		stopCh:   make(chan struct{}),
		doneCh:   make(chan struct{}),
		conns:    make(map[*net.TCPConn]struct{}),
	}
	s.coll = newTransportCollector(&s.metrics)
	return s, nil
}

func (c *TransportConfig) validate() ([]listenAddr, error) {
	if len(c.Addrs) == 0 {
		return nil, errors.New("config Addrs: at least one address is required")
	}
	addrs := make([]listenAddr, 0, len(c.Addrs))
	seen := make(map[string]int, len(c.Addrs))
	for i, a := range c.Addrs {
		la, err := parseListenAddr(a)
		if err != nil {
			return nil, fmt.Errorf("config Addrs[%d] %q: %w", i, a, err)
		}
		if j, dup := seen[la.String()]; dup && la.port != 0 {
			return nil, fmt.Errorf("config Addrs[%d] %q: same address as Addrs[%d]", i, a, j)
		}
		seen[la.String()] = i
		addrs = append(addrs, la)
	}
	switch {
	case c.Workers < 0 || c.Workers > maxWorkers:
		return nil, fmt.Errorf("config Workers: %d is outside 0..%d", c.Workers, maxWorkers)
	case c.TCPMaxConns < 0:
		return nil, fmt.Errorf("config TCPMaxConns: %d is negative", c.TCPMaxConns)
	case c.TCPIdleTimeout < 0:
		return nil, fmt.Errorf("config TCPIdleTimeout: %v is negative", c.TCPIdleTimeout)
	case c.TCPReadTimeout < 0:
		return nil, fmt.Errorf("config TCPReadTimeout: %v is negative", c.TCPReadTimeout)
	case c.TCPWriteTimeout < 0:
		return nil, fmt.Errorf("config TCPWriteTimeout: %v is negative", c.TCPWriteTimeout)
	case c.TCPMaxQueries < 0:
		return nil, fmt.Errorf("config TCPMaxQueries: %d is negative", c.TCPMaxQueries)
	}
	return addrs, nil
}

func (c *TransportConfig) setDefaults() {
	if c.Workers == 0 {
		c.Workers = min(runtime.GOMAXPROCS(0), maxWorkers)
	}
	if c.TCPMaxConns == 0 {
		c.TCPMaxConns = defaultTCPMaxConns
	}
	if c.TCPIdleTimeout == 0 {
		c.TCPIdleTimeout = defaultTCPIdleTimeout
	}
	if c.TCPReadTimeout == 0 {
		c.TCPReadTimeout = defaultTCPReadTimeout
	}
	if c.TCPWriteTimeout == 0 {
		c.TCPWriteTimeout = defaultTCPWriteTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// listenAddr is a parsed configured address. A zero ip with dual set means
// "all addresses, IPv6 and IPv4 on one socket" (an empty host).
type listenAddr struct {
	ip   netip.Addr
	dual bool
	port uint16
}

func parseListenAddr(s string) (listenAddr, error) {
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		return listenAddr{}, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return listenAddr{}, fmt.Errorf("port %q is not a number in 0..65535", portStr)
	}
	if host == "" {
		return listenAddr{dual: true, port: uint16(port)}, nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return listenAddr{}, fmt.Errorf("host must be an IP address: %w", err)
	}
	return listenAddr{ip: ip.Unmap(), port: uint16(port)}, nil
}

// unspecified reports whether the socket receives on every local address, so
// replies need the query's destination address set as their source.
func (la listenAddr) unspecified() bool { return la.dual || la.ip.IsUnspecified() }

func (la listenAddr) network(proto string) string {
	switch {
	case la.dual:
		return proto
	case la.ip.Is4():
		return proto + "4"
	}
	return proto + "6"
}

func (la listenAddr) hostPort(port uint16) string {
	host := ""
	if !la.dual {
		host = la.ip.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

func (la listenAddr) String() string { return la.hostPort(la.port) }

// Listen binds every configured address: the TCP listener first, then the
// UDP sockets on the port it got, so that ":0" yields one port for both.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateNew {
		return errors.New("listen: server already listening or stopped")
	}
	binds := make([]bind, 0, len(s.addrs))
	for _, la := range s.addrs {
		b, err := s.listenAddr(la)
		if err != nil {
			closeBinds(binds)
			return err
		}
		binds = append(binds, b)
	}
	s.binds = binds
	s.state = stateListening
	return nil
}

func (s *Server) listenAddr(la listenAddr) (bind, error) {
	for attempt := 1; ; attempt++ {
		var lc net.ListenConfig
		ln, err := lc.Listen(context.Background(), la.network("tcp"), la.String())
		if err != nil {
			return bind{}, fmt.Errorf("listen tcp %s: %w", la, err)
		}
		tl := ln.(*net.TCPListener)
		bound := tl.Addr().(*net.TCPAddr).AddrPort()
		socks, err := s.listenUDP(la, bound.Port())
		if err == nil {
			addr := bound
			if !la.dual {
				addr = netip.AddrPortFrom(la.ip, bound.Port())
			}
			return bind{addr: addr, tcp: tl, udp: socks}, nil
		}
		_ = tl.Close()
		if la.port != 0 || attempt == listenAttempts || !errors.Is(err, syscall.EADDRINUSE) {
			return bind{}, fmt.Errorf("listen udp %s: %w", la.hostPort(bound.Port()), err)
		}
	}
}

func (s *Server) listenUDP(la listenAddr, port uint16) ([]*udpSocket, error) {
	n := udpSocketsPerAddr(s.cfg.Workers)
	socks := make([]*udpSocket, 0, n)
	for range n {
		lc := net.ListenConfig{Control: udpControl(la)}
		pc, err := lc.ListenPacket(context.Background(), la.network("udp"), la.hostPort(port))
		if err != nil {
			for _, u := range socks {
				_ = u.conn.Close()
			}
			return nil, err
		}
		conn := pc.(*net.UDPConn)
		socks = append(socks, &udpSocket{
			conn:    conn,
			v6:      !conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Is4(),
			pktinfo: la.unspecified(),
		})
	}
	return socks, nil
}

func closeBinds(binds []bind) {
	for _, b := range binds {
		_ = b.tcp.Close()
		for _, u := range b.udp {
			_ = u.conn.Close()
		}
	}
}

// Addrs returns the bound addresses, one per configured address, in the
// configured order. UDP and TCP share each port. Valid after Listen.
func (s *Server) Addrs() []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]netip.AddrPort, len(s.binds))
	for i, b := range s.binds {
		out[i] = b.addr
	}
	return out
}

// Serve runs the listeners bound by Listen until ctx is done or Shutdown is
// called, then stops gracefully and returns once every goroutine it started
// has exited. It returns nil after such a stop.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	switch s.state {
	case stateNew:
		s.mu.Unlock()
		return errors.New("serve: Listen has not been called")
	case stateServing:
		s.mu.Unlock()
		return errors.New("serve: already serving")
	case stateStopped:
		s.mu.Unlock()
		return nil
	}
	s.state = stateServing
	per := udpGoroutinesPerSocket(s.cfg.Workers)
	for _, b := range s.binds {
		s.wg.Add(1)
		go s.acceptTCP(b.tcp)
		for _, u := range b.udp {
			for range per {
				s.wg.Add(1)
				go s.serveUDP(u)
			}
		}
	}
	s.mu.Unlock()
	s.log.Info("dns transport serving", "addrs", s.Addrs(), "udp_workers", s.cfg.Workers)

	select {
	case <-ctx.Done():
		s.beginStop()
	case <-s.stopCh:
	}
	s.wg.Wait()
	s.mu.Lock()
	closeBinds(s.binds)
	s.state = stateStopped
	s.mu.Unlock()
	close(s.doneCh)
	s.log.Info("dns transport stopped")
	return nil
}

// Shutdown stops accepting queries and connections, lets queries in flight
// finish and their replies be written, closes idle TCP connections and waits
// for Serve's goroutines. If ctx ends first it closes the remaining TCP
// connections and returns ctx.Err() without waiting further.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.state != stateServing {
		if s.state == stateListening {
			closeBinds(s.binds)
		}
		s.state = stateStopped
		s.stopping.Store(true)
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	s.beginStop()
	select {
	case <-s.doneCh:
		return nil
	case <-ctx.Done():
		s.forceClose()
		return ctx.Err()
	}
}

// beginStop closes the listeners and interrupts every blocked read. Readers
// check s.stopping after arming their own deadlines, so none is missed.
func (s *Server) beginStop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping.Swap(true) {
		return
	}
	close(s.stopCh)
	now := time.Now()
	for _, b := range s.binds {
		_ = b.tcp.Close()
		for _, u := range b.udp {
			_ = u.conn.SetReadDeadline(now)
		}
	}
	for c := range s.conns {
		_ = c.SetReadDeadline(now)
	}
}

// forceClose is Shutdown giving up: it closes TCP connections even mid-reply
// and unblocks UDP writers waiting for buffer space.
func (s *Server) forceClose() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for _, b := range s.binds {
		for _, u := range b.udp {
			_ = u.conn.SetWriteDeadline(now)
		}
	}
	for c := range s.conns {
		_ = c.Close()
	}
}

// Collector returns the transport metrics, read from counters at scrape time.
func (s *Server) Collector() prometheus.Collector { return s.coll }

// callDNS runs the handler, turning a panic into a dropped message.
func (s *Server) callDNS(out, req []byte, src netip.AddrPort, t Transport) (reply []byte) {
	defer func() {
		if r := recover(); r != nil {
			reply = nil
			s.handlerPanic(r, src, t)
		}
	}()
	return s.h.ServeDNS(out, req, src, t)
}

// callStream runs ServeStream; ok is false if it panicked.
func (s *Server) callStream(req []byte, src netip.AddrPort, send func([]byte) error) (handled, ok bool) {
	defer func() {
		if r := recover(); r != nil {
			handled, ok = true, false
			s.handlerPanic(r, src, TCP)
		}
	}()
	return s.h.ServeStream(req, src, send), true
}

func (s *Server) handlerPanic(r any, src netip.AddrPort, t Transport) {
	s.metrics.panics.Add(1)
	if ok, suppressed := s.panicLog.allow(); ok {
		s.log.Error("dns handler panicked; message dropped",
			"panic", fmt.Sprint(r), "transport", t.String(), "client", src.String(),
			"suppressed", suppressed, "stack", string(debug.Stack()))
	}
}

// logError logs a transport error at most once per errLogInterval.
func (s *Server) logError(msg string, err error, args ...any) {
	if ok, suppressed := s.errLog.allow(); ok {
		s.log.Error(msg, append(args, "err", err, "suppressed", suppressed)...)
	}
}

// logLimiter lets one message through per interval and counts the rest.
type logLimiter struct {
	every      time.Duration
	next       atomic.Int64 // unix nanoseconds
	suppressed atomic.Uint64
}

func (l *logLimiter) allow() (ok bool, suppressed uint64) {
	now := time.Now().UnixNano()
	next := l.next.Load()
	if now < next || !l.next.CompareAndSwap(next, now+int64(l.every)) {
		l.suppressed.Add(1)
		return false, 0
	}
	return true, l.suppressed.Swap(0)
}
