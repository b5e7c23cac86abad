package dataplane

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type apiHarness struct {
	*ctrlHarness
	srv  *httptest.Server
	feed *Feed
}

func newAPIHarness(t *testing.T) *apiHarness {
	t.Helper()
	h := &apiHarness{ctrlHarness: newCtrl(t, ctrlYAML, "")}
	h.prog.setCounters(Counters{
		VIPs:     map[VIP]VIPCounters{vip80: {Packets: 10, Bytes: 1000, NewFlows: 3, LRUHits: 7, LRUMisses: 3, Drops: map[string]uint64{"no_backend": 2}}},
		Backends: map[BackendKey]BackendCounters{{VIP: vip80, Addr: be2}: {Packets: 6, Bytes: 600, NewFlows: 2}},
	})
	var err error
	if h.feed, err = NewFeed(FeedConfig{Site: "lon", Source: h.prog, Clock: NewFakeClock(t0)}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(MetricsConfig{Counters: h.prog, Controller: h.c, Feed: h.feed}))
	handler, err := NewAPI(APIConfig{Controller: h.c, Counters: h.prog, Feed: h.feed, Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})})
	if err != nil {
		t.Fatal(err)
	}
	h.srv = httptest.NewServer(handler)
	t.Cleanup(h.srv.Close)
	return h
}

// do sends a request and returns the status, the content type and the body.
func (h *apiHarness) do(t *testing.T, method, path string) (int, string, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, h.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), body
}

