package main

import (
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gslbd/gslbd/dnsserver"
	"github.com/gslbd/gslbd/geo"
	"github.com/gslbd/gslbd/gslb"
	"github.com/gslbd/gslbd/gslb/api"
	"github.com/gslbd/gslbd/gslb/health"
	"github.com/gslbd/gslbd/zones"
)

type explainFlags struct {
	zones, client, ecs, qtype, geoip, down string
}

func newExplainCmd(g *globals) *cobra.Command {
	var f explainFlags
	cmd := &cobra.Command{
		Use:   "explain NAME --client IP [--ecs PREFIX] [--type A|AAAA]",
		Short: "Say why a GSLB name answers what it does, step by step",
		Long: "Without --zones, asks the running gslbd (live health, overrides and every vantage point's view). " +
			"With --zones DIR, works offline on a zones directory: every endpoint is up unless named in --down.",
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if f.client == "" {
				return usageErr("--client: required (the resolver's address)")
			}
			if f.zones == "" {
				return explainOnline(g, args[0], f)
			}
			q, err := explainQuery(args[0], f.client, f.ecs, f.qtype)
			if err != nil {
				return usageErr("%v", err)
			}
			e, err := explainEngine(f.zones, f.geoip, f.down)
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(g.stdout, api.Explain(e, q))
			}
			printExplanation(g.stdout, q, e.Explain(q), f.down)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.zones, "zones", "", "work offline on this zones directory (holding gslb.yaml)")
	fl.StringVar(&f.client, "client", "", "the resolver's address (required)")
	fl.StringVar(&f.ecs, "ecs", "", "EDNS Client Subnet the resolver sends, e.g. 81.2.69.0/24")
	fl.StringVar(&f.qtype, "type", "A", "A or AAAA")
	fl.StringVar(&f.geoip, "geoip", "", "offline: mmdb file (default: the embedded DB-IP Country Lite)")
	fl.StringVar(&f.down, "down", "", "offline: comma-separated endpoint names, addresses or sites to treat as down")
	return cmd
}

func explainOnline(g *globals, name string, f explainFlags) error {
	if f.down != "" || f.geoip != "" {
		return usageErr("--down and --geoip work offline only (with --zones)")
	}
	c, err := g.client()
	if err != nil {
		return err
	}
	q := url.Values{"name": {name}, "client": {f.client}, "type": {f.qtype}}
	if f.ecs != "" {
		q.Set("ecs", f.ecs)
	}
	var v api.ExplainView
	if err := c.do("GET", "/v1/explain?"+q.Encode(), nil, &v); err != nil {
		return err
	}
	if g.output == "json" {
		return printJSON(g.stdout, v)
	}
	w := g.stdout
	fmt.Fprintf(w, "%s %s, resolver %s", v.Name, v.Type, v.Client)
	if v.ECS != "" {
		fmt.Fprintf(w, ", ECS %s", v.ECS)
	}
	fmt.Fprintln(w)
	for i, s := range v.Trace {
		fmt.Fprintf(w, "%2d. %-10s [%s] -> [%s]", i+1, s.Filter, strings.Join(s.In, " "), strings.Join(s.Out, " "))
		if s.Note != "" {
			fmt.Fprintf(w, "  %s", s.Note)
		}
		fmt.Fprintln(w)
	}
	addrs := make([]string, len(v.Addresses))
	for i, a := range v.Addresses {
		addrs[i] = a.String()
	}
	fmt.Fprintf(w, "answer: %s %s  ttl %d  ecs scope /%d\n", v.Outcome, strings.Join(addrs, " "), v.TTL, v.Scope)
	fmt.Fprintln(w, "\nendpoints:")
	t := table(w)
	for _, e := range v.Endpoints {
		fmt.Fprintf(t, "  %s\t%s\t%s\t%s\n", e.Name, e.Address, map[bool]string{true: "in answers", false: "out"}[e.Up], e.Reason)
		for _, vw := range e.Views {
			fmt.Fprintf(t, "    seen from %s\t\t%s\t%s\n", vw.Vantage, map[bool]string{true: "up", false: "down"}[vw.Up], vw.Reason)
		}
	}
	return t.Flush()
}

