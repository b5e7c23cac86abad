package test

import (
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// copyZones copies testdata/zones into a fresh directory the test may edit.
func copyZones(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	data, err := os.ReadFile("testdata/zones/example.test.zone")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "example.test.zone"), string(data))
	return dir
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	// Write then rename, as editors and git do, so the watcher never sees half a file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func short(t *testing.T, g *gslbd, name, qtype string) string {
	return strings.TrimSpace(dig(t, g.DNS, "+short", "+norec", name, qtype))
}

func TestReloadOnFileChange(t *testing.T) {
	dir := copyZones(t)
	g := startGslbd(t, "-zones", dir)
	if got := short(t, g, "www.example.test", "AAAA"); got != "2001:db8::80" {
		t.Fatalf("before: %q", got)
	}
	zone := filepath.Join(dir, "example.test.zone")
	orig, _ := os.ReadFile(zone)
	edited := strings.Replace(string(orig), "2026112201", "2026112202", 1)
	edited = strings.Replace(edited, "2001:db8::80", "2001:db8::81", 1)
	writeFile(t, zone, edited)
	waitFor(t, 10*time.Second, "the edited zone to be served", func() bool {
		return short(t, g, "www.example.test", "AAAA") == "2001:db8::81"
	})

	// A broken edit: the previous version keeps serving, the error names file:line.
	broken := strings.Replace(edited, "2026112202", "2026112203", 1) + "bad  A  not-an-address\n"
	writeFile(t, zone, broken)
	waitFor(t, 10*time.Second, "the load error to be logged", func() bool {
		return strings.Contains(g.Logs(), "example.test.zone:"+lineCount(broken))
	})
	if got := short(t, g, "www.example.test", "AAAA"); got != "2001:db8::81" {
		t.Errorf("after a broken edit the previous version must keep serving, got %q", got)
	}
	if got := short(t, g, "example.test", "SOA"); !strings.Contains(got, "2026112202") {
		t.Errorf("serial after a broken edit: %q", got)
	}
	if m := metrics(t, g); !strings.Contains(m, `gslbd_zone_reloads_total{result="failure",zone="example.test."} 1`) {
		t.Errorf("reload failure not counted:\n%s", grep(m, "gslbd_zone_reloads_total"))
	}
}

func lineCount(s string) string { return strconv.Itoa(strings.Count(s, "\n")) }

