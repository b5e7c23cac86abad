package gslb

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gslbd/gslbd/geo"
)

const geoRecords = `
records:
  - name: geo.example.com
    pool: web
    chain:
      - geo:
          map:
            "country:GB": [lon]
            "subdivision:GB-SCT": [ams]
            "country:DE": [fra]
            "continent:EU": [sgp]
            "continent:NA": [nyc]
            "asn:64500": [ams]
            "203.0.113.0/24": [sgp, nyc]
          default: [fra, lon]
  - name: prefer.example.com
    pool: web
    chain:
      - geo:
          mode: prefer
          map:
            "country:GB": [lon]
            "country:DE": [fra, nyc]
  - name: cidr.example.com
    pool: web
    chain:
      - geo:
          map:
            198.51.100.0/24: [fra]
            198.51.100.128/25: [lon]
          default: [nyc]
`

func TestDecideGeo(t *testing.T) {
	e, cfg, _ := newTestEngine(t, geoRecords)
	tests := []struct {
		name    string
		q       Query
		want    []string
		scope   uint8
		usedECS bool
	}{
		{"london by ecs", ecsQ("geo.example.com.", "81.2.69.0/24"), []string{"lon1", "lon2"}, 24, true},
		{"frankfurt by ecs", ecsQ("geo.example.com.", "198.51.100.0/24"), []string{"fra1", "fra2"}, 24, true},
		{"frankfurt by resolver", Query{Name: "geo.example.com.", Resolver: addr("198.51.100.53")}, []string{"fra1", "fra2"}, 0, false},
		{"london by resolver", Query{Name: "geo.example.com.", Resolver: addr("81.2.69.160")}, []string{"lon1", "lon2"}, 0, false},
		{"ecs beats resolver", Query{Name: "geo.example.com.", Resolver: addr("198.51.100.53"), ECS: pfx("81.2.69.0/24")}, []string{"lon1", "lon2"}, 24, true},
		{"subdivision beats country", ecsQ("geo.example.com.", "81.2.70.0/24"), []string{"ams1"}, 24, true},
		{"country beats continent", ecsQ("geo.example.com.", "198.51.100.0/24"), []string{"fra1", "fra2"}, 24, true},
		{"continent when country unmapped", ecsQ("geo.example.com.", "90.84.3.0/24"), []string{"sgp1"}, 16, true},
		{"continent scope is the db network", ecsQ("geo.example.com.", "100.64.5.0/24"), []string{"nyc1"}, 16, true},
		{"asn beats continent", ecsQ("geo.example.com.", "100.65.1.0/24"), []string{"ams1"}, 16, true},
		{"cidr beats continent, list order kept", ecsQ("geo.example.com.", "203.0.113.0/24"), []string{"sgp1", "nyc1"}, 24, true},
		{"default when unmapped", ecsQ("geo.example.com.", "60.1.2.0/24"), []string{"fra1", "fra2", "lon1", "lon2"}, 12, true},
		// Not in the database: only the map's CIDR limits the scope
		// (9.0.0.0 and 203.0.113.0 differ in the first bit).
		{"default when unknown", ecsQ("geo.example.com.", "9.9.9.0/24"), []string{"fra1", "fra2", "lon1", "lon2"}, 1, true},
		{"ipv6 london", Query{Name: "geo.example.com.", IPv6: true, Resolver: resolver, ECS: pfx("2001:db8:4c::/56")}, []string{"lon6"}, 48, true},
		{"ipv6 frankfurt", Query{Name: "geo.example.com.", IPv6: true, Resolver: resolver, ECS: pfx("2001:db8:de:1200::/56")}, []string{"fra6"}, 48, true},

		{"prefer: listed first then the rest", ecsQ("prefer.example.com.", "81.2.69.0/24"),
			[]string{"lon1", "lon2", "fra1", "fra2", "ams1", "nyc1", "sgp1"}, 24, true},
		{"prefer: list order", ecsQ("prefer.example.com.", "198.51.100.0/24"),
			[]string{"fra1", "fra2", "nyc1", "lon1", "lon2", "ams1", "sgp1"}, 24, true},
		{"prefer: no match keeps pool order", ecsQ("prefer.example.com.", "60.1.2.0/24"),
			[]string{"lon1", "lon2", "fra1", "fra2", "ams1", "nyc1", "sgp1"}, 12, true},

		{"cidr: more specific entry raises scope", ecsQ("cidr.example.com.", "198.51.100.77/32"), []string{"fra1", "fra2"}, 25, true},
		{"cidr: inside the more specific entry", ecsQ("cidr.example.com.", "198.51.100.200/32"), []string{"lon1", "lon2"}, 25, true},
		{"cidr: scope may exceed source", ecsQ("cidr.example.com.", "198.51.100.0/24"), []string{"fra1", "fra2"}, 25, true},
		// 198.51.0.0/16 matches neither entry; the answer holds for
		// 198.51.0.0/18 (198.51.100.0 differs from 198.51.0.0 in bit 18).
		{"cidr: outside every entry", ecsQ("cidr.example.com.", "198.51.0.0/16"), []string{"nyc1"}, 18, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := decide(e, tt.q)
			if a.Outcome != Answered {
				t.Fatalf("Outcome = %v, want Answered", a.Outcome)
			}
			if got := epNames(cfg, a.Addrs); !slices.Equal(got, tt.want) {
				t.Errorf("answer = %v, want %v", got, tt.want)
			}
			if a.Scope != tt.scope || a.UsedECS != tt.usedECS {
				t.Errorf("scope = %d usedECS = %t, want %d %t", a.Scope, a.UsedECS, tt.scope, tt.usedECS)
			}
		})
	}
}

