package gslb

import (
	"slices"
	"strings"
	"testing"

	"github.com/gslbd/gslbd/gslb/state"
)

func TestParseQuorum(t *testing.T) {
	for in, want := range map[string]string{"": "majority", "majority": "majority", "ANY": "any", "all": "all", "18%": "18%", " 50 %": "50%"} {
		q, err := ParseQuorum(in)
		if err != nil || q.String() != want {
			t.Errorf("ParseQuorum(%q) = %v, %v; want %s", in, q, err, want)
		}
	}
	for _, bad := range []string{"most", "0%", "101%", "x%", "-5%"} {
		if _, err := ParseQuorum(bad); err == nil {
			t.Errorf("ParseQuorum(%q) accepted", bad)
		}
	}
	_, err := Compile(mustParse(t, baseYAML+"health: {quorum: lots}\n"))
	if err == nil || !strings.Contains(err.Error(), "health.quorum") {
		t.Errorf("bad quorum in config: %v, want an error naming health.quorum", err)
	}
}

func mustParse(t *testing.T, text string) *FileConfig {
	t.Helper()
	fc, err := ParseConfig("gslb.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return fc
}

func TestQuorumMet(t *testing.T) {
	cases := []struct {
		q         string
		up, total int
		want      bool
	}{
		{"majority", 2, 3, true}, {"majority", 1, 2, false}, {"majority", 1, 3, false}, {"majority", 0, 0, false},
		{"any", 1, 5, true}, {"any", 0, 5, false},
		{"all", 3, 3, true}, {"all", 2, 3, false},
		{"18%", 1, 5, true}, {"18%", 1, 6, false}, {"18%", 2, 11, true}, {"50%", 1, 2, true},
	}
	for _, c := range cases {
		q, _ := ParseQuorum(c.q)
		if got := q.Met(c.up, c.total); got != c.want {
			t.Errorf("%s.Met(%d, %d) = %v, want %v", c.q, c.up, c.total, got, c.want)
		}
	}
}

// Three vantage points: this gslbd ("here") and two others. The verdict
// follows the configured quorum, lapsed reports stop counting, and explain
// shows every view.
func TestVantageQuorum(t *testing.T) {
	records := "records:\n  - {name: q.example., pool: web, chain: [up]}\n"
	report := func(name string, down ...string) state.VantageReport {
		r := state.VantageReport{Vantage: name, Endpoints: map[string]state.EndpointView{}}
		for _, ep := range []string{"lon1", "lon2", "fra1", "fra2", "ams1", "nyc1", "sgp1", "lon6", "fra6"} {
			v := state.EndpointView{Up: true, Reason: "ok"}
			if slices.Contains(down, ep) {
				v = state.EndpointView{Up: false, Reason: "timeout"}
			}
			r.Endpoints[ep] = v
		}
		return r
	}
	cases := []struct {
		quorum  string
		hereOwn []string // down by this gslbd's probes
		reports []state.VantageReport
		in, out []string
	}{
		// Majority: one vantage point's broken network does not pull lon1.
		{"majority", []string{"lon1"}, []state.VantageReport{report("b"), report("c")}, []string{"lon1"}, nil},
		{"majority", nil, []state.VantageReport{report("b", "fra1"), report("c", "fra1")}, nil, []string{"fra1"}},
		{"any", []string{"lon1"}, []state.VantageReport{report("b", "lon1"), report("c")}, []string{"lon1"}, nil},
		{"all", nil, []state.VantageReport{report("b"), report("c", "nyc1")}, nil, []string{"nyc1"}},
		// This gslbd's own published report is ignored in favour of its live probes.
		{"majority", nil, []state.VantageReport{report("here", "lon1", "lon2"), report("b")}, []string{"lon1", "lon2"}, nil},
		// Alone again (the others lapsed): own probes decide.
		{"majority", []string{"lon1"}, nil, nil, []string{"lon1"}},
	}
	for i, c := range cases {
		e, cfg, _ := newTestEngine(t, records+"health: {quorum: \""+c.quorum+"\"}\n")
		e.SetHealth(healthOf(t, cfg, c.hereOwn, nil))
		e.SetVantages("here", c.reports)
		got := epNames(cfg, decide(e, Query{Name: "q.example.", Resolver: resolver}).Addrs)
		for _, n := range c.in {
			if !slices.Contains(got, n) {
				t.Errorf("case %d (%s): %v lacks %s", i, c.quorum, got, n)
			}
		}
		for _, n := range c.out {
			if slices.Contains(got, n) {
				t.Errorf("case %d (%s): %v has %s", i, c.quorum, got, n)
			}
		}
	}
	e, cfg, _ := newTestEngine(t, records)
	e.SetHealth(healthOf(t, cfg, []string{"lon1"}, nil))
	e.SetVantages("here", []state.VantageReport{report("b"), report("c")})
	st := e.EndpointStatus("lon1")
	if !st.Up || len(st.Views) != 3 || !st.Views[0].Self || st.Views[0].Up || st.Views[1].Vantage != "b" {
		t.Fatalf("EndpointStatus(lon1) = %+v; want up by 2/3 with here's down view first", st)
	}
	if !strings.Contains(st.Reason, "2/3") || !strings.Contains(st.Reason, "here down: ") {
		t.Errorf("reason %q should give the vote and the dissent", st.Reason)
	}
}
