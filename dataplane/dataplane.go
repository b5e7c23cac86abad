// Package dataplane is lbd's per-site L4 tier: an XDP program (C under
// bpf/, compiled by bpf2go, generated files committed) that picks a backend
// per flow with Maglev, remembers the choice in an LRU connection table and
// delivers the packet to an L7 proxy by IPIP encapsulation or by L2 DSR
// (MAC rewrite); a BPF decap program for the proxy hosts; and lbd's control
// plane: configuration, proxy health checks, Maglev tables, the local HTTP
// API, Prometheus collectors and the RTT/load feed for the GSLB engine.
//
// The kernel side (BPF programs, loader, pinning, decap) is the subpackage
// dataplane/xdp, the only place cilium/ebpf is imported; it implements
// Programmer. This package is the control plane (maglev.go, config.go,
// health*.go, controller.go, api.go, feed.go, metrics) and the types both
// sides share (this file). Imports go one way: xdp -> dataplane.
package dataplane

import (
	"net"
	"net/netip"
	"time"
)

// Protocol numbers a VIP can carry.
const (
	ProtoTCP uint8 = 6
	ProtoUDP uint8 = 17
)

// VIP identifies a virtual service: an address, an IP protocol (ProtoTCP
// or ProtoUDP) and a port; Port 0 means every port of that protocol.
type VIP struct {
	Addr  netip.Addr
	Proto uint8
	Port  uint16
}

// String returns "tcp/192.0.2.10:80" (or "tcp/[2001:db8::1]:*" for every
// port).
func (v VIP) String() string {
	proto := "tcp"
	if v.Proto == ProtoUDP {
		proto = "udp"
	}
	port := "*"
	if v.Port != 0 {
		port = itoa(int(v.Port))
	}
	if v.Addr.Is6() {
		return proto + "/[" + v.Addr.String() + "]:" + port
	}
	return proto + "/" + v.Addr.String() + ":" + port
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// Mode is how packets reach a backend.
type Mode uint8

const (
	// ModeIPIP encapsulates in IPv4-in-IPv4 or IPv6-in-IPv6 (the backend's
	// family must match the VIP's); the outer source address is derived
	// from the flow hash so the proxy host's RSS spreads flows.
	ModeIPIP Mode = iota
	// ModeDSR rewrites the destination MAC to the backend's and sends the
	// frame back out of the interface it came in on (the backend shares
	// the L2 segment and has the VIP on lo).
	ModeDSR
)

// Backend is one L7 proxy behind a VIP, as the data path sees it. Index
// is its slot in the service's backend array (what Maglev table entries
// refer to); it is stable while the backend is configured, so entries in
// the connection table stay meaningful across table rebuilds.
type Backend struct {
	Index uint32
	Addr  netip.Addr       // tunnel destination (IPIP) or the proxy's address (DSR)
	MAC   net.HardwareAddr // DSR only: the proxy's MAC on the shared segment
}

// Service is everything the data path needs for one VIP. Table is the
// Maglev lookup table (len M, a prime); each entry is a Backend.Index.
// An empty Table means "no backend available": new flows are dropped and
// counted (reason "no_backend").
//
// Backends lists the backends whose established flows may continue: the
// healthy ones and the draining ones (weight 0: in Backends, absent from
// Table). A backend that is down or removed is absent from Backends, and
// packets of its established flows are re-balanced through Table (the new
// proxy answers a mid-stream packet with a RST and the client reconnects at
// once, instead of timing out against a dead proxy).
type Service struct {
	VIP      VIP
	Mode     Mode
	Backends []Backend
	Table    []uint32
}

// Programmer is the kernel side as the control plane uses it. The XDP
// loader implements it; tests of the control plane use a fake.
type Programmer interface {
	// SetService installs or replaces a service atomically: packets see
	// either the old table or the new one, never a mix.
	SetService(s Service) error
	// DeleteService removes a VIP; its packets are passed to the stack.
	DeleteService(v VIP) error
	// Counters reads the per-CPU counters, summed over CPUs.
	Counters() (Counters, error)
	// RTT drains the handshake RTT samples aggregated per client prefix
	// since the last call.
	RTT() ([]RTTSample, error)
}

// Drop reasons, as counted by the data path.
var DropReasons = []string{"malformed", "no_backend", "fragment", "too_big", "unsupported"}

// Counters are the data path's counters, summed over CPUs.
type Counters struct {
	VIPs     map[VIP]VIPCounters
	Backends map[BackendKey]BackendCounters
	// ActiveFlows counts connection-table entries that saw a packet in the
	// last minute.
	ActiveFlows uint64
}

// VIPCounters are per-VIP counters.
type VIPCounters struct {
	Packets, Bytes uint64
	NewFlows       uint64            // flows that had no connection-table entry
	LRUHits        uint64            // packets whose flow was in the table
	LRUMisses      uint64            // packets that needed a Maglev lookup
	Drops          map[string]uint64 // by reason (DropReasons)
}

// BackendKey names a backend of a VIP.
type BackendKey struct {
	VIP  VIP
	Addr netip.Addr
}

// BackendCounters are per-backend counters.
type BackendCounters struct {
	Packets, Bytes, NewFlows uint64
}

// RTTSample is the handshake RTT measured for clients in Prefix (a /24
// for IPv4, a /48 for IPv6): the time between a flow's SYN and the
// client's next packet seen at the LB, aggregated over Count flows.
type RTTSample struct {
	Prefix netip.Prefix
	Count  uint64
	Mean   time.Duration
	Min    time.Duration
}
