package gslb

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// goodYAML is a small valid configuration; the error tests break it one
// piece at a time.
const goodYAML = `
sites:
  lon: {lat: 51.5, lon: -0.12, country: gb, continent: eu}
  fra: {lat: 50.1, lon: 8.7, country: DE, continent: EU, capacity: 1000}
monitors:
  http: {kind: http, path: /health, interval: 10s, expect: ["2xx"]}
pools:
  web:
    monitor: http
    endpoints:
      - {name: lon1, address: 192.0.2.1, site: lon}
      - {address: 192.0.2.2, site: lon, weight: 0, tier: 1}
      - {address: "2001:db8::1", site: fra, probe: 198.51.100.9}
      - {address: "::ffff:192.0.2.3", site: fra, monitor: none}
  backup:
    endpoints:
      - {address: 192.0.2.9, site: fra}
records:
  - name: WWW.Example.com
    pool: web
    all_down: fallback
    fallback: backup
    chain:
      - up
      - geo: {map: {"continent:EU": [lon, fra], "country:de": [fra], "subdivision:gb-sct": [fra], "asn:AS64500": [lon], "198.51.100.0/24": [fra]}, default: [lon]}
      - proximity: {bias: {fra: 10}, tie_percent: 5}
      - weighted: {mode: hash, prefix_v4: 20}
      - priority: {by: tier, min_healthy: "50%"}
      - first_n: 2
  - name: api.example.com.
    pool: backup
    ttl: 60
    ttl_min: 20
    ttl_max: 300
ecs:
  trusted: [10.0.0.0/8, 192.0.2.53, "2001:db8::/32"]
`

func TestCompileGood(t *testing.T) {
	cfg := compileYAML(t, goodYAML)
	www := cfg.Records["www.example.com."]
	if www == nil {
		t.Fatalf("records = %v, want www.example.com. (canonical)", cfg.Records)
	}
	if www.TTL != 30 || www.TTLMin != 5 || www.TTLMax != 3600 || www.AllDown != AllDownFallback || www.Fallback != cfg.Pools["backup"] {
		t.Errorf("www = ttl %d/%d/%d all_down %d fallback %v", www.TTL, www.TTLMin, www.TTLMax, www.AllDown, www.Fallback)
	}
	var chain []string
	for _, f := range www.Chain {
		chain = append(chain, f.Name())
	}
	if got := strings.Join(chain, " "); got != "up geo proximity weighted priority first_n" {
		t.Errorf("chain = %s", got)
	}
	api := cfg.Records["api.example.com."]
	if api == nil || api.TTL != 60 || api.TTLMin != 20 || api.TTLMax != 300 || len(api.Chain) != 1 || api.Chain[0].Name() != "up" {
		t.Errorf("api = %+v, want ttl 60/20/300 and the default chain [up]", api)
	}
	if s := cfg.Sites["lon"]; s.Country != "GB" || s.Continent != "EU" || !s.HasCoords || s.Lat != 51.5 {
		t.Errorf("site lon = %+v", s)
	}
	if cfg.Sites["fra"].Capacity != 1000 || len(cfg.SiteList) != 2 || cfg.SiteList[0].Name != "fra" || cfg.SiteList[0].Index != 0 {
		t.Errorf("SiteList = %v (want sorted by name, indexed)", cfg.SiteList)
	}
	eps := cfg.Pools["web"].Endpoints
	if len(eps) != 4 {
		t.Fatalf("web has %d endpoints, want 4", len(eps))
	}
	type epWant struct {
		name   string
		addr   string
		weight int
		tier   int
		probe  string // "" = unmonitored
	}
	wants := []epWant{
		{"lon1", "192.0.2.1", 100, 0, "192.0.2.1"},
		{"192.0.2.2", "192.0.2.2", 0, 1, "192.0.2.2"},
		{"2001:db8::1", "2001:db8::1", 100, 0, "198.51.100.9"},
		{"::ffff:192.0.2.3", "192.0.2.3", 100, 0, ""},
	}
	for i, w := range wants {
		ep := eps[i]
		if ep.Name != w.name || ep.Addr != netip.MustParseAddr(w.addr) || ep.Weight != w.weight || ep.Tier != w.tier || ep.Pool != "web" || cfg.Endpoints[ep.Index] != ep {
			t.Errorf("endpoint %d = %+v, want %+v", i, ep, w)
		}
		switch {
		case w.probe == "" && ep.Target != nil:
			t.Errorf("endpoint %d is monitored, want not", i)
		case w.probe != "" && (ep.Target == nil || ep.Target.Addr != netip.MustParseAddr(w.probe)):
			t.Errorf("endpoint %d target = %+v, want probe %s", i, ep.Target, w.probe)
		case w.probe != "" && (ep.Target.Monitor.Path != "/health" || ep.Target.Monitor.Interval != 10*time.Second || len(ep.Target.Monitor.Expect) != 1):
			t.Errorf("endpoint %d monitor = %+v", i, ep.Target.Monitor)
		}
	}
	if len(cfg.Targets) != 3 {
		t.Errorf("Targets = %v, want 3", cfg.Targets)
	}
	wantTrusted := []netip.Prefix{pfx("10.0.0.0/8"), pfx("192.0.2.53/32"), pfx("2001:db8::/32")}
	if len(cfg.Trusted) != len(wantTrusted) {
		t.Fatalf("Trusted = %v, want %v", cfg.Trusted, wantTrusted)
	}
	for i := range wantTrusted {
		if cfg.Trusted[i] != wantTrusted[i] {
			t.Errorf("Trusted = %v, want %v", cfg.Trusted, wantTrusted)
		}
	}
}

