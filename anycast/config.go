package anycast

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Defaults for PeerConfig's zero values.
const (
	DefaultPort         = 179
	DefaultHoldTime     = 9 * time.Second
	DefaultConnectRetry = 5 * time.Second
	// MaxDrainPrepend bounds VIP.DrainPrepend.
	MaxDrainPrepend = 10
)

// minHoldTime is the smallest non-zero hold time BGP allows (RFC 4271).
const minHoldTime = 3 * time.Second

// PeerConfig is one BGP neighbor (a router).
type PeerConfig struct {
	Address netip.Addr // required
	ASN     uint32     // required; equal to Config.LocalASN for iBGP
	Port    uint16     // default 179

	// LocalAddress is the source address of the session (optional; the
	// kernel picks one by default).
	LocalAddress netip.Addr
	// Password enables TCP-MD5 (RFC 2385) when not empty.
	Password string
	// Multihop is the TTL for eBGP multihop sessions; 0 means directly
	// connected.
	Multihop uint8

	// HoldTime defaults to 9s; it must be whole seconds and at least 3s.
	// BGP's hold time 0 (no keepalives) is refused: a hung announcer would
	// then stay announced forever.
	HoldTime time.Duration
	// Keepalive defaults to a third of HoldTime; whole seconds, below it.
	Keepalive time.Duration
	// ConnectRetry defaults to 5s (gobgp's own default is 120s); whole
	// seconds. It is also used as the idle time after a reset.
	ConnectRetry time.Duration
}

// Config configures an Announcer.
type Config struct {
	RouterID netip.Addr // required, IPv4
	LocalASN uint32     // required

	// ListenPort is the TCP port to accept sessions on; 0 or -1 (the
	// default) does not listen: the announcer connects to its peers.
	ListenPort int32
	// ListenAddresses restricts listening (with ListenPort > 0); default
	// all addresses.
	ListenAddresses []netip.Addr

	Peers []PeerConfig

	// NextHop is the next hop of IPv4 VIPs; by default each session's
	// local address (next-hop-self).
	NextHop netip.Addr
	// NextHop6 is the next hop of IPv6 VIPs; by default each session's
	// local address, so it must be set to announce IPv6 VIPs over IPv4
	// sessions.
	NextHop6 netip.Addr

	// Logger receives transitions (Info) and session changes; silent by
	// default.
	Logger *slog.Logger
}

// State is what a VIP should look like to the routers.
type State uint8

const (
	// Withdrawn: the VIP is not announced (the site is down for it).
	Withdrawn State = iota
	// Announced: healthy; announced with the VIP's communities and MED.
	Announced
	// Depreferred: degraded or draining; announced with the graceful
	// shutdown community 65535:0 plus DrainMED and DrainPrepend.
	Depreferred
)

var stateNames = [...]string{"withdrawn", "announced", "depreferred"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// MarshalText writes the state's name.
func (s State) MarshalText() ([]byte, error) {
	if int(s) >= len(stateNames) {
		return nil, fmt.Errorf("anycast: unknown state %d", s)
	}
	return []byte(stateNames[s]), nil
}

// UnmarshalText parses a state's name.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if string(b) == n {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("anycast: unknown state %q", b)
}

// VIP is an anycast prefix and the attributes it is announced with.
type VIP struct {
	Prefix      netip.Prefix // IPv4 or IPv6, masked (192.0.2.1/32, 2001:db8::/48)
	Communities []string     // "65000:100"; 65535:0 is added when Depreferred
	MED         uint32       // sent when non-zero
	// DrainMED replaces MED when Depreferred (when non-zero).
	DrainMED uint32
	// DrainPrepend prepends the local ASN this many extra times when
	// Depreferred (eBGP peers only; at most MaxDrainPrepend).
	DrainPrepend int
}

// gracefulShutdown is the RFC 8326 GRACEFUL_SHUTDOWN community 65535:0.
const gracefulShutdown uint32 = 0xFFFF0000

