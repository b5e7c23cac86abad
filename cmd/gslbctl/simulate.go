package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/gslbd/gslbd/geo"
	"github.com/gslbd/gslbd/gslb"
	"github.com/gslbd/gslbd/gslb/state"
)

// trafficFile is the traffic mix simulate reads.
//
//	record: www.example.com.        # the GSLB name asked (default: the only record)
//	traffic:
//	  - {country: GB, rps: 4000}
//	  - {continent: NA, rps: 2500}
//	  - {prefix: 203.0.113.0/24, rps: 300, record: api.example.com.}
type trafficFile struct {
	Record  string         `yaml:"record"`
	Traffic []trafficEntry `yaml:"traffic"`
}

type trafficEntry struct {
	Country   string  `yaml:"country"`
	Continent string  `yaml:"continent"`
	Prefix    string  `yaml:"prefix"`
	RPS       float64 `yaml:"rps"`
	Record    string  `yaml:"record"`
}

// simSource is one traffic entry resolved to client networks.
type simSource struct {
	label  string
	record string
	rps    float64
	nets   []netip.Prefix
}

// SiteLoad is one site's share of the simulated traffic.
type SiteLoad struct {
	Site        string  `json:"site"`
	Capacity    float64 `json:"capacity"`     // 0 = unknown
	BaselineRPS float64 `json:"baseline_rps"` // with everything up
	RPS         float64 `json:"rps"`          // in the scenario
	Utilization float64 `json:"utilization"`  // RPS / Capacity (0 when capacity is unknown)
	Overloaded  bool    `json:"overloaded"`
}

// SimResult is simulate's answer.
type SimResult struct {
	Scenario           []string   `json:"scenario"`
	TotalRPS           float64    `json:"total_rps"`
	Sites              []SiteLoad `json:"sites"`
	BaselineUnanswered float64    `json:"baseline_unanswered_rps"` // NODATA/SERVFAIL
	Unanswered         float64    `json:"unanswered_rps"`
	Overloaded         []string   `json:"overloaded"`
}

