package gslb

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/gslbd/gslbd/geo"
	"github.com/gslbd/gslbd/gslb/health"
)

// Fixtures shared by the decision tests: a world of sites and pools, a fake
// geolocation database, a fake clock, and helpers to build health and read
// answers back as endpoint names.

// t0 is the fake clock's start.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// baseYAML is the shared world of the decision tests: five sites, a
// monitored pool spanning them (v4 and v6), a tiered pool, a weighted pool
// and an unmonitored backup pool. Tests append their records (and ecs).
const baseYAML = `
sites:
  lon: {lat: 51.5074, lon: -0.1278, country: GB, continent: EU}
  fra: {lat: 50.1109, lon: 8.6821, country: DE, continent: EU}
  ams: {lat: 52.3676, lon: 4.9041, country: NL, continent: EU}
  nyc: {lat: 40.7128, lon: -74.0060, country: US, continent: NA}
  sgp: {lat: 1.3521, lon: 103.8198, country: SG, continent: AS}
  dark: {country: AQ, continent: AN}
monitors:
  tcp80: {kind: tcp, port: 80}
pools:
  web:
    monitor: tcp80
    endpoints:
      - {name: lon1, address: 192.0.2.1, site: lon}
      - {name: lon2, address: 192.0.2.2, site: lon}
      - {name: fra1, address: 192.0.2.11, site: fra}
      - {name: fra2, address: 192.0.2.12, site: fra}
      - {name: ams1, address: 192.0.2.21, site: ams}
      - {name: nyc1, address: 192.0.2.31, site: nyc}
      - {name: sgp1, address: 192.0.2.41, site: sgp}
      - {name: lon6, address: "2001:db8:ffff::1", site: lon}
      - {name: fra6, address: "2001:db8:ffff::11", site: fra}
  tiered:
    monitor: tcp80
    endpoints:
      - {name: t1a, address: 192.0.2.101, site: fra, tier: 1}
      - {name: t0a, address: 192.0.2.100, site: lon, tier: 0}
      - {name: t2a, address: 192.0.2.102, site: nyc, tier: 2}
      - {name: t1b, address: 192.0.2.103, site: lon, tier: 1}
  backup:
    endpoints:
      - {name: bak1, address: 192.0.2.200, site: dark}
      - {name: bak6, address: "2001:db8:ffff::200", site: dark}
  v4only:
    endpoints:
      - {name: only4, address: 192.0.2.250, site: lon}
`

// fakeNet is one network of the fake geolocation database.
type fakeNet struct {
	net netip.Prefix
	loc geo.Location
}

// fakeGeo is a Locator over a few networks: longest match, Network set to
// the matched prefix, nothing (invalid Network) when no network matches.
type fakeGeo []fakeNet

func (f fakeGeo) Lookup(a netip.Addr) geo.Result {
	best := -1
	for i := range f {
		if f[i].net.Contains(a) && (best < 0 || f[i].net.Bits() > f[best].net.Bits()) {
			best = i
		}
	}
	if best < 0 {
		return geo.Result{}
	}
	return geo.Result{Location: f[best].loc, Network: f[best].net, Found: true}
}

// fixedGeo answers every lookup with the same result.
type fixedGeo geo.Result

func (f fixedGeo) Lookup(netip.Addr) geo.Result { return geo.Result(f) }

