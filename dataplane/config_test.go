package dataplane

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

const fullYAML = `
site: lon
interfaces: [eth0, eth1]
mode: ipip
pin_path: /sys/fs/bpf/lbd-test
generic: true
tunnel_source4: 198.18.200.0/24
tunnel_source6: 2001:db8:ff::/64
conntrack_size: 2000000
state_file: /var/lib/lbd/test.json
maglev: {size: 65521, seed: 1234}
api: {listen: "127.0.0.1:9301"}
feed: {interval: 5s, max_prefixes: 1000, max_age: 10m, ewma_alpha: 0.2}
log: {level: debug, format: json}
vips:
  - address: 192.0.2.10
    protocol: tcp
    port: 80
    backends:
      - address: 198.18.1.2
        weight: 3
        check: {type: http, path: /healthz, host: www.example, expect_status: 204, interval: 2s, timeout: 300ms, rise: 3, fall: 4}
      - address: 198.18.1.3
        check: {address: 198.19.0.3, port: 8080}
  - address: 2001:db8::10
    protocol: udp
    mode: dsr
    backends:
      - {address: 2001:db8::1:2, mac: "02:00:00:00:01:02", check: {type: none}}
`

func TestConfigFull(t *testing.T) {
	c := mustParse(t, fullYAML)
	if c.Site != "lon" || len(c.Interfaces) != 2 || c.Mode != ModeIPIP || c.PinPath != "/sys/fs/bpf/lbd-test" || !c.Generic ||
		c.TunnelSource4 != netip.MustParsePrefix("198.18.200.0/24") || c.TunnelSource6 != netip.MustParsePrefix("2001:db8:ff::/64") ||
		c.ConntrackSize != 2000000 || c.StateFile != "/var/lib/lbd/test.json" || c.MaglevSize != 65521 || c.MaglevSeed != 1234 ||
		c.APIListen != "127.0.0.1:9301" || c.LogLevel.String() != "DEBUG" || c.LogFormat != "json" {
		t.Errorf("top level %+v", c)
	}
	if c.Feed != (FeedSettings{Interval: 5 * time.Second, MaxPrefixes: 1000, MaxAge: 10 * time.Minute, Alpha: 0.2}) {
		t.Errorf("feed %+v", c.Feed)
	}
	if len(c.VIPs) != 2 {
		t.Fatalf("%d vips", len(c.VIPs))
	}
	v := c.VIPs[0]
	if v.VIP.String() != "tcp/192.0.2.10:80" || v.Mode != ModeIPIP || len(v.Backends) != 2 {
		t.Errorf("vip 0 %+v", v)
	}
	want := Check{Type: CheckHTTP, Port: 80, Path: "/healthz", Host: "www.example", ExpectStatus: 204, Interval: 2 * time.Second, Timeout: 300 * time.Millisecond, Rise: 3, Fall: 4}
	if b := v.Backends[0]; b.Weight != 3 || b.Check != want {
		t.Errorf("backend 0 %+v", b)
	}
	// Defaults, and a check on another address and port.
	want = Check{Type: CheckTCP, Address: netip.MustParseAddr("198.19.0.3"), Port: 8080, Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 2, Fall: 2}
	if b := v.Backends[1]; b.Weight != 1 || b.Check != want || b.HealthTarget().Addr != want.Address {
		t.Errorf("backend 1 %+v", b)
	}
	v = c.VIPs[1]
	if v.VIP.String() != "udp/[2001:db8::10]:*" || v.Mode != ModeDSR || v.Backends[0].MAC.String() != "02:00:00:00:01:02" || v.Backends[0].Check.Type != CheckNone {
		t.Errorf("vip 1 %+v", v)
	}
	if got := len(c.HealthTargets()); got != 3 {
		t.Errorf("%d health targets", got)
	}
}

