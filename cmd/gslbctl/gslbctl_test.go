package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gslbd/gslbd/gslb"
	"github.com/gslbd/gslbd/gslb/api"
	"github.com/gslbd/gslbd/gslb/state"
)

const ctlGSLB = `
sites:
  lon: {country: GB, continent: EU, capacity: 100}
  fra: {country: DE, continent: EU, capacity: 100}
pools:
  web:
    endpoints:
      - {name: lon-1, address: 192.0.2.1, site: lon}
      - {name: fra-1, address: 192.0.2.11, site: fra}
      - {name: fra, address: 192.0.2.12, site: fra}
records:
  - {name: www.example.com., pool: web, ttl: 1, ttl_min: 1, chain: [up]}
`

const writeToken = "write-token-for-tests"

// apiServer runs gslb/api over a bbolt store with Sync applying changes,
// like gslbd does.
func apiServer(t *testing.T) (url string, e *gslb.Engine) {
	t.Helper()
	cfg, err := gslb.Load("gslb.yaml", []byte(ctlGSLB))
	if err != nil {
		t.Fatal(err)
	}
	e = gslb.NewEngine(gslb.EngineConfig{})
	e.SetConfig(cfg)
	st, err := state.OpenBolt(filepath.Join(t.TempDir(), "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Config{Tokens: []api.Token{{Name: "ops", SHA256: api.HashToken(writeToken), Scope: api.ScopeWrite}}},
		api.Backend{Engine: e, Store: st, Vantage: "here"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.Sync(ctx, gslb.SyncConfig{Store: st, Vantage: "here"}); close(done) }()
	hs := httptest.NewServer(srv)
	t.Cleanup(func() { hs.Close(); cancel(); <-done; st.Close() })
	return hs.URL, e
}

func ctl(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return o.String(), e.String(), code
}

func TestOnlineCommands(t *testing.T) {
	url, e := apiServer(t)
	t.Setenv("GSLB_API", url)
	t.Setenv("GSLB_TOKEN", writeToken)

	out, errOut, code := ctl(t, "status")
	if code != 0 || !regexp.MustCompile(`lon-1\s+192\.0\.2\.1\s+lon\s+web\s+unmonitored\s+yes`).MatchString(out) {
		t.Fatalf("status: %d %s\n%s", code, errOut, out)
	}
	// A bare name that is both a site and an endpoint must be qualified.
	if _, errOut, code = ctl(t, "drain", "fra", "--reason", "x"); code != 2 || !strings.Contains(errOut, "both a site and an endpoint") {
		t.Errorf("ambiguous drain: %d %s", code, errOut)
	}
	if _, errOut, code = ctl(t, "drain", "mars", "--reason", "x"); code != 2 || !strings.Contains(errOut, "neither a site nor an endpoint") {
		t.Errorf("unknown drain target: %d %s", code, errOut)
	}
	// Drain London and watch it empty: the ramp (300ms), then the TTL (1s).
	start := time.Now()
	out, errOut, code = ctl(t, "drain", "lon", "--over", "300ms", "--reason", "rack move", "--wait", "--poll", "50ms")
	if code != 0 || !strings.Contains(out, "draining site/lon over 300ms") || !strings.Contains(out, "site/lon: drained") {
		t.Fatalf("drain --wait: %d %s\n%s", code, errOut, out)
	}
	if d := time.Since(start); d < 1300*time.Millisecond {
		t.Errorf("drained after %s: before the ramp and the 1s TTL were over", d)
	}
	if st := e.EndpointStatus("lon-1"); st.Up {
		t.Errorf("lon-1 still in answers after the drain: %+v", st)
	}
	out, _, code = ctl(t, "override", "list", "-o", "json")
	var ovs []api.OverrideView
	if code != 0 || json.Unmarshal([]byte(out), &ovs) != nil || len(ovs) != 1 || ovs[0].Author != "ops" || !ovs[0].Drain.Drained {
		t.Fatalf("override list -o json: %d %s", code, out)
	}
	if out, errOut, code = ctl(t, "override", "set", "endpoint/fra-1", "down", "--reason", "disk", "--ttl", "1h"); code != 0 || !strings.Contains(out, "endpoint/fra-1 down by ops") {
		t.Errorf("override set: %d %s %s", code, out, errOut)
	}
	if _, errOut, code = ctl(t, "override", "set", "endpoint/fra-1", "sideways", "--reason", "x"); code != 1 || !strings.Contains(errOut, "400 invalid field: kind") {
		t.Errorf("override set with a bad kind: %d %s", code, errOut)
	}
	if _, errOut, code = ctl(t, "override", "clear", ovs[0].ID); code != 2 || !strings.Contains(errOut, "--reason") {
		t.Errorf("clear without a reason: %d %s", code, errOut)
	}
	if out, errOut, code = ctl(t, "override", "clear", ovs[0].ID, "--reason", "back"); code != 0 {
		t.Errorf("override clear: %d %s %s", code, out, errOut)
	}
	// The clear reaches answers through the store's watch (Sync), in well
	// under a second; wait for it rather than race it.
	for deadline := time.Now().Add(time.Second); !e.EndpointStatus("lon-1").Up; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("lon-1 not back in answers a second after the clear")
		}
	}
	out, _, code = ctl(t, "audit")
	for _, want := range []string{"override.set  site/lon", "override.clear  site/lon", "ops"} {
		if code != 0 || !strings.Contains(strings.Join(strings.Fields(out), "  "), want) {
			t.Errorf("audit lacks %q:\n%s", want, out)
		}
	}
	out, errOut, code = ctl(t, "explain", "www.example.com", "--client", "198.51.100.1")
	if code != 0 || !strings.Contains(out, "answer: answered 192.0.2.1 192.0.2.12") || !strings.Contains(out, "fra-1") {
		t.Errorf("explain online: %d %s\n%s", code, errOut, out)
	}
	// Without a token writes are refused, and the message says what to set.
	t.Setenv("GSLB_TOKEN", "")
	if _, errOut, code = ctl(t, "override", "set", "site/lon", "down", "--reason", "x"); code != 1 || !strings.Contains(errOut, "401") || !strings.Contains(errOut, "GSLB_TOKEN") {
		t.Errorf("write without a token: %d %s", code, errOut)
	}
	if _, errOut, code = ctl(t, "status", "-o", "yaml"); code != 2 || !strings.Contains(errOut, "table or json") {
		t.Errorf("bad --output: %d %s", code, errOut)
	}
}

