package gslb

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

const weightedRecords = `
  wlight:
    endpoints:
      - {name: light, address: 192.0.2.150, site: lon, weight: 100}
      - {name: heavy, address: 192.0.2.151, site: fra, weight: 300}
  wzero:
    endpoints:
      - {name: drained, address: 192.0.2.160, site: lon, weight: 0}
      - {name: z1, address: 192.0.2.161, site: fra}
      - {name: z2, address: 192.0.2.162, site: ams, weight: 1}
  wallzero:
    endpoints:
      - {name: off1, address: 192.0.2.170, site: lon, weight: 0}
      - {name: off2, address: 192.0.2.171, site: fra, weight: 0}
  whash:
    endpoints:
      - {name: h1, address: 192.0.2.180, site: lon}
      - {name: h2, address: 192.0.2.181, site: fra}
      - {name: h3, address: 192.0.2.182, site: ams}
      - {name: h4, address: 192.0.2.183, site: nyc}
      - {name: h61, address: "2001:db8:ffff::180", site: lon}
      - {name: h62, address: "2001:db8:ffff::181", site: fra}
      - {name: h63, address: "2001:db8:ffff::182", site: ams}
records:
  - name: random.example.com
    pool: wlight
    chain: [weighted, first_n: 1]
  - name: zero.example.com
    pool: wzero
    chain: [weighted]
  - name: allzero.example.com
    pool: wallzero
    chain: [weighted]
  - name: hash.example.com
    pool: whash
    chain: [{weighted: {mode: hash}}, first_n: 1]
  - name: hash16.example.com
    pool: whash
    chain: [{weighted: {mode: hash, prefix_v4: 16, prefix_v6: 48}}, first_n: 1]
`

// weightedEngine serves baseYAML with the weighted pools added.
func weightedEngine(t testing.TB) (*Engine, *Config) {
	t.Helper()
	e, cfg, _ := newTestEngine(t, weightedRecords)
	return e, cfg
}

func TestWeightedRandom(t *testing.T) {
	e, cfg := weightedEngine(t)
	const n = 4000
	count := map[string]int{}
	var a Answer
	for range n {
		a.Addrs = a.Addrs[:0]
		e.Decide(Query{Name: "random.example.com.", Resolver: resolver}, &a)
		if len(a.Addrs) != 1 {
			t.Fatalf("first_n 1 answered %v", a.Addrs)
		}
		count[epNames(cfg, a.Addrs)[0]]++
	}
	// light has weight 100 of 400: expect 25%. The band is > 10 standard
	// deviations wide (sd = 0.7%), so this does not flake.
	share := float64(count["light"]) / n
	t.Logf("light %d heavy %d (%.1f%%)", count["light"], count["heavy"], share*100)
	if share < 0.15 || share > 0.35 {
		t.Errorf("light chosen %.1f%% of the time, want about 25%%", share*100)
	}
	if count["light"]+count["heavy"] != n {
		t.Errorf("unexpected endpoints: %v", count)
	}
}

func TestWeightedZero(t *testing.T) {
	e, cfg := weightedEngine(t)
	tests := []struct {
		qname string
		want  []string // as a set
	}{
		{"zero", []string{"z1", "z2"}},
		{"allzero", []string{"off1", "off2"}},
	}
	for _, tt := range tests {
		t.Run(tt.qname, func(t *testing.T) {
			for range 500 {
				a := decide(e, Query{Name: tt.qname + ".example.com.", Resolver: resolver})
				got := epNames(cfg, a.Addrs)
				slices.Sort(got)
				if !slices.Equal(got, tt.want) {
					t.Fatalf("answer = %v, want %v in some order", got, tt.want)
				}
			}
		})
	}
	// z2 (weight 1) can come first, but rarely; z1 (100) must lead mostly.
	first := map[string]int{}
	for range 1000 {
		a := decide(e, Query{Name: "zero.example.com.", Resolver: resolver})
		first[epNames(cfg, a.Addrs[:1])[0]]++
	}
	if first["z1"] < 900 {
		t.Errorf("z1 (weight 100 vs 1) first only %d of 1000 times", first["z1"])
	}
}