func (h *apiHarness) vips(t *testing.T) vipsDoc {
	t.Helper()
	status, _, body := h.do(t, "GET", "/v1/vips")
	if status != 200 {
		t.Fatalf("GET /v1/vips: %d %s", status, body)
	}
	var doc vipsDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func TestAPIListVIPs(t *testing.T) {
	h := newAPIHarness(t)
	h.health.set(h.target(t, be3), false, "connection refused")
	h.c.Reconcile()
	doc := h.vips(t)
	if len(doc.VIPs) != 1 {
		t.Fatalf("%d vips", len(doc.VIPs))
	}
	v := doc.VIPs[0]
	if v.ID != "tcp-192.0.2.10-80" || v.VIP != "tcp/192.0.2.10:80" || v.Mode != "ipip" || v.Port != 80 || v.Protocol != "tcp" || v.TableSize != DefaultMaglevSize || !v.Programmed {
		t.Errorf("vip %+v", v)
	}
	if v.Counters == nil || v.Counters.Packets != 10 || v.Counters.Drops["no_backend"] != 2 || len(v.Counters.Drops) != len(DropReasons) {
		t.Errorf("vip counters %+v", v.Counters)
	}
	b2, b3, b4 := v.Backends[0], v.Backends[1], v.Backends[2]
	if b2.Address != be2 || b2.Health != "up" || b2.Reason != "ok" || b2.Counters.Packets != 6 || !b2.InService || b2.TableEntries == 0 || b2.State != "active" {
		t.Errorf("backend .2 %+v", b2)
	}
	if b3.Health != "down" || b3.Reason != "connection refused" || b3.InService || b3.TableEntries != 0 {
		t.Errorf("backend .3 %+v", b3)
	}
	if b4.Weight != 2 || b4.TableEntries+b2.TableEntries != DefaultMaglevSize {
		t.Errorf("backend .4 %+v", b4)
	}
}

func TestAPIDrainRemove(t *testing.T) {
	h := newAPIHarness(t)
	status, ctype, body := h.do(t, "DELETE", "/v1/vips/tcp-192.0.2.10-80/backends/198.18.1.2")
	if status != 409 || ctype != "application/problem+json" {
		t.Fatalf("delete before drain: %d %s %s", status, ctype, body)
	}
	var p problem
	if err := json.Unmarshal(body, &p); err != nil || p.Type != "urn:gslbd:lbd:not-draining" || p.Status != 409 || p.Title != "Conflict" || !strings.Contains(p.Detail, "drain it first") {
		t.Errorf("problem %+v (%v)", p, err)
	}
	status, _, body = h.do(t, "POST", "/v1/vips/tcp-192.0.2.10-80/backends/198.18.1.2/drain")
	var b backendDoc
	if err := json.Unmarshal(body, &b); status != 200 || err != nil || !b.Draining || b.State != "draining" || b.TableEntries != 0 || !b.InService || b.StateSince == nil {
		t.Fatalf("drain: %d %s", status, body)
	}
	// The VIP.String form, escaped, names the same VIP.
	if status, _, body = h.do(t, "DELETE", "/v1/vips/tcp%2F192.0.2.10%3A80/backends/198.18.1.2"); status != 204 {
		t.Fatalf("delete after drain: %d %s", status, body)
	}
	got := h.vips(t).VIPs[0].Backends[0]
	if got.State != "removed" || got.InService || got.Draining {
		t.Errorf("after delete: %+v", got)
	}
	if bs, _ := layout(h.prog.service(t, vip80)); len(bs) != 2 {
		t.Errorf("programmed backends %v", bs)
	}
	status, _, body = h.do(t, "POST", "/v1/vips/tcp-192.0.2.10-80/backends/198.18.1.2/undrain")
	if err := json.Unmarshal(body, &b); status != 200 || err != nil || b.State != "active" || b.TableEntries == 0 {
		t.Errorf("undrain: %d %s", status, body)
	}
}

func TestAPIErrors(t *testing.T) {
	h := newAPIHarness(t)
	for _, tc := range []struct {
		method, path string
		status       int
		typ          string
	}{
		{"GET", "/v1/vips/tcp-192.0.2.99-80", 404, "urn:gslbd:lbd:unknown-vip"},
		{"POST", "/v1/vips/tcp-192.0.2.99-80/backends/198.18.1.2/drain", 404, "urn:gslbd:lbd:unknown-vip"},
		{"POST", "/v1/vips/tcp-192.0.2.10-80/backends/198.18.9.9/drain", 404, "urn:gslbd:lbd:unknown-backend"},
		{"POST", "/v1/vips/sctp-192.0.2.10-80/backends/198.18.1.2/drain", 400, "urn:gslbd:lbd:bad-request"},
		{"POST", "/v1/vips/tcp-192.0.2.10-80/backends/nope/drain", 400, "urn:gslbd:lbd:bad-request"},
		{"GET", "/v1/nothing", 404, "about:blank"},
		{"DELETE", "/v1/vips", 405, "about:blank"},
		{"GET", "/v1/vips/tcp-192.0.2.10-80/backends/198.18.1.2/drain", 405, "about:blank"},
	} {
		status, ctype, body := h.do(t, tc.method, tc.path)
		var p problem
		if err := json.Unmarshal(body, &p); err != nil || status != tc.status || p.Status != tc.status || p.Type != tc.typ || ctype != "application/problem+json" || p.Detail == "" {
			t.Errorf("%s %s: %d %s %s, want %d %s", tc.method, tc.path, status, ctype, body, tc.status, tc.typ)
		}
	}
	// Allow names the methods that work.
	resp, err := h.srv.Client().Post(h.srv.URL+"/v1/vips", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Allow") != "GET" {
		t.Errorf("Allow %q", resp.Header.Get("Allow"))
	}
}

func TestAPIDataplaneFailure(t *testing.T) {
	h := newAPIHarness(t)
	if status, _, _ := h.do(t, "GET", "/healthz"); status != 200 {
		t.Errorf("healthz %d", status)
	}
	h.prog.setFail(errBoom)
	status, _, body := h.do(t, "POST", "/v1/vips/tcp-192.0.2.10-80/backends/198.18.1.2/drain")
	if status != 502 || !strings.Contains(string(body), "urn:gslbd:lbd:dataplane") || !strings.Contains(string(body), "map update failed") {
		t.Errorf("drain with a failing data path: %d %s", status, body)
	}
	if status, _, body := h.do(t, "GET", "/healthz"); status != 503 || !strings.Contains(string(body), "tcp/192.0.2.10:80") {
		t.Errorf("healthz with a failing data path: %d %s", status, body)
	}
	// The drain is recorded and shows.
	if b := h.vips(t).VIPs[0]; b.Programmed || b.Backends[0].State != "draining" || b.Error == "" {
		t.Errorf("after a failed push: %+v", b)
	}
}

func TestAPIFeedAndMetrics(t *testing.T) {
	h := newAPIHarness(t)
	h.prog.addRTT(sample("198.18.0.0/24", 42, 12500000))
	h.feed.Poll()
	status, ctype, body := h.do(t, "GET", "/v1/feed")
	if status != 200 || ctype != "application/json" || !strings.Contains(string(body), `{"client":"198.18.0.0/24","rtt_ms":12.5,"samples":42}`) {
		t.Errorf("feed: %d %s %s", status, ctype, body)
	}
	status, _, body = h.do(t, "GET", "/metrics")
	if status != 200 || !strings.Contains(string(body), `lbd_vip_packets_total{vip="tcp/192.0.2.10:80"} 10`) || !strings.Contains(string(body), "lbd_feed_prefixes 1") {
		t.Errorf("metrics: %d %s", status, body)
	}
}

func TestParseVIP(t *testing.T) {
	for in, want := range map[string]string{
		"tcp-192.0.2.10-80":      "tcp/192.0.2.10:80",
		"udp-2001:db8::1-53":     "udp/[2001:db8::1]:53",
		"tcp-192.0.2.10-0":       "tcp/192.0.2.10:*",
		"tcp/192.0.2.10:80":      "tcp/192.0.2.10:80",
		"tcp/[2001:db8::1]:*":    "tcp/[2001:db8::1]:*",
		"tcp/::ffff:192.0.2.1:1": "tcp/192.0.2.1:1",
	} {
		v, err := ParseVIP(in)
		if err != nil || v.String() != want {
			t.Errorf("ParseVIP(%q) = %v, %v; want %s", in, v, err, want)
		}
		if back, err := ParseVIP(VIPID(v)); err != nil || back != v {
			t.Errorf("VIPID round trip of %s: %v %v", v, back, err)
		}
	}
	for _, in := range []string{"", "tcp", "sctp-192.0.2.1-80", "tcp-192.0.2.1-65536", "tcp-nope-80", "tcp/192.0.2.1", "tcp-fe80::1%eth0-80"} {
		if _, err := ParseVIP(in); err == nil {
			t.Errorf("ParseVIP(%q) succeeded", in)
		}
	}
}
