//go:build linux

package dnsserver

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	udpSockBuf = 1 << 20 // SO_RCVBUF/SO_SNDBUF asked for, as NSD does: absorbs bursts
	udpBatch   = 32      // datagrams per recvmmsg / sendmmsg
	ctrlWords  = 8       // control buffer per datagram in uint64s (64 bytes, aligned): one pktinfo cmsg
)

// Each address gets Workers SO_REUSEPORT sockets, each read by one goroutine.
func udpSocketsPerAddr(workers int) int      { return workers }
func udpGoroutinesPerSocket(workers int) int { return 1 }

// udpControl sets the socket options before bind: SO_REUSEPORT so the
// workers' sockets share the port, 1 MiB buffers, IPV6_V6ONLY on IPv6 sockets that are not
// the dual-stack kind, and pktinfo for sockets on an unspecified address.
func udpControl(la listenAddr) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = setUDPSockopts(int(fd), network == "udp6", la)
		})
		if err != nil {
			return err
		}
		return serr
	}
}

func setUDPSockopts(fd int, v6 bool, la listenAddr) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		return fmt.Errorf("set SO_REUSEPORT: %w", err)
	}
	// Best effort: the FORCE variants need CAP_NET_ADMIN, the plain ones are
	// capped by net.core.[rw]mem_max.
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, udpSockBuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, udpSockBuf)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, udpSockBuf) != nil {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, udpSockBuf)
	}
	if v6 && !la.dual {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			return fmt.Errorf("set IPV6_V6ONLY: %w", err)
		}
	}
	if !la.unspecified() {
		return nil
	}
	if v6 {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1); err != nil {
			return fmt.Errorf("set IPV6_RECVPKTINFO: %w", err)
		}
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_PKTINFO, 1); err != nil {
		return fmt.Errorf("set IP_PKTINFO: %w", err)
	}
	return nil
}

// mmsghdr is struct mmsghdr; Go pads it to the C layout on every arch.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// udpWorker serves one socket with recvmmsg/sendmmsg on preallocated arrays:
// no allocation per datagram. Syscalls are issued raw and non-blocking from
// inside RawConn.Read/Write, so an empty socket parks on the netpoller.
type udpWorker struct {
	s    *Server
	sock *udpSocket
	rc   syscall.RawConn

	recvMsgs [udpBatch]mmsghdr
	recvIov  [udpBatch]unix.Iovec
	names    [udpBatch]unix.RawSockaddrInet6 // big enough for sockaddr_in too
	recvCtrl [udpBatch][ctrlWords]uint64
	sendMsgs [udpBatch]mmsghdr
	sendIov  [udpBatch]unix.Iovec
	sendCtrl [udpBatch][ctrlWords]uint64
	reqBuf   []byte // udpBatch * udpRecvSize
	outBuf   []byte // udpBatch * udpReplySize

	recvFn, sendFn func(fd uintptr) bool // method values, made once
	nRecv          int                   // recvFn's result
	recvErr        syscall.Errno         // recvFn's error
	sent, toSend   int                   // sendFn's progress
	sendErr        syscall.Errno         // last send error, for the log
}

func (s *Server) serveUDP(u *udpSocket) {
	defer s.wg.Done()
	if s.udpSimple {
		s.serveUDPSimple(u)
		return
	}
	w, err := newUDPWorker(s, u)
	if err != nil {
		s.logError("dns udp batched loop unavailable; using the simple loop", err)
		s.serveUDPSimple(u)
		return
	}
	w.run()
}

func newUDPWorker(s *Server, u *udpSocket) (*udpWorker, error) {
	rc, err := u.conn.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("udp raw conn: %w", err)
	}
	w := &udpWorker{
		s: s, sock: u, rc: rc,
		reqBuf: make([]byte, udpBatch*udpRecvSize),
		outBuf: make([]byte, udpBatch*udpReplySize),
	}
	w.recvFn = w.recv
	w.sendFn = w.send
	for i := range udpBatch {
		w.recvIov[i].Base = &w.reqBuf[i*udpRecvSize]
		w.recvIov[i].SetLen(udpRecvSize)
		h := &w.recvMsgs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&w.names[i]))
		h.Iov = &w.recvIov[i]
		h.SetIovlen(1)
		w.resetRecv(i)
		w.sendMsgs[i].hdr.Iov = &w.sendIov[i]
		w.sendMsgs[i].hdr.SetIovlen(1)
		w.initSendCtrl(i)
	}
	return w, nil
}