func TestWeightedHash(t *testing.T) {
	e, cfg := weightedEngine(t)
	tests := []struct {
		name  string
		qname string
		ipv6  bool
		ecs   func(i int) string // the i-th client subnet
		same  func(i int) string // another source inside the same hashed subnet
		scope uint8
		eps   int
	}{
		{"v4 /24", "hash", false,
			func(i int) string { return fmt.Sprintf("10.%d.%d.0/24", i/256, i%256) },
			func(i int) string { return fmt.Sprintf("10.%d.%d.77/32", i/256, i%256) }, 24, 4},
		{"v6 /56", "hash", true,
			func(i int) string { return fmt.Sprintf("2001:db8:%x:%x00::/56", i/256, i%256) },
			func(i int) string { return fmt.Sprintf("2001:db8:%x:%x42::/64", i/256, i%256) }, 56, 3},
		{"v4 /16 setting", "hash16", false,
			func(i int) string { return fmt.Sprintf("10.%d.0.0/24", i) },
			func(i int) string { return fmt.Sprintf("10.%d.200.0/24", i) }, 16, 4},
		{"v6 /48 setting", "hash16", true,
			func(i int) string { return fmt.Sprintf("2001:db8:%x::/56", i) },
			func(i int) string { return fmt.Sprintf("2001:db8:%x:ff00::/56", i) }, 48, 3},
	}
	e2, _ := weightedEngine(t) // the same config compiled again (a reload, another server)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const subnets = 256
			spread := map[string]int{}
			for i := range subnets {
				q := Query{Name: tt.qname + ".example.com.", IPv6: tt.ipv6, Resolver: resolver, ECS: pfx(tt.ecs(i))}
				a := decide(e, q)
				if len(a.Addrs) != 1 || a.Addrs[0].Is6() != tt.ipv6 {
					t.Fatalf("%s: answer %v", q.ECS, a.Addrs)
				}
				if !a.UsedECS || a.Scope != tt.scope {
					t.Fatalf("%s: scope %d (used %t), want %d", q.ECS, a.Scope, a.UsedECS, tt.scope)
				}
				for range 3 {
					if b := decide(e, q); b.Addrs[0] != a.Addrs[0] {
						t.Fatalf("%s: answered %v then %v", q.ECS, a.Addrs[0], b.Addrs[0])
					}
				}
				q2 := q
				q2.ECS = pfx(tt.same(i))
				if b := decide(e, q2); b.Addrs[0] != a.Addrs[0] {
					t.Fatalf("%s and %s are in the same hashed subnet but got %v and %v", q.ECS, q2.ECS, a.Addrs[0], b.Addrs[0])
				}
				if b := decide(e2, q); b.Addrs[0] != a.Addrs[0] {
					t.Fatalf("%s: a recompiled config answers %v, not %v", q.ECS, b.Addrs[0], a.Addrs[0])
				}
				spread[epNames(cfg, a.Addrs)[0]]++
			}
			t.Logf("spread over %d subnets: %v", subnets, spread)
			if len(spread) != tt.eps {
				t.Errorf("only %d of %d endpoints chosen: %v", len(spread), tt.eps, spread)
			}
			for name, c := range spread {
				if c < subnets/tt.eps/3 {
					t.Errorf("%s chosen for %d of %d subnets: not spread", name, c, subnets)
				}
			}
		})
	}
}

// TestWeightedHashByResolver: without ECS the resolver's own subnet is
// hashed; the scope stays 0 since no ECS was used.
func TestWeightedHashByResolver(t *testing.T) {
	e, _ := weightedEngine(t)
	a := decide(e, Query{Name: "hash.example.com.", Resolver: addr("10.9.8.7")})
	b := decide(e, Query{Name: "hash.example.com.", Resolver: addr("10.9.8.200")})
	c := decide(e, Query{Name: "hash.example.com.", Resolver: resolver, ECS: pfx("10.9.8.0/24")})
	if a.Addrs[0] != b.Addrs[0] || a.Addrs[0] != c.Addrs[0] {
		t.Errorf("10.9.8.7, 10.9.8.200 and ECS 10.9.8.0/24 got %v %v %v", a.Addrs[0], b.Addrs[0], c.Addrs[0])
	}
	if a.UsedECS || a.Scope != 0 {
		t.Errorf("no ECS: usedECS %t scope %d", a.UsedECS, a.Scope)
	}
}