func explainQuery(name, client, ecs, qtype string) (gslb.Query, error) {
	var q gslb.Query
	n := strings.ToLower(strings.TrimSuffix(name, ".")) + "."
	q.Name = n
	switch strings.ToUpper(qtype) {
	case "A":
	case "AAAA":
		q.IPv6 = true
	default:
		return q, fmt.Errorf("--type %q: want A or AAAA", qtype)
	}
	var err error
	if q.Resolver, err = netip.ParseAddr(client); err != nil {
		return q, fmt.Errorf("--client %q is not an address", client)
	}
	if ecs != "" {
		if q.ECS, err = netip.ParsePrefix(ecs); err != nil {
			return q, fmt.Errorf("--ecs %q is not a prefix", ecs)
		}
		q.ECS = q.ECS.Masked()
	}
	return q, nil
}

func explainEngine(dir, geoPath, down string) (*gslb.Engine, error) {
	path := filepath.Join(dir, "gslb.yaml")
	cfg, err := gslb.LoadFile(path)
	if err != nil {
		return nil, err
	}
	set, _ := zones.Load(os.DirFS(dir))
	for _, err := range dnsserver.CheckGSLB(set, cfg) {
		return nil, err
	}
	var db *geo.DB
	if geoPath == "" {
		db, err = geo.Default()
	} else {
		db, err = geo.Open(geoPath)
	}
	if err != nil {
		return nil, err
	}
	e := gslb.NewEngine(gslb.EngineConfig{})
	e.SetConfig(cfg)
	e.SetGeo(db)
	st, err := offlineHealth(cfg, down)
	if err != nil {
		return nil, err
	}
	e.SetHealth(st)
	return e, nil
}

// offlineHealth marks every monitored endpoint up except those named down.
func offlineHealth(cfg *gslb.Config, down string) (map[health.TargetKey]health.Status, error) {
	st := map[health.TargetKey]health.Status{}
	for _, ep := range cfg.Endpoints {
		if ep.Target != nil {
			st[ep.Target.Key()] = health.Status{Up: true, Reason: "assumed up (offline)"}
		}
	}
	for _, name := range strings.Split(down, ",") {
		if name = strings.TrimSpace(name); name == "" {
			continue
		}
		found := false
		for _, ep := range cfg.Endpoints {
			if ep.Name != name && ep.Addr.String() != name && ep.Site.Name != name {
				continue
			}
			found = true
			if ep.Target == nil {
				return nil, fmt.Errorf("--down %s: endpoint %s has no monitor, so it is always up", name, ep.Name)
			}
			st[ep.Target.Key()] = health.Status{Up: false, Reason: "marked down (--down)"}
		}
		if !found {
			return nil, fmt.Errorf("--down %s: no endpoint, address or site by that name", name)
		}
	}
	return st, nil
}

func printExplanation(w io.Writer, q gslb.Query, a gslb.Answer, down string) {
	qt := "A"
	if q.IPv6 {
		qt = "AAAA"
	}
	fmt.Fprintf(w, "%s %s, resolver %s", q.Name, qt, q.Resolver)
	if q.ECS.IsValid() {
		fmt.Fprintf(w, ", ECS %s", q.ECS)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "health: offline, every endpoint up%s\n", map[bool]string{true: " except " + down, false: ""}[down != ""])
	if a.Outcome == gslb.NotGSLB {
		fmt.Fprintf(w, "%s is not a GSLB record in gslb.yaml\n", q.Name)
		return
	}
	for i, s := range a.Trace {
		fmt.Fprintf(w, "%2d. %-10s [%s] -> [%s]", i+1, s.Filter, strings.Join(s.In, " "), strings.Join(s.Out, " "))
		if s.Note != "" {
			fmt.Fprintf(w, "  %s", s.Note)
		}
		fmt.Fprintln(w)
	}
	switch a.Outcome {
	case gslb.ServFail:
		fmt.Fprintln(w, "answer: SERVFAIL (all_down: servfail)")
	case gslb.NoData:
		fmt.Fprintf(w, "answer: NODATA (no address)  ecs scope /%d\n", a.Scope)
	default:
		addrs := make([]string, len(a.Addrs))
		for i, x := range a.Addrs {
			addrs[i] = x.String()
		}
		fmt.Fprintf(w, "answer: %s  ttl %d", strings.Join(addrs, " "), a.TTL)
		if a.UsedECS {
			fmt.Fprintf(w, "  ecs scope /%d", a.Scope)
		} else if q.ECS.IsValid() {
			fmt.Fprint(w, "  ecs not used (untrusted resolver or /0): scope /0")
		}
		fmt.Fprintln(w)
	}
}