// TestCompileErrors breaks goodYAML one way at a time (old -> new) and
// checks the error names the path.
func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name     string
		old, new string
		want     string
	}{
		{"unknown site in an endpoint", "{address: 192.0.2.2, site: lon,", "{address: 192.0.2.2, site: fra2,",
			`pools.web.endpoints[1].site: unknown site "fra2"`},
		{"unknown site in a geo map", `"country:de": [fra]`, `"country:de": [fra, ams]`,
			`records[0].chain[1].geo.map.country:de[1]: unknown site "ams"`},
		{"unknown site in a geo default", `default: [lon]`, `default: [par]`,
			`records[0].chain[1].geo.default[0]: unknown site "par"`},
		{"empty site list in a geo map", `"country:de": [fra]`, `"country:de": []`,
			`records[0].chain[1].geo.map.country:de: needs at least one site`},
		{"unknown site in a bias", `bias: {fra: 10}`, `bias: {nyc: 10}`,
			`records[0].chain[2].proximity.bias: unknown site "nyc"`},
		{"bias out of range", `bias: {fra: 10}`, `bias: {fra: 100}`,
			`records[0].chain[2].proximity.bias.fra: 100 is not between -99 and 99`},
		{"tie out of range", `tie_percent: 5`, `tie_percent: 101`,
			`records[0].chain[2].proximity.tie_percent: 101 is not between 0 and 100`},
		{"unknown pool", "pool: backup\n    ttl: 60", "pool: backups\n    ttl: 60",
			`records[1].pool: unknown pool "backups"`},
		{"unknown fallback pool", "fallback: backup", "fallback: spare",
			`records[0].fallback: unknown pool "spare" (all_down: fallback needs one)`},
		{"unknown monitor on a pool", "monitor: http\n", "monitor: htp\n",
			`pools.web.monitor: unknown monitor "htp"`},
		{"unknown monitor on an endpoint", "monitor: none}", "monitor: tcp}",
			`pools.web.endpoints[3].monitor: unknown monitor "tcp"`},
		{"bad monitor", "kind: http,", "kind: icmp,",
			`monitors.http: kind "icmp" is not one of http, https, tcp, dns`},
		{"bad monitor expect", `expect: ["2xx"]`, `expect: ["700"]`,
			`monitors.http.expect: `},
		{"bad address", "address: 192.0.2.9,", "address: 192.0.2.999,",
			`pools.backup.endpoints[0].address: "192.0.2.999" is not an IPv4 or IPv6 address`},
		{"address with zone", "address: 192.0.2.9,", `address: "fe80::1%eth0",`,
			`pools.backup.endpoints[0].address: "fe80::1%eth0" is not an IPv4 or IPv6 address`},
		{"bad probe address", "probe: 198.51.100.9", "probe: nowhere",
			`pools.web.endpoints[2].probe: "nowhere" is not an IPv4 or IPv6 address`},
		{"duplicate address in a pool", "address: 192.0.2.2,", "address: 192.0.2.1,",
			`pools.web.endpoints[1].address: 192.0.2.1 is listed twice`},
		{"duplicate v4-mapped address in a pool", `address: "::ffff:192.0.2.3"`, `address: "::ffff:192.0.2.1"`,
			`pools.web.endpoints[3].address: 192.0.2.1 is listed twice`},
		{"weight out of range", "weight: 0,", "weight: -1,",
			`pools.web.endpoints[1].weight: -1 is not between 0 and 1000000`},
		{"empty pool", "endpoints:\n      - {address: 192.0.2.9, site: fra}", "endpoints: []",
			`pools.backup.endpoints: a pool needs at least one endpoint`},
		{"duplicate record name", "name: api.example.com.", "name: www.example.com",
			`records[1].name: www.example.com. is defined twice`},
		{"bad record name", "name: api.example.com.", "name: api..example.com",
			`records[1].name: "api..example.com" has an empty or over-long label`},
		{"ttl_min above ttl", "ttl_min: 20", "ttl_min: 61",
			`records[1].ttl: need ttl_min <= ttl <= ttl_max (got 61 <= 60 <= 300)`},
		{"ttl above ttl_max", "ttl_max: 300", "ttl_max: 59",
			`records[1].ttl: need ttl_min <= ttl <= ttl_max (got 20 <= 60 <= 59)`},
		{"bad all_down", "all_down: fallback", "all_down: failover",
			`records[0].all_down: "failover" is not one of all, fallback, nodata, servfail`},
		{"fallback without all_down: fallback", "all_down: fallback", "all_down: nodata",
			`records[0].fallback: set only with all_down: fallback`},
		{"unknown filter", "- up\n", "- upp\n",
			`records[0].chain[0].upp: unknown filter (have up, geo, proximity, latency, weighted, priority, capacity, first_n)`},
		{"up with settings", "- up\n", "- up: {x: 1}\n",
			`records[0].chain[0].up: takes no settings`},
		{"filter map with two keys", "- first_n: 2", "- {first_n: 2, up: 1}",
			`records[0].chain[5]: a filter is one name, or a map with one key (the name)`},
		{"first_n zero", "- first_n: 2", "- first_n: 0",
			`records[0].chain[5].first_n: needs a count of at least 1 (first_n: 2)`},
		{"first_n bare", "- first_n: 2", "- first_n",
			`records[0].chain[5].first_n: needs a count of at least 1 (first_n: 2)`},
		{"unknown key in a filter", "tie_percent: 5", "tie_precent: 5",
			`records[0].chain[2].proximity: unknown key "tie_precent"`},
		{"unknown key in geo", "default: [lon]}", "defualt: [lon]}",
			`records[0].chain[1].geo: unknown key "defualt"`},
		{"bad geo mode", "{map: {", "{mode: fenced, map: {",
			`records[0].chain[1].geo.mode: "fenced" is not fence or prefer`},
		{"bad weighted mode", "mode: hash,", "mode: round_robin,",
			`records[0].chain[3].weighted.mode: "round_robin" is not random or hash`},
		{"bad weighted prefix", "prefix_v4: 20", "prefix_v4: 33",
			`records[0].chain[3].weighted: prefix_v4 must be 1..32 and prefix_v6 1..128`},
		{"bad priority by", "by: tier", "by: weight",
			`records[0].chain[4].priority.by: "weight" is not site or tier`},
		{"bad min_healthy", `min_healthy: "50%"`, `min_healthy: "150%"`,
			`records[0].chain[4].priority.min_healthy: "150%" is not a percentage between 0 and 100`},
		{"bad CIDR with host bits", `"198.51.100.0/24": [fra]`, `"198.51.100.1/24": [fra]`,
			`records[0].chain[1].geo.map.198.51.100.1/24: a key is continent:XX, country:XX, subdivision:XX-YYY, asn:N or a CIDR; "198.51.100.1/24" has host bits set (did you mean 198.51.100.0/24?)`},
		{"bad trusted CIDR", "10.0.0.0/8", "10.0.0.1/8",
			`ecs.trusted[0]: "10.0.0.1/8" has host bits set (did you mean 10.0.0.0/8?)`},
		{"bad trusted address", "192.0.2.53", "resolver.example",
			`ecs.trusted[1]: "resolver.example" is not an address or prefix`},
		{"bad continent in a geo map", `"continent:EU"`, `"continent:EUR"`,
			`records[0].chain[1].geo.map.continent:EUR: "EUR" is not one of AF AN AS EU NA OC SA`},
		{"bad continent in a site", "continent: eu", "continent: europe",
			`sites.lon.continent: "europe" is not one of AF AN AS EU NA OC SA`},
		{"bad country in a site", "country: gb", "country: gbr",
			`sites.lon.country: "gbr" is not an ISO 3166-1 alpha-2 code`},
		{"bad country in a geo map", `"country:de"`, `"country:deu"`,
			`records[0].chain[1].geo.map.country:deu: "DEU" is not an ISO 3166-1 alpha-2 code`},
		{"bad subdivision", `"subdivision:gb-sct"`, `"subdivision:sct"`,
			`records[0].chain[1].geo.map.subdivision:sct: "SCT" is not an ISO 3166-2 code like GB-SCT`},
		{"bad asn", `"asn:AS64500"`, `"asn:ASx"`,
			`records[0].chain[1].geo.map.asn:ASx: "ASX" is not an AS number`},
		{"bad key kind", `"asn:AS64500"`, `"city:London"`,
			`records[0].chain[1].geo.map.city:London: unknown key kind "city"`},
		{"lat without lon", "lat: 50.1, lon: 8.7,", "lat: 50.1,",
			`sites.fra: lat and lon go together`},
		{"lat out of range", "lat: 50.1,", "lat: 95,",
			`sites.fra: lat 95 lon 8.7 out of range`},
		{"negative capacity", "capacity: 1000", "capacity: -1",
			`sites.fra.capacity: must not be negative`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if strings.Count(goodYAML, tt.old) != 1 {
				t.Fatalf("%q occurs %d times in goodYAML, want once", tt.old, strings.Count(goodYAML, tt.old))
			}
			fc, err := ParseConfig("gslb.yaml", []byte(strings.Replace(goodYAML, tt.old, tt.new, 1)))
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			cfg, err := Compile(fc)
			if err == nil {
				t.Fatalf("Compile succeeded, want %q", tt.want)
			}
			if cfg != nil {
				t.Errorf("Compile returned a config with an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, tt.want)
			}
		})
	}
}