func TestProximity(t *testing.T) {
	e, cfg, _ := newTestEngine(t, `
records:
  - name: near.example.com
    pool: web
    chain: [proximity]
  - name: bias.example.com
    pool: web
    chain: [{proximity: {bias: {fra: 50}}}]
  - name: malus.example.com
    pool: web
    chain: [{proximity: {bias: {lon: -80}}}]
  - name: tie.example.com
    pool: web
    chain:
      - geo: {mode: prefer, map: {"country:FR": [fra]}}
      - proximity: {tie_percent: 50}
  - name: notie.example.com
    pool: web
    chain:
      - geo: {mode: prefer, map: {"country:FR": [fra]}}
      - proximity
  - name: uptie.example.com
    pool: web
    chain: [up, {proximity: {tie_percent: 20}}]
`)
	// Distances from Paris: lon 344 km, ams 430, fra 479, nyc 5837, sgp 10730.
	// From London: lon 3, ams 358, fra 639, nyc 5567, sgp 10850.
	tests := []struct {
		name  string
		qname string
		ecs   string
		down  []string
		want  []string
	}{
		{"london", "near", "81.2.69.0/24", nil, []string{"lon1", "lon2", "ams1", "fra1", "fra2", "nyc1", "sgp1"}},
		{"paris", "near", "90.84.1.0/24", nil, []string{"lon1", "lon2", "ams1", "fra1", "fra2", "nyc1", "sgp1"}},
		{"new york", "near", "203.0.113.0/24", nil, []string{"nyc1", "lon1", "lon2", "ams1", "fra1", "fra2", "sgp1"}},
		{"frankfurt", "near", "198.51.100.0/24", nil, []string{"fra1", "fra2", "ams1", "lon1", "lon2", "nyc1", "sgp1"}},
		{"bias makes a farther site win", "bias", "90.84.1.0/24", nil, []string{"fra1", "fra2", "lon1", "lon2", "ams1", "nyc1", "sgp1"}},
		{"bias does not beat a much nearer site", "bias", "81.2.69.0/24", nil, []string{"lon1", "lon2", "fra1", "fra2", "ams1", "nyc1", "sgp1"}},
		{"negative bias pushes a site back", "malus", "90.84.1.0/24", nil, []string{"ams1", "fra1", "fra2", "lon1", "lon2", "nyc1", "sgp1"}},
		{"tie keeps previous order", "tie", "90.84.1.0/24", nil, []string{"fra1", "fra2", "lon1", "lon2", "ams1", "nyc1", "sgp1"}},
		{"without tie distance decides", "notie", "90.84.1.0/24", nil, []string{"lon1", "lon2", "ams1", "fra1", "fra2", "nyc1", "sgp1"}},
		// lon (nearest) is down: the band is measured from ams, the
		// nearest candidate, so fra (11% farther) ties with it.
		{"tie band from the nearest candidate", "uptie", "90.84.1.0/24", []string{"lon1", "lon2"}, []string{"fra1", "fra2", "ams1", "nyc1", "sgp1"}},
		{"unknown location: order unchanged", "near", "9.9.9.0/24", nil, []string{"lon1", "lon2", "fra1", "fra2", "ams1", "nyc1", "sgp1"}},
		{"no coordinates: order unchanged", "near", "60.1.2.0/24", nil, []string{"lon1", "lon2", "fra1", "fra2", "ams1", "nyc1", "sgp1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.SetHealth(healthOf(t, cfg, tt.down, nil))
			a := decide(e, ecsQ(tt.qname+".example.com.", tt.ecs))
			if got := epNames(cfg, a.Addrs); !slices.Equal(got, tt.want) {
				t.Errorf("answer = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestProximitySiteWithoutCoords: a site without coordinates goes last.
func TestProximitySiteWithoutCoords(t *testing.T) {
	e, cfg, _ := newTestEngine(t, `
  mixed:
    endpoints:
      - {name: nowhere, address: 192.0.2.220, site: dark}
      - {name: far, address: 192.0.2.221, site: sgp}
      - {name: near, address: 192.0.2.222, site: lon}
records:
  - name: m.example.com
    pool: mixed
    chain: [proximity]
`)
	a := decide(e, ecsQ("m.example.com.", "81.2.69.0/24"))
	if got, want := epNames(cfg, a.Addrs), []string{"near", "far", "nowhere"}; !slices.Equal(got, want) {
		t.Errorf("answer = %v, want %v", got, want)
	}
}

func TestParseThreshold(t *testing.T) {
	tests := []struct {
		in      string
		count   int
		percent float64
		ok      bool
	}{
		{"1", 1, 0, true},
		{"3", 3, 0, true},
		{"50%", 0, 50, true},
		{" 12.5% ", 0, 12.5, true},
		{"0%", 0, 0, true},
		{"100%", 0, 100, true},
		{"0", 0, 0, false},
		{"-1", 0, 0, false},
		{"101%", 0, 0, false},
		{"x%", 0, 0, false},
		{"two", 0, 0, false},
	}
	for _, tt := range tests {
		c, p, err := ParseThreshold(tt.in)
		if (err == nil) != tt.ok || c != tt.count || p != tt.percent {
			t.Errorf("ParseThreshold(%q) = %d, %v, %v; want %d, %v, ok=%t", tt.in, c, p, err, tt.count, tt.percent, tt.ok)
		}
	}
}

func TestCommonBits(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"198.51.100.77", "198.51.100.128", 24},
		{"198.51.100.77", "198.51.100.76", 31},
		{"10.0.0.0", "138.0.0.0", 0},
		{"198.51.0.0", "198.51.100.0", 17},
		{"2001:db8::", "2001:db8:8000::", 32},
		{"2001:db8::1", "2001:db8::", 127},
	}
	for _, tt := range tests {
		if got := commonBits(netip.MustParseAddr(tt.a), netip.MustParseAddr(tt.b)); got != tt.want {
			t.Errorf("commonBits(%s, %s) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

// TestStableHashPinned: the hash weighted {mode: hash} uses must not change
// between versions or processes, or servers disagree and reloads reshuffle.
// The values were checked against an independent FNV-1a + splitmix64
// implementation.
func TestStableHashPinned(t *testing.T) {
	tests := []struct {
		subnet, ep string
		want       uint64
	}{
		{"198.51.100.0/24", "192.0.2.1", 0xbe88de1eba6512d1},
		{"198.51.100.0/24", "192.0.2.2", 0x50fd803a4ba041e0},
		{"198.51.101.0/24", "192.0.2.1", 0x82331b488a9ba0b1},
		{"2001:db8:1:2300::/56", "2001:db8::1", 0x0fa8f060e53b35e3},
	}
	for _, tt := range tests {
		if got := stableHash(pfx(tt.subnet), addr(tt.ep)); got != tt.want {
			t.Errorf("stableHash(%s, %s) = %#x, want %#x", tt.subnet, tt.ep, got, tt.want)
		}
	}
}

// TestWeightedHashAddEndpoint: adding an endpoint moves only the subnets it
// takes; none move between the old endpoints.
func TestWeightedHashAddEndpoint(t *testing.T) {
	e, cfg, _ := newTestEngine(t, weightedRecords[:strings.Index(weightedRecords, "records:")]+`
  whash5:
    endpoints:
      - {name: h1, address: 192.0.2.180, site: lon}
      - {name: h2, address: 192.0.2.181, site: fra}
      - {name: h3, address: 192.0.2.182, site: ams}
      - {name: h4, address: 192.0.2.183, site: nyc}
      - {name: h5, address: 192.0.2.184, site: sgp}
records:
  - name: four.example.com
    pool: whash
    chain: [{weighted: {mode: hash}}, first_n: 1]
  - name: five.example.com
    pool: whash5
    chain: [{weighted: {mode: hash}}, first_n: 1]
`)
	moved := 0
	const subnets = 1000
	for i := range subnets {
		ecs := fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)
		four := decide(e, ecsQ("four.example.com.", ecs)).Addrs[0]
		five := decide(e, ecsQ("five.example.com.", ecs)).Addrs[0]
		if four == five {
			continue
		}
		if n := epNames(cfg, []netip.Addr{five})[0]; n != "h5" {
			t.Errorf("%s moved from %v to %s, not to the new endpoint", ecs, four, n)
		}
		moved++
	}
	// h5 should take about a fifth.
	if moved < subnets/10 || moved > subnets*3/10 {
		t.Errorf("%d of %d subnets moved, want about %d", moved, subnets, subnets/5)
	}
}
