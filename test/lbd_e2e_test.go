package test

// End-to-end tests of lbd, the XDP L4 load balancer: bin/lbd on veths in
// network namespaces in front of Debian's nginx as the L7 proxies, driven
// with curl and Go clients. See netns_test.go for the topologies.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Health checks of the tests: a dead proxy is down after fall failed
// probes, interval apart.
const (
	hcInterval = 200 * time.Millisecond
	hcTimeout  = 150 * time.Millisecond
	hcFall     = 2
)

// lbdVIPConf is one VIP of a generated lbd config.
type lbdVIPConf struct {
	addr     string
	mode     string
	check    string // "none": not probed (always up); default: HTTP
	backends []lbdBackendConf
}

type lbdBackendConf struct{ addr, mac string }

// lbdConfig writes an lbd config: every VIP on TCP port 80, HTTP health
// checks of /healthz on the backend's address (unless check is "none"), a small Maglev table (>=
// 100 x the backends), the RTT feed read every second, memory-only state.
func lbdConfig(t testing.TB, dir, pin string, ifaces []string, vips []lbdVIPConf) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, `site: e2e
interfaces: [%s]
pin_path: %s
tunnel_source4: %s
tunnel_source6: %s
conntrack_size: 65536
state_file: ""
maglev: {size: 1021, seed: 7}
api: {listen: "%s"}
feed: {interval: 1s}
log: {level: info}
vips:
`, strings.Join(ifaces, ", "), filepath.Join(pin, "lbd"), lbeTunnel4, lbeTunnel6, lbeAPI)
	for _, v := range vips {
		fmt.Fprintf(&b, "  - address: %s\n    port: 80\n    mode: %s\n    backends:\n", v.addr, v.mode)
		for _, be := range v.backends {
			fmt.Fprintf(&b, "      - address: %s\n", be.addr)
			if be.mac != "" {
				fmt.Fprintf(&b, "        mac: \"%s\"\n", be.mac)
			}
			if v.check == "none" {
				fmt.Fprintf(&b, "        check: {type: none}\n")
				continue
			}
			fmt.Fprintf(&b, "        check: {type: http, path: /healthz, interval: %s, timeout: %s, rise: 2, fall: %d}\n",
				hcInterval, hcTimeout, hcFall)
		}
	}
	p := filepath.Join(dir, "lbd.yaml")
	// Write and rename: lbd never reads half a file.
	writeText(t, dir, "lbd.yaml.tmp", b.String())
	if err := os.Rename(p+".tmp", p); err != nil {
		t.Fatal(err)
	}
	return p
}

// curlResult is one transfer of a curl run.
type curlResult struct {
	page     string // the page's first line: the proxy's name
	code     string // HTTP status, "000" when the transfer failed
	connects string // connections curl opened for it
}

// curlMany fetches url n times with one curl in ns, each on a new
// connection (Connection: close; curl reports one connect per transfer).
// curl stops at the first transfer that fails (so that a broken path
// fails the test in seconds, not n timeouts), which is then the last
// result, with code 000.
func curlMany(t testing.TB, ns, url string, n int, extra ...string) []curlResult {
	t.Helper()
	curl := requireTool(t, "curl")
	args := []string{"netns", "exec", ns, curl, "-sS", "-g", "--fail-early", "--connect-timeout", "2", "--max-time", "5",
		"-H", "Connection: close", "-w", `|%{http_code}|%{num_connects}\n`}
	args = append(args, extra...)
	for range n {
		args = append(args, url)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(n)*time.Second+10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if ctx.Err() != nil {
		t.Fatalf("curl timed out: %s", stderr.String())
	}
	var res []curlResult
	page := ""
	for _, ln := range lines(string(out)) {
		if rest, ok := strings.CutPrefix(ln, "|"); ok {
			f := strings.Split(rest, "|")
			if len(f) != 2 {
				t.Fatalf("curl write-out line %q", ln)
			}
			res = append(res, curlResult{page: page, code: f[0], connects: f[1]})
			page = ""
			continue
		}
		if page == "" {
			page = ln
		}
	}
	if len(res) == 0 || len(res) > n || len(res) < n && res[len(res)-1].code != "000" {
		t.Fatalf("curl: %d results for %d transfers (err %v)\nstdout:\n%s\nstderr:\n%s", len(res), n, err, out, stderr.String())
	}
	if len(res) < n {
		t.Errorf("curl stopped after %d of %d transfers: %s", len(res), n, strings.TrimSpace(stderr.String()))
	}
	return res
}

// spread counts successful transfers per page and fails on any failed
// one or any reused connection.
func spread(t testing.TB, res []curlResult) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i, r := range res {
		if r.code != "200" {
			t.Errorf("transfer %d: status %s (page %q)", i, r.code, r.page)
			continue
		}
		if r.connects != "1" {
			t.Errorf("transfer %d reused a connection (num_connects %s)", i, r.connects)
		}
		got[r.page]++
	}
	return got
}

