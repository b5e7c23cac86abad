package test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gslbd/gslbd/anycast"
)

// The anycast package against a real router: BIRD 2 on 127.0.0.1 at a free
// high port with its own control socket, one passive eBGP neighbor per
// announcer (each announcer sourcing its session from its own loopback
// address). BIRD does not act on the graceful-shutdown community by itself,
// so its import filter maps 65535:0 to local_pref 0.
//
// BIRD refuses direct neighbors with host-scope (127/8) addresses ("Invalid
// remote address"), so the sessions are multihop; BIRD then cannot resolve
// the 127.0.0.x next hops either and lists the routes as unreachable, with
// every BGP attribute, which is what these tests read. There is no kernel
// protocol: BIRD never touches the host's routing table.

const birdASN = 65000

// birdSite is one announcer BIRD accepts.
type birdSite struct {
	name string
	addr netip.Addr // the announcer's session source, BIRD's neighbor
	asn  uint32
}

type birdRouter struct {
	sock string
	port uint16
	logs *birdLog
}

// birdLog keeps BIRD's log lines with the time each arrived, and signals
// each arrival (its config traces every route change).
type birdLog struct {
	mu      sync.Mutex
	partial []byte
	lines   []birdLogLine
	notify  chan struct{}
}

type birdLogLine struct {
	at   time.Time
	text string
}

func (l *birdLog) Write(p []byte) (int, error) {
	now := time.Now()
	l.mu.Lock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, birdLogLine{now, string(l.partial[:i])})
		l.partial = l.partial[i+1:]
	}
	l.mu.Unlock()
	select {
	case l.notify <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (l *birdLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

// since returns the lines from index i on.
func (l *birdLog) since(i int) []birdLogLine {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines[min(i, len(l.lines)):])
}

func (l *birdLog) String() string {
	var b strings.Builder
	for _, ln := range l.since(0) {
		b.WriteString(ln.text)
		b.WriteByte('\n')
	}
	return b.String()
}

func startBIRD(t testing.TB, sites ...birdSite) *birdRouter {
	t.Helper()
	bird := requireTool(t, "bird")
	requireTool(t, "birdc")
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &birdRouter{sock: filepath.Join(dir, "bird.ctl"), port: uint16(ln.Addr().(*net.TCPAddr).Port), logs: &birdLog{notify: make(chan struct{}, 1)}}
	ln.Close()
	var conf strings.Builder
	fmt.Fprintf(&conf, `router id 127.0.0.1;
log stderr all;
timeformat log iso long us;
protocol device {}
filter anycast_in {
  if (65535, 0) ~ bgp_community then bgp_local_pref = 0;
  accept;
}
template bgp site {
  local 127.0.0.1 port %d as %d;
  strict bind on;
  passive on;
  multihop 2;
  error wait time 1, 5;
  hold time 9;
  debug { routes };
  ipv4 { import filter anycast_in; export none; };
}
`, b.port, birdASN)
	for _, s := range sites {
		fmt.Fprintf(&conf, "protocol bgp %s from site { neighbor %s as %d; }\n", s.name, s.addr, s.asn)
	}
	cf := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(cf, []byte(conf.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bird, "-f", "-c", cf, "-s", b.sock)
	cmd.Stdout, cmd.Stderr = b.logs, b.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill() // our own child, by PID
		cmd.Wait()
		if t.Failed() {
			t.Logf("BIRD log:\n%s", b.logs)
		}
	})
	waitFor(t, 10*time.Second, "BIRD's control socket", func() bool {
		_, err := exec.Command("birdc", "-s", b.sock, "show", "status").CombinedOutput()
		return err == nil
	})
	return b
}

// birdPath is one path BIRD holds for a prefix.
type birdPath struct {
	proto     string // the BGP protocol (site) it came from
	localPref string
	community string
	med       string
	asPath    string
}

var birdRouteStart = regexp.MustCompile(`^(\S+)?\s+\S+\s+\[(\S+) `)

