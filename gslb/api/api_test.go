package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gslbd/gslbd/gslb"
	"github.com/gslbd/gslbd/gslb/state"
)

const testGSLB = `
sites:
  lon: {lat: 51.5, lon: -0.13, country: GB, continent: EU, capacity: 1000}
  fra: {lat: 50.1, lon: 8.68, country: DE, continent: EU, capacity: 1000}
pools:
  web:
    endpoints:
      - {name: lon1, address: 192.0.2.1, site: lon}
      - {name: fra1, address: 192.0.2.11, site: fra}
records:
  - {name: www.example.com., pool: web, ttl: 30, chain: [up]}
`

// Tokens of the tests: the token is its scope's name backwards.
var testTokens = map[string]string{"read": "daer-token", "write": "etirw-token", "admin": "nimda-token"}

type fixture struct {
	srv     *Server
	http    *httptest.Server
	engine  *gslb.Engine
	store   state.Store
	reg     *prometheus.Registry
	reloads int
}

func newFixture(t *testing.T, mod func(*Config, *Backend)) *fixture {
	t.Helper()
	cfg, err := gslb.Load("gslb.yaml", []byte(testGSLB))
	if err != nil {
		t.Fatal(err)
	}
	e := gslb.NewEngine(gslb.EngineConfig{})
	e.SetConfig(cfg)
	st, err := state.OpenBolt(filepath.Join(t.TempDir(), "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{engine: e, store: st, reg: prometheus.NewRegistry()}
	c := Config{Registerer: f.reg, MaxBody: 1024}
	for _, scope := range []Scope{ScopeRead, ScopeWrite, ScopeAdmin} {
		c.Tokens = append(c.Tokens, Token{Name: scope.String() + "-bot", SHA256: HashToken(testTokens[scope.String()]), Scope: scope})
	}
	b := Backend{Engine: e, Store: st, Vantage: "test-1",
		Ready: func() error { return nil },
		Reload: func(context.Context) (ReloadResult, error) {
			f.reloads++
			return ReloadResult{Zones: []string{"example.com."}, GSLB: "gslb.yaml"}, nil
		},
		Anycast: func() any { return map[string]any{"router_id": "192.0.2.250", "vips": []any{}} },
	}
	if mod != nil {
		mod(&c, &b)
	}
	f.srv, err = New(c, b)
	if err != nil {
		t.Fatal(err)
	}
	f.http = httptest.NewServer(f.srv)
	t.Cleanup(f.http.Close)
	return f
}

type reply struct {
	code int
	ct   string
	body []byte
}

func (r reply) problem(t *testing.T) Problem {
	t.Helper()
	if r.ct != "application/problem+json" {
		t.Fatalf("content type %q, want application/problem+json; body %s", r.ct, r.body)
	}
	var p Problem
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Status != r.code || p.Title == "" || p.Type == "" {
		t.Fatalf("problem %+v does not match status %d or lacks title/type", p, r.code)
	}
	return p
}

func (f *fixture) do(t *testing.T, method, path, scope, body string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.http.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if scope != "" {
		tok := testTokens[scope]
		if tok == "" {
			tok = scope // a raw (wrong) token
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return reply{code: resp.StatusCode, ct: resp.Header.Get("Content-Type"), body: data}
}

// Every route is in the committed OpenAPI document and every documented
// operation is a route; each is exercised below.
func TestOpenAPICoversRoutes(t *testing.T) {
	f := newFixture(t, nil)
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	routes := f.srv.Routes()
	for _, r := range routes {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is not in openapi.json", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(routes, d) {
			t.Errorf("openapi.json documents %s, which is not a route", d)
		}
	}
	if r := f.do(t, "GET", "/v1/openapi.json", "", ""); r.code != 200 || !strings.Contains(string(r.body), `"/v1/overrides"`) {
		t.Errorf("GET /v1/openapi.json: %d", r.code)
	}
}

func TestEveryRoute(t *testing.T) {
	f := newFixture(t, nil)
	created := f.do(t, "POST", "/v1/overrides", "write", `{"target":{"type":"site","name":"fra"},"kind":"drain","ramp":"5m","reason":"maintenance window"}`)
	if created.code != 201 {
		t.Fatalf("POST /v1/overrides: %d %s", created.code, created.body)
	}
	var ov OverrideView
	if err := json.Unmarshal(created.body, &ov); err != nil || ov.ID == "" || ov.Author != "write-bot" || ov.Ramp != "5m0s" || ov.Drain == nil {
		t.Fatalf("created override %+v (%v): want an id, author write-bot (from the token), ramp 5m0s and drain progress", ov, err)
	}
	cases := []struct {
		method, path, scope, body string
		code                      int
		contains                  string
	}{
		{"GET", "/healthz", "", "", 200, "ok"},
		{"GET", "/readyz", "", "", 200, "ready"},
		{"GET", "/v1/openapi.json", "", "", 200, "openapi"},
		{"GET", "/v1/status", "read", "", 200, `"quorum": "majority"`},
		{"GET", "/v1/sites", "read", "", 200, `"name": "lon"`},
		{"GET", "/v1/sites/fra", "read", "", 200, `"fra1"`},
		{"GET", "/v1/sites/mars", "read", "", 404, "mars"},
		{"GET", "/v1/pools", "read", "", 200, `"web"`},
		{"GET", "/v1/pools/web", "read", "", 200, `"lon1"`},
		{"GET", "/v1/pools/nope", "read", "", 404, "nope"},
		{"GET", "/v1/endpoints", "read", "", 200, `"effective_weight"`},
		{"GET", "/v1/endpoints/lon1", "read", "", 200, `"192.0.2.1"`},
		{"GET", "/v1/endpoints/x", "read", "", 404, "endpoint"},
		{"GET", "/v1/records", "read", "", 200, "www.example.com."},
		{"GET", "/v1/records/WWW.example.com", "read", "", 200, `"chain"`},
		{"GET", "/v1/records/none.example.com", "read", "", 404, "none.example.com."},
		{"GET", "/v1/explain?name=www.example.com&client=198.51.100.7", "read", "", 200, `"trace"`},
		{"GET", "/v1/explain?name=www.example.com&client=banana", "read", "", 400, "client"},
		{"GET", "/v1/explain?name=www.example.com&client=198.51.100.7&type=MX", "read", "", 400, "type"},
		{"GET", "/v1/explain?name=other.example.com&client=198.51.100.7", "read", "", 404, "not a GSLB record"},
		{"GET", "/v1/vantages", "read", "", 200, `"self": "test-1"`},
		{"GET", "/v1/overrides", "read", "", 200, ov.ID},
		{"GET", "/v1/overrides/" + ov.ID, "read", "", 200, `"kind": "drain"`},
		{"GET", "/v1/overrides/nope", "read", "", 404, "nope"},
		{"GET", "/v1/audit", "read", "", 200, "override.set"},
		{"GET", "/v1/audit?target=site/lon", "read", "", 200, "[]"},
		{"GET", "/v1/audit?limit=0", "read", "", 400, "limit"},
		{"POST", "/v1/reload", "admin", "", 200, "example.com."},
		{"GET", "/v1/anycast", "read", "", 200, "router_id"},
		{"DELETE", "/v1/overrides/" + ov.ID, "write", "", 400, "reason"},
		{"DELETE", "/v1/overrides/" + ov.ID + "?reason=done", "write", "", 204, ""},
		{"DELETE", "/v1/overrides/" + ov.ID + "?reason=again", "write", "", 404, ov.ID},
		{"GET", "/v1/nothing", "read", "", 404, "not a route"},
	}
	seen := map[string]bool{}
	for _, c := range cases {
		r := f.do(t, c.method, c.path, c.scope, c.body)
		if r.code != c.code || !strings.Contains(string(r.body), c.contains) {
			t.Errorf("%s %s: %d %s\nwant %d containing %q", c.method, c.path, r.code, r.body, c.code, c.contains)
		}
		if r.code >= 400 {
			r.problem(t)
		}
		seen[c.method] = true
	}
	if f.reloads != 1 {
		t.Errorf("reload ran %d times, want 1", f.reloads)
	}
	// Every route was hit at least once (by its metric).
	for _, rt := range f.srv.Routes() {
		n := 0.0
		for _, code := range []string{"200", "201", "204", "400", "404"} {
			n += testutil.ToFloat64(f.srv.metrics.requests.WithLabelValues(rt, code))
		}
		if n == 0 {
			t.Errorf("route %s was not exercised", rt)
		}
	}
}

func TestAuth(t *testing.T) {
	f := newFixture(t, nil)
	body := `{"target":{"type":"endpoint","name":"lon1"},"kind":"down","reason":"incident 42"}`
	cases := []struct {
		name, method, path, scope, body string
		code                            int
		contains                        string
	}{
		{"no token read", "GET", "/v1/status", "", "", 401, "Bearer"},
		{"no token write", "POST", "/v1/overrides", "", body, 401, "Bearer"},
		{"wrong token", "POST", "/v1/overrides", "not-a-token", body, 401, "matches no configured token"},
		{"read cannot write", "POST", "/v1/overrides", "read", body, 403, "needs write"},
		{"write cannot reload", "POST", "/v1/reload", "write", "", 403, "needs admin"},
		{"admin can write", "POST", "/v1/overrides", "admin", body, 201, "incident 42"},
		{"health is open", "GET", "/healthz", "", "", 200, "ok"},
	}
	for _, c := range cases {
		r := f.do(t, c.method, c.path, c.scope, c.body)
		if r.code != c.code || !strings.Contains(string(r.body), c.contains) {
			t.Errorf("%s: %d %s; want %d containing %q", c.name, r.code, r.body, c.code, c.contains)
		}
		if r.code == 401 {
			r.problem(t)
		}
	}
	ovs, _ := f.store.Overrides(t.Context(), time.Now())
	if len(ovs) != 1 || ovs[0].Author != "admin-bot" {
		t.Errorf("overrides after the auth cases: %+v; want only admin-bot's", ovs)
	}
	// Anonymous reads when configured; writes still need a token.
	g := newFixture(t, func(c *Config, _ *Backend) { c.AnonymousRead = true })
	if r := g.do(t, "GET", "/v1/status", "", ""); r.code != 200 {
		t.Errorf("anonymous read: %d", r.code)
	}
	if r := g.do(t, "POST", "/v1/overrides", "", body); r.code != 401 {
		t.Errorf("anonymous write: %d, want 401", r.code)
	}
	for _, bad := range []Token{{Name: "", SHA256: HashToken("x"), Scope: ScopeRead}, {Name: "a", SHA256: "abc", Scope: ScopeRead}, {Name: "a", SHA256: HashToken("x")}} {
		if _, err := newTokenSet([]Token{bad}); err == nil || !strings.Contains(err.Error(), "api.tokens[0]") {
			t.Errorf("token %+v: %v, want an error naming api.tokens[0]", bad, err)
		}
	}
}

// Bad requests are 400s (or 413/415) whose problem names the field.
func TestBadRequests(t *testing.T) {
	f := newFixture(t, nil)
	cases := []struct {
		name, body, field, detail string
		code                      int
	}{
		{"malformed", `{"target":`, "", "ends in the middle", 400},
		{"syntax", `{"kind": down}`, "", "at byte", 400},
		{"empty", ``, "", "empty", 400},
		{"unknown field", `{"target":{"type":"site","name":"lon"},"kind":"down","reason":"r","colour":"red"}`, "colour", "unknown field", 400},
		{"wrong type", `{"target":{"type":"site","name":"lon"},"kind":"down","reason":7}`, "reason", "string", 400},
		{"unknown target", `{"target":{"type":"site","name":"mars"},"kind":"down","reason":"r"}`, "target.name", "mars", 400},
		{"unknown target type", `{"target":{"type":"planet","name":"mars"},"kind":"down","reason":"r"}`, "target.type", "planet", 400},
		{"unknown kind", `{"target":{"type":"site","name":"lon"},"kind":"sideways","reason":"r"}`, "kind", "sideways", 400},
		{"no reason", `{"target":{"type":"site","name":"lon"},"kind":"down"}`, "reason", "required", 400},
		{"bad ramp", `{"target":{"type":"site","name":"lon"},"kind":"drain","reason":"r","ramp":"5 minutes"}`, "ramp", "duration", 400},
		{"ramp on down", `{"target":{"type":"site","name":"lon"},"kind":"down","reason":"r","ramp":"5m"}`, "ramp", "only for drain", 400},
		{"bad expires", `{"target":{"type":"site","name":"lon"},"kind":"down","reason":"r","expires":"tomorrow"}`, "expires", "RFC 3339", 400},
		{"past expires", `{"target":{"type":"site","name":"lon"},"kind":"down","reason":"r","expires":"2001-01-01T00:00:00Z"}`, "expires", "past", 400},
		{"bad ttl", `{"target":{"type":"site","name":"lon"},"kind":"down","reason":"r","ttl":"-1h"}`, "ttl", "positive", 400},
		{"two objects", `{"target":{"type":"site","name":"lon"},"kind":"down","reason":"r"}{}`, "", "single JSON object", 400},
		{"too large", `{"reason":"` + strings.Repeat("x", 2000) + `"}`, "", "exceeds 1024 bytes", 413},
	}
	for _, c := range cases {
		r := f.do(t, "POST", "/v1/overrides", "write", c.body)
		if r.code != c.code {
			t.Errorf("%s: %d %s; want %d", c.name, r.code, r.body, c.code)
			continue
		}
		p := r.problem(t)
		if p.Field != c.field || !strings.Contains(p.Detail, c.detail) {
			t.Errorf("%s: field %q detail %q; want field %q, detail containing %q", c.name, p.Field, p.Detail, c.field, c.detail)
		}
	}
	req, _ := http.NewRequest("POST", f.http.URL+"/v1/overrides", strings.NewReader("kind=down"))
	req.Header.Set("Authorization", "Bearer "+testTokens["write"])
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 415 {
		t.Errorf("form body: %d, want 415", resp.StatusCode)
	}
	if ovs, _ := f.store.Overrides(t.Context(), time.Now()); len(ovs) != 0 {
		t.Errorf("bad requests stored overrides: %+v", ovs)
	}
}

// unavailableStore fails every write the way etcd without quorum does.
type unavailableStore struct{ state.Store }

func (unavailableStore) PutOverride(context.Context, state.Override) (state.Override, error) {
	return state.Override{}, errors.New("put override site/lon: state store unavailable: etcd did not commit within 2s (no quorum?)" +
		": " + state.ErrUnavailable.Error())
}

func (u unavailableStore) ClearOverride(context.Context, string, string, string) error {
	return errors.Join(errors.New("clear override: etcd did not commit within 2s (no quorum?)"), state.ErrUnavailable)
}

func (unavailableStore) Overrides(context.Context, time.Time) ([]state.Override, error) {
	return nil, fmt.Errorf("overrides: %w: not opened yet", state.ErrUnavailable)
}

func TestStoreUnavailable(t *testing.T) {
	f := newFixture(t, func(_ *Config, b *Backend) {
		b.Store = unavailableStore{b.Store}
	})
	r := f.do(t, "DELETE", "/v1/overrides/abc?reason=x", "write", "")
	if r.code != 503 || !strings.Contains(r.problem(t).Detail, "no quorum") {
		t.Errorf("clear without quorum: %d %s; want 503 saying no quorum", r.code, r.body)
	}
	// The status stays readable, with the overrides the answers follow.
	f.engine.SetOverrides([]state.Override{{ID: "x1", Target: state.Target{Type: "site", Name: "lon"}, Kind: state.KindDown,
		Reason: "incident", Author: "ops", Created: time.Now()}})
	r = f.do(t, "GET", "/v1/status", "read", "")
	var st StatusView
	if r.code != 200 || json.Unmarshal(r.body, &st) != nil || !strings.Contains(st.StateError, "not opened yet") ||
		len(st.Overrides) != 1 || st.Overrides[0].ID != "x1" {
		t.Errorf("status while the store is unavailable: %d %s", r.code, r.body)
	}
}

func TestReadyAndReloadErrors(t *testing.T) {
	f := newFixture(t, func(_ *Config, b *Backend) {
		b.Ready = func() error { return errors.New("zones not loaded yet") }
		b.Reload = func(context.Context) (ReloadResult, error) {
			return ReloadResult{}, errors.New("zones/example.com.zone:12: bad A record")
		}
		b.Anycast = nil
	})
	if r := f.do(t, "GET", "/readyz", "", ""); r.code != 503 || !strings.Contains(r.problem(t).Detail, "zones not loaded") {
		t.Errorf("readyz: %d %s", r.code, r.body)
	}
	if r := f.do(t, "POST", "/v1/reload", "admin", ""); r.code != 422 || !strings.Contains(r.problem(t).Detail, "example.com.zone:12") {
		t.Errorf("reload: %d %s", r.code, r.body)
	}
	if r := f.do(t, "GET", "/v1/anycast", "read", ""); r.code != 404 || !strings.Contains(r.problem(t).Detail, "anycast") {
		t.Errorf("anycast unconfigured: %d %s", r.code, r.body)
	}
}

// An override set through the API reaches the engine's answers through
// Sync (the watch loop gslbd runs) well within a second.
func TestOverrideReachesAnswers(t *testing.T) {
	f := newFixture(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f.engine.Sync(ctx, gslb.SyncConfig{Store: f.store, Vantage: "test-1"}) }()
	defer func() { cancel(); <-done }()
	start := time.Now()
	r := f.do(t, "POST", "/v1/overrides", "write", `{"target":{"type":"site","name":"lon"},"kind":"maintenance","reason":"rack move"}`)
	if r.code != 201 {
		t.Fatalf("POST: %d %s", r.code, r.body)
	}
	for {
		st := f.engine.EndpointStatus("lon1")
		if !st.Up && st.Override != nil && st.Override.Kind == state.KindMaintenance {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("lon1 still %+v one second after the override", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	a := f.engine.Explain(gslb.Query{Name: "www.example.com.", Resolver: mustAddr("198.51.100.7")})
	if len(a.Addrs) != 1 || a.Addrs[0].String() != "192.0.2.11" {
		t.Errorf("answer under lon maintenance: %v, want only fra1 192.0.2.11", a.Addrs)
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
