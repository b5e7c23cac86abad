package test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// geoFixture writes a GeoIP2-City mmdb: London and Frankfurt client
// networks, and loopback (where dig's queries come from) in Frankfurt.
func geoFixture(t *testing.T, path string) {
	t.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: "GeoIP2-City", IPVersion: 6, RecordSize: 28, IncludeReservedNetworks: true})
	if err != nil {
		t.Fatal(err)
	}
	rec := func(continent, country, city string, lat, lon float64) mmdbtype.Map {
		return mmdbtype.Map{
			"continent": mmdbtype.Map{"code": mmdbtype.String(continent)},
			"country":   mmdbtype.Map{"iso_code": mmdbtype.String(country)},
			"city":      mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String(city)}},
			"location":  mmdbtype.Map{"latitude": mmdbtype.Float64(lat), "longitude": mmdbtype.Float64(lon)},
		}
	}
	for cidr, r := range map[string]mmdbtype.Map{
		"81.2.69.0/24":    rec("EU", "GB", "London", 51.5142, -0.0931),
		"198.51.100.0/24": rec("EU", "DE", "Frankfurt am Main", 50.1109, 8.6821),
		"127.0.0.0/8":     rec("EU", "DE", "Frankfurt am Main", 50.1109, 8.6821),
		"2001:db8:1::/48": rec("EU", "GB", "London", 51.5142, -0.0931),
		"2001:db8:2::/48": rec("EU", "DE", "Frankfurt am Main", 50.1109, 8.6821),
	} {
		_, n, _ := net.ParseCIDR(cidr)
		if err := tree.Insert(n, r); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if _, err := tree.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// backend is a real HTTP health endpoint on a loopback port that can be
// killed and brought back on the same port.
type backend struct {
	t    *testing.T
	addr string
	srv  *http.Server
}

func startBackend(t *testing.T, addr string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{t: t, addr: ln.Addr().String()}
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })}
	go b.srv.Serve(ln)
	t.Cleanup(func() { b.srv.Close() })
	return b
}

func (b *backend) port() string { _, p, _ := net.SplitHostPort(b.addr); return p }
func (b *backend) kill()        { b.srv.Close() }

const gslbYAML = `
sites:
  lon: {lat: 51.5, lon: -0.12, country: GB, continent: EU}
  fra: {lat: 50.1, lon: 8.68, country: DE, continent: EU}
monitors:
  lon-http: {kind: http, port: LONPORT, path: /health, interval: 1s, timeout: 400ms, rise: 2, fall: 2}
  fra-http: {kind: http, port: FRAPORT, path: /health, interval: 1s, timeout: 400ms, rise: 2, fall: 2}
pools:
  web:
    endpoints:
      - {address: 192.0.2.10, site: lon, probe: 127.0.0.1, monitor: lon-http}
      - {address: 203.0.113.10, site: fra, probe: 127.0.0.1, monitor: fra-http}
      - {address: "2001:db8::10", site: lon, probe: 127.0.0.1, monitor: lon-http}
      - {address: "2001:db8::20", site: fra, probe: 127.0.0.1, monitor: fra-http}
records:
  - name: gslb.example.test
    pool: web
    ttl: 20
    chain:
      - up
      - geo:
          map:
            "country:GB": [lon, fra]
            "country:DE": [fra, lon]
          default: [fra, lon]
      - priority: {}
      - first_n: 1
`

type gslbSetup struct {
	g        *gslbd
	lon, fra *backend
}

func startGSLB(t *testing.T) *gslbSetup {
	t.Helper()
	dir := copyZones(t)
	lon, fra := startBackend(t, "127.0.0.1:0"), startBackend(t, "127.0.0.1:0")
	y := strings.NewReplacer("LONPORT", lon.port(), "FRAPORT", fra.port()).Replace(gslbYAML)
	writeFile(t, filepath.Join(dir, "gslb.yaml"), y)
	mmdb := filepath.Join(t.TempDir(), "city.mmdb")
	geoFixture(t, mmdb)
	cfg := writeConfig(t, "gslb:\n  geoip: "+mmdb+"\n")
	return &gslbSetup{g: startGslbd(t, "-zones", dir, "-config", cfg), lon: lon, fra: fra}
}

