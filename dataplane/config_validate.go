package dataplane

import (
	"bytes"
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// validator collects problems while it converts the file format.
type validator struct {
	problems []string
}

func (v *validator) addf(path, format string, args ...any) {
	v.problems = append(v.problems, path+": "+fmt.Sprintf(format, args...))
}

func (v *validator) config(fc *fileConfig) *Config {
	c := &Config{
		Site: fc.Site, Interfaces: fc.Interfaces, PinPath: cmp.Or(fc.PinPath, DefaultPinPath), Generic: fc.Generic,
		ConntrackSize: DefaultConntrackSize, StateFile: DefaultStateFile, MaglevSize: DefaultMaglevSize,
		APIListen: cmp.Or(fc.API.Listen, DefaultAPIListen), LogFormat: cmp.Or(fc.Log.Format, "text"),
	}
	if strings.TrimSpace(c.Site) == "" {
		v.addf("site", "required: the name of this site in the GSLB configuration")
	}
	v.interfaces(c.Interfaces)
	c.Mode = v.mode("mode", fc.Mode, ModeIPIP)
	if !strings.HasPrefix(c.PinPath, "/") {
		v.addf("pin_path", "%q is not an absolute path", c.PinPath)
	}
	c.TunnelSource4 = v.tunnelSource("tunnel_source4", fc.TunnelSource4, true)
	c.TunnelSource6 = v.tunnelSource("tunnel_source6", fc.TunnelSource6, false)
	if fc.ConntrackSize != nil {
		if n := *fc.ConntrackSize; n < 1024 || n > 1<<28 {
			v.addf("conntrack_size", "%d is out of range 1024..%d", n, 1<<28)
		} else {
			c.ConntrackSize = n
		}
	}
	if fc.StateFile != nil {
		c.StateFile = *fc.StateFile
		if c.StateFile != "" && !strings.HasPrefix(c.StateFile, "/") {
			v.addf("state_file", "%q is not an absolute path", c.StateFile)
		}
	}
	if fc.Maglev.Seed != nil {
		c.MaglevSeed = *fc.Maglev.Seed
	}
	v.maglevSize(c, fc.Maglev.Size)
	if _, port, err := net.SplitHostPort(c.APIListen); err != nil {
		v.addf("api.listen", "%q is not host:port", c.APIListen)
	} else if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		v.addf("api.listen", "%q: port %q is not 0..65535 (0: any free port)", c.APIListen, port)
	}
	c.Feed = v.feed(fc.Feed)
	if err := c.LogLevel.UnmarshalText([]byte(fc.Log.Level)); err != nil && fc.Log.Level != "" {
		v.addf("log.level", "%q is not one of debug, info, warn, error", fc.Log.Level)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		v.addf("log.format", "%q is not text or json", c.LogFormat)
	}
	c.VIPs = v.vips(fc.VIPs, c.Mode)
	v.crossChecks(c, fc)
	return c
}

func (v *validator) vips(vfs []vipFile, defMode Mode) []VIPConfig {
	var out []VIPConfig
	seen := make(map[VIP]int)
	for i, vf := range vfs {
		path := fmt.Sprintf("vips[%d]", i)
		vc, ok := v.vip(path, vf, defMode)
		if !ok {
			continue
		}
		if j, dup := seen[vc.VIP]; dup {
			v.addf(path, "%s is already defined by vips[%d]", vc.VIP, j)
			continue
		}
		seen[vc.VIP] = i
		out = append(out, vc)
	}
	return out
}

func (v *validator) interfaces(ifaces []string) {
	if len(ifaces) == 0 {
		v.addf("interfaces", "required: at least one interface to attach XDP to")
	}
	seen := make(map[string]bool)
	for i, name := range ifaces {
		switch {
		case name == "" || len(name) > 15 || strings.ContainsAny(name, "/ \t\n:"):
			v.addf(fmt.Sprintf("interfaces[%d]", i), "%q is not a valid interface name", name)
		case seen[name]:
			v.addf(fmt.Sprintf("interfaces[%d]", i), "%q is listed twice", name)
		}
		seen[name] = true
	}
}

func (v *validator) mode(path, s string, def Mode) Mode {
	switch s {
	case "":
		return def
	case "ipip":
		return ModeIPIP
	case "dsr":
		return ModeDSR
	}
	v.addf(path, "%q is not ipip or dsr", s)
	return def
}