func TestReloadOnSIGHUP(t *testing.T) {
	dir := copyZones(t)
	g := startGslbd(t, "-zones", dir, "-config", writeConfig(t, "reload:\n  debounce: 100ms\n"))
	// A new zone file appears; SIGHUP makes sure it is picked up.
	writeFile(t, filepath.Join(dir, "other.test.zone"),
		"$TTL 300\n@ SOA ns1.example.test. h.example.test. 1 2 3 4 5\n@ NS ns1.example.test.\nhost A 192.0.2.7\n")
	g.Signal(t, syscall.SIGHUP)
	waitFor(t, 10*time.Second, "the new zone", func() bool {
		return short(t, g, "host.other.test", "A") == "192.0.2.7"
	})
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "gslbd.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"listen: [\"127.0.0.1:0\"]\nlisen: x\n", `gslbd.yaml:2: unknown key "lisen"`},
		{"tcp:\n  idle_timout: 3s\n", `gslbd.yaml:2: unknown key "idle_timout"`},
		{"max_udp_size: 100\n", "max_udp_size 100 is below 512"},
		{"log:\n  level: loud\n", `log.level: "loud"`},
		{"transfers:\n  zones:\n    example.test:\n      allow: [{prefixes: [192.0.2.1/24]}]\n", "has host bits set"},
		{"anycast:\n  router_id: 192.0.2.1\n  local_asn: 65001\n  peers: [{asn: 65000}]\n", "anycast.peers[0].address: missing"},
		{"anycast:\n  router_id: 192.0.2.1\n  local_asn: 65001\n  peers: [{address: 192.0.2.254, asn: 65000, hold_time: 2s}]\n", "hold_time"},
		{"anycast:\n  router_id: 192.0.2.1\n  local_asn: 65001\n  peers: [{address: 192.0.2.254, asn: 65000}]\n  vips: [{prefix: 203.0.113.10/24, healthy: {endpoints: [x]}}]\n", "anycast.vips[0].prefix"},
		{"anycast:\n  router_id: 192.0.2.1\n  local_asn: 65001\n  peers: [{address: 192.0.2.254, asn: 65000}]\n  vips: [{prefix: 203.0.113.10/32}]\n", "no health checks"},
		{"anycast:\n  router_id: 192.0.2.1\n  local_asn: 65001\n  peers: [{address: 192.0.2.254, asn: 65000}]\n  vips: [{prefix: 203.0.113.10/32, healthy: {pools: {web: \"150%\"}}}]\n", "anycast.vips[0].healthy.pools.web"},
		{"gslb:\n  geoip: /nonexistent.mmdb\n", "/nonexistent.mmdb"},
		{"api:\n  listen: 0.0.0.0:0\n", "api.tokens: required when api.listen (0.0.0.0:0) is not a loopback address"},
		{"api:\n  listen: 127.0.0.1:0\n  tokens: [{name: a, scope: root, sha256: 00}]\n", `api.tokens[0].scope: unknown scope "root"`},
		{"api:\n  listen: 127.0.0.1:0\n  tokens: [{name: a, scope: read, sha256: 00}]\n", "api.tokens[0].sha256: want 64 hex digits"},
		{"api:\n  listen: 127.0.0.1:0\n  tls: {cert: /nonexistent.crt}\n", "api.tls: give both cert and key"},
		{"state:\n  backend: zookeeper\n", `state.backend: "zookeeper" is not bolt or etcd`},
		{"state:\n  backend: etcd\n", "state.etcd.endpoints: required"},
		{"state:\n  path: /proc/nope/state.db\n", "/proc/nope"},
	} {
		cmd := exec.Command(filepath.Join(binDir, "gslbd"), "-config", writeConfig(t, tc.yaml), "-listen", "127.0.0.1:0", "-metrics", "127.0.0.1:0")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("config %q: err %v, output %q, want it to mention %q", tc.yaml, err, out, tc.want)
		}
	}
}

func TestEmbeddedDefault(t *testing.T) {
	g := startGslbd(t)
	if got := short(t, g, "www.example.com", "A"); got == "" {
		t.Fatal("the embedded example zone does not answer www.example.com A")
	}
	// The embedded gslb.yaml with the embedded DB-IP database: a London
	// client gets London, a US client New York.
	for subnet, want := range map[string]string{"81.2.69.0/24": "192.0.2.11", "8.8.8.0/24": "192.0.2.31"} {
		got := strings.TrimSpace(dig(t, g.DNS, "+short", "+norec", "+subnet="+subnet, "geo.example.com", "A"))
		if got != want {
			t.Errorf("geo.example.com for %s: %q, want %s", subnet, got, want)
		}
	}
}

func TestSIGTERMFinishesCleanly(t *testing.T) {
	g := startGslbd(t, "-zones", "testdata/zones")
	short(t, g, "www.example.test", "A")
	g.stop(t)
	if code := g.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	if _, err := net.DialTimeout("tcp", g.DNS.String(), time.Second); err == nil {
		t.Error("still accepting TCP after exit")
	}
}

