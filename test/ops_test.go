package test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gslbd/gslbd/gslb/api"
	"github.com/gslbd/gslbd/gslb/state/etcdtest"
)

const (
	opsWriteToken = "ops-write-token-0123456789"
	opsReadToken  = "ops-read-token-0123456789"
)

// opsSetup is a zones directory with the GSLB test config (TTL 2 s, so
// drains complete quickly), its backends and a GeoIP fixture.
type opsSetup struct {
	dir, mmdb string
	lon, fra  *backend
}

func newOpsSetup(t *testing.T) *opsSetup {
	t.Helper()
	s := &opsSetup{dir: copyZones(t)}
	s.lon, s.fra = startBackend(t, "127.0.0.1:0"), startBackend(t, "127.0.0.1:0")
	y := strings.NewReplacer("LONPORT", s.lon.port(), "FRAPORT", s.fra.port(), "ttl: 20", "ttl: 2\n    ttl_min: 1").Replace(gslbYAML)
	writeFile(t, filepath.Join(s.dir, "gslb.yaml"), y)
	s.mmdb = filepath.Join(t.TempDir(), "city.mmdb")
	geoFixture(t, s.mmdb)
	return s
}

// config writes a gslbd config with the API on a free loopback port and
// the given state: section.
func (s *opsSetup) config(t *testing.T, stateSection string) string {
	t.Helper()
	return writeConfig(t, "gslb:\n  geoip: "+s.mmdb+"\n"+
		"api:\n  listen: 127.0.0.1:0\n  tokens:\n"+
		"    - {name: ops, scope: write, sha256: "+api.HashToken(opsWriteToken)+"}\n"+
		"    - {name: viewer, scope: read, sha256: "+api.HashToken(opsReadToken)+"}\n"+
		stateSection)
}

func londonAnswer(t *testing.T, g *gslbd) string {
	t.Helper()
	return strings.TrimSpace(dig(t, g.DNS, "+short", "+norec", "+subnet=81.2.69.0/24", "gslb.example.test", "A"))
}

// apiCall sends a request to g's API and returns the status and body.
func apiCall(t *testing.T, g *gslbd, method, path, token, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+g.API+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

func gslbctlEnv(t *testing.T, g *gslbd, token string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "gslbctl"), args...)
	cmd.Env = append(os.Environ(), "GSLB_API=http://"+g.API, "GSLB_TOKEN="+token)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// kill9 kills the process with SIGKILL (no drain, no cleanup).
func (g *gslbd) kill9(t *testing.T) {
	t.Helper()
	g.stopped = true
	_ = g.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-g.done:
	case <-time.After(5 * time.Second):
		t.Fatal("gslbd did not die on SIGKILL")
	}
}

