package gslb

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gslbd/gslbd/geo"
)

const latencyRecords = `
records:
  - name: lat.example.
    pool: web
    chain:
      - up
      - latency:
          rtt:
            "country:FR": {lon: 12ms, fra: 9ms, ams: 11ms}
            "203.0.113.0/25": {nyc: 2ms, lon: 70ms}
          tie_percent: 5
      - first_n: 1
  - name: latnone.example.
    pool: web
    chain:
      - up
      - latency: {fallback: none}
      - first_n: 1
  - name: cap.example.
    pool: web
    chain:
      - up
      - geo: {map: {"country:GB": [lon, fra, ams]}, default: [fra]}
      - capacity: {}
      - first_n: 1
`

func TestLatencyFilter(t *testing.T) {
	e, cfg, _ := newTestEngine(t, latencyRecords)
	e.SetHealth(healthOf(t, cfg, nil, nil))
	first := func(q Query) (string, uint8) {
		a := decide(e, q)
		return epNames(cfg, a.Addrs)[0], a.Scope
	}
	// Table by country: Paris is closest by RTT to Frankfurt.
	if got, scope := first(ecsQ("lat.example.", "90.84.1.0/24")); got != "fra1" || scope != 16 {
		t.Errorf("Paris by table: %s scope %d, want fra1 scope 16 (the GeoIP network)", got, scope)
	}
	// Table by CIDR: the /25 decides and is the scope.
	if got, scope := first(ecsQ("lat.example.", "203.0.113.0/24")); got != "nyc1" || scope < 25 {
		t.Errorf("New York by CIDR: %s scope %d, want nyc1 and scope >= 25", got, scope)
	}
	// No data: proximity fallback (Edinburgh is nearest London); none: order unchanged.
	if got, _ := first(ecsQ("lat.example.", "81.2.70.0/24")); got != "lon1" {
		t.Errorf("Edinburgh by proximity fallback: %s", got)
	}
	if got, _ := first(ecsQ("latnone.example.", "198.51.100.0/24")); got != "lon1" {
		t.Errorf("fallback none keeps pool order: %s", got)
	}
	// Measured RTTs win over the table, are smoothed, and give a /24 scope.
	ign := e.FeedRTT([]RTTSample{
		{Client: pfx("90.84.1.0/24"), Site: "lon", RTT: 3 * time.Millisecond},
		{Client: pfx("90.84.1.0/24"), Site: "fra", RTT: 20 * time.Millisecond},
		{Client: pfx("90.84.1.0/24"), Site: "nowhere", RTT: time.Millisecond},
		{Client: pfx("90.84.0.0/16"), Site: "lon", RTT: time.Millisecond},
	})
	if ign != 2 {
		t.Errorf("ignored %d samples, want 2 (unknown site, /16 client)", ign)
	}
	if got, scope := first(ecsQ("lat.example.", "90.84.1.0/24")); got != "lon1" || scope != 24 {
		t.Errorf("Paris measured: %s scope %d, want lon1 scope 24", got, scope)
	}
	// EWMA: one bad sample does not flip the choice (3 -> 3+0.3*(30-3) = 11.1 < 20).
	e.FeedRTT([]RTTSample{{Client: pfx("90.84.1.0/24"), Site: "lon", RTT: 30 * time.Millisecond}})
	if got, _ := first(ecsQ("lat.example.", "90.84.1.0/24")); got != "lon1" {
		t.Errorf("after one slow sample: %s, want lon1 still (smoothed)", got)
	}
	ex := e.Explain(ecsQ("lat.example.", "90.84.1.0/24"))
	if !slices.ContainsFunc(ex.Trace, func(s Step) bool { return strings.Contains(s.Note, "measured 90.84.1.0/24") }) {
		t.Errorf("explain does not say the RTT was measured: %+v", ex.Trace)
	}
}

func TestCapacityFilter(t *testing.T) {
	cfg := compileYAML(t, strings.Replace(baseYAML, "lon: {lat: 51.5074", "lon: {capacity: 1000, lat: 51.5074", 1)+latencyRecords)
	e := NewEngine(EngineConfig{})
	e.SetConfig(cfg)
	e.SetHealth(healthOf(t, cfg, nil, nil))
	// Every client is in London, so geo puts lon first for all of them.
	e.SetGeo(fixedGeo(geo.Result{Found: true, Network: pfx("0.0.0.0/0"),
		Location: geo.Location{Continent: "EU", Country: "GB", Lat: 51.5, Lon: -0.1, HasCoords: true}}))
	// londonShare asks from n client /24s and returns the share sent to lon.
	londonShare := func(n int) float64 {
		lon := 0
		for i := range n {
			q := ecsQ("cap.example.", "10."+strconv.Itoa(i/256)+"."+strconv.Itoa(i%256)+".0/24")
			if strings.HasPrefix(epNames(cfg, decide(e, q).Addrs)[0], "lon") {
				lon++
			}
		}
		return float64(lon) / float64(n)
	}
	if s := londonShare(500); s != 1 {
		t.Fatalf("no load reported: London share %.2f, want 1", s)
	}
	// London at 4x its capacity: about capacity/load = 25% of subnets stay,
	// the rest spill to the next site in order (fra).
	e.SetLoad(map[string]float64{"lon": 4000})
	if s := londonShare(2000); s < 0.2 || s > 0.3 {
		t.Errorf("at 4x capacity London keeps %.3f of subnets, want about 0.25", s)
	}
	a := decide(e, ecsQ("cap.example.", "10.0.0.0/24"))
	if a.Scope != 24 {
		t.Errorf("scope %d, want 24 (the spill is decided per /24)", a.Scope)
	}
	// A subnet's fate is stable: every /32 inside one /24 gets the same site.
	firstOf := func(ecs string) string { return epNames(cfg, decide(e, ecsQ("cap.example.", ecs)).Addrs)[0] }
	want := firstOf("10.0.7.0/24")
	for i := range 256 {
		if got := firstOf("10.0.7." + strconv.Itoa(i) + "/32"); got != want {
			t.Fatalf("10.0.7.%d got %s, the rest of its /24 %s", i, got, want)
		}
	}
	// The next report is the load that still reaches London (a quarter of
	// the demand: 1000, its capacity). That is no reason to take everyone
	// back: the share holds at a quarter while the demand does.
	e.SetLoad(map[string]float64{"lon": 1000})
	if s := londonShare(2000); s < 0.2 || s > 0.3 {
		t.Errorf("at capacity after spilling London keeps %.3f, want still about 0.25", s)
	}
	// Demand falls to 900/s: London sees a quarter of it, 225/s, and takes
	// everyone back (0.25 x 1000/225 > 1).
	e.SetLoad(map[string]float64{"lon": 225})
	if s := londonShare(500); s != 1 {
		t.Errorf("demand below capacity: London share %.2f, want 1", s)
	}
	// A steady demand of 3x capacity settles at capacity, not above it:
	// each round the site reports what its kept share brings.
	const demand = 3000.0
	for range 6 {
		e.SetLoad(map[string]float64{"lon": demand * londonShare(1000)})
	}
	if got := demand * londonShare(2000); got < 900 || got > 1100 {
		t.Errorf("steady 3x demand: London takes %.0f/s, want about its capacity 1000/s", got)
	}
}