// routes parses `birdc show route <prefix> all`.
func (b *birdRouter) routes(t testing.TB, prefix netip.Prefix) []birdPath {
	t.Helper()
	out, err := exec.Command("birdc", "-s", b.sock, "show", "route", prefix.String(), "all").CombinedOutput()
	if strings.Contains(string(out), "Network not found") {
		return nil // birdc exits 1 for it
	}
	if err != nil {
		t.Fatalf("birdc show route: %v\n%s", err, out)
	}
	var paths []birdPath
	for _, line := range strings.Split(string(out), "\n") {
		if m := birdRouteStart.FindStringSubmatch(line); m != nil && (m[1] == "" || m[1] == prefix.String()) && !strings.HasPrefix(line, "\t") {
			paths = append(paths, birdPath{proto: m[2]})
			continue
		}
		if len(paths) == 0 {
			continue
		}
		p := &paths[len(paths)-1]
		k, v, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if !ok {
			continue
		}
		switch k {
		case "BGP.local_pref":
			p.localPref = v
		case "BGP.community":
			p.community = v
		case "BGP.med":
			p.med = v
		case "BGP.as_path":
			p.asPath = v
		}
	}
	return paths
}

func (b *birdRouter) waitRoutes(t *testing.T, prefix netip.Prefix, what string, cond func([]birdPath) bool) []birdPath {
	t.Helper()
	const timeout = 20 * time.Second
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ps := b.routes(t, prefix)
		if cond(ps) {
			return ps
		}
		if time.Now().After(deadline) {
			t.Fatalf("BIRD: %v not %s within %v; paths: %+v", prefix, what, timeout, ps)
		}
		<-tick.C
	}
}

func onePath(localPref string) func([]birdPath) bool {
	return func(ps []birdPath) bool { return len(ps) == 1 && ps[0].localPref == localPref }
}

func noPath(ps []birdPath) bool { return len(ps) == 0 }