func TestGSLBGeoAndHealth(t *testing.T) {
	s := startGSLB(t)
	ask := func(args ...string) string {
		return strings.TrimSpace(dig(t, s.g.DNS, append([]string{"+short", "+norec"}, args...)...))
	}
	if got := ask("+subnet=81.2.69.0/24", "gslb.example.test", "A"); got != "192.0.2.10" {
		t.Errorf("London client: %q, want the lon endpoint", got)
	}
	if got := ask("+subnet=198.51.100.0/24", "gslb.example.test", "A"); got != "203.0.113.10" {
		t.Errorf("Frankfurt client: %q, want the fra endpoint", got)
	}
	if got := ask("gslb.example.test", "A"); got != "203.0.113.10" {
		t.Errorf("no ECS, resolver 127.0.0.1 (Frankfurt in the fixture): %q", got)
	}
	if got := ask("+subnet=2001:db8:1::/56", "gslb.example.test", "AAAA"); got != "2001:db8::10" {
		t.Errorf("London IPv6 client: %q", got)
	}
	// Kill London: London clients move to Frankfurt within interval x fall + margin.
	s.lon.kill()
	killed := time.Now()
	waitFor(t, 2*time.Second+2*time.Second, "London to fail over", func() bool {
		return ask("+subnet=81.2.69.0/24", "gslb.example.test", "A") == "203.0.113.10"
	})
	t.Logf("failed over %v after the kill (interval 1s x fall 2)", time.Since(killed).Round(100*time.Millisecond))
	// Bring it back on the same port: back after rise successes.
	startBackend(t, s.lon.addr)
	waitFor(t, 2*time.Second+2*time.Second, "London to come back", func() bool {
		return ask("+subnet=81.2.69.0/24", "gslb.example.test", "A") == "192.0.2.10"
	})
	m := metrics(t, s.g)
	for _, want := range []string{
		`gslbd_health_transitions_total{kind="http",reason="refused",to="down"} 1`,
		`gslbd_health_transitions_total{kind="http",reason="ok",to="up"} 1`,
		`gslbd_gslb_endpoint_up{endpoint="192.0.2.10",pool="web",site="lon"} 1`,
		`gslbd_gslb_ecs_queries_total{ecs="absent"} 1`,
		`gslbd_gslb_ecs_scope_prefix_length_bucket{le="24"}`,
		`gslbd_gslb_site_answers_total{site="fra"}`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s\n%s", want, grep(m, "gslbd_gslb_")+grep(m, "gslbd_health_transitions"))
		}
	}
	promtool := requireTool(t, "promtool")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(m)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// ecsLine extracts dig's "CLIENT-SUBNET: a/source/scope" line.
func ecsLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, "CLIENT-SUBNET: "); i >= 0 {
			return strings.TrimSpace(l[i+len("CLIENT-SUBNET: "):])
		}
	}
	return ""
}

func status(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, "status: "); i >= 0 {
			return strings.TrimSuffix(strings.Fields(l[i+len("status: "):])[0], ",")
		}
	}
	return ""
}