// An operator drains London from the CLI and watches it empty; writes
// without a token are refused; the override survives kill -9.
func TestOpsDrainFromCLIAndKill9(t *testing.T) {
	s := newOpsSetup(t)
	cfg := s.config(t, "state:\n  path: "+filepath.Join(t.TempDir(), "state.db")+"\n  vantage: lon-dns-1\n")
	g := startGslbd(t, "-zones", s.dir, "-config", cfg)
	if g.API == "" {
		t.Fatalf("no api address in the listening line:\n%s", g.Logs())
	}
	waitFor(t, 5*time.Second, "London to answer lon", func() bool { return londonAnswer(t, g) == "192.0.2.10" })

	body := `{"target":{"type":"site","name":"lon"},"kind":"down","reason":"no token"}`
	if code, out := apiCall(t, g, "POST", "/v1/overrides", "", body); code != 401 || !strings.Contains(out, "authentication required") {
		t.Errorf("write without a token: %d %s", code, out)
	}
	if code, out := apiCall(t, g, "POST", "/v1/overrides", opsReadToken, body); code != 403 || !strings.Contains(out, "insufficient scope") {
		t.Errorf("write with a read token: %d %s", code, out)
	}
	if code, out := apiCall(t, g, "GET", "/readyz", "", ""); code != 200 {
		t.Errorf("readyz: %d %s", code, out)
	}

	start := time.Now()
	out, err := gslbctlEnv(t, g, opsWriteToken, "drain", "lon", "--over", "1s", "--reason", "rack move", "--wait", "--poll", "100ms")
	if err != nil || !strings.Contains(out, "site/lon: drained") {
		t.Fatalf("gslbctl drain --wait: %v\n%s", err, out)
	}
	took := time.Since(start)
	t.Logf("drain of lon over 1s with TTL 2s reported drained after %s:\n%s", took.Round(10*time.Millisecond), out)
	if took < 3*time.Second {
		t.Errorf("drained after %s: sooner than the ramp (1s) plus the TTL (2s)", took)
	}
	if got := londonAnswer(t, g); got != "203.0.113.10" {
		t.Errorf("London client after the drain: %q, want fra", got)
	}
	out, err = gslbctlEnv(t, g, opsReadToken, "status")
	if err != nil || !strings.Contains(out, "drain 0% drained") {
		t.Errorf("gslbctl status: %v\n%s", err, out)
	}

	// kill -9, restart on the same state file: the drain is still there.
	g.kill9(t)
	g2 := startGslbd(t, "-zones", s.dir, "-config", cfg)
	waitFor(t, 5*time.Second, "the restarted gslbd to apply the stored drain", func() bool { return londonAnswer(t, g2) == "203.0.113.10" })
	out, err = gslbctlEnv(t, g2, opsReadToken, "override", "list", "-o", "json")
	var ovs []api.OverrideView
	if err != nil || json.Unmarshal([]byte(out), &ovs) != nil || len(ovs) != 1 || ovs[0].Author != "ops" || ovs[0].Reason != "rack move" {
		t.Fatalf("overrides after kill -9: %v\n%s", err, out)
	}
	cleared := time.Now()
	if out, err := gslbctlEnv(t, g2, opsWriteToken, "override", "clear", ovs[0].ID, "--reason", "done"); err != nil {
		t.Fatalf("clear: %v\n%s", err, out)
	}
	waitFor(t, time.Second, "London back within a second of the clear", func() bool { return londonAnswer(t, g2) == "192.0.2.10" })
	t.Logf("clear reached answers in %s", time.Since(cleared).Round(time.Millisecond))
	out, err = gslbctlEnv(t, g2, opsReadToken, "audit")
	if err != nil || strings.Count(out, "site/lon") != 2 || !strings.Contains(out, "override.clear") {
		t.Errorf("audit after the restart: %v\n%s", err, out)
	}
}

