package xdp

import (
	"encoding/binary"
	"net/netip"

	"github.com/gslbd/gslbd/dataplane"
)

// Conversions between netip/dataplane values and the BPF structs. The
// structs hold addresses in network order, IPv4 in the first 4 of 16
// bytes, ports in network order.

const (
	afInet  = 2
	afInet6 = 10
)

func family(a netip.Addr) uint8 {
	if a.Is4() {
		return afInet
	}
	return afInet6
}

func addr16(a netip.Addr) (b [16]uint8) {
	if a.Is4() {
		v := a.As4()
		copy(b[:], v[:])
		return b
	}
	return a.As16()
}

func addrFrom16(b [16]uint8, fam uint8) netip.Addr {
	if fam == afInet {
		return netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrFrom16(b)
}

// be16 returns the uint16 whose in-memory bytes are v in network order.
func be16(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

func vipKey(v dataplane.VIP) lbVipKey {
	return lbVipKey{Addr: addr16(v.Addr), Port: be16(v.Port), Proto: v.Proto, Family: family(v.Addr)}
}

func vipFromKey(k lbVipKey) dataplane.VIP {
	return dataplane.VIP{Addr: addrFrom16(k.Addr, k.Family), Proto: k.Proto, Port: be16(k.Port)}
}

func vipAddrKey(v dataplane.VIP) lbVipAddrKey {
	return lbVipAddrKey{Addr: addr16(v.Addr), Proto: v.Proto, Family: family(v.Addr)}
}