// TestECSConformance drives every RFC 7871 rule with dig +subnet / +ednsopt.
func TestECSConformance(t *testing.T) {
	s := startGSLB(t)
	cases := []struct {
		name, status, ecs string
		args              []string
	}{
		{"gslb answer: scope is the database network", "NOERROR", "81.2.69.0/24/24", []string{"+subnet=81.2.69.0/24", "gslb.example.test", "A"}},
		{"scope may be shorter than source", "NOERROR", "81.2.69.142/32/24", []string{"+subnet=81.2.69.142/32", "gslb.example.test", "A"}},
		{"scope may be longer than source (the empty block around 81.2.0.0 is a /18)", "NOERROR", "81.2.0.0/16/18", []string{"+subnet=81.2.0.0/16", "gslb.example.test", "A"}},
		{"IPv6 /56 client", "NOERROR", "2001:db8:1::/56/48", []string{"+subnet=2001:db8:1::/56", "gslb.example.test", "AAAA"}},
		// Germany maps to the same sites as the default, and nothing else in
		// 128.0.0.0/1 answers differently: the scope is that whole block
		// (gdnsd-style merging), not the /24 the database matched.
		{"scope is the largest block with the same answer", "NOERROR", "198.51.100.0/24/1", []string{"+subnet=198.51.100.0/24", "gslb.example.test", "A"}},
		{"static data: scope 0", "NOERROR", "81.2.69.0/24/0", []string{"+subnet=81.2.69.0/24", "www.example.test", "A"}},
		{"negative answer: scope 0", "NXDOMAIN", "81.2.69.0/24/0", []string{"+subnet=81.2.69.0/24", "missing.example.test", "A"}},
		{"referral: scope 0", "NOERROR", "81.2.69.0/24/0", []string{"+subnet=81.2.69.0/24", "host.sub.example.test", "A"}},
		{"source /0 is answered, scope 0", "NOERROR", "0.0.0.0/0/0", []string{"+subnet=0.0.0.0/0", "gslb.example.test", "A"}},
		{"refused outside zones still echoes", "REFUSED", "81.2.69.0/24/0", []string{"+subnet=81.2.69.0/24", "www.example.net", "A"}},
		{"no ECS in, none out", "NOERROR", "", []string{"gslb.example.test", "A"}},
		// Malformed options (raw: FAMILY, SOURCE, SCOPE, ADDRESS).
		{"unknown family", "FORMERR", "", []string{"+ednsopt=8:00031800C63364", "gslb.example.test", "A"}},
		{"scope set in a query", "FORMERR", "", []string{"+ednsopt=8:00011808C63364", "gslb.example.test", "A"}},
		{"bits set past source", "FORMERR", "", []string{"+ednsopt=8:00011700C63365", "gslb.example.test", "A"}},
		{"address too long", "FORMERR", "", []string{"+ednsopt=8:00011000C63364", "gslb.example.test", "A"}},
		{"address too short", "FORMERR", "", []string{"+ednsopt=8:00011800C633", "gslb.example.test", "A"}},
		{"source > 32", "FORMERR", "", []string{"+ednsopt=8:00012100C633640100", "gslb.example.test", "A"}},
		{"source > 128", "FORMERR", "", []string{"+ednsopt=8:00028100" + strings.Repeat("00", 17), "gslb.example.test", "AAAA"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := dig(t, s.g.DNS, append([]string{"+norec", "+nocookie"}, tc.args...)...)
			if st := status(out); st != tc.status {
				t.Errorf("status %s, want %s\n%s", st, tc.status, out)
			}
			if got := ecsLine(out); got != tc.ecs {
				t.Errorf("CLIENT-SUBNET %q, want %q\n%s", got, tc.ecs, out)
			}
		})
	}
}

func TestGSLBConfigReload(t *testing.T) {
	dir, mmdb := gslbDir(t)
	cfg := writeConfig(t, "gslb:\n  geoip: "+mmdb+"\n  poll: 100ms\n")
	g := startGslbd(t, "-zones", dir, "-config", cfg)
	ask := func() string {
		return strings.TrimSpace(dig(t, g.DNS, "+short", "+norec", "+subnet=81.2.69.0/24", "gslb.example.test", "A"))
	}
	if got := ask(); got != "192.0.2.10" {
		t.Fatalf("before: %q", got)
	}
	// A broken edit is rejected with its path; the previous config keeps serving.
	y, err := os.ReadFile(filepath.Join(dir, "gslb.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "gslb.yaml"), strings.Replace(string(y), "first_n: 1", "first_n: 0", 1))
	waitFor(t, 5*time.Second, "the rejection to be logged", func() bool {
		return strings.Contains(g.Logs(), "gslb config rejected") && strings.Contains(g.Logs(), "first_n")
	})
	if got := ask(); got != "192.0.2.10" {
		t.Errorf("after a broken edit: %q, want the previous config's answer", got)
	}
	// A good edit (London clients now prefer Frankfurt) is applied.
	writeFile(t, filepath.Join(dir, "gslb.yaml"), strings.Replace(string(y), `"country:GB": [lon, fra]`, `"country:GB": [fra, lon]`, 1))
	waitFor(t, 5*time.Second, "the edited config", func() bool { return ask() == "203.0.113.10" })
}
