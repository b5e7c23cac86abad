package gslb

import (
	"slices"
	"testing"
	"time"

	"github.com/gslbd/gslbd/gslb/state"
)

const overrideRecords = `
records:
  - name: ov.example.
    pool: web
    chain: [up]
  - name: ovfirst.example.
    pool: web
    chain:
      - up
      - geo: {map: {"country:GB": [lon, fra]}, default: [fra]}
      - first_n: 1
`

func ov(typ, name string, kind state.Kind, created time.Time, ramp time.Duration) state.Override {
	return state.Override{Target: state.Target{Type: typ, Name: name}, Kind: kind, Reason: "test", Author: "t",
		Created: created, Ramp: ramp}
}

func TestOverrides(t *testing.T) {
	e, cfg, clk := newTestEngine(t, overrideRecords)
	e.SetHealth(healthOf(t, cfg, []string{"ams1"}, nil)) // ams1 is down by its probes
	names := func(q Query) []string { return epNames(cfg, decide(e, q).Addrs) }
	all := Query{Name: "ov.example.", Resolver: resolver}
	base := names(all)
	if slices.Contains(base, "ams1") || !slices.Contains(base, "lon1") {
		t.Fatalf("no overrides: %v", base)
	}
	cases := []struct {
		name      string
		ovs       []state.Override
		in, notIn []string
	}{
		{"endpoint down", []state.Override{ov("endpoint", "lon1", state.KindDown, t0, 0)}, []string{"lon2"}, []string{"lon1"}},
		{"site maintenance", []state.Override{ov("site", "lon", state.KindMaintenance, t0, 0)}, []string{"fra1"}, []string{"lon1", "lon2"}},
		{"up forces a probed-down endpoint in", []state.Override{ov("endpoint", "ams1", state.KindUp, t0, 0)}, []string{"ams1"}, nil},
		{"endpoint beats site", []state.Override{ov("site", "lon", state.KindDown, t0, 0), ov("endpoint", "lon1", state.KindUp, t0, 0)}, []string{"lon1"}, []string{"lon2"}},
		{"pool down", []state.Override{ov("pool", "web", state.KindDown, t0, 0)}, nil, []string{"lon1", "fra1"}},
		{"expired", []state.Override{{Target: state.Target{Type: "endpoint", Name: "lon1"}, Kind: state.KindDown, Created: t0.Add(-time.Hour), Expires: t0.Add(-time.Minute)}}, []string{"lon1"}, nil},
		{"drain finished", []state.Override{ov("endpoint", "lon1", state.KindDrain, t0.Add(-time.Hour), time.Minute)}, []string{"lon2"}, []string{"lon1"}},
	}
	for _, tc := range cases {
		e.SetOverrides(tc.ovs)
		got := names(all)
		for _, n := range tc.in {
			if !slices.Contains(got, n) {
				t.Errorf("%s: %v lacks %s", tc.name, got, n)
			}
		}
		for _, n := range tc.notIn {
			if slices.Contains(got, n) {
				t.Errorf("%s: %v has %s", tc.name, got, n)
			}
		}
	}
	// A forced-down endpoint stays out even when all_down answers "all".
	e.SetOverrides([]state.Override{ov("pool", "web", state.KindDown, t0, 0)})
	if a := decide(e, all); len(a.Addrs) != 0 {
		t.Errorf("pool down with all_down all: %v, want nothing", epNames(cfg, a.Addrs))
	}
	// Drain half way: London's share of London clients falls to about half
	// (the other half fails over to fra by the geo order).
	e.SetOverrides([]state.Override{ov("site", "lon", state.KindDrain, t0, 10*time.Minute)})
	clk.Advance(5 * time.Minute)
	lon := 0
	for range 2000 {
		if n := names(ecsQ("ovfirst.example.", "81.2.69.0/24")); len(n) == 1 && n[0][:3] == "lon" {
			lon++
		}
	}
	if f := float64(lon) / 2000; f < 0.40 || f > 0.60 {
		t.Errorf("drain half way: London share %.3f, want about 0.5", f)
	}
	clk.Advance(5 * time.Minute)
	if n := names(ecsQ("ovfirst.example.", "81.2.69.0/24")); n[0] != "fra1" && n[0] != "fra2" {
		t.Errorf("drain over: %v, want fra", n)
	}
	e.SetOverrides(nil)
	if n := names(ecsQ("ovfirst.example.", "81.2.69.0/24")); n[0][:3] != "lon" {
		t.Errorf("override cleared: %v, want lon again", n)
	}
}

// A drained site is reported drained only once the ramp has ended and the
// longest TTL of the records answering it has passed.
func TestDrainState(t *testing.T) {
	e, cfg, clk := newTestEngine(t, overrideRecords+"  - {name: long.example., pool: web, ttl: 300, chain: [up]}\n")
	e.SetHealth(healthOf(t, cfg, nil, nil))
	drain := ov("site", "lon", state.KindDrain, t0, 10*time.Minute)
	e.SetOverrides([]state.Override{drain})
	if d := e.DrainState(drain); d.Drained || len(d.Remaining) != 6 {
		t.Fatalf("at the start: %+v, want the six lon endpoints of all pools remaining", d)
	}
	clk.Advance(10*time.Minute + time.Second)
	d := e.DrainState(drain)
	if d.Drained || d.MaxTTL != 300*time.Second || !d.Absent.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("ramp over, within the TTL: %+v; want absent since t0+10m, max TTL 300s, not drained", d)
	}
	clk.Advance(300 * time.Second)
	if d := e.DrainState(drain); !d.Drained {
		t.Fatalf("ramp + TTL over: %+v, want drained", d)
	}
	// An endpoint forced up keeps the site from ever draining.
	up := ov("endpoint", "lon1", state.KindUp, t0, 0)
	e.SetOverrides([]state.Override{drain, up})
	if d := e.DrainState(drain); d.Drained || !slices.Equal(d.Remaining, []string{"lon1"}) {
		t.Fatalf("with lon1 forced up: %+v, want lon1 remaining", d)
	}
	if st := e.EndpointStatus("lon2"); st.Up || st.Override == nil || st.Factor != 0 {
		t.Errorf("lon2 status %+v: want out of answers under the site drain", st)
	}
	if st := e.EndpointStatus("lon1"); !st.Up || st.EffectiveWeight != float64(st.Weight) {
		t.Errorf("lon1 status %+v: want up at full weight", st)
	}
}