// TestCompileErrorsTogether: one error per section, all reported at once,
// each on its own line.
func TestCompileErrorsTogether(t *testing.T) {
	text := `
sites:
  lon: {continent: XX}
  fra: {}
monitors:
  bad: {kind: tcp}
pools:
  web:
    endpoints:
      - {address: 192.0.2.1, site: fra}
      - {address: 192.0.2.2, site: par}
      - {address: 192.0.2.1, site: fra}
      - {address: nope, site: fra}
      - {address: 192.0.2.5, site: fra, monitor: ghost}
  other:
    monitor: bad
    endpoints:
      - {address: 192.0.2.9, site: fra}
  third:
    monitor: missing
    endpoints:
      - {address: 192.0.2.9, site: fra}
      - {address: 192.0.2.10, site: fra}
records:
  - name: a.example.com
    pool: nope
  - name: b.example.com
    pool: web
    chain:
      - up
      - geo: {map: {"country:DE": [fra, ams]}}
  - name: c.example.com
    pool: web
    all_down: maybe
  - name: b.example.com
    pool: web
  - name: d.example.com
    pool: web
    chain: [{proximity: {tie_precent: 5}}]
  - name: e.example.com
    pool: web
    fallback: other
ecs:
  trusted: [10.0.0.1/8]
`
	want := []string{
		`sites.lon.continent: "XX" is not one of AF AN AS EU NA OC SA`,
		`monitors.bad: port is required for tcp monitors`,
		`pools.third.monitor: unknown monitor "missing"`,
		`pools.web.endpoints[1].site: unknown site "par"`,
		`pools.web.endpoints[2].address: 192.0.2.1 is listed twice`,
		`pools.web.endpoints[3].address: "nope" is not an IPv4 or IPv6 address`,
		`pools.web.endpoints[4].monitor: unknown monitor "ghost"`,
		`records[0].pool: unknown pool "nope"`,
		`records[1].chain[1].geo.map.country:DE[1]: unknown site "ams"`,
		`records[2].all_down: "maybe" is not one of all, fallback, nodata, servfail`,
		`records[4].chain[0].proximity: unknown key "tie_precent"`,
		`records[5].fallback: set only with all_down: fallback`,
		`ecs.trusted[0]: "10.0.0.1/8" has host bits set (did you mean 10.0.0.0/8?)`,
	}
	fc, err := ParseConfig("gslb.yaml", []byte(text))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	_, err = Compile(fc)
	if err == nil {
		t.Fatal("Compile succeeded")
	}
	lines := strings.Split(err.Error(), "\n")
	for _, w := range want {
		found := false
		for _, l := range lines {
			if l == w {
				found = true
			}
		}
		if !found {
			t.Errorf("missing line %q", w)
		}
	}
	// pools.other.monitor names a monitor that exists but is invalid: that
	// is reported once, at the monitor, not as "unknown".
	if strings.Contains(err.Error(), `unknown monitor "bad"`) {
		t.Errorf("an invalid monitor is reported as unknown:\n%v", err)
	}
	// records[3] duplicates records[1], which itself has an error and is
	// not compiled: no "defined twice" then. And pools.third's endpoints
	// do not repeat its unknown monitor: one error per mistake.
	if len(lines) != len(want) {
		t.Errorf("got %d errors, want %d:\n%v", len(lines), len(want), err)
	}
}

