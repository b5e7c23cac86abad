package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/gslbd/gslbd/dataplane"
)

// apiTarget is where the operator commands find lbd's API: -api, or the
// api.listen of -config, or the default.
type apiTarget struct {
	addr   string
	config string
}

func (t *apiTarget) register(fs *flag.FlagSet) {
	fs.StringVar(&t.addr, "api", "", "lbd's API address (default: api.listen of -config, else "+dataplane.DefaultAPIListen+")")
	fs.StringVar(&t.config, "config", "", "read the API address from this lbd config file")
}

// baseURL resolves the API's base URL.
func (t *apiTarget) baseURL() (string, error) {
	addr := t.addr
	if addr == "" && t.config != "" {
		cfg, err := dataplane.LoadConfig(t.config)
		if err != nil {
			return "", err
		}
		addr = cfg.APIListen
	}
	if addr == "" {
		addr = dataplane.DefaultAPIListen
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("-api: %q is not host:port", addr)
	}
	// A wildcard listen address is reached on loopback.
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip.Is6() {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// call sends a request to the API and returns the body of a 2xx answer;
// an error answer becomes an error with the problem's detail.
func call(method, u string) ([]byte, error) {
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w (is lbd running there? see -api)", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	if resp.StatusCode/100 == 2 {
		return body, nil
	}
	var p struct {
		Title  string `json:"title"`
		Detail string `json:"detail"`
	}
	if json.Unmarshal(body, &p) == nil && p.Detail != "" {
		return nil, fmt.Errorf("%d %s: %s", resp.StatusCode, p.Title, p.Detail)
	}
	return nil, fmt.Errorf("%s %s: %s: %s", method, u, resp.Status, bytes.TrimSpace(body))
}

func cmdVIPs(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("vips", stderr)
	var target apiTarget
	target.register(fs)
	output := fs.String("o", "table", "output format: table or json")
	if _, err := parseFlags(fs, args); err != nil {
		return usageError(stderr, err)
	}
	if *output != "table" && *output != "json" {
		fmt.Fprintf(stderr, "lbd vips: -o: %q is not table or json\n", *output)
		return exitUsage
	}
	base, err := target.baseURL()
	if err != nil {
		fmt.Fprintf(stderr, "lbd vips: %v\n", err)
		return exitUsage
	}
	body, err := call(http.MethodGet, base+"/v1/vips")
	if err != nil {
		fmt.Fprintf(stderr, "lbd vips: %v\n", err)
		return exitFail
	}
	if *output == "json" {
		_, _ = stdout.Write(body)
		return exitOK
	}
	if err := printVIPTable(stdout, body); err != nil {
		fmt.Fprintf(stderr, "lbd vips: %v\n", err)
		return exitFail
	}
	return exitOK
}

// vipsJSON is the part of GET /v1/vips the table shows.
type vipsJSON struct {
	VIPs []struct {
		VIP        string `json:"vip"`
		Mode       string `json:"mode"`
		TableSize  int    `json:"table_size"`
		Programmed bool   `json:"programmed"`
		Waiting    bool   `json:"waiting_for_health"`
		Error      string `json:"error"`
		Counters   *struct {
			Packets  uint64            `json:"packets"`
			NewFlows uint64            `json:"new_flows"`
			Drops    map[string]uint64 `json:"drops"`
		} `json:"counters"`
		Backends []struct {
			Address      string `json:"address"`
			Index        uint32 `json:"index"`
			Weight       uint32 `json:"weight"`
			Health       string `json:"health"`
			Reason       string `json:"reason"`
			State        string `json:"state"`
			InService    bool   `json:"in_service"`
			TableEntries int    `json:"table_entries"`
			Counters     *struct {
				Packets  uint64 `json:"packets"`
				NewFlows uint64 `json:"new_flows"`
			} `json:"counters"`
		} `json:"backends"`
	} `json:"vips"`
	CountersError string `json:"counters_error"`
}

func printVIPTable(w io.Writer, body []byte) error {
	var doc vipsJSON
	if err := json.Unmarshal(body, &doc); err != nil {
		return fmt.Errorf("decode /v1/vips: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VIP\tMODE\tBACKEND\tINDEX\tWEIGHT\tHEALTH\tREASON\tSTATE\tSHARE\tNEW_FLOWS\tPACKETS")
	var notes []string
	for _, v := range doc.VIPs {
		switch {
		case v.Waiting:
			notes = append(notes, v.VIP+": keeps its previous tables until the backends' first health checks")
		case !v.Programmed:
			notes = append(notes, v.VIP+": NOT PROGRAMMED (retrying): "+v.Error)
		case v.TableSize == 0:
			notes = append(notes, v.VIP+": no backend takes new flows: they are dropped")
		}
		var pkts, flows, drops uint64
		if v.Counters != nil {
			pkts, flows = v.Counters.Packets, v.Counters.NewFlows
			for _, n := range v.Counters.Drops {
				drops += n
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t\t\t\t\t\t\t\t%d\t%d (%d dropped)\n", v.VIP, v.Mode, flows, pkts, drops)
		for _, b := range v.Backends {
			share := "-"
			if v.TableSize > 0 && b.InService {
				share = fmt.Sprintf("%.1f%%", 100*float64(b.TableEntries)/float64(v.TableSize))
			}
			var bp, bf uint64
			if b.Counters != nil {
				bp, bf = b.Counters.Packets, b.Counters.NewFlows
			}
			fmt.Fprintf(tw, "\t\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%d\t%d\n", b.Address, b.Index, b.Weight, b.Health, b.Reason, b.State, share, bf, bp)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
	if doc.CountersError != "" {
		fmt.Fprintf(w, "counters unavailable: %s\n", doc.CountersError)
	}
	return nil
}

// cmdOperate runs drain, undrain or remove.
func cmdOperate(name string, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet(name, stderr)
	var target apiTarget
	target.register(fs)
	pos, err := parseFlags(fs, args, "VIP", "BACKEND")
	if err != nil {
		return usageError(stderr, err)
	}
	v, err := dataplane.ParseVIP(pos[0])
	if err != nil {
		fmt.Fprintf(stderr, "lbd %s: %v\n", name, err)
		return exitUsage
	}
	b, err := netip.ParseAddr(pos[1])
	if err != nil {
		fmt.Fprintf(stderr, "lbd %s: backend %q is not an IP address\n", name, pos[1])
		return exitUsage
	}
	base, err := target.baseURL()
	if err != nil {
		fmt.Fprintf(stderr, "lbd %s: %v\n", name, err)
		return exitUsage
	}
	u := base + "/v1/vips/" + url.PathEscape(dataplane.VIPID(v)) + "/backends/" + url.PathEscape(b.String())
	method := http.MethodDelete
	if name != "remove" {
		method, u = http.MethodPost, u+"/"+name
	}
	if _, err := call(method, u); err != nil {
		fmt.Fprintf(stderr, "lbd %s %s %s: %v\n", name, v, b, err)
		return exitFail
	}
	switch name {
	case "drain":
		fmt.Fprintf(stdout, "%s of %s is draining: new flows go to the other backends, established ones continue.\n"+
			"When its flows are done (lbd vips), remove it: lbd remove %s %s\n", b, v, dataplane.VIPID(v), b)
		warnNoBackend(stdout, base, v)
	case "undrain":
		fmt.Fprintf(stdout, "%s of %s is active again.\n", b, v)
	case "remove":
		fmt.Fprintf(stdout, "%s removed from %s: its remaining flows are re-balanced. It stays configured; undrain brings it back.\n", b, v)
	}
	return exitOK
}

// warnNoBackend tells the operator when no backend of v takes new flows
// any more (the drain took the last one).
func warnNoBackend(w io.Writer, base string, v dataplane.VIP) {
	body, err := call(http.MethodGet, base+"/v1/vips/"+url.PathEscape(dataplane.VIPID(v)))
	if err != nil {
		return
	}
	var vip struct {
		TableSize  int  `json:"table_size"`
		Programmed bool `json:"programmed"`
	}
	if json.Unmarshal(body, &vip) == nil && vip.Programmed && vip.TableSize == 0 {
		fmt.Fprintf(w, "WARNING: no backend of %s takes new flows now: they are dropped (undrain one, or fix the others' health).\n", v)
	}
}