// Two gslbd share a 3-member etcd cluster: each sees the other's
// overrides and probe results within a second; one member down changes
// nothing; without quorum the API refuses writes while DNS keeps
// answering from the last state.
func TestOpsTwoNodesShareEtcd(t *testing.T) {
	s := newOpsSetup(t)
	cluster := etcdtest.StartCluster(t, 3)
	cacheDir := t.TempDir()
	section := func(name string) string {
		return "state:\n  backend: etcd\n  vantage: " + name + "\n  publish: 300ms\n  cache: " + filepath.Join(cacheDir, name+".json") +
			"\n  etcd:\n    endpoints: [" + strings.Join(cluster.Endpoints(), ", ") + "]\n    prefix: /gslbd-test/\n    request_timeout: 1s\n"
	}
	a := startGslbd(t, "-zones", s.dir, "-config", s.config(t, section("dns-a")))
	b := startGslbd(t, "-zones", s.dir, "-config", s.config(t, section("dns-b")))
	for _, g := range []*gslbd{a, b} {
		waitFor(t, 5*time.Second, "London to answer lon", func() bool { return londonAnswer(t, g) == "192.0.2.10" })
	}
	// Each sees the other's probe results.
	waitFor(t, 3*time.Second, "b to see a's vantage report", func() bool {
		_, out := apiCall(t, b, "GET", "/v1/vantages", opsReadToken, "")
		return strings.Contains(out, `"vantage": "dns-a"`)
	})

	set := func(g *gslbd, kind string) (int, string) {
		return apiCall(t, g, "POST", "/v1/overrides", opsWriteToken, `{"target":{"type":"site","name":"lon"},"kind":"`+kind+`","reason":"test"}`)
	}
	start := time.Now()
	if code, out := set(a, "down"); code != 201 {
		t.Fatalf("set on a: %d %s", code, out)
	}
	waitFor(t, time.Second, "b to answer fra within a second of a's override", func() bool { return londonAnswer(t, b) == "203.0.113.10" })
	t.Logf("override on a reached b's answers in %s", time.Since(start).Round(time.Millisecond))

	// One member of three down: writes still work and still propagate.
	first := cluster.Leader()
	if err := cluster.Stop(first); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if code, out := set(b, "up"); code != 201 {
		t.Fatalf("set on b with one member down: %d %s", code, out)
	}
	waitFor(t, time.Second, "a to answer lon within a second of b's override", func() bool { return londonAnswer(t, a) == "192.0.2.10" })
	t.Logf("with one etcd member down, b's override reached a in %s", time.Since(start).Round(time.Millisecond))

	// London into maintenance while two of three members still run.
	if code, out := set(a, "maintenance"); code != 201 {
		t.Fatalf("set on a with one member down: %d %s", code, out)
	}
	for _, g := range []*gslbd{a, b} {
		waitFor(t, time.Second, "London in maintenance everywhere", func() bool { return londonAnswer(t, g) == "203.0.113.10" })
	}

	// Two of three down: no quorum. Writes are refused with a clear error;
	// DNS answers from the last state.
	if err := cluster.Stop((first + 1) % 3); err != nil {
		t.Fatal(err)
	}
	code, out := set(a, "down")
	if code != 503 || !strings.Contains(out, "state store unavailable") {
		t.Errorf("write without quorum: %d %s; want 503 saying the store is unavailable", code, out)
	}
	for _, g := range []*gslbd{a, b} {
		if got := londonAnswer(t, g); got != "203.0.113.10" {
			t.Errorf("DNS without etcd quorum: %q, want the last state (lon in maintenance: fra)", got)
		}
	}
	// b restarts (kill -9) during the outage: it applies the last overrides
	// it saw, so London stays in maintenance.
	b.kill9(t)
	b = startGslbd(t, "-zones", s.dir, "-config", s.config(t, section("dns-b")))
	waitFor(t, 5*time.Second, "the restarted b to apply the last known overrides", func() bool { return londonAnswer(t, b) == "203.0.113.10" })
	if !strings.Contains(b.Logs(), "applying the last known overrides") {
		t.Errorf("b's log does not say it uses the last known overrides:\n%s", b.Logs())
	}
	// A gslbd started while etcd has no quorum still serves DNS, refuses
	// writes, and picks the shared state up once quorum is back.
	// (c has never seen the state: it answers by its own probes.)
	c := startGslbd(t, "-zones", s.dir, "-config", s.config(t, section("dns-c")))
	waitFor(t, 5*time.Second, "c to answer without etcd", func() bool { return londonAnswer(t, c) == "192.0.2.10" })
	if code, out := set(c, "down"); code != 503 {
		t.Errorf("write on c without quorum: %d %s", code, out)
	}
	if err := cluster.Restart(first); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "a write to succeed once quorum is back", func() bool { code, _ := set(a, "down"); return code == 201 })
	waitFor(t, 15*time.Second, "b to reopen the store", func() bool { code, _ := set(b, "down"); return code == 201 })
	waitFor(t, 15*time.Second, "c to open the store and apply a's override", func() bool { return londonAnswer(t, c) == "203.0.113.10" })
	if !strings.Contains(c.Logs(), "state store unreachable at start") || !strings.Contains(c.Logs(), "state store opened") {
		t.Errorf("c's log does not tell the story:\n%s", c.Logs())
	}
}

// anycastSection is a gslbd anycast: section announcing vip to BIRD from
// site s while tier (a TCP listener) and DNS are healthy.
func anycastSection(s birdSite, birdPort uint16, vip, tier string) string {
	return fmt.Sprintf(`anycast:
  router_id: %[1]s
  local_asn: %[2]d
  next_hop: %[1]s
  drain: 1s
  peers:
    - {address: 127.0.0.1, asn: %[3]d, port: %[4]d, local_address: %[1]s, hold_time: 3s, keepalive: 1s, connect_retry: 1s}
  vips:
    - prefix: %[5]s
      interval: 200ms
      rise: 2
      fall: 2
      healthy:
        tcp: ["%[6]s"]
`, s.addr, s.asn, birdASN, birdPort, vip, tier)
}