// tunnelSource parses a prefix, or an address as a one-address prefix.
func (v *validator) tunnelSource(path, s string, want4 bool) netip.Prefix {
	if s == "" {
		return netip.Prefix{}
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		a, aerr := netip.ParseAddr(s)
		if aerr != nil {
			v.addf(path, "%q is not a prefix or an address", s)
			return netip.Prefix{}
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	family := "IPv6"
	if want4 {
		family = "IPv4"
	}
	switch {
	case p.Addr().Is4() != want4 || p.Addr().Is4In6():
		v.addf(path, "%s is not an %s prefix", s, family)
	case p != p.Masked():
		v.addf(path, "%s has bits set past the prefix length (did you mean %s?)", s, p.Masked())
	}
	return p
}

func (v *validator) maglevSize(c *Config, size *int) {
	if size == nil {
		return
	}
	switch n := *size; {
	case n < 2 || n > MaxMaglevSize:
		v.addf("maglev.size", "%d is out of range 2..%d", n, MaxMaglevSize)
	case !isPrime(uint32(n)):
		v.addf("maglev.size", "%d is not prime (the next prime is %d)", n, nextPrime(uint32(n)))
	default:
		c.MaglevSize = uint32(n)
	}
}

func (v *validator) feed(f feedFile) FeedSettings {
	s := FeedSettings{Interval: DefaultFeedInterval, MaxPrefixes: DefaultFeedMaxPrefixes, MaxAge: DefaultFeedMaxAge, Alpha: DefaultFeedAlpha}
	if f.Interval != 0 {
		if f.Interval < time.Second {
			v.addf("feed.interval", "%s is shorter than 1s", f.Interval)
		}
		s.Interval = f.Interval
	}
	if f.MaxPrefixes != nil {
		if n := *f.MaxPrefixes; n < 1 || n > 1<<24 {
			v.addf("feed.max_prefixes", "%d is out of range 1..%d", n, 1<<24)
		} else {
			s.MaxPrefixes = n
		}
	}
	if f.MaxAge != 0 {
		s.MaxAge = f.MaxAge
		if f.MaxAge < s.Interval {
			v.addf("feed.max_age", "%s is shorter than feed.interval (%s)", f.MaxAge, s.Interval)
		}
	}
	if f.EWMAAlpha != nil {
		if a := *f.EWMAAlpha; !(a > 0 && a <= 1) {
			v.addf("feed.ewma_alpha", "%v is not in (0, 1]", a)
		} else {
			s.Alpha = a
		}
	}
	return s
}

func (v *validator) vip(path string, vf vipFile, defMode Mode) (VIPConfig, bool) {
	n := len(v.problems)
	vc := VIPConfig{Mode: v.mode(path+".mode", vf.Mode, defMode)}
	vc.VIP.Addr = v.addr(path+".address", vf.Address)
	switch vf.Protocol {
	case "", "tcp":
		vc.VIP.Proto = ProtoTCP
	case "udp":
		vc.VIP.Proto = ProtoUDP
	default:
		v.addf(path+".protocol", "%q is not tcp or udp", vf.Protocol)
	}
	portOK := true
	if vf.Port != nil {
		if p := *vf.Port; p < 0 || p > 65535 {
			portOK = false
			v.addf(path+".port", "%d is out of range 0..65535 (0 = every port)", p)
		} else {
			vc.VIP.Port = uint16(p)
		}
	}
	if len(vf.Backends) == 0 {
		v.addf(path+".backends", "required: at least one backend")
	}
	seen := make(map[netip.Addr]int)
	for i, bf := range vf.Backends {
		bpath := fmt.Sprintf("%s.backends[%d]", path, i)
		if a, err := netip.ParseAddr(bf.Address); err == nil {
			if j, dup := seen[a.Unmap()]; dup {
				v.addf(bpath+".address", "%s is already backends[%d]", a, j)
				continue
			}
			seen[a.Unmap()] = i
		}
		if bc, ok := v.backend(bpath, bf, vc, portOK); ok {
			vc.Backends = append(vc.Backends, bc)
		}
	}
	return vc, len(v.problems) == n
}

// addr parses a required unicast address.
func (v *validator) addr(path, s string) netip.Addr {
	if s == "" {
		v.addf(path, "required")
		return netip.Addr{}
	}
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		v.addf(path, "%q is not an IP address", s)
	case a.Zone() != "":
		v.addf(path, "%s: zones are not allowed", s)
	case a.Unmap().IsUnspecified() || a.Unmap().IsMulticast() || a.Unmap() == netip.IPv4Unspecified() || a.Unmap().IsLoopback():
		v.addf(path, "%s is not a usable unicast address", s)
	}
	return a.Unmap()
}

// backend converts one backend; vipPortOK is false when the VIP's port is
// invalid (then a check without a port is not reported too).
func (v *validator) backend(path string, bf backendFile, vc VIPConfig, vipPortOK bool) (BackendConfig, bool) {
	n := len(v.problems)
	bc := BackendConfig{Addr: v.addr(path+".address", bf.Address), Weight: 1}
	if bc.Addr.IsValid() && vc.VIP.Addr.IsValid() {
		switch {
		case bc.Addr == vc.VIP.Addr:
			v.addf(path+".address", "%s is the VIP itself", bc.Addr)
		case vc.Mode == ModeIPIP && bc.Addr.Is4() != vc.VIP.Addr.Is4():
			v.addf(path+".address", "%s: an ipip backend must be of the VIP's address family (%s)", bc.Addr, vc.VIP.Addr)
		}
	}
	if bf.Weight != nil {
		if w := *bf.Weight; w < 0 || w > MaxWeight {
			v.addf(path+".weight", "%d is out of range 0..%d (0 = drained)", w, MaxWeight)
		} else {
			bc.Weight = uint32(w)
		}
	}
	switch {
	case vc.Mode == ModeDSR && bf.MAC == "":
		v.addf(path+".mac", "required in dsr mode: the proxy's MAC address on the shared segment")
	case vc.Mode == ModeIPIP && bf.MAC != "":
		v.addf(path+".mac", "only used in dsr mode (this VIP is ipip)")
	case bf.MAC != "":
		mac, err := net.ParseMAC(bf.MAC)
		switch {
		case err != nil || len(mac) != 6:
			v.addf(path+".mac", "%q is not an Ethernet MAC address (02:00:00:00:00:01)", bf.MAC)
		case mac[0]&1 != 0 || bytes.Equal(mac, make(net.HardwareAddr, 6)):
			v.addf(path+".mac", "%s is not a unicast MAC address", mac)
		default:
			bc.MAC = mac
		}
	}
	bc.Check = v.check(path+".check", bf.Check, vc.VIP.Port, vipPortOK)
	return bc, len(v.problems) == n
}

func (v *validator) check(path string, cf checkFile, vipPort uint16, vipPortOK bool) Check {
	c := Check{
		Type: CheckType(cmp.Or(cf.Type, string(CheckTCP))), Port: vipPort, Interval: cmp.Or(cf.Interval, DefaultCheckInterval),
		Rise: cmp.Or(cf.Rise, DefaultCheckRise), Fall: cmp.Or(cf.Fall, DefaultCheckFall),
	}
	switch c.Type {
	case CheckTCP, CheckHTTP:
	case CheckNone:
		if cf.Address != "" || cf.Port != nil || cf.Path != "" || cf.Host != "" || cf.ExpectStatus != 0 || cf.Interval != 0 || cf.Timeout != 0 || cf.Rise != 0 || cf.Fall != 0 {
			v.addf(path, "type none takes no other settings")
		}
		return Check{Type: CheckNone}
	default:
		v.addf(path+".type", "%q is not tcp, http or none", cf.Type)
		return c
	}
	if cf.Address != "" {
		a, err := netip.ParseAddr(cf.Address)
		if err != nil || a.Zone() != "" || a.Unmap().IsUnspecified() || a.IsMulticast() {
			v.addf(path+".address", "%q is not a unicast IP address", cf.Address)
		}
		c.Address = a.Unmap()
	}
	if cf.Port != nil {
		if p := *cf.Port; p < 1 || p > 65535 {
			v.addf(path+".port", "%d is out of range 1..65535", p)
		} else {
			c.Port = uint16(p)
		}
	} else if vipPort == 0 && vipPortOK {
		v.addf(path+".port", "required: the VIP has every port, so the check needs one")
	}
	v.httpCheck(path, cf, &c)
	if c.Interval < 100*time.Millisecond {
		v.addf(path+".interval", "%s is shorter than 100ms", c.Interval)
	}
	c.Timeout = cmp.Or(cf.Timeout, c.Interval/2)
	if c.Timeout <= 0 || c.Timeout > c.Interval {
		v.addf(path+".timeout", "%s is not in (0, interval %s]", c.Timeout, c.Interval)
	}
	if c.Rise < 1 || c.Rise > 100 {
		v.addf(path+".rise", "%d is out of range 1..100", c.Rise)
	}
	if c.Fall < 1 || c.Fall > 100 {
		v.addf(path+".fall", "%d is out of range 1..100", c.Fall)
	}
	return c
}

// crossChecks are the rules that span sections.
func (v *validator) crossChecks(c *Config, fc *fileConfig) {
	// From the file, so that a VIP with other problems counts too.
	need4, need6 := "", ""
	for i, vf := range fc.VIPs {
		a, err := netip.ParseAddr(vf.Address)
		if err != nil || (vf.Mode == "" && c.Mode != ModeIPIP) || (vf.Mode != "" && vf.Mode != "ipip") {
			continue
		}
		at := fmt.Sprintf("vips[%d] (%s)", i, a.Unmap())
		if a.Unmap().Is4() && need4 == "" {
			need4 = at
		}
		if a.Unmap().Is6() && need6 == "" {
			need6 = at
		}
	}
	if need4 != "" && !c.TunnelSource4.IsValid() && fc.TunnelSource4 == "" {
		v.addf("tunnel_source4", "required: %s is an IPv4 ipip VIP", need4)
	}
	if need6 != "" && !c.TunnelSource6.IsValid() && fc.TunnelSource6 == "" {
		v.addf("tunnel_source6", "required: %s is an IPv6 ipip VIP", need6)
	}
	for i, vc := range c.VIPs {
		weighted := 0
		for _, b := range vc.Backends {
			if b.Weight > 0 {
				weighted++
			}
		}
		if need := uint64(weighted) * MaglevMinRatio; uint64(c.MaglevSize) < need {
			v.addf("maglev.size", "%d is less than %d x %d weighted backends of vips[%d] (%s); use a prime >= %d",
				c.MaglevSize, MaglevMinRatio, weighted, vipIndex(fc, vc.VIP, i), vc.VIP, nextPrime(uint32(min(need, MaxMaglevSize))))
		}
	}
}

// vipIndex finds the position of v in the file (c.VIPs skips invalid
// entries, so positions may differ).
func vipIndex(fc *fileConfig, v VIP, fallback int) int {
	for i, vf := range fc.VIPs {
		if a, err := netip.ParseAddr(vf.Address); err == nil && a.Unmap() == v.Addr {
			proto := ProtoTCP
			if vf.Protocol == "udp" {
				proto = ProtoUDP
			}
			port := 0
			if vf.Port != nil {
				port = *vf.Port
			}
			if proto == v.Proto && port == int(v.Port) {
				return i
			}
		}
	}
	return fallback
}

// httpCheck converts the http-only settings of a check.
func (v *validator) httpCheck(path string, cf checkFile, c *Check) {
	if c.Type != CheckHTTP {
		for _, f := range []struct {
			field string
			set   bool
		}{{"path", cf.Path != ""}, {"host", cf.Host != ""}, {"expect_status", cf.ExpectStatus != 0}} {
			if f.set {
				v.addf(path+"."+f.field, "only used by http checks")
			}
		}
		return
	}
	c.Path, c.Host, c.ExpectStatus = cmp.Or(cf.Path, "/"), cf.Host, cmp.Or(cf.ExpectStatus, 200)
	if !strings.HasPrefix(c.Path, "/") || strings.ContainsAny(c.Path, " \t\r\n") {
		v.addf(path+".path", "%q is not an absolute URL path", c.Path)
	}
	if strings.ContainsAny(c.Host, " \t\r\n/") {
		v.addf(path+".host", "%q is not a host name", c.Host)
	}
	if c.ExpectStatus < 100 || c.ExpectStatus > 599 {
		v.addf(path+".expect_status", "%d is not an HTTP status (100..599)", c.ExpectStatus)
	}
}