func TestConfigDefaults(t *testing.T) {
	c := mustParse(t, "site: lon\ninterfaces: [eth0]\n")
	if c.Mode != ModeIPIP || c.PinPath != DefaultPinPath || c.StateFile != DefaultStateFile || c.MaglevSize != DefaultMaglevSize ||
		c.APIListen != DefaultAPIListen || c.ConntrackSize != DefaultConntrackSize || c.Feed.Interval != 10*time.Second ||
		c.Feed.MaxPrefixes != 65536 || c.LogFormat != "text" {
		t.Errorf("defaults %+v", c)
	}
}

// TestConfigErrors: every problem is reported at once, each naming its
// field.
func TestConfigErrors(t *testing.T) {
	y := `
interfaces: [eth0, eth0, "bad/name"]
mode: gre
pin_path: relative
tunnel_source4: 2001:db8::/64
tunnel_source6: 2001:db8::1/64
conntrack_size: 10
maglev: {size: 65536}
api: {listen: "localhost"}
feed: {interval: 100ms, ewma_alpha: 2}
log: {level: loud, format: xml}
vips:
  - address: 192.0.2.10
    port: 70000
    protocol: sctp
    backends:
      - {address: 198.18.1.2, weight: 1001}
      - {address: 198.18.1.2}
      - {address: 2001:db8::2}
      - {address: 198.18.1.4, mac: "02:00:00:00:00:01"}
      - {address: nope}
      - {address: 198.18.1.6, check: {type: http, expect_status: 42, path: x, interval: 50ms, timeout: 1s, rise: 0, fall: 101}}
      - {address: 198.18.1.7, check: {type: tcp, path: /x}}
      - {address: 198.18.1.8, check: {type: icmp}}
  - address: 192.0.2.11
    mode: dsr
    backends:
      - {address: 198.18.1.2}
      - {address: 198.18.1.3, mac: "01:00:5e:00:00:01", check: {port: 80}}
      - {address: 198.18.1.4, mac: "zz", check: {type: none, port: 80}}
  - address: 192.0.2.12
  - address: 0.0.0.0
    backends: [{address: 198.18.1.2}]
`
	_, err := ParseConfig("lbd.yaml", []byte(y))
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{
		"site: required",
		`interfaces[1]: "eth0" is listed twice`,
		`interfaces[2]: "bad/name" is not a valid interface name`,
		`mode: "gre" is not ipip or dsr`,
		`pin_path: "relative" is not an absolute path`,
		"tunnel_source4: 2001:db8::/64 is not an IPv4 prefix",
		"tunnel_source6: 2001:db8::1/64 has bits set past the prefix length (did you mean 2001:db8::/64?)",
		"conntrack_size: 10 is out of range",
		"maglev.size: 65536 is not prime (the next prime is 65537)",
		`api.listen: "localhost" is not host:port`,
		"feed.interval: 100ms is shorter than 1s",
		"feed.ewma_alpha: 2 is not in (0, 1]",
		`log.level: "loud" is not one of`,
		`log.format: "xml" is not text or json`,
		"vips[0].port: 70000 is out of range 0..65535",
		`vips[0].protocol: "sctp" is not tcp or udp`,
		"vips[0].backends[0].weight: 1001 is out of range 0..1000",
		"vips[0].backends[1].address: 198.18.1.2 is already backends[0]",
		"vips[0].backends[2].address: 2001:db8::2: an ipip backend must be of the VIP's address family",
		"vips[0].backends[3].mac: only used in dsr mode",
		`vips[0].backends[4].address: "nope" is not an IP address`,
		"vips[0].backends[5].check.expect_status: 42 is not an HTTP status",
		`vips[0].backends[5].check.path: "x" is not an absolute URL path`,
		"vips[0].backends[5].check.interval: 50ms is shorter than 100ms",
		"vips[0].backends[5].check.timeout: 1s is not in (0, interval 50ms]",
		"vips[0].backends[5].check.fall: 101 is out of range 1..100",
		"vips[0].backends[6].check.path: only used by http checks",
		`vips[0].backends[7].check.type: "icmp" is not tcp, http or none`,
		"vips[1].backends[0].mac: required in dsr mode",
		"vips[1].backends[0].check.port: required: the VIP has every port",
		"vips[1].backends[1].mac: 01:00:5e:00:00:01 is not a unicast MAC address",
		`vips[1].backends[2].mac: "zz" is not an Ethernet MAC address`,
		"vips[1].backends[2].check: type none takes no other settings",
		"vips[2].backends: required: at least one backend",
		"vips[3].address: 0.0.0.0 is not a usable unicast address",
	} {
		if !containsLine(ce.Problems, want) {
			t.Errorf("missing problem %q", want)
		}
	}
	if t.Failed() {
		t.Logf("got:\n%s", err)
	}
	if !strings.HasPrefix(err.Error(), "lbd.yaml: ") {
		t.Errorf("error does not name the file: %v", err)
	}
}

