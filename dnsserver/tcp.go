package dnsserver

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"time"
)

const (
	tcpReadBufSize  = 4096
	tcpMaxMsgLen    = 65535
	acceptBackoffLo = 5 * time.Millisecond
	acceptBackoffHi = time.Second
)

var errTCPStopping = errors.New("server stopping")

// acceptTCP accepts connections until the listener is closed. Over
// TCPMaxConns, a connection is accepted and reset at once.
func (s *Server) acceptTCP(ln *net.TCPListener) {
	defer s.wg.Done()
	var delay time.Duration
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if s.stopping.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off and retry.
			delay = min(max(2*delay, acceptBackoffLo), acceptBackoffHi)
			s.logError("dns tcp accept failed", err, "retry_in", delay)
			if !s.pause(delay) {
				return
			}
			continue
		}
		delay = 0
		if !s.trackConn(c) {
			_ = c.SetLinger(0)
			_ = c.Close()
			continue
		}
		s.wg.Add(1)
		go s.serveTCPConn(c)
	}
}

// pause waits for d or until the server stops; it reports whether to go on.
func (s *Server) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.stopCh:
		return false
	}
}

// trackConn registers c, or refuses it when stopping or at the limit. The
// stopping check is made under s.mu so beginStop never misses a connection.
func (s *Server) trackConn(c *net.TCPConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping.Load() {
		return false
	}
	if len(s.conns) >= s.cfg.TCPMaxConns {
		s.metrics.tcpRejected.Add(1)
		return false
	}
	s.conns[c] = struct{}{}
	s.metrics.tcpOpen.Add(1)
	s.metrics.tcpAccepted.Add(1)
	return true
}

func (s *Server) untrackConn(c *net.TCPConn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.metrics.tcpOpen.Add(-1)
	_ = c.Close()
}

// tcpConn is the state of one connection, owned by its goroutine.
type tcpConn struct {
	s       *Server
	c       *net.TCPConn
	br      *bufio.Reader
	src     netip.AddrPort
	hdr     [2]byte
	req     []byte
	out     []byte // 2-byte length, then the reply
	send    func([]byte) error
	sendErr error
}

// serveTCPConn answers the messages on c one after another, so pipelined
// queries are answered in order, until the client closes, a limit or
// timeout is reached, or the server stops.
func (s *Server) serveTCPConn(c *net.TCPConn) {
	defer s.wg.Done()
	defer s.untrackConn(c)
	ap := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	tc := &tcpConn{
		s:   s,
		c:   c,
		br:  bufio.NewReaderSize(c, tcpReadBufSize),
		src: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()),
		req: make([]byte, 512),
		out: make([]byte, 2, 2+udpReplySize),
	}
	tc.send = tc.sendStream
	for n := 0; s.cfg.TCPMaxQueries == 0 || n < s.cfg.TCPMaxQueries; n++ {
		req, err := tc.readMsg()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, errTCPStopping) {
				s.log.Debug("dns tcp connection closed", "client", tc.src.String(), "reason", err)
			}
			return
		}
		if err := tc.handle(req); err != nil {
			s.log.Debug("dns tcp connection closed", "client", tc.src.String(), "reason", err)
			return
		}
	}
}

// readMsg reads one length-prefixed message. The idle timeout bounds the
// wait for its first byte, the read timeout the rest of it.
func (tc *tcpConn) readMsg() ([]byte, error) {
	s := tc.s
	if err := tc.c.SetReadDeadline(time.Now().Add(s.cfg.TCPIdleTimeout)); err != nil {
		return nil, fmt.Errorf("set idle deadline: %w", err)
	}
	if s.stopping.Load() { // after arming the deadline: see beginStop
		return nil, errTCPStopping
	}
	if _, err := tc.br.Peek(1); err != nil {
		switch {
		case s.stopping.Load():
			return nil, errTCPStopping
		case errors.Is(err, io.EOF):
			return nil, io.EOF // the client is done: a clean close
		}
		return nil, tc.readError("wait for message", err, timeoutIdle)
	}
	if err := tc.c.SetReadDeadline(time.Now().Add(s.cfg.TCPReadTimeout)); err != nil {
		return nil, fmt.Errorf("set read deadline: %w", err)
	}
	if _, err := io.ReadFull(tc.br, tc.hdr[:]); err != nil {
		return nil, tc.readError("read length", err, timeoutRead)
	}
	n := int(binary.BigEndian.Uint16(tc.hdr[:]))
	if n < minMsgLen {
		return nil, fmt.Errorf("message length %d is shorter than a header", n)
	}
	if cap(tc.req) < n {
		tc.req = make([]byte, n)
	}
	req := tc.req[:n]
	if _, err := io.ReadFull(tc.br, req); err != nil {
		return nil, tc.readError("read message", err, timeoutRead)
	}
	return req, nil
}

func (tc *tcpConn) readError(op string, err error, kind tcpTimeoutKind) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		tc.s.metrics.tcpTimeouts[kind].Add(1)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// handle offers req to ServeStream, then to ServeDNS, and writes the reply.
// A non-nil error closes the connection.
func (tc *tcpConn) handle(req []byte) error {
	s := tc.s
	handled, ok := s.callStream(req, tc.src, tc.send)
	switch {
	case !ok:
		return errors.New("handler panicked")
	case handled:
		return tc.sendErr
	}
	reply := s.callDNS(tc.out[2:2], req, tc.src, TCP)
	if reply == nil {
		return errors.New("handler sent no reply")
	}
	if len(reply) > tcpMaxMsgLen {
		return fmt.Errorf("reply of %d bytes does not fit a TCP frame", len(reply))
	}
	if cap(tc.out) > 2 && len(reply) > 0 && &reply[0] == &tc.out[:3][2] {
		// Written in place behind the length field.
		msg := tc.out[:2+len(reply)]
		binary.BigEndian.PutUint16(msg, uint16(len(reply)))
		return tc.write(msg)
	}
	return tc.frame(reply)
}

// sendStream is the send func given to ServeStream.
func (tc *tcpConn) sendStream(msg []byte) error {
	if tc.sendErr != nil {
		return tc.sendErr
	}
	if len(msg) > tcpMaxMsgLen {
		return fmt.Errorf("send: message of %d bytes does not fit a TCP frame", len(msg))
	}
	tc.sendErr = tc.frame(msg)
	return tc.sendErr
}

// frame copies msg behind a length field and writes both in one call.
func (tc *tcpConn) frame(msg []byte) error {
	if cap(tc.out) < 2+len(msg) {
		tc.out = make([]byte, 2+len(msg))
	}
	buf := tc.out[:2+len(msg)]
	copy(buf[2:], msg) // may overlap when the handler wrote into tc.out: copy handles it
	binary.BigEndian.PutUint16(buf, uint16(len(msg)))
	return tc.write(buf)
}

func (tc *tcpConn) write(b []byte) error {
	if err := tc.c.SetWriteDeadline(time.Now().Add(tc.s.cfg.TCPWriteTimeout)); err != nil {
		return fmt.Errorf("set write deadline: %w", err)
	}
	if _, err := tc.c.Write(b); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			tc.s.metrics.tcpTimeouts[timeoutWrite].Add(1)
		}
		return fmt.Errorf("write: %w", err)
	}
	return nil
}
