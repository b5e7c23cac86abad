package dnsserver

import (
	"errors"
	"net"
	"net/netip"
)

const (
	// udpRecvSize is the receive buffer per datagram. Queries are small; a
	// larger datagram is detected as truncated and dropped, never parsed.
	udpRecvSize = 4096
	// udpReplySize is the reply buffer per datagram. The handler keeps UDP
	// replies within the client's EDNS buffer size, which it caps at 4096.
	udpReplySize = 4096
)

// udpSocket is one bound UDP socket.
type udpSocket struct {
	conn    *net.UDPConn
	v6      bool // AF_INET6 socket (possibly dual-stack)
	pktinfo bool // bound to an unspecified address: reply from the query's destination
}

// serveUDPSimple is the portable loop: one datagram per read and write, no
// control messages. Replies from a socket bound to an unspecified address
// leave from whatever source address the kernel picks.
func (s *Server) serveUDPSimple(u *udpSocket) {
	buf := make([]byte, udpRecvSize+1) // one spare byte tells an oversized datagram
	out := make([]byte, 0, udpReplySize)
	for !s.stopping.Load() {
		n, from, err := u.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if s.stopping.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			s.metrics.udpErrors[opRead].Add(1)
			s.logError("dns udp read failed", err)
			continue
		}
		if n > udpRecvSize || from.Port() == 0 {
			continue
		}
		src := netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		reply := s.callDNS(out[:0], buf[:n], src, UDP)
		if len(reply) == 0 {
			continue
		}
		if _, err := u.conn.WriteToUDPAddrPort(reply, from); err != nil {
			s.metrics.udpErrors[opWrite].Add(1)
			s.logError("dns udp write failed", err)
		}
	}
}