func TestSimulateFrankfurtDown(t *testing.T) {
	dir := filepath.Join("..", "..", "zones", "default")
	traffic := filepath.Join(dir, "traffic.yaml")
	out, errOut, code := ctl(t, "simulate", "--zones", dir, "--traffic", traffic, "--down", "fra", "-o", "json", "--fail-on-overload")
	if code != 1 || !strings.Contains(errOut, "overloaded in this scenario: lon") {
		t.Fatalf("simulate --down fra --fail-on-overload: %d %s", code, errOut)
	}
	res, got := simResult(t, out)
	// Germany's 3500/s and France's 1500/s go to Frankfurt by the geo map;
	// with Frankfurt down they fail over to London, on top of Britain's 3000/s.
	if got["fra"].BaselineRPS != 5000 || got["fra"].RPS != 0 || got["lon"].RPS != 8000 || !got["lon"].Overloaded || got["nyc"].RPS != 5000 {
		t.Errorf("split %+v: want fra 5000 -> 0, lon 3000 -> 8000 (overloaded), nyc unchanged", res.Sites)
	}
	if res.TotalRPS != 15000 || res.Unanswered != 0 {
		t.Errorf("total %g unanswered %g", res.TotalRPS, res.Unanswered)
	}
	out, _, code = ctl(t, "simulate", "--zones", dir, "--traffic", traffic)
	if code != 0 || !strings.Contains(out, "no change (baseline)") || strings.Contains(out, "OVERLOADED") {
		t.Errorf("baseline: %d\n%s", code, out)
	}
	for _, c := range []struct{ args, want string }{
		{"--down mars", "--down mars: no site, endpoint or pool"},
		{"--drain lon", "want TARGET=PERCENT"},
		{"--drain lon=150%", "0..100"},
	} {
		_, errOut, code := ctl(t, append([]string{"simulate", "--zones", dir, "--traffic", traffic}, strings.Fields(c.args)...)...)
		if code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("simulate %s: %d %s, want %q", c.args, code, errOut, c.want)
		}
	}
}