func TestDecideECSTrust(t *testing.T) {
	e, cfg, _ := newTestEngine(t, geoRecords+`
ecs:
  trusted: [10.0.0.0/8, "2001:db8:53::/48"]
`)
	tests := []struct {
		name    string
		q       Query
		want    []string
		usedECS bool
		scope   uint8
	}{
		{"trusted v4 resolver", Query{Name: "geo.example.com.", Resolver: addr("10.1.2.3"), ECS: pfx("81.2.69.0/24")}, []string{"lon1", "lon2"}, true, 24},
		{"trusted v6 resolver", Query{Name: "geo.example.com.", Resolver: addr("2001:db8:53::1"), ECS: pfx("81.2.69.0/24")}, []string{"lon1", "lon2"}, true, 24},
		{"trusted v4-mapped resolver", Query{Name: "geo.example.com.", Resolver: addr("::ffff:10.1.2.3"), ECS: pfx("81.2.69.0/24")}, []string{"lon1", "lon2"}, true, 24},
		{"untrusted resolver: its own address decides", Query{Name: "geo.example.com.", Resolver: addr("198.51.100.53"), ECS: pfx("81.2.69.0/24")}, []string{"fra1", "fra2"}, false, 0},
		{"source /0: resolver decides, scope 0", Query{Name: "geo.example.com.", Resolver: addr("10.1.2.3"), ECS: pfx("0.0.0.0/0")}, []string{"fra1", "fra2", "lon1", "lon2"}, false, 0},
		{"source /0 v6", Query{Name: "geo.example.com.", Resolver: addr("10.1.2.3"), ECS: pfx("::/0")}, []string{"fra1", "fra2", "lon1", "lon2"}, false, 0},
		{"no ecs", Query{Name: "geo.example.com.", Resolver: addr("10.1.2.3")}, []string{"fra1", "fra2", "lon1", "lon2"}, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := decide(e, tt.q)
			if got := epNames(cfg, a.Addrs); !slices.Equal(got, tt.want) {
				t.Errorf("answer = %v, want %v", got, tt.want)
			}
			if a.UsedECS != tt.usedECS || a.Scope != tt.scope {
				t.Errorf("usedECS = %t scope = %d, want %t %d", a.UsedECS, a.Scope, tt.usedECS, tt.scope)
			}
		})
	}
}

