package main

import (
	"crypto/rand"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gslbd/gslbd/anycast"
	"github.com/gslbd/gslbd/gslb/api"
	"github.com/gslbd/gslbd/gslb/state"
)

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Sites, endpoints, health per vantage point and overrides",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var st api.StatusView
			if err := c.do("GET", "/v1/status", nil, &st); err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(g.stdout, st)
			}
			printStatus(g.stdout, st)
			return nil
		},
	}
}

func printStatus(w io.Writer, st api.StatusView) {
	fmt.Fprintf(w, "vantage %s, quorum %s, vantage points: %s\n", st.Vantage, st.Quorum, strings.Join(st.Vantages, " "))
	if st.StateError != "" {
		fmt.Fprintf(w, "STATE STORE UNAVAILABLE (overrides below are the ones answers follow; writes are refused): %s\n", st.StateError)
	}
	fmt.Fprintln(w)
	t := table(w)
	fmt.Fprintln(t, "SITE\tUP\tCAPACITY\tOVERRIDE")
	for _, s := range st.Sites {
		fmt.Fprintf(t, "%s\t%d/%d\t%s\t%s\n", s.Name, s.Up, s.Endpoints, capacityText(s.Capacity), overrideText(s.Override))
	}
	t.Flush()
	fmt.Fprintln(w)
	t = table(w)
	fmt.Fprintln(t, "ENDPOINT\tADDRESS\tSITE\tPOOL\tHEALTH\tIN ANSWERS\tWEIGHT\tOVERRIDE\tREASON")
	for _, e := range st.Endpoints {
		health := "up"
		if !e.Healthy {
			health = "down"
		}
		if !e.Monitored {
			health = "unmonitored"
		}
		in := "yes"
		if !e.Up {
			in = "no"
		} else if e.Factor < 1 {
			in = fmt.Sprintf("%.0f%%", e.Factor*100)
		}
		ov := "-"
		if e.Override != nil {
			ov = string(e.Override.Kind) + " (" + e.Override.Target.String() + ")"
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%g\t%s\t%s\n", e.Name, e.Address, e.Site, e.Pool, health, in, e.EffectiveWeight, ov, e.Reason)
		for _, v := range e.Views {
			name := v.Vantage
			if v.Self {
				name += " (here)"
			}
			fmt.Fprintf(t, "  seen from %s\t\t\t\t%s\t\t\t\t%s\n", name, map[bool]string{true: "up", false: "down"}[v.Up], v.Reason)
		}
	}
	t.Flush()
	if len(st.Overrides) > 0 {
		fmt.Fprintln(w)
		printOverrides(w, st.Overrides)
	}
}

func capacityText(c float64) string {
	if c == 0 {
		return "-"
	}
	return strconv.FormatFloat(c, 'f', -1, 64) + "/s"
}

func overrideText(o *api.OverrideView) string {
	if o == nil {
		return "-"
	}
	s := string(o.Kind)
	if o.Kind == state.KindDrain {
		s += fmt.Sprintf(" %.0f%%", o.Factor*100)
		if o.Drain != nil && o.Drain.Drained {
			s += " drained"
		}
	}
	return s
}

func printOverrides(w io.Writer, ovs []api.OverrideView) {
	t := table(w)
	fmt.Fprintln(t, "ID\tTARGET\tKIND\tSTATE\tAUTHOR\tCREATED\tEXPIRES\tREASON")
	for _, o := range ovs {
		exp := "never"
		if !o.Expires.IsZero() {
			exp = o.Expires.Local().Format(time.DateTime)
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", o.ID, o.Target.String(), o.Kind, drainText(o), o.Author,
			o.Created.Local().Format(time.DateTime), exp, o.Reason)
	}
	t.Flush()
}

// drainText says how far a target has emptied.
func drainText(o api.OverrideView) string {
	if o.Drain == nil {
		return "in force"
	}
	d := o.Drain
	switch {
	case d.Drained:
		return "drained"
	case len(d.Remaining) > 0 && o.Kind == state.KindDrain:
		return fmt.Sprintf("draining, %.0f%% of answers", o.Factor*100)
	case len(d.Remaining) > 0:
		return "still answered: " + strings.Join(d.Remaining, ",")
	default:
		left := time.Until(d.Absent.Add(d.MaxTTL))
		return fmt.Sprintf("out of answers, caches expire in %s", left.Round(time.Second))
	}
}

// parseTarget reads "site/fra", "endpoint/web-1" or "pool/web".
func parseTarget(s string) (state.Target, error) {
	typ, name, ok := strings.Cut(s, "/")
	if !ok || name == "" {
		return state.Target{}, usageErr("target %q: want TYPE/NAME, e.g. site/fra, endpoint/web-1 or pool/web", s)
	}
	return state.Target{Type: typ, Name: name}, nil
}

type overrideFlags struct {
	reason, ramp, ttl, expires string
}

func (f *overrideFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.reason, "reason", "", "why (required; recorded in the audit log)")
	cmd.Flags().StringVar(&f.ttl, "ttl", "", "expire after this duration, e.g. 2h")
	cmd.Flags().StringVar(&f.expires, "expires", "", "expire at this RFC 3339 time")
}