func (w *udpWorker) resetRecv(i int) {
	h := &w.recvMsgs[i].hdr
	h.Namelen = unix.SizeofSockaddrInet6
	h.Flags = 0
	if w.sock.pktinfo {
		h.Control = (*byte)(unsafe.Pointer(&w.recvCtrl[i]))
		h.SetControllen(ctrlWords * 8)
	}
}

// initSendCtrl writes the fixed cmsg header of slot i's reply pktinfo.
func (w *udpWorker) initSendCtrl(i int) {
	if !w.sock.pktinfo {
		return
	}
	c := (*unix.Cmsghdr)(unsafe.Pointer(&w.sendCtrl[i]))
	if w.sock.v6 {
		c.Level, c.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
		c.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
		return
	}
	c.Level, c.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
	c.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
}

// run reads a batch, answers it, sends the replies, until the server stops.
// On stop it finishes the batch in hand before returning.
func (w *udpWorker) run() {
	s := w.s
	for !s.stopping.Load() {
		for i := range w.nRecv {
			w.resetRecv(i) // the kernel updated these lengths and flags
		}
		w.nRecv = 0
		if err := w.rc.Read(w.recvFn); err != nil {
			if s.stopping.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			s.metrics.udpErrors[opRead].Add(1)
			s.logError("dns udp read failed", err)
			continue
		}
		if w.recvErr != 0 {
			if w.recvErr == unix.ENOSYS {
				s.logError("dns udp recvmmsg unavailable; using the simple loop", w.recvErr)
				s.serveUDPSimple(w.sock)
				return
			}
			s.metrics.udpErrors[opRead].Add(1)
			s.logError("dns udp recvmmsg failed", w.recvErr)
			continue
		}
		w.sendBatch(w.process(w.nRecv))
	}
}

// recv is the RawConn.Read callback: false means "would block, wait".
func (w *udpWorker) recv(fd uintptr) bool {
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, fd,
			uintptr(unsafe.Pointer(&w.recvMsgs[0])), udpBatch, unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			w.nRecv, w.recvErr = int(n), 0
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		w.nRecv, w.recvErr = 0, errno
		return true
	}
}

// process hands the n received datagrams to the handler and lays out the
// replies in sendMsgs. It returns the number of replies.
func (w *udpWorker) process(n int) int {
	m := 0
	for i := range n {
		rm := &w.recvMsgs[i]
		msgLen, flags, nameLen := int(rm.n), rm.hdr.Flags, rm.hdr.Namelen
		if flags&unix.MSG_TRUNC != 0 {
			continue // larger than udpRecvSize: not a query we would parse correctly
		}
		src, ok := sockaddrAddrPort(&w.names[i])
		if !ok || src.Port() == 0 {
			continue
		}
		out := w.outBuf[i*udpReplySize : i*udpReplySize : (i+1)*udpReplySize]
		req := w.reqBuf[i*udpRecvSize : i*udpRecvSize+msgLen]
		reply := w.s.callDNS(out, req, src, UDP)
		if len(reply) == 0 {
			continue
		}
		sm := &w.sendMsgs[m].hdr
		sm.Name = (*byte)(unsafe.Pointer(&w.names[i]))
		sm.Namelen = nameLen
		w.sendIov[m].Base = &reply[0]
		w.sendIov[m].SetLen(len(reply))
		sm.Control = nil
		sm.SetControllen(0)
		if w.sock.pktinfo && flags&unix.MSG_CTRUNC == 0 {
			w.setReplySource(m, i)
		}
		m++
	}
	return m
}

