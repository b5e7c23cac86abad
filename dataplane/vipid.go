package dataplane

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// VIPID is v's name in URL paths: "tcp-192.0.2.10-80",
// "udp-2001:db8::1-53", with port 0 for a VIP that takes every port. It
// needs no escaping in a path segment (VIP.String's "/" would).
func VIPID(v VIP) string {
	return protoName(v.Proto) + "-" + v.Addr.String() + "-" + strconv.Itoa(int(v.Port))
}

func protoName(p uint8) string {
	if p == ProtoUDP {
		return "udp"
	}
	return "tcp"
}

// ParseVIP parses a VIP written as VIPID ("tcp-192.0.2.10-80") or as
// VIP.String ("tcp/192.0.2.10:80", "tcp/[2001:db8::1]:*"). The port may
// be "*" or "0" for every port.
func ParseVIP(s string) (VIP, error) {
	proto, rest, ok := strings.Cut(s, "/")
	var addr, port string
	if ok {
		i := strings.LastIndexByte(rest, ':')
		if i < 0 {
			return VIP{}, fmt.Errorf("vip %q: want proto/address:port", s)
		}
		addr, port = strings.TrimSuffix(strings.TrimPrefix(rest[:i], "["), "]"), rest[i+1:]
	} else {
		var found bool
		if proto, rest, found = strings.Cut(s, "-"); !found {
			return VIP{}, fmt.Errorf("vip %q: want proto-address-port (tcp-192.0.2.10-80) or proto/address:port", s)
		}
		i := strings.LastIndexByte(rest, '-')
		if i < 0 {
			return VIP{}, fmt.Errorf("vip %q: want proto-address-port (tcp-192.0.2.10-80)", s)
		}
		addr, port = rest[:i], rest[i+1:]
	}
	var v VIP
	switch proto {
	case "tcp":
		v.Proto = ProtoTCP
	case "udp":
		v.Proto = ProtoUDP
	default:
		return VIP{}, fmt.Errorf("vip %q: protocol %q is not tcp or udp", s, proto)
	}
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" {
		return VIP{}, fmt.Errorf("vip %q: %q is not an IP address", s, addr)
	}
	v.Addr = a.Unmap()
	if port != "*" {
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return VIP{}, fmt.Errorf("vip %q: port %q is not 0..65535 or *", s, port)
		}
		v.Port = uint16(p)
	}
	return v, nil
}