func TestDecideScopeCapped(t *testing.T) {
	tests := []struct {
		name string
		net  string // what the locator claims it matched
		q    Query
		want uint8
	}{
		{"v4 client, 4in6 network /120", "::ffff:81.2.69.0/120", Query{IPv6: false, ECS: pfx("81.2.69.0/24")}, 32},
		{"v4 client, /32", "81.2.69.7/32", Query{ECS: pfx("81.2.69.7/32")}, 32},
		{"v6 client, /128", "2001:db8:4c::1/128", Query{IPv6: true, ECS: pfx("2001:db8:4c::/56")}, 128},
		{"v4 client, /20", "81.2.64.0/20", Query{ECS: pfx("81.2.69.0/24")}, 20},
	}
	e, _, _ := newTestEngine(t, `
records:
  - name: p.example.com
    pool: web
    chain: [proximity]
`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.SetGeo(fixedGeo{Network: pfx(tt.net), Found: true, Location: geo.Location{Country: "GB", Lat: 51.5, HasCoords: true}})
			tt.q.Name, tt.q.Resolver = "p.example.com.", resolver
			a := decide(e, tt.q)
			if !a.UsedECS || a.Scope != tt.want {
				t.Errorf("usedECS = %t scope = %d, want true %d", a.UsedECS, a.Scope, tt.want)
			}
		})
	}
}

const healthRecords = `
records:
  - name: up.example.com
    pool: web
    chain: [up]
  - name: site1.example.com
    pool: web
    chain: [priority]
  - name: site2.example.com
    pool: web
    chain: [{priority: {min_healthy: "2"}}]
  - name: pct50.example.com
    pool: web
    chain: [{priority: {min_healthy: "50%"}}]
  - name: pct60.example.com
    pool: web
    chain: [{priority: {min_healthy: "60%"}}]
  - name: tier.example.com
    pool: tiered
    chain: [{priority: {by: tier}}]
  - name: tier2.example.com
    pool: tiered
    all_down: nodata
    chain: [{priority: {by: tier, min_healthy: "2"}}]
  - name: all.example.com
    pool: web
    chain: [up]
  - name: fallback.example.com
    pool: web
    all_down: fallback
    fallback: backup
    chain: [up]
  - name: nodata.example.com
    pool: web
    all_down: nodata
    chain: [up]
  - name: servfail.example.com
    pool: web
    all_down: servfail
    chain: [up]
  - name: fence.example.com
    pool: web
    all_down: servfail
    chain:
      - geo: {map: {"country:JP": [sgp]}}
      - up
  - name: fenceall.example.com
    pool: web
    all_down: servfail
    chain:
      - up
      - geo: {map: {"country:JP": [sgp]}}
`

var webV4 = []string{"lon1", "lon2", "fra1", "fra2", "ams1", "nyc1", "sgp1"}