func TestParseConfigStrict(t *testing.T) {
	tests := []struct {
		name string
		text string
		want string // "" = no error
	}{
		{"empty", "", ""},
		{"comments only", "# nothing\n", ""},
		{"unknown top-level key", "sites: {}\nx: 1\n", `gslb.yaml:2: unknown key "x"`},
		{"unknown key in a site", "sites:\n  lon:\n    lat: 1\n    lng: 2\n", `gslb.yaml:4: unknown key "lng"`},
		{"unknown key in an endpoint", "pools:\n  web:\n    endpoints:\n      - {address: 192.0.2.1, sit: lon}\n", `gslb.yaml:4: unknown key "sit"`},
		{"unknown key in a record", "records:\n  - name: a\n    pool: p\n    ttl_maximum: 3\n", `gslb.yaml:4: unknown key "ttl_maximum"`},
		{"bad type", "records:\n  - name: a\n    ttl: thirty\n", "gslb.yaml:3: cannot unmarshal !!str `thirty` into uint32"},
		{"bad duration", "monitors:\n  m: {kind: tcp, interval: often}\n", "gslb.yaml:2: "},
		{"two errors", "x: 1\nsites:\n  lon: {lat: 1, lon: 2, y: 3}\n", "gslb.yaml:1: unknown key \"x\"\ngslb.yaml:3: unknown key \"y\""},
		{"syntax error", "sites: [\n", "gslb.yaml:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fc, err := ParseConfig("gslb.yaml", []byte(tt.text))
			if tt.want == "" {
				if err != nil || fc == nil {
					t.Fatalf("ParseConfig = %v, %v; want a config", fc, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseConfig succeeded, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, tt.want)
			}
			if strings.Contains(err.Error(), "yaml: ") || strings.Contains(err.Error(), "not found in type") {
				t.Errorf("error leaks yaml's wording: %v", err)
			}
		})
	}
}