func (g *globals) setOverride(req api.OverrideRequest) (api.OverrideView, error) {
	c, err := g.client()
	if err != nil {
		return api.OverrideView{}, err
	}
	var out api.OverrideView
	err = c.do("POST", "/v1/overrides", req, &out)
	return out, err
}

func newOverrideCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "override", Short: "Set, clear and list overrides"}
	var f overrideFlags
	set := &cobra.Command{
		Use:   "set TYPE/NAME up|down|drain|maintenance --reason WHY",
		Short: "Force a target up, down, into maintenance, or drain it",
		Args:  cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			t, err := parseTarget(args[0])
			if err != nil {
				return err
			}
			o, err := g.setOverride(api.OverrideRequest{Target: t, Kind: state.Kind(args[1]), Reason: f.reason, Ramp: f.ramp, TTL: f.ttl, Expires: f.expires})
			if err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(g.stdout, o)
			}
			fmt.Fprintf(g.stdout, "override %s: %s %s by %s\n", o.ID, o.Target.String(), o.Kind, o.Author)
			return nil
		},
	}
	f.add(set)
	set.Flags().StringVar(&f.ramp, "ramp", "", "drain: ramp the weight to 0 over this duration, e.g. 5m")
	var clearReason string
	clear := &cobra.Command{
		Use:   "clear ID --reason WHY",
		Short: "Remove an override",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if clearReason == "" {
				return usageErr("--reason: required (recorded in the audit log)")
			}
			if err := c.do("DELETE", "/v1/overrides/"+url.PathEscape(args[0])+"?reason="+url.QueryEscape(clearReason), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "override %s cleared\n", args[0])
			return nil
		},
	}
	clear.Flags().StringVar(&clearReason, "reason", "", "why (required)")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the overrides in force",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var ovs []api.OverrideView
			if err := c.do("GET", "/v1/overrides", nil, &ovs); err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(g.stdout, ovs)
			}
			printOverrides(g.stdout, ovs)
			return nil
		},
	}
	cmd.AddCommand(set, clear, list)
	return cmd
}

func newDrainCmd(g *globals) *cobra.Command {
	var f overrideFlags
	var over time.Duration
	var wait bool
	var poll time.Duration
	cmd := &cobra.Command{
		Use:   "drain SITE|ENDPOINT|TYPE/NAME --over 5m --reason WHY",
		Short: "Drain a site or endpoint: its share of answers ramps to 0",
		Long: "Drain sets a drain override whose weight ramps from full to 0 over --over. " +
			"With --wait it follows the drain until the target has been absent from answers " +
			"for longer than the record TTLs (no resolver should still hold it).",
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			t, err := resolveTarget(c, args[0])
			if err != nil {
				return err
			}
			o, err := g.setOverride(api.OverrideRequest{Target: t, Kind: state.KindDrain, Reason: f.reason, Ramp: over.String(), TTL: f.ttl, Expires: f.expires})
			if err != nil {
				return err
			}
			if g.output == "json" && !wait {
				return printJSON(g.stdout, o)
			}
			fmt.Fprintf(g.stdout, "draining %s over %s (override %s)\n", o.Target.String(), over, o.ID)
			if !wait {
				return nil
			}
			last := ""
			for {
				var cur api.OverrideView
				if err := c.do("GET", "/v1/overrides/"+url.PathEscape(o.ID), nil, &cur); err != nil {
					return err
				}
				if line := drainText(cur); line != last {
					fmt.Fprintf(g.stdout, "%s  %s: %s\n", time.Now().Format(time.TimeOnly), cur.Target.String(), line)
					last = line
				}
				if cur.Drain != nil && cur.Drain.Drained {
					if g.output == "json" {
						return printJSON(g.stdout, cur)
					}
					return nil
				}
				time.Sleep(poll)
			}
		},
	}
	f.add(cmd)
	cmd.Flags().DurationVar(&over, "over", 5*time.Minute, "ramp duration (0: out of answers at once)")
	cmd.Flags().BoolVar(&wait, "wait", false, "follow the drain until it is complete")
	cmd.Flags().DurationVar(&poll, "poll", time.Second, "how often --wait checks")
	return cmd
}