func newSimulateCmd(g *globals) *cobra.Command {
	var dir, trafficPath, geoPath, qtype string
	var down, drain []string
	var rounds int
	var failOnOverload bool
	cmd := &cobra.Command{
		Use:   "simulate --zones DIR --traffic FILE [--down fra] [--drain lon=50%]",
		Short: "What-if: the split of a traffic mix over sites when sites or endpoints go down or drain",
		Long: `Runs the real GSLB engine over a traffic mix (requests/s per country, continent or
client prefix) twice, with everything up and in the hypothetical state, and prints each
site's load against its capacity, flagging overloaded sites. Offline: it reads the
zones directory (its gslb.yaml) and the GeoIP database, so it can run in a zones
repository's CI (--fail-on-overload exits 1 when a site would be overloaded).

Clients pick one address of each answer uniformly. Country and continent traffic is
spread evenly over a sample of that place's networks in the GeoIP database. Records
with a capacity filter get each round's load fed back, as lbd's feed does, until
the spill settles.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if dir == "" || trafficPath == "" {
				return usageErr("--zones and --traffic are required")
			}
			res, err := simulate(dir, trafficPath, geoPath, qtype, down, drain, rounds)
			if err != nil {
				return err
			}
			if g.output == "json" {
				if err := printJSON(g.stdout, res); err != nil {
					return err
				}
			} else {
				printSimulation(g.stdout, res)
			}
			if failOnOverload && len(res.Overloaded) > 0 {
				return &exitError{code: 1, err: fmt.Errorf("overloaded in this scenario: %s", strings.Join(res.Overloaded, ", "))}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "zones", "", "zones directory holding gslb.yaml")
	f.StringVar(&trafficPath, "traffic", "", "traffic mix (YAML: record, traffic: [{country|continent|prefix, rps}])")
	f.StringVar(&geoPath, "geoip", "", "mmdb file (default: the embedded DB-IP Country Lite)")
	f.StringVar(&qtype, "type", "A", "A or AAAA")
	f.StringSliceVar(&down, "down", nil, "sites, endpoints or pools that are down (NAME or TYPE/NAME; repeat or comma-separate)")
	f.StringSliceVar(&drain, "drain", nil, "targets being drained and how far, e.g. lon=50% (half its share gone) or endpoint/web-1=100%")
	f.IntVar(&rounds, "rounds", 256, "decisions per client network (weighted and drained choices are random)")
	f.BoolVar(&failOnOverload, "fail-on-overload", false, "exit 1 when a site is over capacity in the scenario")
	return cmd
}

func simulate(dir, trafficPath, geoPath, qtype string, down, drain []string, rounds int) (*SimResult, error) {
	if rounds < 1 {
		return nil, usageErr("--rounds: want at least 1")
	}
	ipv6 := false
	switch strings.ToUpper(qtype) {
	case "A":
	case "AAAA":
		ipv6 = true
	default:
		return nil, usageErr("--type %q: want A or AAAA", qtype)
	}
	e, err := explainEngine(dir, geoPath, "")
	if err != nil {
		return nil, err
	}
	cfg := e.Config()
	db, err := openGeo(geoPath)
	if err != nil {
		return nil, err
	}
	sources, err := loadTraffic(trafficPath, cfg, db)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	ovs, scenario, err := scenarioOverrides(cfg, down, drain, now)
	if err != nil {
		return nil, err
	}
	res := &SimResult{Scenario: scenario, Overloaded: []string{}}
	for _, s := range sources {
		res.TotalRPS += s.rps
	}
	base, baseLost := settle(e, cfg, sources, ipv6, rounds)
	e.SetOverrides(ovs)
	cur, lost := settle(e, cfg, sources, ipv6, rounds)
	res.BaselineUnanswered, res.Unanswered = baseLost, lost
	for _, site := range cfg.SiteList {
		sl := SiteLoad{Site: site.Name, Capacity: site.Capacity, BaselineRPS: round2(base[site.Name]), RPS: round2(cur[site.Name])}
		if site.Capacity > 0 {
			sl.Utilization = round2(sl.RPS / site.Capacity)
			sl.Overloaded = sl.RPS > site.Capacity
		}
		if sl.Overloaded {
			res.Overloaded = append(res.Overloaded, site.Name)
		}
		res.Sites = append(res.Sites, sl)
	}
	return res, nil
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

func openGeo(path string) (*geo.DB, error) {
	if path == "" {
		return geo.Default()
	}
	return geo.Open(path)
}

// settle splits the traffic; when a record asked uses a capacity filter,
// it feeds each split's per-site load back to the engine, as lbd's feed
// does, until the spill settles (a few rounds).
func settle(e *gslb.Engine, cfg *gslb.Config, sources []simSource, ipv6 bool, rounds int) (map[string]float64, float64) {
	e.SetLoad(nil) // every site keeps all its clients to start with
	load, lost := split(e, cfg, sources, ipv6, rounds)
	if !usesCapacity(cfg, sources) {
		return load, lost
	}
	for range 8 {
		e.SetLoad(load)
		load, lost = split(e, cfg, sources, ipv6, rounds)
	}
	return load, lost
}

func usesCapacity(cfg *gslb.Config, sources []simSource) bool {
	for _, s := range sources {
		for _, f := range cfg.Records[s.record].Chain {
			if f.Name() == "capacity" {
				return true
			}
		}
	}
	return false
}

// split runs every source's decisions and sums requests per site.
func split(e *gslb.Engine, cfg *gslb.Config, sources []simSource, ipv6 bool, rounds int) (map[string]float64, float64) {
	siteOf := map[netip.Addr]string{}
	for _, ep := range cfg.Endpoints {
		siteOf[ep.Addr] = ep.Site.Name
	}
	load := map[string]float64{}
	lost := 0.0
	var a gslb.Answer
	for _, s := range sources {
		share := s.rps / float64(len(s.nets)) / float64(rounds)
		for _, n := range s.nets {
			q := gslb.Query{Name: s.record, IPv6: ipv6, Resolver: n.Addr(), ECS: n}
			for range rounds {
				a.Addrs = a.Addrs[:0]
				e.Decide(q, &a)
				if len(a.Addrs) == 0 {
					lost += share
					continue
				}
				per := share / float64(len(a.Addrs))
				for _, addr := range a.Addrs {
					load[siteOf[addr]] += per
				}
			}
		}
	}
	return load, round2(lost)
}

// loadTraffic reads the traffic file; errors name traffic[i].field.
func loadTraffic(path string, cfg *gslb.Config, db *geo.DB) ([]simSource, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--traffic: %w", err)
	}
	var tf trafficFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&tf); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(tf.Traffic) == 0 {
		return nil, fmt.Errorf("%s: traffic: no entries", path)
	}
	defRecord := tf.Record
	if defRecord == "" && len(cfg.Records) == 1 {
		for name := range cfg.Records {
			defRecord = name
		}
	}
	var out []simSource
	var walk []int // entries sampled from the database
	var matchers []func(geo.Location) bool
	for i, t := range tf.Traffic {
		where := fmt.Sprintf("%s: traffic[%d]", path, i)
		rec := canonicalName(cmpStr(t.Record, defRecord))
		if rec == "." {
			return nil, fmt.Errorf("%s.record: required (gslb.yaml has %d records; set record: at the top or per entry)", where, len(cfg.Records))
		}
		if cfg.Records[rec] == nil {
			return nil, fmt.Errorf("%s.record: %s is not a GSLB record in gslb.yaml", where, rec)
		}
		if t.RPS <= 0 {
			return nil, fmt.Errorf("%s.rps: want a positive rate, got %g", where, t.RPS)
		}
		src := simSource{record: rec, rps: t.RPS}
		set := 0
		for _, v := range []string{t.Country, t.Continent, t.Prefix} {
			if v != "" {
				set++
			}
		}
		if set != 1 {
			return nil, fmt.Errorf("%s: give exactly one of country, continent or prefix", where)
		}
		switch {
		case t.Prefix != "":
			p, err := netip.ParsePrefix(t.Prefix)
			if err != nil {
				return nil, fmt.Errorf("%s.prefix: %q is not a prefix like 203.0.113.0/24", where, t.Prefix)
			}
			src.label, src.nets = p.String(), []netip.Prefix{p.Masked()}
		case t.Country != "":
			c := strings.ToUpper(t.Country)
			src.label = c
			walk = append(walk, len(out))
			matchers = append(matchers, func(l geo.Location) bool { return l.Country == c })
		default:
			c := strings.ToUpper(t.Continent)
			src.label = c
			walk = append(walk, len(out))
			matchers = append(matchers, func(l geo.Location) bool { return l.Continent == c })
		}
		out = append(out, src)
	}
	// Country and continent samples come from one walk of the database.
	nets, err := db.NetworksFor(matchers, 16)
	if err != nil {
		return nil, err
	}
	for j, i := range walk {
		if len(nets[j]) == 0 {
			return nil, fmt.Errorf("%s: traffic[%d]: the GeoIP database has no networks in %s", path, i, out[i].label)
		}
		out[i].nets = nets[j]
	}
	return out, nil
}

func cmpStr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func canonicalName(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) + "." }

// scenarioOverrides turns --down and --drain into the overrides the engine
// applies, checking every name against the configuration.
func scenarioOverrides(cfg *gslb.Config, down, drain []string, now time.Time) ([]state.Override, []string, error) {
	var ovs []state.Override
	var desc []string
	for _, d := range down {
		t, err := simTarget(cfg, strings.TrimSpace(d))
		if err != nil {
			return nil, nil, fmt.Errorf("--down %s: %w", d, err)
		}
		ovs = append(ovs, state.Override{Target: t, Kind: state.KindDown, Created: now})
		desc = append(desc, t.String()+" down")
	}
	for _, d := range drain {
		name, pct, ok := strings.Cut(d, "=")
		if !ok {
			return nil, nil, usageErr("--drain %s: want TARGET=PERCENT, e.g. lon=50%%", d)
		}
		t, err := simTarget(cfg, strings.TrimSpace(name))
		if err != nil {
			return nil, nil, fmt.Errorf("--drain %s: %w", d, err)
		}
		p, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(pct), "%"), 64)
		if err != nil || p < 0 || p > 100 {
			return nil, nil, usageErr("--drain %s: the percentage drained must be 0..100", d)
		}
		// A drain ramping over an hour, p% of the way through it.
		ramp := time.Hour
		ovs = append(ovs, state.Override{Target: t, Kind: state.KindDrain, Ramp: ramp,
			Created: now.Add(-time.Duration(p / 100 * float64(ramp)))})
		desc = append(desc, fmt.Sprintf("%s drained %g%%", t.String(), p))
	}
	if len(desc) == 0 {
		desc = []string{"no change (baseline)"}
	}
	return ovs, desc, nil
}

// simTarget resolves NAME (a site, an endpoint or a pool, in that order
// of preference when unambiguous) or TYPE/NAME.
func simTarget(cfg *gslb.Config, s string) (state.Target, error) {
	if typ, name, ok := strings.Cut(s, "/"); ok {
		t := state.Target{Type: typ, Name: name}
		e := gslb.NewEngine(gslb.EngineConfig{})
		e.SetConfig(cfg)
		if !e.HasTarget(t) {
			return t, fmt.Errorf("no %s named %q in gslb.yaml", typ, name)
		}
		return t, nil
	}
	var found []state.Target
	if cfg.Sites[s] != nil {
		found = append(found, state.Target{Type: state.TargetSite, Name: s})
	}
	if slices.ContainsFunc(cfg.Endpoints, func(ep *gslb.Endpoint) bool { return ep.Name == s }) {
		found = append(found, state.Target{Type: state.TargetEndpoint, Name: s})
	}
	if cfg.Pools[s] != nil {
		found = append(found, state.Target{Type: state.TargetPool, Name: s})
	}
	switch len(found) {
	case 0:
		return state.Target{}, errors.New("no site, endpoint or pool by that name in gslb.yaml")
	case 1:
		return found[0], nil
	}
	return state.Target{}, fmt.Errorf("ambiguous: say %s/%s or %s/%s", found[0].Type, s, found[1].Type, s)
}

func printSimulation(w io.Writer, r *SimResult) {
	fmt.Fprintf(w, "scenario: %s\ntraffic: %s req/s\n\n", strings.Join(r.Scenario, ", "), strconv.FormatFloat(r.TotalRPS, 'f', -1, 64))
	t := table(w)
	fmt.Fprintln(t, "SITE\tBASELINE\tSCENARIO\tCAPACITY\tLOAD\t")
	for _, s := range r.Sites {
		util, flag := "-", ""
		if s.Capacity > 0 {
			util = fmt.Sprintf("%.0f%%", s.Utilization*100)
		}
		if s.Overloaded {
			flag = "OVERLOADED"
		}
		fmt.Fprintf(t, "%s\t%.0f/s\t%.0f/s\t%s\t%s\t%s\n", s.Site, s.BaselineRPS, s.RPS, capacityText(s.Capacity), util, flag)
	}
	t.Flush()
	if r.Unanswered > 0 || r.BaselineUnanswered > 0 {
		fmt.Fprintf(w, "\nunanswered (NODATA/SERVFAIL): %.0f/s baseline, %.0f/s in the scenario\n", r.BaselineUnanswered, r.Unanswered)
	}
	if len(r.Overloaded) > 0 {
		fmt.Fprintf(w, "\noverloaded: %s\n", strings.Join(r.Overloaded, ", "))
	}
}