// ErrClosed is returned by Set and Run once Shutdown has begun.
var ErrClosed = errors.New("anycast: announcer is shut down")

// validate checks cfg and fills in defaults, returning a copy.
func (cfg Config) validate() (Config, error) {
	c := cfg
	if !c.RouterID.Is4() {
		return c, errors.New("router_id: must be an IPv4 address")
	}
	if c.LocalASN == 0 || c.LocalASN == 23456 {
		return c, fmt.Errorf("local_asn: %d is not a usable AS number", c.LocalASN)
	}
	if c.ListenPort == 0 {
		c.ListenPort = -1
	}
	if c.ListenPort < -1 || c.ListenPort > 65535 {
		return c, fmt.Errorf("listen_port: %d out of range (-1 to not listen, or 1-65535)", c.ListenPort)
	}
	for i, a := range c.ListenAddresses {
		if !a.IsValid() || a.Zone() != "" {
			return c, fmt.Errorf("listen_addresses[%d]: invalid address %v", i, a)
		}
	}
	if len(c.Peers) == 0 {
		return c, errors.New("peers: at least one peer is required")
	}
	if c.NextHop.IsValid() && !c.NextHop.Is4() {
		return c, fmt.Errorf("next_hop: %v is not an IPv4 address", c.NextHop)
	}
	if c.NextHop6.IsValid() && (!c.NextHop6.Is6() || c.NextHop6.Is4In6()) {
		return c, fmt.Errorf("next_hop6: %v is not an IPv6 address", c.NextHop6)
	}
	peers := make([]PeerConfig, len(c.Peers))
	seen := map[netip.Addr]int{}
	for i, p := range c.Peers {
		np, err := p.validate()
		if err != nil {
			return c, fmt.Errorf("peers[%d].%w", i, err)
		}
		if j, dup := seen[np.Address]; dup {
			return c, fmt.Errorf("peers[%d].address: %v is also peers[%d]", i, np.Address, j)
		}
		seen[np.Address] = i
		peers[i] = np
	}
	c.Peers = peers
	return c, nil
}

func (p PeerConfig) validate() (PeerConfig, error) {
	p.Address = p.Address.Unmap()
	if !p.Address.IsValid() || p.Address.IsUnspecified() || p.Address.IsMulticast() {
		return p, fmt.Errorf("address: %v is not a unicast address", p.Address)
	}
	if p.Address.Zone() != "" {
		return p, errors.New("address: zoned (link-local) peers are not supported")
	}
	if p.ASN == 0 || p.ASN == 23456 {
		return p, fmt.Errorf("asn: %d is not a usable AS number", p.ASN)
	}
	if p.Port == 0 {
		p.Port = DefaultPort
	}
	if p.LocalAddress.IsValid() {
		p.LocalAddress = p.LocalAddress.Unmap()
		if p.LocalAddress.Is4() != p.Address.Is4() {
			return p, fmt.Errorf("local_address: %v is not in the family of %v", p.LocalAddress, p.Address)
		}
	}
	if len(p.Password) > 80 {
		return p, errors.New("password: TCP-MD5 keys are at most 80 bytes")
	}
	if p.HoldTime == 0 {
		p.HoldTime = DefaultHoldTime
	}
	if err := wholeSeconds(p.HoldTime, minHoldTime); err != nil {
		return p, fmt.Errorf("hold_time: %w (0 means the default, 9s; BGP's 0, no keepalives, is not allowed)", err)
	}
	if p.Keepalive == 0 {
		p.Keepalive = (p.HoldTime / 3).Truncate(time.Second)
	}
	if err := wholeSeconds(p.Keepalive, time.Second); err != nil {
		return p, fmt.Errorf("keepalive: %w", err)
	}
	if p.Keepalive >= p.HoldTime {
		return p, fmt.Errorf("keepalive: %v must be below hold_time %v", p.Keepalive, p.HoldTime)
	}
	if p.ConnectRetry == 0 {
		p.ConnectRetry = DefaultConnectRetry
	}
	if err := wholeSeconds(p.ConnectRetry, time.Second); err != nil {
		return p, fmt.Errorf("connect_retry: %w", err)
	}
	return p, nil
}