func TestDecideHealth(t *testing.T) {
	e, cfg, _ := newTestEngine(t, healthRecords)
	tests := []struct {
		name    string
		qname   string
		ipv6    bool
		down    []string
		outcome Outcome
		want    []string
	}{
		{"up: all up", "up", false, nil, Answered, webV4},
		{"up: drops down", "up", false, []string{"lon1", "fra2", "sgp1"}, Answered, []string{"lon2", "fra1", "ams1", "nyc1"}},
		{"up: v6", "up", true, []string{"lon6"}, Answered, []string{"fra6"}},

		{"site: first site", "site1", false, nil, Answered, []string{"lon1", "lon2"}},
		{"site: only healthy of first site", "site1", false, []string{"lon1"}, Answered, []string{"lon2"}},
		{"site: next site when first is down", "site1", false, []string{"lon1", "lon2"}, Answered, []string{"fra1", "fra2"}},
		{"site: min 2 met", "site2", false, nil, Answered, []string{"lon1", "lon2"}},
		{"site: min 2 not met", "site2", false, []string{"lon2"}, Answered, []string{"fra1", "fra2"}},
		// No site has two up: all_down (all) reruns the chain as if all were up.
		{"site: min 2 nowhere met", "site2", false, []string{"lon2", "fra1"}, Answered, []string{"lon1", "lon2"}},
		{"site: 50% met", "pct50", false, []string{"lon1"}, Answered, []string{"lon2"}},
		{"site: 60% not met", "pct60", false, []string{"lon1"}, Answered, []string{"fra1", "fra2"}},
		{"site: 60% single-endpoint site", "pct60", false, []string{"lon1", "fra1"}, Answered, []string{"ams1"}},

		{"tier: lowest", "tier", false, nil, Answered, []string{"t0a"}},
		{"tier: next tier keeps pool order", "tier", false, []string{"t0a"}, Answered, []string{"t1a", "t1b"}},
		{"tier: healthy of next tier", "tier", false, []string{"t0a", "t1a"}, Answered, []string{"t1b"}},
		{"tier: last tier", "tier", false, []string{"t0a", "t1a", "t1b"}, Answered, []string{"t2a"}},
		{"tier: min 2", "tier2", false, []string{"t0a"}, Answered, []string{"t1a", "t1b"}},
		{"tier: min 2 never met", "tier2", false, []string{"t1a"}, NoData, nil},

		{"all_down all: every endpoint", "all", false, webV4, Answered, webV4},
		{"all_down all: v6", "all", true, []string{"lon6", "fra6"}, Answered, []string{"lon6", "fra6"}},
		{"all_down all: not while one is up", "all", false, webV4[1:], Answered, []string{"lon1"}},
		{"all_down fallback", "fallback", false, webV4, Answered, []string{"bak1"}},
		{"all_down fallback v6", "fallback", true, []string{"lon6", "fra6"}, Answered, []string{"bak6"}},
		{"all_down nodata", "nodata", false, webV4, NoData, nil},
		{"all_down servfail", "servfail", false, webV4, ServFail, nil},
		{"all_down servfail: not while one is up", "servfail", false, webV4[:6], Answered, []string{"sgp1"}},

		{"fence before up: no site is NoData, not all_down", "fence", false, nil, NoData, nil},
		{"fence before up: even when all down", "fence", false, webV4, NoData, nil},
		{"up before fence: all up, fenced out", "fenceall", false, nil, NoData, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.SetHealth(healthOf(t, cfg, tt.down, nil))
			a := decide(e, Query{Name: tt.qname + ".example.com.", IPv6: tt.ipv6, Resolver: addr("198.51.100.53")})
			want := tt.want
			if want == nil {
				want = []string{}
			}
			if a.Outcome != tt.outcome {
				t.Errorf("Outcome = %v, want %v", a.Outcome, tt.outcome)
			}
			if got := epNames(cfg, a.Addrs); !slices.Equal(got, want) {
				t.Errorf("answer = %v, want %v", got, want)
			}
		})
	}
}