func newBIRDAnnouncer(t testing.TB, b *birdRouter, s birdSite) (*anycast.Announcer, func() error) {
	t.Helper()
	a, err := anycast.New(anycast.Config{
		RouterID: s.addr,
		LocalASN: s.asn,
		Peers: []anycast.PeerConfig{{
			Address: netip.MustParseAddr("127.0.0.1"), ASN: birdASN, Port: b.port, LocalAddress: s.addr,
			HoldTime: 3 * time.Second, ConnectRetry: time.Second,
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var result error
	finished := false
	wait := func() error {
		if !finished {
			result, finished = <-done, true
		}
		return result
	}
	t.Cleanup(func() { cancel(); wait() })
	waitFor(t, 20*time.Second, s.name+"'s BGP session", func() bool {
		st := a.Status()
		return len(st.Peers) == 1 && st.Peers[0].Up
	})
	return a, wait
}

var (
	siteA = birdSite{"site_a", netip.MustParseAddr("127.0.0.2"), 65001}
	siteB = birdSite{"site_b", netip.MustParseAddr("127.0.0.3"), 65002}
)

// TestAnycastBIRD: learned, local_pref 0 while de-preferred, withdrawn when
// down, drained and withdrawn by Shutdown.
func TestAnycastBIRD(t *testing.T) {
	b := startBIRD(t, siteA)
	a, runDone := newBIRDAnnouncer(t, b, siteA)
	vip := anycast.VIP{Prefix: netip.MustParsePrefix("192.0.2.53/32"), Communities: []string{"65001:53"}, MED: 10, DrainMED: 100}

	if err := a.Set(vip, anycast.Announced, "healthy"); err != nil {
		t.Fatal(err)
	}
	ps := b.waitRoutes(t, vip.Prefix, "learned", onePath("100"))
	if p := ps[0]; p.proto != siteA.name || p.med != "10" || p.community != "(65001,53)" || p.asPath != "65001" {
		t.Fatalf("learned path: %+v", p)
	}

	if err := a.Set(vip, anycast.Depreferred, "degraded"); err != nil {
		t.Fatal(err)
	}
	ps = b.waitRoutes(t, vip.Prefix, "local_pref 0", onePath("0"))
	if p := ps[0]; p.med != "100" || !strings.Contains(p.community, "(65535,0)") {
		t.Fatalf("de-preferred path: %+v", p)
	}

	if err := a.Set(vip, anycast.Withdrawn, "down"); err != nil {
		t.Fatal(err)
	}
	b.waitRoutes(t, vip.Prefix, "withdrawn", noPath)

	if err := a.Set(vip, anycast.Announced, "healthy"); err != nil {
		t.Fatal(err)
	}
	b.waitRoutes(t, vip.Prefix, "learned again", onePath("100"))

	const drain = 2 * time.Second
	shut := make(chan error, 1)
	start := time.Now()
	go func() { shut <- a.Shutdown(context.Background(), drain) }()
	b.waitRoutes(t, vip.Prefix, "drained (local_pref 0)", onePath("0"))
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < drain {
		t.Fatalf("Shutdown took %v, less than the drain", took)
	}
	b.waitRoutes(t, vip.Prefix, "withdrawn after Shutdown", noPath)
	if err := runDone(); err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestAnycastBIRDTwoSites: two announcers announcing one /32 give BIRD two
// paths; one withdrawing leaves the other's.
func TestAnycastBIRDTwoSites(t *testing.T) {
	b := startBIRD(t, siteA, siteB)
	a, _ := newBIRDAnnouncer(t, b, siteA)
	bb, bDone := newBIRDAnnouncer(t, b, siteB)
	vip := anycast.VIP{Prefix: netip.MustParsePrefix("192.0.2.54/32")}
	for _, x := range []*anycast.Announcer{a, bb} {
		if err := x.Set(vip, anycast.Announced, "healthy"); err != nil {
			t.Fatal(err)
		}
	}
	protos := func(ps []birdPath) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.proto)
		}
		slices.Sort(out)
		return out
	}
	b.waitRoutes(t, vip.Prefix, "from both sites", func(ps []birdPath) bool {
		return slices.Equal(protos(ps), []string{"site_a", "site_b"})
	})
	if err := a.Set(vip, anycast.Withdrawn, "down"); err != nil {
		t.Fatal(err)
	}
	b.waitRoutes(t, vip.Prefix, "from site_b only", func(ps []birdPath) bool {
		return slices.Equal(protos(ps), []string{"site_b"})
	})
	// Site B drains: its path stays (local_pref 0), then goes on Shutdown.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- bb.Shutdown(ctx, time.Second) }()
	b.waitRoutes(t, vip.Prefix, "drained by site_b (local_pref 0)", func(ps []birdPath) bool {
		return len(ps) == 1 && ps[0].proto == "site_b" && ps[0].localPref == "0"
	})
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	b.waitRoutes(t, vip.Prefix, "withdrawn by both", noPath)
	if err := bDone(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkAnycastBIRDFlip measures the time from Set(Announced) or
// Set(Withdrawn) to BIRD's table changing (its route trace reaching the
// test), over b.N flips; median and max in milliseconds.
func BenchmarkAnycastBIRDFlip(b *testing.B) {
	br := startBIRD(b, siteA)
	a, _ := newBIRDAnnouncer(b, br, siteA)
	vip := anycast.VIP{Prefix: netip.MustParsePrefix("192.0.2.60/32")}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s, want := anycast.Announced, "site_a.ipv4 > added [best] "+vip.Prefix.String()
		if i%2 == 1 {
			s, want = anycast.Withdrawn, "site_a.ipv4 > removed [sole] "+vip.Prefix.String()
		}
		mark := br.logs.len()
		start := time.Now()
		if err := a.Set(vip, s, "bench"); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, br.waitLog(b, mark, want).Sub(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), "median-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
}

// waitLog waits for a log line from index mark on containing want and
// returns when it arrived.
func (br *birdRouter) waitLog(t testing.TB, mark int, want string) time.Time {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		for _, ln := range br.logs.since(mark) {
			if strings.Contains(ln.text, want) {
				return ln.at
			}
		}
		select {
		case <-br.logs.notify:
		case <-deadline.C:
			t.Fatalf("BIRD did not log %q within 10s", want)
		}
	}
}