func containsLine(lines []string, want string) bool {
	for _, l := range lines {
		if strings.Contains(l, want) {
			return true
		}
	}
	return false
}

func TestConfigCrossChecks(t *testing.T) {
	_, err := ParseConfig("lbd.yaml", []byte(`
site: lon
interfaces: [eth0]
maglev: {size: 211}
vips:
  - address: 192.0.2.10
    port: 80
    backends: [{address: 198.18.1.2}, {address: 198.18.1.3}, {address: 198.18.1.4, weight: 0}, {address: 198.18.1.5}]
  - address: 2001:db8::10
    port: 80
    backends: [{address: 2001:db8::2}]
`))
	for _, want := range []string{
		"lbd.yaml: tunnel_source4: required: vips[0] (192.0.2.10) is an IPv4 ipip VIP",
		"lbd.yaml: tunnel_source6: required: vips[1] (2001:db8::10) is an IPv6 ipip VIP",
		"lbd.yaml: maglev.size: 211 is less than 100 x 3 weighted backends of vips[0] (tcp/192.0.2.10:80); use a prime >= 307",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

func TestConfigYAMLErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"site: lon\nsitee: x\n", `lbd.yaml: line 2: unknown key "sitee"`},
		{"site: lon\nvips:\n  - address: 192.0.2.1\n    backends:\n      - {address: 198.18.1.2, check: {interval: 1}}\n", "lbd.yaml: line 5: cannot unmarshal !!int `1` into time.Duration"},
		{"site: [", "lbd.yaml: "},
	} {
		_, err := ParseConfig("lbd.yaml", []byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.in, err, tc.want)
		}
	}
}

func TestConfigRestartRequired(t *testing.T) {
	a := mustParse(t, fullYAML)
	b := mustParse(t, strings.Replace(strings.Replace(fullYAML, "eth0, eth1", "eth0", 1), "weight: 3", "weight: 2", 1))
	if got := strings.Join(b.RestartRequired(a), ","); got != "interfaces" {
		t.Errorf("RestartRequired = %q, want interfaces (weights reload)", got)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(fullYAML))
	f.Add([]byte(ctrlYAML))
	f.Add([]byte("site: lon\ninterfaces: [eth0]\nvips: [{address: 192.0.2.1, backends: [{address: 198.18.0.1}]}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig("fuzz.yaml", data)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("error is not a ConfigError with problems: %v", err)
			}
			return
		}
		// A valid config always gives buildable tables.
		for _, v := range c.VIPs {
			var mb []MaglevBackend
			for i, b := range v.Backends {
				mb = append(mb, MaglevBackend{ID: b.Addr.String(), Index: uint32(i), Weight: b.Weight})
			}
			if _, err := Maglev(mb, c.MaglevSize, c.MaglevSeed); err != nil {
				t.Fatalf("valid config, invalid table: %v", err)
			}
		}
	})
}
