package main

import (
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/gslbd/gslbd/dnsserver"
	"github.com/gslbd/gslbd/geo"
	"github.com/gslbd/gslbd/gslb"
	"github.com/gslbd/gslbd/gslb/health"
	"github.com/gslbd/gslbd/zones"
)

// runExplain answers a GSLB name offline from a zones directory and prints
// why: each filter's input and output, the answer, the TTL and the ECS scope.
// Health is not probed: every endpoint is up unless named in -down.
func runExplain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("zones", ".", "zones directory holding gslb.yaml")
	client := fs.String("client", "", "the resolver's address (required)")
	ecs := fs.String("ecs", "", "EDNS Client Subnet the resolver sends, e.g. 81.2.69.0/24")
	qtype := fs.String("type", "A", "A or AAAA")
	geoPath := fs.String("geoip", "", "mmdb file (default: the embedded DB-IP Country Lite)")
	down := fs.String("down", "", "comma-separated endpoint names, addresses or sites to treat as down")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 || *client == "" {
		fmt.Fprintln(stderr, "usage: gslbctl explain -zones DIR -client IP [-ecs PREFIX] [-type A|AAAA] [-geoip FILE] [-down NAME,...] NAME")
		return 2
	}
	q, err := explainQuery(fs.Arg(0), *client, *ecs, *qtype)
	if err != nil {
		fmt.Fprintf(stderr, "gslbctl explain: %v\n", err)
		return 2
	}
	e, err := explainEngine(*dir, *geoPath, *down)
	if err != nil {
		fmt.Fprintf(stderr, "gslbctl explain: %v\n", err)
		return 1
	}
	printExplanation(stdout, q, e.Explain(q), *down)
	return 0
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
		return q, fmt.Errorf("-type %q: want A or AAAA", qtype)
	}
	var err error
	if q.Resolver, err = netip.ParseAddr(client); err != nil {
		return q, fmt.Errorf("-client %q is not an address", client)
	}
	if ecs != "" {
		if q.ECS, err = netip.ParsePrefix(ecs); err != nil {
			return q, fmt.Errorf("-ecs %q is not a prefix", ecs)
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
				return nil, fmt.Errorf("-down %s: endpoint %s has no monitor, so it is always up", name, ep.Name)
			}
			st[ep.Target.Key()] = health.Status{Up: false, Reason: "marked down (-down)"}
		}
		if !found {
			return nil, fmt.Errorf("-down %s: no endpoint, address or site by that name", name)
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
