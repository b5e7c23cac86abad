//go:build linux

package dnsserver

import (
	"net"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestMmsghdrLayout(t *testing.T) {
	// struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; }, padded to pointer alignment.
	ptr := unsafe.Sizeof(uintptr(0))
	want := (unsafe.Sizeof(unix.Msghdr{}) + 4 + ptr - 1) / ptr * ptr
	if got := unsafe.Sizeof(mmsghdr{}); got != want {
		t.Fatalf("sizeof(mmsghdr) = %d, want %d", got, want)
	}
}

// TestUDPReplySource: on a socket bound to an unspecified address, the reply
// leaves from the address the query was sent to. 127.0.0.2 shows it: without
// pktinfo the kernel would answer a client on 127.0.0.1 from 127.0.0.1.
func TestUDPReplySource(t *testing.T) {
	cases := []struct {
		name, listen, client, dst string
		ipv6                      bool
	}{
		{"ipv4 any to 127.0.0.1", "0.0.0.0:0", "127.0.0.1", "127.0.0.1", false},
		{"ipv4 any to 127.0.0.2", "0.0.0.0:0", "127.0.0.1", "127.0.0.2", false},
		{"dual-stack to 127.0.0.2", ":0", "127.0.0.1", "127.0.0.2", true},
		{"ipv6 any to ::1", "[::]:0", "::1", "::1", true},
		{"dual-stack to ::1", ":0", "::1", "::1", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.ipv6 {
				skipNoIPv6Loopback(t)
			}
			s := startTransport(t, TransportConfig{Addrs: []string{tc.listen}, Workers: 2}, &fakeHandler{})
			c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(tc.client), 0)))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			dst := netip.AddrPortFrom(netip.MustParseAddr(tc.dst), s.Addrs()[0].Port())
			for id := range uint16(5) {
				if _, err := c.WriteToUDPAddrPort(buildQuery(t, id, "src.example."), dst); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 512)
				_ = c.SetReadDeadline(time.Now().Add(clientIOTimeout))
				n, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					t.Fatalf("no reply: %v", err)
				}
				if got := netip.AddrPortFrom(from.Addr().Unmap(), from.Port()); got != dst {
					t.Fatalf("reply came from %v, want %v", got, dst)
				}
				if r := unpackMsg(t, buf[:n]); r.Id != id {
					t.Fatalf("reply id %d, want %d", r.Id, id)
				}
			}
		})
	}
}

// TestUDPProcessBatch drives process() with hand-made receive results: what
// is dropped, what is answered, and that it does not allocate.
func TestUDPProcessBatch(t *testing.T) {
	var calls []netip.AddrPort
	h := transportHandlerFunc(func(out, req []byte, src netip.AddrPort, _ Transport) []byte {
		calls = append(calls, src)
		return append(out[:0], req...)
	})
	w := newUnitWorker(t, h, true)
	client := netip.MustParseAddrPort("127.0.0.1:4242")
	w.fakeRecv(0, client, 40, 0)
	w.fakeRecv(1, netip.MustParseAddrPort("127.0.0.1:0"), 40, 0)      // source port 0: no reply
	w.fakeRecv(2, client, udpRecvSize, unix.MSG_TRUNC)                // oversized: dropped
	w.fakeRecv(3, netip.MustParseAddrPort("[2001:db8::1]:53"), 40, 0) // answered

	if m := w.process(4); m != 2 {
		t.Fatalf("process made %d replies, want 2", m)
	}
	want := []netip.AddrPort{client, netip.MustParseAddrPort("[2001:db8::1]:53")}
	if len(calls) != 2 || calls[0] != want[0] || calls[1] != want[1] {
		t.Fatalf("handler called for %v, want %v", calls, want)
	}
	if got := w.sendMsgs[1].hdr.Name; got != (*byte)(unsafe.Pointer(&w.names[3])) {
		t.Error("second reply is not addressed to the fourth datagram's source")
	}
	pi := (*unix.Inet6Pktinfo)(unsafe.Add(unsafe.Pointer(&w.sendCtrl[0]), unix.CmsgLen(0)))
	if w.sendMsgs[0].hdr.Control == nil || pi.Addr != netip.IPv6Loopback().As16() || pi.Ifindex != 0 {
		t.Errorf("reply pktinfo = %+v (control set: %v), want source ::1, any interface",
			*pi, w.sendMsgs[0].hdr.Control != nil)
	}

	allocs := testing.AllocsPerRun(1000, func() {
		calls = calls[:0]
		w.process(4)
	})
	if allocs != 0 {
		t.Errorf("process allocates %v times per batch, want 0", allocs)
	}
}

// TestUDPZeroAllocs runs real round trips through the batched loop and
// counts every allocation in the process: client, server and runtime.
func TestUDPZeroAllocs(t *testing.T) {
	s := startTransport(t, TransportConfig{Addrs: []string{"127.0.0.1:0"}, Workers: 1}, transportEcho{})
	c := dialUDPClient(t, s.Addrs()[0])
	q := buildQuery(t, 9, "alloc.example.")
	buf := make([]byte, 512)
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
	roundTrip := func() {
		if _, err := c.Write(q); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip() // warm up
	if allocs := testing.AllocsPerRun(2000, roundTrip); allocs != 0 {
		t.Errorf("%v allocations per UDP round trip, want 0", allocs)
	}
}

func newUnitWorker(t *testing.T, h Handler, pktinfo bool) *udpWorker {
	t.Helper()
	s, err := NewServer(TransportConfig{Addrs: []string{"127.0.0.1:0"}}, h)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		conn, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	w, err := newUDPWorker(s, &udpSocket{conn: conn, v6: true, pktinfo: pktinfo})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// fakeRecv fills slot i as recvmmsg would for a datagram of n bytes from src
// sent to ::1 (IPV6_PKTINFO).
func (w *udpWorker) fakeRecv(i int, src netip.AddrPort, n int, flags int32) {
	sa := &w.names[i]
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: src.Addr().As16()}
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(src.Port()>>8), byte(src.Port())
	req := w.reqBuf[i*udpRecvSize : i*udpRecvSize+n]
	clear(req)
	req[0], req[1] = 0, byte(i)
	rm := &w.recvMsgs[i]
	rm.n = uint32(n)
	rm.hdr.Namelen = unix.SizeofSockaddrInet6
	rm.hdr.Flags = flags
	c := (*unix.Cmsghdr)(unsafe.Pointer(&w.recvCtrl[i]))
	c.Level, c.Type = unix.IPPROTO_IPV6, unix.IPV6_PKTINFO
	c.SetLen(unix.CmsgLen(unix.SizeofInet6Pktinfo))
	pi := (*unix.Inet6Pktinfo)(unsafe.Add(unsafe.Pointer(c), unix.CmsgLen(0)))
	*pi = unix.Inet6Pktinfo{Addr: netip.IPv6Loopback().As16(), Ifindex: 1}
	rm.hdr.SetControllen(unix.CmsgSpace(unix.SizeofInet6Pktinfo))
}