// TestDecideAllDownScope: a NODATA chosen by all_down for one region (the
// geo map sent it to a site that is down) must carry the decision's scope,
// like the NODATA of a geofence, or resolvers cache it for everyone.
func TestDecideAllDownScope(t *testing.T) {
	e, cfg, _ := newTestEngine(t, `
records:
  - name: r.example.com
    pool: web
    all_down: nodata
    chain:
      - geo: {map: {"country:GB": [lon], "country:DE": [fra]}}
      - up
  - name: sf.example.com
    pool: web
    all_down: servfail
    chain:
      - geo: {map: {"country:GB": [lon], "country:DE": [fra]}}
      - up
`)
	e.SetHealth(healthOf(t, cfg, []string{"lon1", "lon2"}, nil))
	tests := []struct {
		name    string
		qname   string
		ecs     string
		outcome Outcome
		want    []string
		scope   uint8
	}{
		{"london: all down", "r", "81.2.69.0/24", NoData, []string{}, 24},
		{"frankfurt: up", "r", "198.51.100.0/24", Answered, []string{"fra1", "fra2"}, 24},
		{"fenced out", "r", "90.84.1.0/24", NoData, []string{}, 16},
		// SERVFAIL has no answer to scope.
		{"servfail", "sf", "81.2.69.0/24", ServFail, []string{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := decide(e, ecsQ(tt.qname+".example.com.", tt.ecs))
			if a.Outcome != tt.outcome || a.Scope != tt.scope {
				t.Errorf("Outcome %v scope %d, want %v %d", a.Outcome, a.Scope, tt.outcome, tt.scope)
			}
			if got := epNames(cfg, a.Addrs); !slices.Equal(got, tt.want) {
				t.Errorf("answer = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDecideNotGSLB(t *testing.T) {
	e, _, _ := newTestEngine(t, healthRecords)
	a := Answer{Scope: 9, UsedECS: true, Outcome: Answered}
	e.Decide(ecsQ("nope.example.com.", "81.2.69.0/24"), &a)
	if a.Outcome != NotGSLB || a.Scope != 0 || a.UsedECS || len(a.Addrs) != 0 {
		t.Errorf("got %+v, want NotGSLB with scope 0", a)
	}
	if e.HasRecord("nope.example.com.") || !e.HasRecord("up.example.com.") {
		t.Errorf("HasRecord is wrong")
	}
}

func TestDecideTTL(t *testing.T) {
	const records = `
records:
  - name: default.example.com
    pool: web
  - name: custom.example.com
    pool: web
    ttl: 60
    ttl_min: 10
    ttl_max: 120
  - name: tiny.example.com
    pool: web
    ttl: 3
  - name: other.example.com
    pool: tiered
`
	tests := []struct {
		name    string
		qname   string
		ipv6    bool
		down    []string
		next    map[string]time.Duration // from t0
		advance time.Duration
		want    uint32
	}{
		{"default 30", "default", false, nil, nil, 0, 30},
		{"custom", "custom", false, nil, nil, 0, 60},
		{"ttl below the default ttl_min", "tiny", false, nil, nil, 0, 3},
		{"shrinks to the next change", "default", false, nil, map[string]time.Duration{"fra1": 12 * time.Second}, 0, 12},
		{"earliest change wins", "default", false, nil, map[string]time.Duration{"fra1": 12 * time.Second, "sgp1": 7 * time.Second, "lon1": 20 * time.Second}, 0, 7},
		{"partial seconds round down", "default", false, nil, map[string]time.Duration{"fra1": 12900 * time.Millisecond}, 0, 12},
		{"later change does not raise", "default", false, nil, map[string]time.Duration{"fra1": 100 * time.Second}, 0, 30},
		{"clock advances", "default", false, nil, map[string]time.Duration{"fra1": 20 * time.Second}, 6 * time.Second, 14},
		{"floored at ttl_min 5", "default", false, nil, map[string]time.Duration{"fra1": 2 * time.Second}, 0, 5},
		{"past change floored", "default", false, nil, map[string]time.Duration{"fra1": -time.Minute}, 0, 5},
		{"custom floor", "custom", false, nil, map[string]time.Duration{"fra1": 4 * time.Second}, 0, 10},
		{"custom shrink", "custom", false, nil, map[string]time.Duration{"fra1": 45 * time.Second}, 0, 45},
		{"other family ignored", "default", false, nil, map[string]time.Duration{"lon6": 3 * time.Second}, 0, 30},
		{"own family counts", "default", true, nil, map[string]time.Duration{"lon6": 8 * time.Second}, 0, 8},
		{"other pool ignored", "default", false, nil, map[string]time.Duration{"t0a": 3 * time.Second}, 0, 30},
		{"down endpoint counts", "default", false, []string{"nyc1"}, map[string]time.Duration{"nyc1": 9 * time.Second}, 0, 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, cfg, clk := newTestEngine(t, records)
			next := map[string]time.Time{}
			for n, d := range tt.next {
				next[n] = t0.Add(d)
			}
			e.SetHealth(healthOf(t, cfg, tt.down, next))
			clk.Advance(tt.advance)
			a := decide(e, Query{Name: tt.qname + ".example.com.", IPv6: tt.ipv6, Resolver: resolver})
			if a.TTL != tt.want {
				t.Errorf("TTL = %d, want %d", a.TTL, tt.want)
			}
			if r := cfg.Records[tt.qname+".example.com."]; a.TTL < r.TTLMin || a.TTL > r.TTLMax {
				t.Errorf("TTL %d outside [%d, %d]", a.TTL, r.TTLMin, r.TTLMax)
			}
		})
	}
}

func TestDecideFamily(t *testing.T) {
	e, cfg, _ := newTestEngine(t, `
records:
  - name: web.example.com
    pool: web
    chain: []
  - name: only4.example.com
    pool: v4only
`)
	tests := []struct {
		qname   string
		ipv6    bool
		outcome Outcome
		want    []string
	}{
		{"web", false, Answered, webV4},
		{"web", true, Answered, []string{"lon6", "fra6"}},
		{"only4", false, Answered, []string{"only4"}},
		{"only4", true, NoData, []string{}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/ipv6=%t", tt.qname, tt.ipv6), func(t *testing.T) {
			a := decide(e, Query{Name: tt.qname + ".example.com.", IPv6: tt.ipv6, Resolver: resolver})
			if a.Outcome != tt.outcome {
				t.Errorf("Outcome = %v, want %v", a.Outcome, tt.outcome)
			}
			if got := epNames(cfg, a.Addrs); !slices.Equal(got, tt.want) {
				t.Errorf("answer = %v, want %v", got, tt.want)
			}
			for _, ad := range a.Addrs {
				if ad.Is6() != tt.ipv6 {
					t.Errorf("%v has the wrong family", ad)
				}
			}
		})
	}
}

func TestExplain(t *testing.T) {
	e, cfg, _ := newTestEngine(t, `
records:
  - name: x.example.com
    pool: web
    chain:
      - up
      - geo: {mode: prefer, map: {"country:DE": [fra, ams]}}
      - priority
      - first_n: 1
  - name: dead.example.com
    pool: web
    chain: [up, first_n: 2]
`)
	e.SetHealth(healthOf(t, cfg, []string{"fra1", "sgp1"}, nil))
	q := ecsQ("x.example.com.", "198.51.100.0/24")
	ex := e.Explain(q)
	want := []Step{
		{Filter: "up", In: []string{"lon1", "lon2", "fra1(down)", "fra2", "ams1", "nyc1", "sgp1(down)"}, Out: []string{"lon1", "lon2", "fra2", "ams1", "nyc1"}},
		{Filter: "geo", In: []string{"lon1", "lon2", "fra2", "ams1", "nyc1"}, Out: []string{"fra2", "ams1", "lon1", "lon2", "nyc1"}},
		{Filter: "priority", In: []string{"fra2", "ams1", "lon1", "lon2", "nyc1"}, Out: []string{"fra2"}},
		{Filter: "first_n", In: []string{"fra2"}, Out: []string{"fra2"}},
	}
	if len(ex.Trace) != len(want) {
		t.Fatalf("Trace has %d steps, want %d: %+v", len(ex.Trace), len(want), ex.Trace)
	}
	for i, s := range ex.Trace {
		if s.Filter != want[i].Filter || !slices.Equal(s.In, want[i].In) || !slices.Equal(s.Out, want[i].Out) {
			t.Errorf("step %d = %s %v -> %v, want %s %v -> %v", i, s.Filter, s.In, s.Out, want[i].Filter, want[i].In, want[i].Out)
		}
		if s.Note == "" {
			t.Errorf("step %d (%s) has no note", i, s.Filter)
		}
	}
	if !strings.Contains(ex.Trace[1].Note, "country DE") || !strings.Contains(ex.Trace[0].Note, "5 of 7 up") {
		t.Errorf("notes do not say why: %q, %q", ex.Trace[0].Note, ex.Trace[1].Note)
	}
	d := decide(e, q)
	if !slices.Equal(ex.Addrs, d.Addrs) || ex.Outcome != d.Outcome || ex.TTL != d.TTL || ex.Scope != d.Scope || ex.UsedECS != d.UsedECS {
		t.Errorf("Explain = %v %v ttl %d scope %d, Decide = %v %v ttl %d scope %d",
			ex.Outcome, ex.Addrs, ex.TTL, ex.Scope, d.Outcome, d.Addrs, d.TTL, d.Scope)
	}
	if d.Trace != nil {
		t.Errorf("Decide filled a trace")
	}

	// When health empties the chain, the trace shows all_down and the rerun.
	e.SetHealth(healthOf(t, cfg, webV4, nil))
	ex = e.Explain(Query{Name: "dead.example.com.", Resolver: resolver})
	var filters []string
	for _, s := range ex.Trace {
		filters = append(filters, s.Filter)
	}
	if want := []string{"up", "first_n", "all_down", "up", "first_n"}; !slices.Equal(filters, want) {
		t.Errorf("trace filters = %v, want %v", filters, want)
	}
	if got := epNames(cfg, ex.Addrs); !slices.Equal(got, []string{"lon1", "lon2"}) {
		t.Errorf("answer = %v, want [lon1 lon2]", got)
	}
}

// TestDecideReusesBuffer: Decide appends to Addrs, and resets the fields of
// a reused Answer.
func TestDecideReusesBuffer(t *testing.T) {
	e, cfg, _ := newTestEngine(t, healthRecords)
	e.SetHealth(healthOf(t, cfg, webV4, nil))
	a := Answer{Addrs: make([]netip.Addr, 0, 16)}
	e.Decide(Query{Name: "fallback.example.com.", Resolver: resolver}, &a)
	e.Decide(Query{Name: "servfail.example.com.", Resolver: resolver}, &a)
	if a.Outcome != ServFail {
		t.Fatalf("Outcome = %v, want ServFail", a.Outcome)
	}
	a.Addrs = a.Addrs[:0]
	e.Decide(Query{Name: "nodata.example.com.", Resolver: resolver}, &a)
	if a.Outcome != NoData || len(a.Addrs) != 0 {
		t.Fatalf("got %v %v, want NoData", a.Outcome, a.Addrs)
	}
	e.Decide(Query{Name: "fallback.example.com.", Resolver: resolver}, &a)
	e.Decide(Query{Name: "fallback.example.com.", Resolver: resolver}, &a)
	if got := epNames(cfg, a.Addrs); !slices.Equal(got, []string{"bak1", "bak1"}) {
		t.Errorf("Addrs = %v, want [bak1 bak1] (appended)", got)
	}
	// Nothing appended is NODATA even when the buffer already held some.
	e.Decide(Query{Name: "fence.example.com.", Resolver: resolver}, &a)
	if a.Outcome != NoData || len(a.Addrs) != 2 {
		t.Errorf("got %v %v, want NoData and the buffer untouched", a.Outcome, a.Addrs)
	}
}

// TestSetConfigKeepsHealth: a new configuration keeps the known health of
// targets it still has.
func TestSetConfigKeepsHealth(t *testing.T) {
	e, cfg, _ := newTestEngine(t, healthRecords)
	e.SetHealth(healthOf(t, cfg, []string{"lon1"}, nil))
	cfg2 := compileYAML(t, baseYAML+healthRecords)
	e.SetConfig(cfg2)
	if e.Config() != cfg2 {
		t.Fatalf("Config() is not the new config")
	}
	a := decide(e, Query{Name: "up.example.com.", Resolver: resolver})
	if got := epNames(cfg2, a.Addrs); slices.Contains(got, "lon1") || len(got) != 6 {
		t.Errorf("answer = %v, want lon1 still down", got)
	}
}

func TestDecideConcurrent(t *testing.T) {
	e, cfg, _ := newTestEngine(t, geoRecords)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 50 {
			var down []string
			if i%2 == 0 {
				down = []string{"lon1"}
			}
			e.SetHealth(healthOf(t, cfg, down, nil))
		}
	}()
	var a Answer
	for range 500 {
		a.Addrs = a.Addrs[:0]
		e.Decide(ecsQ("geo.example.com.", "81.2.69.0/24"), &a)
		if got := epNames(cfg, a.Addrs); !slices.Equal(got, []string{"lon1", "lon2"}) {
			t.Fatalf("answer = %v", got)
		}
	}
	<-done
}

const allocRecords = `
records:
  - name: hot.example.com
    pool: web
    chain:
      - geo: {map: {"country:GB": [lon, fra], "country:DE": [fra, lon]}, default: [nyc]}
      - priority: {min_healthy: "1"}
      - first_n: 1
  - name: full.example.com
    pool: web
    chain:
      - up
      - geo: {mode: prefer, map: {"country:GB": [lon, fra], "198.51.100.128/25": [ams]}}
      - weighted: {mode: hash}
      - proximity: {tie_percent: 10}
      - priority: {min_healthy: "50%"}
      - first_n: 2
  - name: tier.example.com
    pool: tiered
    chain: [up, {priority: {by: tier}}, first_n: 1]
`

func TestDecideAllocs(t *testing.T) {
	e, cfg, _ := newTestEngine(t, allocRecords)
	e.SetHealth(healthOf(t, cfg, []string{"lon1", "t0a"}, nil))
	tests := []struct{ name, first string }{{"hot", "lon2"}, {"full", "lon2"}, {"tier", "t1a"}}
	for _, tt := range tests {
		name := tt.name
		t.Run(name, func(t *testing.T) {
			q := ecsQ(name+".example.com.", "81.2.69.0/24")
			a := Answer{Addrs: make([]netip.Addr, 0, 8)}
			e.Decide(q, &a) // warm the pool
			if got := epNames(cfg, a.Addrs); len(got) == 0 || got[0] != tt.first {
				t.Fatalf("answer = %v, want %s first", got, tt.first)
			}
			allocs := testing.AllocsPerRun(1000, func() {
				a.Addrs = a.Addrs[:0]
				e.Decide(q, &a)
			})
			t.Logf("%s: %v allocs per Decide", name, allocs)
			if raceEnabled {
				t.Skip("allocation counts are not meaningful under -race (sync.Pool drops items)")
			}
			if allocs != 0 {
				t.Errorf("Decide allocates %v times per call, want 0", allocs)
			}
		})
	}
}

func BenchmarkDecide(b *testing.B) {
	e, cfg, _ := newTestEngine(b, allocRecords)
	e.SetHealth(healthOf(b, cfg, []string{"lon1", "t0a"}, nil))
	for _, name := range []string{"hot", "full", "tier"} {
		b.Run(name, func(b *testing.B) {
			q := ecsQ(name+".example.com.", "81.2.69.0/24")
			a := Answer{Addrs: make([]netip.Addr, 0, 8)}
			b.ReportAllocs()
			for b.Loop() {
				a.Addrs = a.Addrs[:0]
				e.Decide(q, &a)
			}
		})
	}
}
