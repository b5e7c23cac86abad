package main

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/gslbd/gslbd/anycast"
	"github.com/gslbd/gslbd/dnsserver"
	"github.com/gslbd/gslbd/gslb"
	"github.com/gslbd/gslbd/gslb/health"
)

// anycastConfig is the anycast: section: the embedded BGP announcer.
type anycastConfig struct {
	RouterID   string              `yaml:"router_id"`
	LocalASN   uint32              `yaml:"local_asn"`
	ListenPort *int32              `yaml:"listen_port"` // -1 (default): do not listen
	NextHop    string              `yaml:"next_hop"`
	NextHop6   string              `yaml:"next_hop6"`
	Drain      time.Duration       `yaml:"drain"` // on SIGTERM: announce with 65535:0 this long, then withdraw; 10s
	Peers      []anycastPeerConfig `yaml:"peers"`
	VIPs       []anycastVIPConfig  `yaml:"vips"`
}

type anycastPeerConfig struct {
	Address      string        `yaml:"address"`
	ASN          uint32        `yaml:"asn"`
	Port         uint16        `yaml:"port"`
	LocalAddress string        `yaml:"local_address"`
	Password     string        `yaml:"password"`
	Multihop     uint8         `yaml:"multihop"`
	HoldTime     time.Duration `yaml:"hold_time"`
	Keepalive    time.Duration `yaml:"keepalive"`
	ConnectRetry time.Duration `yaml:"connect_retry"`
}

type anycastVIPConfig struct {
	Prefix       string              `yaml:"prefix"`
	Communities  []string            `yaml:"communities"`
	MED          uint32              `yaml:"med"`
	DrainMED     uint32              `yaml:"drain_med"`
	DrainPrepend int                 `yaml:"drain_prepend"`
	Interval     time.Duration       `yaml:"interval"`
	Rise         int                 `yaml:"rise"`
	Fall         int                 `yaml:"fall"`
	Healthy      anycastChecksConfig `yaml:"healthy"`  // all must pass to announce
	Degraded     anycastChecksConfig `yaml:"degraded"` // one failing de-prefers
}

// anycastChecksConfig lists local health conditions.
type anycastChecksConfig struct {
	DNS       *dnsCheckConfig   `yaml:"dns"`       // a real query to this gslbd
	Endpoints []string          `yaml:"endpoints"` // GSLB endpoints that must be up
	Pools     map[string]string `yaml:"pools"`     // pool -> min healthy ("1", "50%")
	TCP       []string          `yaml:"tcp"`       // "addr:port" of the site's L4/L7 tier
	HTTP      []string          `yaml:"http"`      // "http://addr:port/path", 2xx-3xx passes
}

type dnsCheckConfig struct {
	Name string `yaml:"name"`
	Type string `yaml:"type"` // A
}

// newAnnouncer builds the announcer and its VIP monitor from the config;
// nil when the config has no anycast section.
func (d *daemon) newAnnouncer(ac anycastConfig) (*anycast.Announcer, *anycast.Monitor, error) {
	if ac.RouterID == "" && len(ac.Peers) == 0 && len(ac.VIPs) == 0 {
		return nil, nil, nil
	}
	cfg := anycast.Config{LocalASN: ac.LocalASN, ListenPort: -1, Logger: d.log}
	var err error
	if cfg.RouterID, err = parseAddr("anycast.router_id", ac.RouterID, true); err != nil {
		return nil, nil, err
	}
	if ac.ListenPort != nil {
		cfg.ListenPort = *ac.ListenPort
	}
	if cfg.NextHop, err = parseAddr("anycast.next_hop", ac.NextHop, false); err != nil {
		return nil, nil, err
	}
	if cfg.NextHop6, err = parseAddr("anycast.next_hop6", ac.NextHop6, false); err != nil {
		return nil, nil, err
	}
	for i, p := range ac.Peers {
		path := fmt.Sprintf("anycast.peers[%d]", i)
		pc := anycast.PeerConfig{ASN: p.ASN, Port: p.Port, Password: p.Password, Multihop: p.Multihop,
			HoldTime: p.HoldTime, Keepalive: p.Keepalive, ConnectRetry: p.ConnectRetry}
		if pc.Address, err = parseAddr(path+".address", p.Address, true); err != nil {
			return nil, nil, err
		}
		if pc.LocalAddress, err = parseAddr(path+".local_address", p.LocalAddress, false); err != nil {
			return nil, nil, err
		}
		cfg.Peers = append(cfg.Peers, pc)
	}
	a, err := anycast.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	mc := anycast.MonitorConfig{Logger: d.log, Guard: func(p netip.Prefix) (bool, bool) {
		if d.ops == nil {
			return false, false
		}
		return d.ops.guard(p)
	}}
	for i, v := range ac.VIPs {
		p, err := d.vipPolicy(fmt.Sprintf("anycast.vips[%d]", i), v)
		if err != nil {
			return nil, nil, err
		}
		mc.Policies = append(mc.Policies, p)
	}
	m, err := anycast.NewMonitor(a, mc)
	if err != nil {
		return nil, nil, err
	}
	d.reg.MustRegister(a.Collector())
	return a, m, nil
}