func TestTokenAndCompletion(t *testing.T) {
	out, _, code := ctl(t, "token", "new", "alice", "--scope", "write")
	m := regexp.MustCompile(`(?s)token .*?:\n  (\S+)\n.*sha256: ([0-9a-f]{64})`).FindStringSubmatch(out)
	if code != 0 || m == nil || api.HashToken(m[1]) != m[2] || !strings.Contains(out, "scope: write") {
		t.Fatalf("token new:\n%s", out)
	}
	out, _, code = ctl(t, "completion", "bash")
	if code != 0 || !strings.Contains(out, "__start_gslbctl") {
		t.Errorf("completion bash: %d, %d bytes", code, len(out))
	}
}

// Address and token come from flags, then GSLB_API/GSLB_TOKEN, then the
// config file; a typo in the file is an error naming it.
func TestClientSettings(t *testing.T) {
	url, _ := apiServer(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("api: "+url+"\ntoken: "+writeToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GSLB_API", "")
	t.Setenv("GSLB_TOKEN", "")
	if out, errOut, code := ctl(t, "--config", cfg, "override", "set", "site/lon", "down", "--reason", "from the file"); code != 0 || !strings.Contains(out, "by ops") {
		t.Fatalf("settings from the file: %d %s %s", code, out, errOut)
	}
	// The environment beats the file, a flag beats both.
	t.Setenv("GSLB_TOKEN", "wrong")
	if _, errOut, code := ctl(t, "--config", cfg, "override", "list"); code != 1 || !strings.Contains(errOut, "401") {
		t.Errorf("GSLB_TOKEN should beat the file: %d %s", code, errOut)
	}
	if _, errOut, code := ctl(t, "--config", cfg, "--token", writeToken, "override", "list"); code != 0 {
		t.Errorf("--token should beat GSLB_TOKEN: %d %s", code, errOut)
	}
	if err := os.WriteFile(cfg, []byte("apii: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := ctl(t, "--config", cfg, "status"); code != 1 || !strings.Contains(errOut, cfg) || !strings.Contains(errOut, "apii") {
		t.Errorf("unknown key in the file: %d %s", code, errOut)
	}
	if _, errOut, code := ctl(t, "--api", "http://127.0.0.1:1", "status"); code != 1 || !strings.Contains(errOut, "cannot reach gslbd at http://127.0.0.1:1") {
		t.Errorf("unreachable API: %d %s", code, errOut)
	}
}

// With a capacity filter, simulate feeds each round's load back (as lbd's
// feed does): London's excess spills to the next site by proximity
// instead of overloading it.
func TestSimulateCapacitySpill(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join("..", "..", "zones", "default")
	zone, err := os.ReadFile(filepath.Join(src, "example.com.zone"))
	if err != nil {
		t.Fatal(err)
	}
	gy, err := os.ReadFile(filepath.Join(src, "gslb.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := os.ReadFile(filepath.Join(src, "traffic.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	capacityChain := strings.Replace(string(gy), "chain: [up, proximity, first_n: 1]", "chain: [up, proximity, capacity, first_n: 1]", 1)
	if capacityChain == string(gy) {
		t.Fatal("zones/default/gslb.yaml no longer has near.example.com's chain [up, proximity, first_n: 1]")
	}
	for name, data := range map[string]string{
		"example.com.zone": string(zone),
		"gslb.yaml":        capacityChain,
		"traffic.yaml":     strings.Replace(string(tr), "record: geo.example.com", "record: near.example.com", 1),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, code := ctl(t, "simulate", "--zones", dir, "--traffic", filepath.Join(dir, "traffic.yaml"), "--down", "fra", "-o", "json", "--rounds", "64")
	if code != 0 {
		t.Fatalf("simulate: %d %s", code, errOut)
	}
	res, got := simResult(t, out)
	if len(res.Overloaded) != 0 || got["lon"].RPS > 6000*1.05 || got["lon"].RPS < 5000 || got["nyc"].RPS <= 5000 {
		t.Errorf("capacity spill with fra down: %+v; want lon near but not over 6000/s and the excess at nyc", res.Sites)
	}
}

// simResult decodes simulate's JSON and indexes its sites by name.
func simResult(t *testing.T, out string) (SimResult, map[string]SiteLoad) {
	t.Helper()
	var res SimResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("simulate -o json: %v\n%s", err, out)
	}
	got := map[string]SiteLoad{}
	for _, s := range res.Sites {
		got[s.Site] = s
	}
	return res, got
}
