//go:build !linux

package dnsserver

import "syscall"

// Without Linux's load-balancing SO_REUSEPORT, each address gets one socket
// read by Workers goroutines.
func udpSocketsPerAddr(workers int) int      { return 1 }
func udpGoroutinesPerSocket(workers int) int { return workers }

// udpControl sets nothing: Go already sets IPV6_V6ONLY on "udp6" sockets and
// clears it on the dual-stack kind. Sockets on an unspecified address reply
// from the source the kernel picks; bind specific addresses on hosts with
// several.
func udpControl(la listenAddr) func(network, address string, c syscall.RawConn) error {
	return nil
}

func (s *Server) serveUDP(u *udpSocket) {
	defer s.wg.Done()
	s.serveUDPSimple(u)
}