// resolveTarget reads TYPE/NAME, or a bare name that is a site or an
// endpoint (a name that is both is ambiguous).
func resolveTarget(c *client, s string) (state.Target, error) {
	if strings.Contains(s, "/") {
		return parseTarget(s)
	}
	var st api.StatusView
	if err := c.do("GET", "/v1/status", nil, &st); err != nil {
		return state.Target{}, err
	}
	var found []state.Target
	for _, site := range st.Sites {
		if site.Name == s {
			found = append(found, state.Target{Type: state.TargetSite, Name: s})
		}
	}
	for _, e := range st.Endpoints {
		if e.Name == s {
			found = append(found, state.Target{Type: state.TargetEndpoint, Name: s})
		}
	}
	switch len(found) {
	case 0:
		return state.Target{}, usageErr("%q is neither a site nor an endpoint of the configuration being served", s)
	case 1:
		return found[0], nil
	}
	return state.Target{}, usageErr("%q is both a site and an endpoint: say site/%s or endpoint/%s", s, s, s)
}

func newAuditCmd(g *globals) *cobra.Command {
	var since uint64
	var limit int
	var target string
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Who changed what, when and why",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			q := url.Values{"since": {strconv.FormatUint(since, 10)}, "limit": {strconv.Itoa(limit)}}
			if target != "" {
				q.Set("target", target)
			}
			var entries []state.AuditEntry
			if err := c.do("GET", "/v1/audit?"+q.Encode(), nil, &entries); err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(g.stdout, entries)
			}
			t := table(g.stdout)
			fmt.Fprintln(t, "SEQ\tTIME\tAUTHOR\tACTION\tTARGET\tREASON")
			for _, e := range entries {
				fmt.Fprintf(t, "%d\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Local().Format(time.DateTime), e.Author, e.Action, e.Target, e.Reason)
			}
			return t.Flush()
		},
	}
	cmd.Flags().Uint64Var(&since, "since", 0, "entries after this sequence number")
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many (1..1000)")
	cmd.Flags().StringVar(&target, "target", "", "only this target, TYPE/NAME")
	return cmd
}

func newAnycastCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "anycast", Short: "The BGP announcer"}
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "Peers, sessions, and what is announced and why",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var st anycast.Status
			if err := c.do("GET", "/v1/anycast", nil, &st); err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(g.stdout, st)
			}
			fmt.Fprintf(g.stdout, "announcer %s\n\n", st.Phase)
			t := table(g.stdout)
			fmt.Fprintln(t, "PEER\tASN\tSTATE\tSINCE\tRECEIVED\tADVERTISED")
			for _, p := range st.Peers {
				since := "-"
				if !p.Since.IsZero() {
					since = p.Since.Local().Format(time.DateTime)
				}
				fmt.Fprintf(t, "%s\t%d\t%s\t%s\t%d\t%d\n", p.Address, p.ASN, p.State, since, p.Received, p.Advertised)
			}
			t.Flush()
			fmt.Fprintln(g.stdout)
			t = table(g.stdout)
			fmt.Fprintln(t, "VIP\tSTATE\tSINCE\tIN RIB\tREASON")
			for _, v := range st.VIPs {
				fmt.Fprintf(t, "%s\t%s\t%s\t%v\t%s\n", v.Prefix, v.State, v.Since.Local().Format(time.DateTime), v.Active, v.Reason)
			}
			return t.Flush()
		},
	})
	return cmd
}

func newReloadCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Make gslbd re-read its zones and GSLB configuration now (admin scope)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var res api.ReloadResult
			if err := c.do("POST", "/v1/reload", nil, &res); err != nil {
				return err
			}
			if g.output == "json" {
				return printJSON(g.stdout, res)
			}
			fmt.Fprintf(g.stdout, "reloaded: %d zones (%s), gslb config %s\n", len(res.Zones), strings.Join(res.Zones, " "), res.GSLB)
			return nil
		},
	}
}

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "API tokens"}
	var scope string
	cmd.AddCommand(&cobra.Command{
		Use:   "new NAME",
		Short: "Make a random API token and print it with the hash to configure",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if _, err := api.ParseScope(scope); err != nil {
				return usageErr("--scope: %v", err)
			}
			tok := rand.Text() + rand.Text()
			fmt.Fprintf(g.stdout, "token (give it to %s; it is not stored anywhere):\n  %s\n\n", args[0], tok)
			fmt.Fprintf(g.stdout, "gslbd.yaml:\napi:\n  tokens:\n    - name: %s\n      scope: %s\n      sha256: %s\n", args[0], scope, api.HashToken(tok))
			return nil
		},
	})
	cmd.Commands()[0].Flags().StringVar(&scope, "scope", "read", "read, write or admin")
	return cmd
}