var testGeo = fakeGeo{
	{pfx("81.2.69.0/24"), geo.Location{Continent: "EU", Country: "GB", Subdivision: "ENG", City: "London", Lat: 51.5142, Lon: -0.0931, HasCoords: true}},
	{pfx("81.2.70.0/24"), geo.Location{Continent: "EU", Country: "GB", Subdivision: "SCT", City: "Edinburgh", Lat: 55.9533, Lon: -3.1883, HasCoords: true}},
	{pfx("198.51.100.0/24"), geo.Location{Continent: "EU", Country: "DE", Subdivision: "HE", City: "Frankfurt", Lat: 50.1109, Lon: 8.6821, HasCoords: true}},
	{pfx("90.84.0.0/16"), geo.Location{Continent: "EU", Country: "FR", Subdivision: "IDF", City: "Paris", Lat: 48.8566, Lon: 2.3522, HasCoords: true}},
	{pfx("203.0.113.0/24"), geo.Location{Continent: "NA", Country: "US", Subdivision: "NY", City: "New York", Lat: 40.7306, Lon: -73.9352, HasCoords: true}},
	{pfx("100.64.0.0/16"), geo.Location{Continent: "NA", Country: "US", Subdivision: "IL", City: "Chicago", Lat: 41.8781, Lon: -87.6298, HasCoords: true}},
	{pfx("100.65.0.0/16"), geo.Location{Continent: "NA", Country: "US", ASN: 64500}},
	{pfx("60.0.0.0/12"), geo.Location{Continent: "AS", Country: "JP"}}, // no coordinates
	{pfx("2001:db8:4c::/48"), geo.Location{Continent: "EU", Country: "GB", Subdivision: "ENG", Lat: 51.5142, Lon: -0.0931, HasCoords: true}},
	{pfx("2001:db8:de::/48"), geo.Location{Continent: "EU", Country: "DE", Lat: 50.1109, Lon: 8.6821, HasCoords: true}},
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func addr(s string) netip.Addr  { return netip.MustParseAddr(s) }

// resolver is a resolver address the fake database knows nothing about.
var resolver = addr("9.9.9.9")

func compileYAML(t testing.TB, text string) *Config {
	t.Helper()
	fc, err := ParseConfig("gslb.yaml", []byte(text))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	cfg, err := Compile(fc)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return cfg
}

// newTestEngine compiles baseYAML+extra and serves it with testGeo, a fake
// clock at t0 and every monitored endpoint up.
func newTestEngine(t testing.TB, extra string) (*Engine, *Config, *health.FakeClock) {
	t.Helper()
	cfg := compileYAML(t, baseYAML+extra)
	clk := health.NewFakeClock(t0)
	e := NewEngine(EngineConfig{Clock: clk})
	e.SetConfig(cfg)
	e.SetGeo(testGeo)
	return e, cfg, clk
}

// healthOf builds statuses for every monitored endpoint of cfg: up unless
// named in down, with NextChange from next.
func healthOf(t testing.TB, cfg *Config, down []string, next map[string]time.Time) map[health.TargetKey]health.Status {
	t.Helper()
	st := map[health.TargetKey]health.Status{}
	known := map[string]bool{}
	for _, ep := range cfg.Endpoints {
		if ep.Target == nil {
			continue
		}
		known[ep.Name] = true
		st[ep.Target.Key()] = health.Status{Up: !slices.Contains(down, ep.Name), NextChange: next[ep.Name], Probed: true}
	}
	for _, n := range down {
		if !known[n] {
			t.Fatalf("healthOf: %q is not a monitored endpoint", n)
		}
	}
	for n := range next {
		if !known[n] {
			t.Fatalf("healthOf: %q is not a monitored endpoint", n)
		}
	}
	return st
}

// epNames maps answered addresses back to endpoint names.
func epNames(cfg *Config, addrs []netip.Addr) []string {
	out := []string{}
	for _, a := range addrs {
		name := "?" + a.String()
		for _, ep := range cfg.Endpoints {
			if ep.Addr == a {
				name = ep.Name
				break
			}
		}
		out = append(out, name)
	}
	return out
}

func decide(e *Engine, q Query) Answer {
	var a Answer
	e.Decide(q, &a)
	return a
}

// ecsQ is an A query for name from resolver with ECS source ecs.
func ecsQ(name, ecs string) Query {
	return Query{Name: name, Resolver: resolver, ECS: pfx(ecs)}
}