func TestParsePrefix(t *testing.T) {
	tests := []struct {
		in   string
		want string // "" = error
	}{
		{"198.51.100.0/24", "198.51.100.0/24"},
		{"198.51.100.7", "198.51.100.7/32"},
		{"::ffff:198.51.100.7", "198.51.100.7/32"},
		{"2001:db8::/32", "2001:db8::/32"},
		{"2001:db8::1", "2001:db8::1/128"},
		{"198.51.100.7/24", ""},
		{"198.51.100.0/33", ""},
		{"example.com", ""},
		{"", ""},
	}
	for _, tt := range tests {
		p, err := ParsePrefix(tt.in)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("ParsePrefix(%q) = %v, want an error", tt.in, p)
		case tt.want != "" && (err != nil || p.String() != tt.want):
			t.Errorf("ParsePrefix(%q) = %v, %v; want %s", tt.in, p, err, tt.want)
		}
	}
}

func TestCanonicalName(t *testing.T) {
	tests := []struct {
		in, want string // want "" = error
	}{
		{"WWW.Example.COM", "www.example.com."},
		{"www.example.com.", "www.example.com."},
		{" a.b ", "a.b."},
		{"", ""},
		{".", ""},
		{"a..b", ""},
		{strings.Repeat("a", 64) + ".com", ""},
		{strings.Repeat("a", 63) + ".com", strings.Repeat("a", 63) + ".com."},
		{strings.Repeat("abcdefg.", 32), ""}, // 256 characters
	}
	for _, tt := range tests {
		got, err := canonicalName(tt.in)
		if (tt.want == "") != (err != nil) || got != tt.want {
			t.Errorf("canonicalName(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}