func metrics(t *testing.T, g *gslbd) string {
	t.Helper()
	resp, err := http.Get("http://" + g.Metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestMetrics(t *testing.T) {
	g := startGslbd(t, "-zones", "testdata/zones")
	dig(t, g.DNS, "www.example.test", "A")
	dig(t, g.DNS, "+tcp", "missing.example.test", "AAAA")
	dig(t, g.DNS, "www.example.net", "A")
	m := metrics(t, g)
	for _, want := range []string{
		`gslbd_dns_queries_total{qtype="A",rcode="NOERROR",transport="udp",zone="example.test."} 1`,
		`gslbd_dns_queries_total{qtype="AAAA",rcode="NXDOMAIN",transport="tcp",zone="example.test."} 1`,
		`gslbd_dns_queries_total{qtype="A",rcode="REFUSED",transport="udp",zone="none"} 1`,
		`gslbd_zone_serial{zone="example.test."} 2.026112201e+09`,
		`gslbd_dns_response_size_bytes_count{transport="udp"} 2`,
		`gslbd_dns_request_duration_seconds_bucket{transport="udp",le="+Inf"}`,
		`gslbd_dns_tcp_connections_total 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	promtool := requireTool(t, "promtool")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(m)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// rawExchange sends a hand-made datagram and returns the reply (or nil).
func rawExchange(t *testing.T, g *gslbd, msg []byte) []byte {
	t.Helper()
	c, err := net.Dial("udp", g.DNS.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

func TestMalformedOverTheWire(t *testing.T) {
	g := startGslbd(t, "-zones", "testdata/zones")
	q := []byte("\x03www\x07example\x04test\x00\x00\x01\x00\x01")
	hdr := func(qd, ar uint16) []byte {
		b := []byte{0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
		binary.BigEndian.PutUint16(b[4:], qd)
		binary.BigEndian.PutUint16(b[10:], ar)
		return b
	}
	opt := []byte{0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0}
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"qdcount 0", hdr(0, 0)},
		{"qdcount 2", append(append(hdr(2, 0), q...), q...)},
		{"truncated question", append(hdr(1, 0), q[:8]...)},
		{"two OPT", append(append(append(hdr(1, 2), q...), opt...), opt...)},
	} {
		reply := rawExchange(t, g, tc.msg)
		if len(reply) < 12 || reply[0] != 0xbe || reply[2]&0x80 == 0 || reply[3]&0x0f != 1 {
			t.Errorf("%s: reply %x, want FORMERR", tc.name, reply)
		}
	}
	// A response is never answered (no reflection loops).
	resp := append(hdr(1, 0), q...)
	resp[2] = 0x80
	if reply := rawExchange(t, g, resp); reply != nil {
		t.Errorf("answered a response: %x", reply)
	}
}

func TestKdigPipelinedTCP(t *testing.T) {
	g := startGslbd(t, "-zones", "testdata/zones")
	// +keepopen sends every query on one TCP connection (RFC 7766 pipelining).
	out := kdig(t, g.DNS, "+tcp", "+keepopen", "+short", "www.example.test", "AAAA",
		"mail.example.test", "A", "ns2.example.test", "A")
	want := "2001:db8::80\n192.0.2.25\n192.0.2.2"
	if strings.TrimSpace(out) != want {
		t.Errorf("kdig pipelined: %q, want %q", out, want)
	}
	if m := metrics(t, g); !strings.Contains(m, "gslbd_dns_tcp_connections_total 1") {
		t.Errorf("want one TCP connection for three queries:\n%s", grep(m, "tcp_connections"))
	}
}

func TestGslbctlCheck(t *testing.T) {
	gslbctl := filepath.Join(binDir, "gslbctl")
	if out, err := exec.Command(gslbctl, "check", "testdata/zones").CombinedOutput(); err != nil {
		t.Fatalf("check of a good directory: %v\n%s", err, out)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "bad.test.zone"), "$TTL 300\n@ SOA ns1 h 1 2 3 4 5\n@ NS ns1\nwww CNAME x\nwww A 192.0.2.1\n")
	out, err := exec.Command(gslbctl, "check", dir).CombinedOutput()
	if err == nil {
		t.Fatalf("check of a bad directory succeeded:\n%s", out)
	}
	for _, want := range []string{"bad.test.zone:3:", "bad.test.zone:4:"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