func parseAddr(path, s string, required bool) (netip.Addr, error) {
	if s == "" {
		if required {
			return netip.Addr{}, fmt.Errorf("%s: missing", path)
		}
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%s: %q is not an address", path, s)
	}
	return a, nil
}

func (d *daemon) vipPolicy(path string, v anycastVIPConfig) (anycast.VIPPolicy, error) {
	p := anycast.VIPPolicy{Interval: v.Interval, Rise: v.Rise, Fall: v.Fall}
	pfx, err := gslb.ParsePrefix(v.Prefix)
	if err != nil {
		return p, fmt.Errorf("%s.prefix: %w", path, err)
	}
	p.VIP = anycast.VIP{Prefix: pfx, Communities: v.Communities, MED: v.MED, DrainMED: v.DrainMED, DrainPrepend: v.DrainPrepend}
	if p.Healthy, err = d.checks(path+".healthy", v.Healthy); err != nil {
		return p, err
	}
	if p.Degraded, err = d.checks(path+".degraded", v.Degraded); err != nil {
		return p, err
	}
	return p, nil
}

// checks turns a checks section into anycast checks.
func (d *daemon) checks(path string, cc anycastChecksConfig) ([]anycast.Check, error) {
	var out []anycast.Check
	if cc.DNS != nil {
		self := func() netip.AddrPort {
			if addrs := d.server.Addrs(); len(addrs) > 0 {
				return loopbackFor(addrs[0])
			}
			return netip.AddrPort{}
		}
		fn, err := dnsserver.SelfCheck(self, cc.DNS.Name, cmp.Or(cc.DNS.Type, "A"))
		if err != nil {
			return nil, fmt.Errorf("%s.dns: %w", path, err)
		}
		out = append(out, anycast.Check{Name: "dns " + cc.DNS.Name, Fn: fn})
	}
	eng := d.gslb.engine
	for _, name := range cc.Endpoints {
		out = append(out, anycast.Check{Name: "endpoint " + name, Fn: func(context.Context) (bool, string) {
			up, known := eng.EndpointUp(name)
			switch {
			case !known:
				return false, "no such GSLB endpoint"
			case !up:
				return false, "down"
			}
			return true, ""
		}})
	}
	for pool, minStr := range cc.Pools {
		count, pct, err := gslb.ParseThreshold(cmp.Or(minStr, "1"))
		if err != nil {
			return nil, fmt.Errorf("%s.pools.%s: %w", path, pool, err)
		}
		out = append(out, anycast.Check{Name: "pool " + pool, Fn: func(context.Context) (bool, string) {
			up, total, known := eng.PoolHealth(pool)
			if !known {
				return false, "no such GSLB pool"
			}
			if up == 0 || up < count || float64(up) < pct/100*float64(total) {
				return false, strconv.Itoa(up) + " of " + strconv.Itoa(total) + " up, need " + minStr
			}
			return true, ""
		}})
	}
	for i, hp := range cc.TCP {
		ap, err := netip.ParseAddrPort(hp)
		if err != nil {
			return nil, fmt.Errorf("%s.tcp[%d]: %q is not address:port", path, i, hp)
		}
		out = append(out, d.probeCheck("tcp "+hp, health.Target{Addr: ap.Addr(), Monitor: health.Monitor{Kind: health.KindTCP, Port: ap.Port()}}))
	}
	for i, raw := range cc.HTTP {
		t, err := httpTarget(raw)
		if err != nil {
			return nil, fmt.Errorf("%s.http[%d]: %w", path, i, err)
		}
		out = append(out, d.probeCheck("http "+raw, t))
	}
	return out, nil
}

func httpTarget(raw string) (health.Target, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" {
		return health.Target{}, fmt.Errorf("%q is not an http(s) URL", raw)
	}
	ap, err := netip.ParseAddrPort(u.Host)
	if err != nil {
		a, aerr := netip.ParseAddr(u.Hostname())
		if aerr != nil {
			return health.Target{}, fmt.Errorf("%q: the host must be an IP address", raw)
		}
		ap = netip.AddrPortFrom(a, 0)
	}
	m := health.Monitor{Kind: health.Kind(u.Scheme), Port: ap.Port(), Path: cmp.Or(u.RequestURI(), "/")}
	if err := m.Validate(); err != nil {
		return health.Target{}, err
	}
	return health.Target{Addr: ap.Addr(), Monitor: m}, nil
}

// probeCheck runs one probe of the health checker per round.
func (d *daemon) probeCheck(name string, t health.Target) anycast.Check {
	return anycast.Check{Name: name, Fn: func(ctx context.Context) (bool, string) {
		r, err := d.gslb.checker.Check(ctx, t)
		if err != nil {
			return false, err.Error()
		}
		if !r.OK {
			return false, r.Reason
		}
		return true, ""
	}}
}

// loopbackFor is where the self-check sends its query: the listen address,
// or loopback of its family when it is a wildcard.
func loopbackFor(ap netip.AddrPort) netip.AddrPort {
	if ap.Addr().IsUnspecified() {
		if ap.Addr().Is4() {
			return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), ap.Port())
		}
		return netip.AddrPortFrom(netip.IPv6Loopback(), ap.Port())
	}
	return ap
}