// The last-site guard, fed from the shared state: two sites announce a
// VIP; when one site's tier fails it withdraws (the other still announces),
// but when the last announcing site's own checks fail it de-prefers instead
// of withdrawing, and withdraws once another site announces again.
func TestAnycastLastSiteGuardFromEtcd(t *testing.T) {
	s := newOpsSetup(t)
	cluster := etcdtest.StartCluster(t, 3)
	b := startBIRD(t, siteA, siteB)
	vip := netip.MustParsePrefix("192.0.2.55/32")
	tiers := map[string]net.Listener{}
	gs := map[string]*gslbd{}
	for _, site := range []birdSite{siteA, siteB} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		tiers[site.name] = ln
		cfg := s.config(t, "state:\n  backend: etcd\n  vantage: "+site.name+"\n  publish: 200ms\n  etcd:\n    endpoints: ["+
			strings.Join(cluster.Endpoints(), ", ")+"]\n    prefix: /guard-test/\n"+
			anycastSection(site, b.port, vip.String(), ln.Addr().String()))
		gs[site.name] = startGslbd(t, "-zones", s.dir, "-config", cfg)
	}
	defer func() {
		for _, ln := range tiers {
			ln.Close()
		}
	}()
	protos := func(ps []birdPath) string {
		var out []string
		for _, p := range ps {
			out = append(out, p.proto+"/"+p.localPref)
		}
		slices.Sort(out)
		return strings.Join(out, " ")
	}
	b.waitRoutes(t, vip, "from both sites", func(ps []birdPath) bool { return protos(ps) == "site_a/100 site_b/100" })
	out, err := gslbctlEnv(t, gs["site_a"], opsReadToken, "anycast", "status")
	if err != nil || !regexp.MustCompile(`127\.0\.0\.1\s+65000\s+established`).MatchString(out) ||
		!regexp.MustCompile(`192\.0\.2\.55/32\s+announced\s+.*true\s+healthy`).MatchString(out) {
		t.Errorf("gslbctl anycast status: %v\n%s", err, out)
	}

	// Site B's tier fails: A still announces, so B withdraws.
	tierB := tiers["site_b"].Addr().String()
	tiers["site_b"].Close()
	b.waitRoutes(t, vip, "withdrawn by site_b", func(ps []birdPath) bool { return protos(ps) == "site_a/100" })

	// Site A's tier fails too: A is the last site announcing, so it
	// de-prefers (local_pref 0 through 65535:0) instead of withdrawing...
	tiers["site_a"].Close()
	b.waitRoutes(t, vip, "de-preferred by site_a (guard)", func(ps []birdPath) bool { return protos(ps) == "site_a/0" })
	code, body := apiCall(t, gs["site_a"], "GET", "/v1/anycast", opsReadToken, "")
	if code != 200 || !strings.Contains(body, "last site announcing (guard)") {
		t.Errorf("/v1/anycast while the guard holds: %d %s", code, body)
	}
	time.Sleep(1500 * time.Millisecond) // several rounds (200ms) past fall
	if got := protos(b.routes(t, vip)); got != "site_a/0" {
		t.Fatalf("site_a after 1.5s as the last site: %q, want still announced de-preferred", got)
	}
	if !strings.Contains(gs["site_a"].Logs(), "last site announcing this VIP") {
		t.Errorf("site_a did not say loudly that the guard held the VIP:\n%s", gs["site_a"].Logs())
	}
	// ...until site B is healthy again: then A withdraws.
	ln, err := net.Listen("tcp", tierB)
	if err != nil {
		t.Fatalf("reopen site_b's tier on %s: %v", tierB, err)
	}
	tiers["site_b"] = ln
	b.waitRoutes(t, vip, "announced by site_b only", func(ps []birdPath) bool { return protos(ps) == "site_b/100" })
}
