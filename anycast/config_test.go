package anycast

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	return Config{
		RouterID: netip.MustParseAddr("192.0.2.1"),
		LocalASN: 65001,
		Peers: []PeerConfig{
			{Address: netip.MustParseAddr("192.0.2.254"), ASN: 65000},
			{Address: netip.MustParseAddr("2001:db8::fe"), ASN: 65000},
		},
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string // empty: valid
	}{
		{"valid", func(*Config) {}, ""},
		{"no router id", func(c *Config) { c.RouterID = netip.Addr{} }, "router_id: must be an IPv4 address"},
		{"ipv6 router id", func(c *Config) { c.RouterID = netip.MustParseAddr("2001:db8::1") }, "router_id: must be an IPv4 address"},
		{"no local asn", func(c *Config) { c.LocalASN = 0 }, "local_asn: 0 is not a usable AS number"},
		{"as_trans", func(c *Config) { c.LocalASN = 23456 }, "local_asn: 23456"},
		{"listen port out of range", func(c *Config) { c.ListenPort = 70000 }, "listen_port: 70000 out of range"},
		{"listen port below -1", func(c *Config) { c.ListenPort = -2 }, "listen_port: -2 out of range"},
		{"listen port", func(c *Config) { c.ListenPort = 11179 }, ""},
		{"bad listen address", func(c *Config) { c.ListenAddresses = []netip.Addr{{}} }, "listen_addresses[0]: invalid address"},
		{"no peers", func(c *Config) { c.Peers = nil }, "peers: at least one peer is required"},
		{"ipv6 next hop for ipv4", func(c *Config) { c.NextHop = netip.MustParseAddr("2001:db8::1") }, "next_hop: 2001:db8::1 is not an IPv4 address"},
		{"ipv4 next hop6", func(c *Config) { c.NextHop6 = netip.MustParseAddr("192.0.2.1") }, "next_hop6: 192.0.2.1 is not an IPv6 address"},
		{"peer without address", func(c *Config) { c.Peers[1].Address = netip.Addr{} }, "peers[1].address: invalid IP is not a unicast address"},
		{"unspecified peer", func(c *Config) { c.Peers[0].Address = netip.IPv4Unspecified() }, "peers[0].address: 0.0.0.0 is not a unicast address"},
		{"peer without asn", func(c *Config) { c.Peers[1].ASN = 0 }, "peers[1].asn: 0 is not a usable AS number"},
		{"duplicate peer", func(c *Config) { c.Peers[1].Address = c.Peers[0].Address }, "peers[1].address: 192.0.2.254 is also peers[0]"},
		{"duplicate peer mapped", func(c *Config) { c.Peers[1].Address = netip.MustParseAddr("::ffff:192.0.2.254") }, "peers[1].address: 192.0.2.254 is also peers[0]"},
		{"local address family", func(c *Config) { c.Peers[1].LocalAddress = netip.MustParseAddr("192.0.2.1") }, "peers[1].local_address: 192.0.2.1 is not in the family of 2001:db8::fe"},
		{"long password", func(c *Config) { c.Peers[0].Password = strings.Repeat("x", 81) }, "peers[0].password: TCP-MD5 keys are at most 80 bytes"},
		{"hold time below 3s", func(c *Config) { c.Peers[1].HoldTime = 2 * time.Second }, "peers[1].hold_time: 2s is below 3s"},
		{"hold time negative", func(c *Config) { c.Peers[1].HoldTime = -time.Second }, "peers[1].hold_time: -1s is below 3s"},
		{"hold time fraction", func(c *Config) { c.Peers[0].HoldTime = 3500 * time.Millisecond }, "peers[0].hold_time: 3.5s is not a whole number of seconds"},
		{"hold time too long", func(c *Config) { c.Peers[0].HoldTime = 70000 * time.Second }, "peers[0].hold_time: 19h26m40s is above 65535s"},
		{"hold time 3s", func(c *Config) { c.Peers[0].HoldTime = 3 * time.Second }, ""},
		{"keepalive not below hold", func(c *Config) { c.Peers[0].HoldTime, c.Peers[0].Keepalive = 3*time.Second, 3*time.Second }, "peers[0].keepalive: 3s must be below hold_time 3s"},
		{"keepalive fraction", func(c *Config) { c.Peers[0].Keepalive = 1500 * time.Millisecond }, "peers[0].keepalive: 1.5s is not a whole number of seconds"},
		{"connect retry fraction", func(c *Config) { c.Peers[0].ConnectRetry = 100 * time.Millisecond }, "peers[0].connect_retry: 100ms is below 1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig()
			tt.mutate(&cfg)
			_, err := New(cfg)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("no error, want %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	a, err := New(validConfig())
	if err != nil {
		t.Fatal(err)
	}
	p := a.cfg.Peers[0]
	if p.Port != 179 || p.HoldTime != 9*time.Second || p.Keepalive != 3*time.Second || p.ConnectRetry != 5*time.Second {
		t.Fatalf("defaults: %+v", p)
	}
	if a.cfg.ListenPort != -1 {
		t.Fatalf("listen port %d, want -1 (do not listen)", a.cfg.ListenPort)
	}
	peer := apiPeer(&p)
	if peer.GracefulRestart.Enabled || peer.Timers.Config.ConnectRetry != 5 || peer.Timers.Config.HoldTime != 9 ||
		peer.Timers.Config.KeepaliveInterval != 3 || peer.Transport.RemotePort != 179 || len(peer.AfiSafis) != 2 {
		t.Fatalf("gobgp peer: %v", peer)
	}
}

func TestVIPValidation(t *testing.T) {
	ibgp := validConfig()
	ibgp.Peers[0].ASN = ibgp.LocalASN
	v4only := validConfig()
	v4only.Peers = v4only.Peers[:1]
	withNH := validConfig()
	withNH.NextHop = netip.MustParseAddr("192.0.2.1")
	withNH.NextHop6 = netip.MustParseAddr("2001:db8::1")
	tests := []struct {
		name    string
		cfg     Config
		vip     VIP
		wantErr string
	}{
		{"host bits", withNH, VIP{Prefix: netip.MustParsePrefix("192.0.2.1/24")}, "prefix: 192.0.2.1/24 has host bits set (192.0.2.0/24)"},
		{"no prefix", withNH, VIP{}, "prefix: not a valid prefix"},
		{"mapped prefix", withNH, VIP{Prefix: netip.MustParsePrefix("::ffff:192.0.2.1/128")}, "use a plain IPv4 or IPv6 prefix"},
		{"community syntax", withNH, VIP{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Communities: []string{"65000:1", "65000"}}, `communities[1]: "65000": want ASN:VALUE`},
		{"community range", withNH, VIP{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Communities: []string{"65536:1"}}, `communities[0]: "65536:1": want two numbers 0-65535`},
		{"prepend range", withNH, VIP{Prefix: netip.MustParsePrefix("192.0.2.1/32"), DrainPrepend: 11}, "drain_prepend: 11 out of range 0-10"},
		{"prepend to ibgp", ibgp, VIP{Prefix: netip.MustParsePrefix("192.0.2.1/32"), DrainPrepend: 1}, "drain_prepend: peers[0] is iBGP"},
		{"ipv4 vip to ipv6 peer needs next hop", validConfig(), VIP{Prefix: netip.MustParsePrefix("192.0.2.1/32")}, "next_hop must be set to announce IPv4 VIPs to IPv6 peer peers[1]"},
		{"ipv6 vip to ipv4 peer needs next hop", v4only, VIP{Prefix: netip.MustParsePrefix("2001:db8::/48")}, "next_hop6 must be set to announce IPv6 VIPs to IPv4 peer peers[0]"},
		{"ipv4 only", v4only, VIP{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Communities: []string{"65535:0"}, DrainPrepend: 3}, ""},
		{"both families", withNH, VIP{Prefix: netip.MustParsePrefix("2001:db8::1/128")}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = a.Set(tt.vip, Announced, "test")
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("no error, want %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestStateText(t *testing.T) {
	for _, s := range []State{Withdrawn, Announced, Depreferred} {
		b, err := s.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back State
		if err := back.UnmarshalText(b); err != nil || back != s {
			t.Fatalf("%v: round trip gave %v, %v", s, back, err)
		}
	}
	if _, err := State(7).MarshalText(); err == nil {
		t.Fatal("unknown state marshalled")
	}
	if err := new(State).UnmarshalText([]byte("up")); err == nil {
		t.Fatal(`"up" parsed as a state`)
	}
}

// TestDrainPath checks the attributes of each state's path directly.
func TestDrainPath(t *testing.T) {
	cfg := validConfig()
	cfg.NextHop = netip.MustParseAddr("192.0.2.1")
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	va, err := a.cfg.compile(VIP{Prefix: netip.MustParsePrefix("192.0.2.10/32"), Communities: []string{"65000:100", "65535:0"}, MED: 10, DrainPrepend: 2})
	if err != nil {
		t.Fatal(err)
	}
	up := decodeRoute(t, a.buildPath(va, Announced))
	if up.nextHop != "192.0.2.1" || up.med != 10 || len(up.communities) != 1 || up.asPath != nil {
		t.Fatalf("announced: %v", up)
	}
	// DrainMED 0 keeps the MED; 65535:0 given by the user is not doubled.
	drain := decodeRoute(t, a.buildPath(va, Depreferred))
	if drain.med != 10 || len(drain.communities) != 2 || !drain.hasCommunity(gracefulShutdown) || len(drain.asPath) != 2 {
		t.Fatalf("depreferred: %v", drain)
	}
}