// requireShare checks that each of names got at least min transfers and
// nothing else got any.
func requireShare(t testing.TB, got map[string]int, names []string, min int) {
	t.Helper()
	for page, n := range got {
		if !slices.Contains(names, page) {
			t.Errorf("%d transfers answered by %q, which should get none (spread %v)", n, page, got)
		}
	}
	for _, name := range names {
		if got[name] < min {
			t.Errorf("%s answered %d transfers, want at least %d (spread %v)", name, got[name], min, got)
		}
	}
}

// waitHealthz waits (bounded) until nginx answers /healthz on addr from ns.
func waitHealthz(t testing.TB, ns, addr string, n *nginx) {
	t.Helper()
	c := nsHTTPClient(ns, time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := c.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if n.exited() || time.Now().After(deadline) {
			t.Fatalf("nginx at %s not serving (%v)\n%s\n%s", addr, err, n.logs, n.errLog())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// allUp says whether every backend of every VIP is up and in the table.
func allUp(v lbdVIPs, nVIPs int) bool {
	if len(v.VIPs) != nVIPs {
		return false
	}
	for _, x := range v.VIPs {
		if !x.Programmed || x.TableSize == 0 {
			return false
		}
		for _, b := range x.Backends {
			if b.Health != "up" || b.TableEntries == 0 {
				return false
			}
		}
	}
	return true
}

// TestLBDIPIP runs lbd in IPIP mode in front of three (then four) nginx
// proxies that decapsulate with "lbd decap", over IPv4 and IPv6:
//   - new connections spread over every proxy; the proxies answer the
//     client directly; a 64 KiB upload in full-size segments passes (the
//     proxies' reduced MSS leaves room for the outer header);
//   - the RTT feed has the client's /24 and /48;
//   - connections established before a backend is added keep their proxy
//     through the table change (SIGHUP reload), and new ones reach the new
//     proxy;
//   - a proxy whose nginx stops is taken out by the health checks within
//     interval x fall (+ margin); requests fail only between the stop and
//     the removal (refused at once, never hanging), none after;
//   - a proxy drained first ("lbd drain") stops without a failed request,
//     and "lbd remove" takes it out;
//   - lbd detaches on exit, "lbd decap -detach" removes the decapsulator.
func TestLBDIPIP(t *testing.T) {
	requireNetLab(t, "nginx", "curl")
	start := time.Now()
	l := newNetLab(t)
	tp := newIPIPTopo(l, 4)
	bpffs := mountBPFFS(t)
	lbd := filepath.Join(binDir, "lbd")

	// The proxies: the decapsulator on their veth (it also gives the veth
	// the XDP program that lbd's redirects need to be delivered), nginx
	// on the VIPs (on lo) and on their own addresses for the health
	// checks.
	nginxes := map[string]*nginx{}
	for _, p := range tp.proxies {
		out := l.exec(p.ns, lbd, "decap", "-iface", p.dev, "-local", p.addr4+","+p.addr6,
			"-pin-path", filepath.Join(bpffs, "decap-"+p.name))
		if !strings.Contains(out, "decapsulator attached to "+p.dev) || !l.xdpAttached(p.ns, p.dev) {
			t.Fatalf("lbd decap on %s: %q; XDP attached: %v", p.dev, out, l.xdpAttached(p.ns, p.dev))
		}
		nginxes[p.name] = startNginx(t, l, p.ns, p.name,
			[]string{lbeVIP4 + ":80", "[" + lbeVIP6 + "]:80", p.addr4 + ":80", "[" + p.addr6 + "]:80"})
	}
	for _, p := range tp.proxies {
		waitHealthz(t, tp.lb, p.addr4, nginxes[p.name])
		waitHealthz(t, tp.lb, "["+p.addr6+"]", nginxes[p.name])
	}

	// lbd with proxies 1-3; proxy 4 is added later. Every LB veth is
	// attached from the start (interfaces need a restart to change).
	vips := func(n int) []lbdVIPConf {
		v4 := lbdVIPConf{addr: lbeVIP4, mode: "ipip"}
		v6 := lbdVIPConf{addr: lbeVIP6, mode: "ipip"}
		for _, p := range tp.proxies[:n] {
			v4.backends = append(v4.backends, lbdBackendConf{addr: p.addr4})
			v6.backends = append(v6.backends, lbdBackendConf{addr: p.addr6})
		}
		return []lbdVIPConf{v4, v6}
	}
	cfgDir := t.TempDir()
	cfg := lbdConfig(t, cfgDir, bpffs, tp.lbDevs(), vips(3))
	lb := startLBD(t, l, tp.lb, cfg, lbeAPI)
	lb.waitVIPs(t, l, 10*time.Second, "both VIPs programmed with 3 healthy backends", func(v lbdVIPs) bool {
		return allUp(v, 2) && len(v.VIPs[0].Backends) == 3
	})
	for _, dev := range tp.lbDevs() {
		if !l.xdpAttached(tp.lb, dev) {
			t.Fatalf("lbd did not attach XDP to %s", dev)
		}
	}
	three := []string{"proxy-1", "proxy-2", "proxy-3"}
	t.Logf("set-up: %v", time.Since(start).Round(time.Millisecond))

	// 90 new connections: Maglev with equal weights gives each proxy a
	// third; 15 is half the fair share (missing it by chance: ~1e-3).
	for _, fam := range []struct{ name, url string }{{"IPv4", "http://" + lbeVIP4 + "/"}, {"IPv6", "http://[" + lbeVIP6 + "]/"}} {
		if !t.Run("spread "+fam.name, func(t *testing.T) {
			t0 := time.Now()
			got := spread(t, curlMany(t, tp.client, fam.url, 90))
			t.Logf("90 requests in %v: %v", time.Since(t0).Round(time.Millisecond), got)
			requireShare(t, got, three, 15)
		}) {
			t.FailNow()
		}
	}

	t.Run("upload in full-size segments", func(t *testing.T) {
		const size = 64 << 10
		body := writeText(t, t.TempDir(), "body", strings.Repeat("x", size))
		before := lb.vips(t, l)
		for i, url := range []string{"http://" + lbeVIP4 + "/upload/v4", "http://[" + lbeVIP6 + "]/upload/v6"} {
			// PUT: nginx stores the whole body before it answers. No
			// "Expect: 100-continue" round trip.
			res := curlMany(t, tp.client, url, 1, "-T", body, "-H", "Expect:")
			if res[0].code != "201" {
				t.Errorf("PUT 64 KiB to %s: status %s", url, res[0].code)
			}
			stored := 0
			for _, n := range nginxes {
				if st, err := os.Stat(filepath.Join(n.dir, "www", "upload", []string{"v4", "v6"}[i])); err == nil && st.Size() == size {
					stored++
				}
			}
			if stored != 1 {
				t.Errorf("PUT to %s: stored whole by %d proxies, want 1", url, stored)
			}
		}
		after := lb.vips(t, l)
		for i, v := range after.VIPs {
			if v.Counters == nil || before.VIPs[i].Counters == nil {
				t.Fatalf("no counters in lbd vips")
			}
			if d := v.Counters.Packets - before.VIPs[i].Counters.Packets; d < 40 {
				t.Errorf("%s: %d packets for a 64 KiB upload, want at least 40 full-size segments", v.VIP, d)
			}
			for reason, n := range v.Counters.Drops {
				if n != 0 {
					t.Errorf("%s: %d packets dropped as %s", v.VIP, n, reason)
				}
			}
		}
	})

	t.Run("RTT feed", func(t *testing.T) {
		c := nsHTTPClient(tp.lb, 2*time.Second)
		var feed struct {
			Site string `json:"site"`
			RTT  []struct {
				Client  string  `json:"client"`
				RTTMs   float64 `json:"rtt_ms"`
				Samples uint64  `json:"samples"`
			} `json:"rtt"`
		}
		want := map[string]bool{lbeClientNet4: false, lbeClientNet6: false}
		deadline := time.Now().Add(5 * time.Second) // feed.interval is 1s
		for {
			resp, err := c.Get("http://" + lbeAPI + "/v1/feed")
			if err != nil {
				t.Fatal(err)
			}
			body, err := readAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || json.Unmarshal(body, &feed) != nil {
				t.Fatalf("GET /v1/feed: %d %v %s", resp.StatusCode, err, body)
			}
			for _, r := range feed.RTT {
				if _, ok := want[r.Client]; ok && r.Samples > 0 && r.RTTMs > 0 {
					want[r.Client] = true
				}
			}
			if want[lbeClientNet4] && want[lbeClientNet6] {
				t.Logf("feed: %s", body)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no RTT samples for %v in the feed after 5s: %s", want, body)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if feed.Site != "e2e" {
			t.Errorf("feed site %q", feed.Site)
		}
	})

	if !t.Run("established connections survive adding a backend", func(t *testing.T) {
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		var kas []*keepAlive
		for i := range 12 { // 8 over IPv4, 4 over IPv6
			addr := lbeVIP4 + ":80"
			if i >= 8 {
				addr = "[" + lbeVIP6 + "]:80"
			}
			kas = append(kas, startKeepAlive(ctx, t, tp.client, addr))
		}
		waitKeepAlives(t, kas, 2)
		// With proxy 4 in the table, a quarter of the hash space moves:
		// without the connection table, about 3 of these 12 flows would
		// change proxy mid-connection (all 12 staying put by chance:
		// 0.75^12, 3%).
		cfg = lbdConfig(t, cfgDir, bpffs, tp.lbDevs(), vips(4))
		lb.Signal(t, syscall.SIGHUP)
		lb.waitLog(t, "SIGHUP: reloading config", 1, 5*time.Second)
		lb.waitLog(t, "msg=\"config reloaded\"", 1, 5*time.Second)
		lb.waitVIPs(t, l, 5*time.Second, "proxy-4 in both tables", func(v lbdVIPs) bool {
			b4, ok4 := v.backend("tcp/"+lbeVIP4+":80", tp.proxies[3].addr4)
			b6, ok6 := v.backend("tcp/["+lbeVIP6+"]:80", tp.proxies[3].addr6)
			return ok4 && ok6 && b4.TableEntries > 0 && b6.TableEntries > 0 && b4.Health == "up" && b6.Health == "up"
		})
		t.Logf("reloaded; table changed")
		// New connections reach the new proxy (a quarter of 60: 15; at
		// least 4 by chance with probability > 0.999).
		got := spread(t, curlMany(t, tp.client, "http://"+lbeVIP4+"/", 60))
		t.Logf("60 new connections after the reload: %v", got)
		requireShare(t, got, []string{"proxy-1", "proxy-2", "proxy-3", "proxy-4"}, 4)
		// Five more requests (a second) on every established connection.
		waitKeepAlives(t, kas, kas[0].count()+5)
		stop()
		for i, ka := range kas {
			ka.wait()
			if ka.err != nil {
				t.Errorf("established connection %d (%s, %s): %v after %d requests", i, ka.local, ka.first, ka.err, ka.n)
			}
			if ka.moved != "" {
				t.Errorf("established connection %d (%s) moved from %s to %s", i, ka.local, ka.first, ka.moved)
			}
		}
		var where []string
		for _, ka := range kas {
			where = append(where, fmt.Sprintf("%s:%d", ka.first, ka.n))
		}
		t.Logf("established connections (proxy:requests): %s", strings.Join(where, " "))
	}) {
		t.FailNow()
	}

	t.Run("a proxy dies", func(t *testing.T) {
		victim := tp.proxies[0]
		loop := startRequestLoop(t, tp.client, "http://"+lbeVIP4+"/")
		waitFor(t, 5*time.Second, "requests before the stop", func() bool { return loop.len() >= 20 })
		tKill := time.Now()
		if err := nginxes[victim.name].stop(syscall.SIGTERM, 5*time.Second); err != nil && !isSignalExit(err) {
			t.Logf("nginx exit: %v", err)
		}
		tStopped := time.Now()
		bound := hcInterval*hcFall + hcTimeout
		v := lb.waitVIPs(t, l, bound+5*time.Second, victim.name+" down and out of both tables", func(v lbdVIPs) bool {
			b4, _ := v.backend("tcp/"+lbeVIP4+":80", victim.addr4)
			b6, _ := v.backend("tcp/["+lbeVIP6+"]:80", victim.addr6)
			return b4.Health == "down" && b4.TableEntries == 0 && b6.Health == "down" && b6.TableEntries == 0
		})
		tOut := time.Now()
		b4, _ := v.backend("tcp/"+lbeVIP4+":80", victim.addr4)
		detect := b4.HealthSince.Sub(tStopped)
		t.Logf("nginx stopped in %v; lbd marked %s down (%s) %v after; seen in lbd vips %v after the stop",
			tStopped.Sub(tKill).Round(time.Millisecond), victim.name, b4.Reason, detect.Round(time.Millisecond), tOut.Sub(tStopped).Round(time.Millisecond))
		// Down after fall failed probes, interval apart; the first may
		// come up to an interval after the stop, each may take the
		// timeout. Margin for a loaded machine.
		if limit := bound + hcInterval + time.Second; detect > limit {
			t.Errorf("%s marked down %v after its nginx stopped, want within %v", victim.name, detect, limit)
		}
		// Keep requesting for a while after the removal.
		waitFor(t, 10*time.Second, "requests after the removal", func() bool {
			return loop.countSince(tOut) >= 50 && time.Since(tOut) > time.Second
		})
		res := loop.stop()
		var before, during, after, failBefore, failDuring, failAfter, slowFail int
		for _, r := range res {
			switch {
			case r.end.Before(tKill):
				before++
				if r.err != nil {
					failBefore++
					t.Errorf("request before the stop failed: %v", r.err)
				}
			case r.start.Before(tOut):
				during++
				if r.err != nil {
					failDuring++
					// The proxy's kernel refuses at once: nothing hangs.
					if r.end.Sub(r.start) > 500*time.Millisecond {
						slowFail++
					}
				}
			default:
				after++
				if r.err != nil {
					failAfter++
					t.Errorf("request %v after the removal failed: %v", r.start.Sub(tOut).Round(time.Millisecond), r.err)
				} else if r.page == victim.name {
					t.Errorf("request after the removal answered by %s", victim.name)
				}
			}
		}
		t.Logf("requests: %d before the stop (%d failed), %d between the stop and the removal (%d failed, refused by %s's kernel), %d after (%d failed)",
			before, failBefore, during, failDuring, victim.name, after, failAfter)
		if slowFail > 0 {
			t.Errorf("%d failed requests took over 500ms: packets were black-holed instead of refused", slowFail)
		}
		// Only connections Maglev sent to the dead proxy can fail: about
		// a third of those in the window.
		if during > 10 && failDuring > during*2/3 {
			t.Errorf("%d of %d requests failed during the transition, want about a third", failDuring, during)
		}
		if after < 50 {
			t.Errorf("only %d requests after the removal", after)
		}
	})

	// The graceful way: drained first (new connections go elsewhere), a
	// proxy can stop without a single failed request; then removed.
	t.Run("a drained proxy stops", func(t *testing.T) {
		p := tp.proxies[1]
		vip := "tcp/" + lbeVIP4 + ":80"
		out := l.exec(tp.lb, lbd, "drain", vip, p.addr4, "-api", lbeAPI)
		if !strings.Contains(out, "is draining") {
			t.Errorf("lbd drain: %q", out)
		}
		lb.waitVIPs(t, l, 5*time.Second, p.name+" draining and out of the table", func(v lbdVIPs) bool {
			b, _ := v.backend(vip, p.addr4)
			return b.State == "draining" && b.TableEntries == 0
		})
		loop := startRequestLoop(t, tp.client, "http://"+lbeVIP4+"/")
		waitFor(t, 5*time.Second, "requests before the stop", func() bool { return loop.len() >= 20 })
		tKill := time.Now()
		_ = nginxes[p.name].stop(syscall.SIGTERM, 5*time.Second)
		lb.waitVIPs(t, l, hcInterval*hcFall+5*time.Second, p.name+" down", func(v lbdVIPs) bool {
			b, _ := v.backend(vip, p.addr4)
			return b.Health == "down"
		})
		waitFor(t, 10*time.Second, "requests after the stop", func() bool { return loop.countSince(tKill) >= 50 })
		res := loop.stop()
		failed := 0
		for _, r := range res {
			if r.err != nil {
				failed++
				t.Errorf("request at %v from the stop failed: %v", r.start.Sub(tKill).Round(time.Millisecond), r.err)
			} else if r.page == p.name || r.page == tp.proxies[0].name {
				t.Errorf("request answered by %s", r.page)
			}
		}
		t.Logf("%d requests around the stop of the drained %s, %d failed", len(res), p.name, failed)
		out = l.exec(tp.lb, lbd, "remove", vip, p.addr4, "-api", lbeAPI)
		if !strings.Contains(out, "removed from") {
			t.Errorf("lbd remove: %q", out)
		}
		lb.waitVIPs(t, l, 5*time.Second, p.name+" removed", func(v lbdVIPs) bool {
			b, _ := v.backend(vip, p.addr4)
			return b.State == "removed"
		})
	})

	t.Run("stop and detach", func(t *testing.T) {
		lb.stopClean(t)
		for _, dev := range tp.lbDevs() {
			if l.xdpAttached(tp.lb, dev) {
				t.Errorf("XDP still attached to %s after lbd exited with -detach-on-exit", dev)
			}
		}
		for _, p := range tp.proxies {
			out := l.exec(p.ns, lbd, "decap", "-iface", p.dev, "-detach", "-pin-path", filepath.Join(bpffs, "decap-"+p.name))
			if !strings.Contains(out, "decapsulator detached from "+p.dev) || l.xdpAttached(p.ns, p.dev) {
				t.Errorf("lbd decap -detach on %s: %q; XDP still attached: %v", p.dev, out, l.xdpAttached(p.ns, p.dev))
			}
		}
	})
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}

// isSignalExit says whether err is the exit of a process killed by a
// signal (nginx ends that way on SIGTERM without a master process).
func isSignalExit(err error) bool {
	ee, ok := err.(*exec.ExitError)
	if !ok {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled()
}

// keepAlive is one long-lived HTTP/1.1 connection from the client
// namespace issuing a request every 200ms until its context ends. It
// records the proxy of the first answer and any answer from another.
type keepAlive struct {
	local string
	first string
	moved string
	err   error
	mu    sync.Mutex
	n     int
	done  chan struct{}
}

func startKeepAlive(ctx context.Context, t testing.TB, ns, addr string) *keepAlive {
	t.Helper()
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := nsDial(ns)(dctx, "tcp", addr)
	if err != nil {
		t.Fatalf("connect to %s: %v", addr, err)
	}
	ka := &keepAlive{local: conn.LocalAddr().String(), done: make(chan struct{})}
	go func() {
		defer close(ka.done)
		defer conn.Close()
		br := bufio.NewReader(conn)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
			if _, err := io.WriteString(conn, "GET /ka HTTP/1.1\r\nHost: lbe\r\n\r\n"); err != nil {
				ka.err = err
				return
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				ka.err = err
				return
			}
			body, err := readAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || resp.Close {
				ka.err = fmt.Errorf("status %d, close %v, %v", resp.StatusCode, resp.Close, err)
				return
			}
			page := strings.TrimSpace(string(body))
			ka.mu.Lock()
			if ka.first == "" {
				ka.first = page
			} else if page != ka.first && ka.moved == "" {
				ka.moved = page
			}
			ka.n++
			ka.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return ka
}

func (ka *keepAlive) count() int {
	ka.mu.Lock()
	defer ka.mu.Unlock()
	return ka.n
}

func (ka *keepAlive) wait() { <-ka.done }

// waitKeepAlives waits (bounded) until every connection has made n
// requests, failing early if one ends.
func waitKeepAlives(t testing.TB, kas []*keepAlive, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Duration(n)*400*time.Millisecond + 5*time.Second)
	for _, ka := range kas {
		for ka.count() < n {
			select {
			case <-ka.done:
				t.Fatalf("connection %s ended after %d requests: %v", ka.local, ka.count(), ka.err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("connection %s made %d requests, want %d", ka.local, ka.count(), n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// requestLoop sends requests one after another, each on a new connection,
// from a namespace, and records them.
type requestLoop struct {
	mu     sync.Mutex
	res    []loopResult
	stopCh chan struct{}
	done   chan struct{}
}

type loopResult struct {
	start, end time.Time
	page       string
	err        error
}

func startRequestLoop(t testing.TB, ns, url string) *requestLoop {
	c := nsHTTPClient(ns, time.Second)
	lp := &requestLoop{stopCh: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(lp.done)
		deadline := time.Now().Add(30 * time.Second) // bounded even if never stopped
		for time.Now().Before(deadline) {
			select {
			case <-lp.stopCh:
				return
			default:
			}
			r := loopResult{start: time.Now()}
			resp, err := c.Get(url)
			if err == nil {
				var body []byte
				body, err = readAll(resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
				r.page = strings.TrimSpace(string(body))
			}
			r.end, r.err = time.Now(), err
			lp.mu.Lock()
			lp.res = append(lp.res, r)
			lp.mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { lp.stop() })
	return lp
}

func (lp *requestLoop) len() int {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	return len(lp.res)
}

func (lp *requestLoop) countSince(t time.Time) int {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	n := 0
	for _, r := range lp.res {
		if !r.start.Before(t) {
			n++
		}
	}
	return n
}

// stop ends the loop and returns its results; calling it again returns
// them again.
func (lp *requestLoop) stop() []loopResult {
	select {
	case <-lp.stopCh:
	default:
		close(lp.stopCh)
	}
	<-lp.done
	lp.mu.Lock()
	defer lp.mu.Unlock()
	return slices.Clone(lp.res)
}

// TestLBDDSR runs lbd in L2 DSR mode: the client, the LB and three proxies
// share one bridge; the proxies have the VIP on lo and neither answer ARP
// for it nor announce it (arp_ignore=1, arp_announce=2). lbd rewrites the
// destination MAC to the proxy's and transmits the frame back onto the
// segment; the proxies answer the client directly (the LB does not even
// forward: ip_forward is 0 there). New connections spread over the three.
//
//	client ns PFXc 198.19.0.2 --+
//	LB ns     PFXd 198.19.0.1 --+-- bridge PFXbr (bridge ns; XDP_PASS on the LB's port so lbd's XDP_TX is delivered)
//	proxy N   PFXpN 198.19.0.(10+N), lo 192.0.2.20 --+
func TestLBDDSR(t *testing.T) {
	requireNetLab(t, "nginx", "curl")
	start := time.Now()
	l := newNetLab(t)
	const vip = "192.0.2.20"
	br, client, lbns := l.netns("br"), l.netns("c"), l.netns("lb")
	bridge := l.name("br")
	l.ip(br, "link", "add", "name", bridge, "type", "bridge", "stp_state", "0")
	l.ip(br, "link", "set", bridge, "up")
	port := func(ns, dev, mac, brPort string) {
		l.veth(ns, dev, mac, br, brPort, "")
		l.ip(br, "link", "set", brPort, "master", bridge)
	}
	clientDev, lbDev := l.name("c"), l.name("d")
	port(client, clientDev, "", l.name("bc"))
	port(lbns, lbDev, "", l.name("bl"))
	l.ip(client, "addr", "add", "198.19.0.2/24", "dev", clientDev)
	l.ip(client, "route", "add", vip+"/32", "via", "198.19.0.1")
	l.ip(lbns, "addr", "add", "198.19.0.1/24", "dev", lbDev)
	l.sysctl(lbns, "net.ipv4.ip_forward=0")
	// The client's TCP is transmitted by lbd's XDP_TX.
	l.txOff(client, clientDev)
	// lbd's XDP_TX goes to the bridge port's receive ring, which only
	// runs with an XDP program on it.
	attachXDP(t, br, l.name("bl"), xdpPassProgram(t))

	type proxy struct{ name, ns, dev, addr, mac string }
	var proxies []proxy
	var backends []lbdBackendConf
	nginxes := map[string]*nginx{}
	for n := 1; n <= 3; n++ {
		p := proxy{name: fmt.Sprintf("proxy-%d", n), ns: l.netns(fmt.Sprintf("p%d", n)), dev: l.name(fmt.Sprintf("p%d", n)),
			addr: fmt.Sprintf("198.19.0.%d", 10+n), mac: fmt.Sprintf("02:00:c6:13:00:%02x", 10+n)}
		port(p.ns, p.dev, p.mac, l.name(fmt.Sprintf("b%d", n)))
		l.ip(p.ns, "addr", "add", p.addr+"/24", "dev", p.dev)
		l.ip(p.ns, "addr", "add", vip+"/32", "dev", "lo")
		// The VIP is on every proxy: none may answer ARP for it or use it
		// as an ARP source, or the client's traffic would bypass the LB.
		l.sysctl(p.ns, "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2",
			"net.ipv4.conf."+p.dev+".arp_ignore=1", "net.ipv4.conf."+p.dev+".arp_announce=2")
		l.txOff(p.ns, p.dev)
		nginxes[p.name] = startNginx(t, l, p.ns, p.name, []string{vip + ":80", p.addr + ":80"})
		proxies = append(proxies, p)
		backends = append(backends, lbdBackendConf{addr: p.addr, mac: p.mac})
	}
	for _, p := range proxies {
		waitHealthz(t, lbns, p.addr, nginxes[p.name])
	}
	bpffs := mountBPFFS(t)
	cfg := lbdConfig(t, t.TempDir(), bpffs, []string{lbDev}, []lbdVIPConf{{addr: vip, mode: "dsr", backends: backends}})
	lb := startLBD(t, l, lbns, cfg, lbeAPI)
	v := lb.waitVIPs(t, l, 10*time.Second, "the VIP programmed with 3 healthy backends", func(v lbdVIPs) bool { return allUp(v, 1) })
	if v.VIPs[0].Mode != "dsr" {
		t.Errorf("VIP mode %q, want dsr", v.VIPs[0].Mode)
	}
	for _, p := range proxies {
		if b, _ := v.backend("tcp/"+vip+":80", p.addr); b.MAC != p.mac {
			t.Errorf("%s: MAC %q in lbd vips, want %s", p.name, b.MAC, p.mac)
		}
	}
	t.Logf("set-up: %v", time.Since(start).Round(time.Millisecond))

	t0 := time.Now()
	got := spread(t, curlMany(t, client, "http://"+vip+"/", 90))
	t.Logf("90 requests in %v: %v", time.Since(t0).Round(time.Millisecond), got)
	requireShare(t, got, []string{"proxy-1", "proxy-2", "proxy-3"}, 15)

	v = lb.vips(t, l)
	c := v.VIPs[0].Counters
	if c == nil || c.NewFlows < 90 {
		t.Errorf("VIP counters %+v, want 90 new flows or more", c)
	} else {
		for reason, n := range c.Drops {
			if n != 0 {
				t.Errorf("%d packets dropped as %s", n, reason)
			}
		}
	}
	var perBackend []string
	for _, b := range v.VIPs[0].Backends {
		if b.Counters == nil || b.Counters.NewFlows == 0 {
			t.Errorf("backend %s: counters %+v, want new flows", b.Address, b.Counters)
		} else {
			perBackend = append(perBackend, fmt.Sprintf("%s %d flows/%d packets", b.Address, b.Counters.NewFlows, b.Counters.Packets))
		}
	}
	t.Logf("lbd counters: %s", strings.Join(perBackend, ", "))
	// The table view of the same command.
	if out := l.exec(lbns, filepath.Join(binDir, "lbd"), "vips", "-api", lbeAPI); !strings.Contains(out, vip) || !strings.Contains(out, "dsr") {
		t.Errorf("lbd vips (table) does not show the DSR VIP:\n%s", out)
	}
	lb.stopClean(t)
	if l.xdpAttached(lbns, lbDev) {
		t.Errorf("XDP still attached to %s after lbd exited", lbDev)
	}
	t.Logf("total %v", time.Since(start).Round(time.Millisecond))
}

// Signal sends sig to the process by its PID.
func (p *nsProc) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}