// setReplySource copies the destination address of datagram i into reply
// slot m's pktinfo, so the reply leaves from the address the query was sent
// to. Without a pktinfo message the kernel picks the source.
func (w *udpWorker) setReplySource(m, i int) {
	ctrl := (*[ctrlWords * 8]byte)(unsafe.Pointer(&w.recvCtrl[i]))
	clen := min(int(w.recvMsgs[i].hdr.Controllen), len(ctrl))
	dataOff := unix.CmsgLen(0)
	for off := 0; off+dataOff <= clen; {
		c := (*unix.Cmsghdr)(unsafe.Pointer(&ctrl[off]))
		cl := int(c.Len)
		if cl < dataOff || off+cl > clen {
			return
		}
		data := unsafe.Pointer(&ctrl[off+dataOff])
		dst := unsafe.Add(unsafe.Pointer(&w.sendCtrl[m]), dataOff)
		switch {
		case !w.sock.v6 && c.Level == unix.IPPROTO_IP && c.Type == unix.IP_PKTINFO &&
			cl >= unix.CmsgLen(unix.SizeofInet4Pktinfo):
			// ipi_addr is the header's destination; send it as ipi_spec_dst.
			*(*unix.Inet4Pktinfo)(dst) = unix.Inet4Pktinfo{Spec_dst: (*unix.Inet4Pktinfo)(data).Addr}
			w.useSendCtrl(m, unix.SizeofInet4Pktinfo)
			return
		case w.sock.v6 && c.Level == unix.IPPROTO_IPV6 && c.Type == unix.IPV6_PKTINFO &&
			cl >= unix.CmsgLen(unix.SizeofInet6Pktinfo):
			in := (*unix.Inet6Pktinfo)(data)
			out := unix.Inet6Pktinfo{Addr: in.Addr}
			if netip.AddrFrom16(in.Addr).IsLinkLocalUnicast() {
				out.Ifindex = in.Ifindex // a link-local source only means something on its link
			}
			*(*unix.Inet6Pktinfo)(dst) = out
			w.useSendCtrl(m, unix.SizeofInet6Pktinfo)
			return
		}
		off += unix.CmsgSpace(cl - dataOff)
	}
}

func (w *udpWorker) useSendCtrl(m, dataLen int) {
	h := &w.sendMsgs[m].hdr
	h.Control = (*byte)(unsafe.Pointer(&w.sendCtrl[m]))
	h.SetControllen(unix.CmsgSpace(dataLen))
}

// sendBatch writes replies 0..m-1, waiting for buffer space if need be.
func (w *udpWorker) sendBatch(m int) {
	if m == 0 {
		return
	}
	w.sent, w.toSend, w.sendErr = 0, m, 0
	if err := w.rc.Write(w.sendFn); err != nil {
		lost := w.toSend - w.sent
		w.s.metrics.udpErrors[opWrite].Add(uint64(lost))
		if !errors.Is(err, net.ErrClosed) {
			w.s.logError("dns udp write failed", err, "lost", lost)
		}
		return
	}
	if w.sendErr != 0 {
		w.s.logError("dns udp sendmmsg failed", w.sendErr)
	}
}

// send is the RawConn.Write callback. A message the kernel refuses is
// counted and skipped; the rest of the batch still goes out.
func (w *udpWorker) send(fd uintptr) bool {
	for w.sent < w.toSend {
		n, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, fd,
			uintptr(unsafe.Pointer(&w.sendMsgs[w.sent])), uintptr(w.toSend-w.sent), unix.MSG_DONTWAIT, 0, 0)
		switch {
		case errno == unix.EINTR:
		case errno == unix.EAGAIN:
			return false
		case errno != 0 || n == 0:
			w.s.metrics.udpErrors[opWrite].Add(1)
			w.sendErr = errno
			w.sent++
		default:
			w.sent += int(n)
		}
	}
	return true
}

// sockaddrAddrPort reads a sockaddr_in or sockaddr_in6 filled in by the
// kernel. IPv4-mapped addresses (dual-stack sockets) come out as IPv4.
func sockaddrAddrPort(sa *unix.RawSockaddrInet6) (netip.AddrPort, bool) {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), uint16(p[0])<<8|uint16(p[1])), true
	case unix.AF_INET6:
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(p[0])<<8|uint16(p[1])), true
	}
	return netip.AddrPort{}, false
}