// wholeSeconds checks a BGP timer: gobgp and the protocol count seconds.
func wholeSeconds(d, min time.Duration) error {
	switch {
	case d < min:
		return fmt.Errorf("%v is below %v", d, min)
	case d%time.Second != 0:
		return fmt.Errorf("%v is not a whole number of seconds", d)
	case d > 65535*time.Second:
		return fmt.Errorf("%v is above 65535s", d)
	}
	return nil
}

// vipAttrs is a validated VIP in the form paths are built from.
type vipAttrs struct {
	prefix       netip.Prefix
	communities  []uint32
	med          uint32
	drainMED     uint32
	drainPrepend int
}

// compile validates a VIP against the announcer's configuration.
func (cfg *Config) compile(v VIP) (vipAttrs, error) {
	va := vipAttrs{prefix: v.Prefix, med: v.MED, drainMED: v.DrainMED, drainPrepend: v.DrainPrepend}
	if !v.Prefix.IsValid() {
		return va, errors.New("prefix: not a valid prefix")
	}
	if v.Prefix.Addr().Is4In6() || v.Prefix.Addr().Zone() != "" {
		return va, fmt.Errorf("prefix: %v: use a plain IPv4 or IPv6 prefix", v.Prefix)
	}
	if v.Prefix.Masked() != v.Prefix {
		return va, fmt.Errorf("prefix: %v has host bits set (%v)", v.Prefix, v.Prefix.Masked())
	}
	for i, s := range v.Communities {
		c, err := parseCommunity(s)
		if err != nil {
			return va, fmt.Errorf("communities[%d]: %w", i, err)
		}
		if c != gracefulShutdown { // added when Depreferred
			va.communities = append(va.communities, c)
		}
	}
	if v.DrainPrepend < 0 || v.DrainPrepend > MaxDrainPrepend {
		return va, fmt.Errorf("drain_prepend: %d out of range 0-%d", v.DrainPrepend, MaxDrainPrepend)
	}
	for i, p := range cfg.Peers {
		if v.DrainPrepend > 0 && p.ASN == cfg.LocalASN {
			return va, fmt.Errorf("drain_prepend: peers[%d] is iBGP, which would drop a path holding its own AS", i)
		}
		if v.Prefix.Addr().Is4() && !cfg.NextHop.IsValid() && !p.Address.Is4() {
			return va, fmt.Errorf("prefix: next_hop must be set to announce IPv4 VIPs to IPv6 peer peers[%d]", i)
		}
		if v.Prefix.Addr().Is6() && !cfg.NextHop6.IsValid() && p.Address.Is4() {
			return va, fmt.Errorf("prefix: next_hop6 must be set to announce IPv6 VIPs to IPv4 peer peers[%d]", i)
		}
	}
	return va, nil
}

func (va vipAttrs) equal(o vipAttrs) bool {
	if va.prefix != o.prefix || va.med != o.med || va.drainMED != o.drainMED ||
		va.drainPrepend != o.drainPrepend || len(va.communities) != len(o.communities) {
		return false
	}
	for i := range va.communities {
		if va.communities[i] != o.communities[i] {
			return false
		}
	}
	return true
}

// parseCommunity parses "ASN:VALUE" (each 0-65535) into its 32-bit form.
func parseCommunity(s string) (uint32, error) {
	hi, lo, ok := strings.Cut(s, ":")
	if !ok {
		return 0, fmt.Errorf("%q: want ASN:VALUE", s)
	}
	h, err1 := strconv.ParseUint(hi, 10, 16)
	l, err2 := strconv.ParseUint(lo, 10, 16)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%q: want two numbers 0-65535", s)
	}
	return uint32(h)<<16 | uint32(l), nil
}
