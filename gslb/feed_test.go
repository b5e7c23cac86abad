package gslb

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gslbd/gslbd/gslb/health"
)

// Measured RTTs from a site's lbd feed steer a latency record; the sum of
// a site's feeds is its load, and a failing feed stops counting.
func TestFeedPoller(t *testing.T) {
	var lonDoc, fraDoc atomic.Value
	lonDoc.Store(`{"site":"lon","time":"2026-11-22T05:00:00Z","interval_s":10,
	  "rtt":[{"client":"81.2.69.0/24","rtt_ms":40,"samples":12}],"load":{"new_flows_per_second":900,"active_flows":5000}}`)
	fraDoc.Store(`{"site":"fra","time":"2026-11-22T05:00:00Z","interval_s":10,
	  "rtt":[{"client":"81.2.69.0/24","rtt_ms":9,"samples":30}],"load":{"new_flows_per_second":100,"active_flows":700}}`)
	serve := func(v *atomic.Value) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			doc := v.Load().(string)
			if doc == "" {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			w.Write([]byte(doc))
		}))
	}
	lon, fra := serve(&lonDoc), serve(&fraDoc)
	defer lon.Close()
	defer fra.Close()
	yaml := strings.Replace(baseYAML, "lon: {lat: 51.5074, lon: -0.1278, country: GB, continent: EU}",
		"lon: {lat: 51.5074, lon: -0.1278, country: GB, continent: EU, capacity: 500, feeds: ["+lon.URL+"/v1/feed]}", 1)
	yaml = strings.Replace(yaml, "fra: {lat: 50.1109, lon: 8.6821, country: DE, continent: EU}",
		"fra: {lat: 50.1109, lon: 8.6821, country: DE, continent: EU, feeds: ["+fra.URL+"/v1/feed]}", 1)
	e := NewEngine(EngineConfig{Clock: health.NewFakeClock(t0)})
	e.SetConfig(compileYAML(t, yaml+`
records:
  - name: lat.example.
    pool: web
    chain: [up, {geo: {map: {"continent:EU": [lon, fra]}, mode: fence}}, {latency: {fallback: proximity}}, first_n: 1]
`))
	e.SetGeo(testGeo)
	q := ecsQ("lat.example.", "81.2.69.0/24") // London, by the fixture
	if got := epNames(e.Config(), decide(e, q).Addrs); len(got) != 1 || got[0][:3] != "lon" {
		t.Fatalf("before any feed (proximity): %v, want lon", got)
	}
	p := &FeedPoller{Engine: e}
	if errs := p.Poll(t.Context()); len(errs) != 0 {
		t.Fatal(errs)
	}
	a := e.Explain(q)
	if got := epNames(e.Config(), a.Addrs); len(got) != 1 || got[0][:3] != "fra" {
		t.Fatalf("with measured RTTs (lon 40ms, fra 9ms): %v, want fra\n%+v", got, a.Trace)
	}
	if l := e.SiteLoads(); l["lon"] != 900 || l["fra"] != 100 {
		t.Errorf("loads %v, want lon 900 fra 100", l)
	}
	// A broken document is an error naming what is wrong; the last load holds.
	lonDoc.Store(`{"rtt":[{"client":"81.2.69.0/24","rtt_ms":-1}]}`)
	errs := p.Poll(t.Context())
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "site lon") || !strings.Contains(errs[0].Error(), "rtt[0]") {
		t.Errorf("bad feed: %v", errs)
	}
	if l := e.SiteLoads(); l["lon"] != 900 {
		t.Errorf("after one failed poll lon's load is %v, want the last one (900)", l["lon"])
	}
	if _, err := ParseFeed(strings.NewReader(`{"load":{"new_flows_per_second":-5}}`)); err == nil {
		t.Error("negative load accepted")
	}
	_, err := Compile(mustParse(t, strings.Replace(baseYAML, "continent: AN}", "continent: AN, feeds: [\"ftp://x\"]}", 1)))
	if err == nil || !strings.Contains(err.Error(), "sites.dark.feeds[0]") {
		t.Errorf("bad feed URL: %v", err)
	}
}

// A reload that adds a site keeps measured RTTs and loads with their sites
// (they are stored by site index), and RTT rows not fed for an hour age out.
func TestFeedSurvivesReloadAndAges(t *testing.T) {
	clk := health.NewFakeClock(t0)
	e := NewEngine(EngineConfig{Clock: clk})
	records := "records:\n  - {name: lat.example., pool: web, chain: [up, {latency: {}}, first_n: 1]}\n"
	e.SetConfig(compileYAML(t, baseYAML+records))
	e.SetGeo(testGeo)
	q := ecsQ("lat.example.", "81.2.69.0/24")
	e.FeedRTT([]RTTSample{{Client: pfx("81.2.69.0/24"), Site: "nyc", RTT: 5e6}, {Client: pfx("81.2.69.0/24"), Site: "lon", RTT: 50e6}})
	e.SetLoad(map[string]float64{"nyc": 7, "sgp": 3})
	if got := epNames(e.Config(), decide(e, q).Addrs); len(got) != 1 || got[0] != "nyc1" {
		t.Fatalf("before the reload: %v, want nyc1 (5 ms)", got)
	}
	// "aaa" sorts first: every site's index moves up by one.
	e.SetConfig(compileYAML(t, strings.Replace(baseYAML, "sites:\n", "sites:\n  aaa: {country: FR, continent: EU}\n", 1)+records))
	if got := epNames(e.Config(), decide(e, q).Addrs); len(got) != 1 || got[0] != "nyc1" {
		t.Fatalf("after a reload that shifts site indexes: %v, want still nyc1", got)
	}
	if l := e.SiteLoads(); l["nyc"] != 7 || l["sgp"] != 3 || l["aaa"] != 0 {
		t.Errorf("loads after the reload: %v", l)
	}
	clk.Advance(2 * rttMaxAge)
	e.FeedRTT([]RTTSample{{Client: pfx("203.0.113.0/24"), Site: "lon", RTT: 1e6}})
	a := e.Explain(q)
	if len(a.Trace) < 2 || !strings.Contains(a.Trace[1].Note, "no RTT data") {
		t.Errorf("an RTT row unfed for 2h still counts: %+v", a.Trace)
	}
}
