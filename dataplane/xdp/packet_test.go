package xdp

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// Packet builders for the fixtures. They write exactly what the fields
// say (L4 checksums are left zero: the data path never reads them).

type ethHdr struct {
	dst, src net.HardwareAddr
	vlan     uint16 // 0: untagged
	typ      uint16
}

func (e ethHdr) bytes() []byte {
	b := append([]byte{}, e.dst...)
	b = append(b, e.src...)
	if e.vlan != 0 {
		b = binary.BigEndian.AppendUint16(b, 0x8100)
		b = binary.BigEndian.AppendUint16(b, e.vlan)
	}
	return binary.BigEndian.AppendUint16(b, e.typ)
}

type ip4Hdr struct {
	src, dst netip.Addr
	proto    uint8
	tos      uint8
	id       uint16
	flags    uint16 // DF 0x4000, MF 0x2000, | fragment offset
	ttl      uint8
	options  []byte
	totalLen int // 0: computed
}

func (h ip4Hdr) bytes(payload []byte) []byte {
	ihl := 20 + len(h.options)
	tot := ihl + len(payload)
	if h.totalLen != 0 {
		tot = h.totalLen
	}
	ttl := h.ttl
	if ttl == 0 {
		ttl = 64
	}
	b := []byte{byte(0x40 | ihl/4), h.tos}
	b = binary.BigEndian.AppendUint16(b, uint16(tot))
	b = binary.BigEndian.AppendUint16(b, h.id)
	b = binary.BigEndian.AppendUint16(b, h.flags)
	b = append(b, ttl, h.proto, 0, 0)
	s, d := h.src.As4(), h.dst.As4()
	b = append(b, s[:]...)
	b = append(b, d[:]...)
	b = append(b, h.options...)
	binary.BigEndian.PutUint16(b[10:], ipChecksum(b))
	return append(b, payload...)
}

type ip6Hdr struct {
	src, dst  netip.Addr
	next      uint8
	tclass    uint8
	flowLabel uint32
	hop       uint8
}

func (h ip6Hdr) bytes(payload []byte) []byte {
	hop := h.hop
	if hop == 0 {
		hop = 64
	}
	b := binary.BigEndian.AppendUint32(nil, 6<<28|uint32(h.tclass)<<20|h.flowLabel&0xfffff)
	b = binary.BigEndian.AppendUint16(b, uint16(len(payload)))
	b = append(b, h.next, hop)
	s, d := h.src.As16(), h.dst.As16()
	b = append(b, s[:]...)
	b = append(b, d[:]...)
	return append(b, payload...)
}

const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
)

// tcpSeg is a TCP header (no options) and n bytes of payload.
func tcpSeg(sport, dport uint16, flags uint8, n int) []byte {
	b := binary.BigEndian.AppendUint16(nil, sport)
	b = binary.BigEndian.AppendUint16(b, dport)
	b = binary.BigEndian.AppendUint32(b, 0x01020304) // seq
	b = binary.BigEndian.AppendUint32(b, 0)          // ack
	b = append(b, 5<<4, flags)
	b = binary.BigEndian.AppendUint16(b, 64240)
	b = append(b, 0, 0, 0, 0) // checksum, urgent
	for i := range n {
		b = append(b, byte(i))
	}
	return b
}

func udpDgram(sport, dport uint16, n int) []byte {
	b := binary.BigEndian.AppendUint16(nil, sport)
	b = binary.BigEndian.AppendUint16(b, dport)
	b = binary.BigEndian.AppendUint16(b, uint16(8+n))
	b = append(b, 0, 0)
	for i := range n {
		b = append(b, byte(i))
	}
	return b
}

// ipChecksum is the Internet checksum of b (RFC 1071), computed
// independently of the BPF code under test.
func ipChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// flowHash mirrors flow_hash in bpf/lb.c: jhash2 (lookup3) over
// (saddr, daddr, sport|dport, proto) with the words as a little-endian
// machine loads them. It is here, not in the package, because only the
// tests need to predict the data path's choices.
func flowHash(src, dst netip.Addr, sport, dport uint16, proto uint8) uint32 {
	var words []uint32
	addrWords := func(a netip.Addr) {
		if a.Is4() {
			b := a.As4()
			words = append(words, binary.LittleEndian.Uint32(b[:]))
			return
		}
		b := a.As16()
		for i := 0; i < 16; i += 4 {
			words = append(words, binary.LittleEndian.Uint32(b[i:]))
		}
	}
	addrWords(src)
	addrWords(dst)
	var pb [4]byte
	binary.BigEndian.PutUint16(pb[0:], sport)
	binary.BigEndian.PutUint16(pb[2:], dport)
	words = append(words, binary.LittleEndian.Uint32(pb[:]), uint32(proto))
	return jhash2(words, 0x6c62642e)
}

func rol32(v uint32, s uint) uint32 { return v<<s | v>>(32-s) }

// jhash2 is the kernel's jhash2 (include/linux/jhash.h).
func jhash2(k []uint32, initval uint32) uint32 {
	a := 0xdeadbeef + uint32(len(k))<<2 + initval
	b, c := a, a
	for len(k) > 3 {
		a += k[0]
		b += k[1]
		c += k[2]
		a -= c
		a ^= rol32(c, 4)
		c += b
		b -= a
		b ^= rol32(a, 6)
		a += c
		c -= b
		c ^= rol32(b, 8)
		b += a
		a -= c
		a ^= rol32(c, 16)
		c += b
		b -= a
		b ^= rol32(a, 19)
		a += c
		c -= b
		c ^= rol32(b, 4)
		b += a
		k = k[3:]
	}
	switch len(k) {
	case 3:
		c += k[2]
		fallthrough
	case 2:
		b += k[1]
		fallthrough
	case 1:
		a += k[0]
		c ^= b
		c -= rol32(b, 14)
		a ^= c
		a -= rol32(c, 11)
		b ^= a
		b -= rol32(a, 25)
		c ^= b
		c -= rol32(b, 16)
		a ^= c
		a -= rol32(c, 4)
		b ^= a
		b -= rol32(a, 14)
		c ^= b
		c -= rol32(b, 24)
	}
	return c
}
