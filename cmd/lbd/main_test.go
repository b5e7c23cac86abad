package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// lbd runs the command line and returns the exit code, stdout and stderr.
func lbd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckExample(t *testing.T) {
	code, out, errs := lbd("check", "-config", "example.yaml")
	if code != exitOK || !strings.Contains(out, "example.yaml: ok: site lon, 2 VIPs, 6 backends") {
		t.Errorf("check example.yaml: %d %q %q", code, out, errs)
	}
}

func TestCheckErrors(t *testing.T) {
	path := writeFile(t, "bad.yaml", `
site: lon
interfaces: [eth0]
vips:
  - address: 192.0.2.10
    port: 80
    backends:
      - {address: 198.18.1.2, weight: -1}
      - {address: 198.18.1.3, check: {type: http, expect_status: 999}}
`)
	code, _, errs := lbd("check", "-config", path)
	for _, want := range []string{
		path + ": tunnel_source4: required",
		path + ": vips[0].backends[0].weight: -1 is out of range",
		path + ": vips[0].backends[1].check.expect_status: 999 is not an HTTP status",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("missing %q in:\n%s", want, errs)
		}
	}
	if code != exitFail {
		t.Errorf("exit %d", code)
	}
	if code, _, errs := lbd("check", "-config", filepath.Join(t.TempDir(), "missing.yaml")); code != exitFail || !strings.Contains(errs, "lbd check: -config: open ") {
		t.Errorf("missing file: %d %s", code, errs)
	}
}

// TestCheckLimits: the data path's compiled-in limits are checked too.
func TestCheckLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString("site: lon\ninterfaces: [eth0]\ntunnel_source4: 198.18.255.0/24\nvips:\n")
	for i := range 257 {
		fmt.Fprintf(&b, "  - {address: 192.0.2.%d, port: %d, backends: [{address: 198.18.1.2}]}\n", i%250+1, 80+i/250)
	}
	code, _, errs := lbd("check", "-config", writeFile(t, "many.yaml", b.String()))
	if code != exitFail || !strings.Contains(errs, "vips: 257 VIPs, the data path takes at most 256") {
		t.Errorf("257 VIPs: %d %s", code, errs)
	}
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "usage: lbd COMMAND"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"run"}, exitUsage, "lbd run: -config FILE is required"},
		{[]string{"check", "extra"}, exitUsage, "want no arguments, got 1"},
		{[]string{"drain", "tcp-192.0.2.10-80"}, exitUsage, "want VIP BACKEND, got 1"},
		{[]string{"drain", "sctp-192.0.2.10-80", "198.18.1.2"}, exitUsage, `protocol "sctp" is not tcp or udp`},
		{[]string{"remove", "tcp-192.0.2.10-80", "nope"}, exitUsage, `backend "nope" is not an IP address`},
		{[]string{"vips", "-o", "yaml"}, exitUsage, `-o: "yaml" is not table or json`},
		{[]string{"vips", "-api", "nocolon"}, exitUsage, `-api: "nocolon" is not host:port`},
		{[]string{"decap"}, exitUsage, "-iface IFACE is required"},
		{[]string{"decap", "-iface", "eth0", "-local", "198.18.1.2,bogus"}, exitUsage, `-local: "bogus" is not an IP address`},
		{[]string{"check", "-nope"}, exitUsage, "flag provided but not defined: -nope"},
	} {
		code, out, errs := lbd(tc.args...)
		if code != tc.code || !strings.Contains(out+errs, tc.want) {
			t.Errorf("lbd %v: %d %q %q, want %d and %q", tc.args, code, out, errs, tc.code, tc.want)
		}
	}
}

func TestAPIUnreachable(t *testing.T) {
	// A closed port on loopback.
	code, _, errs := lbd("vips", "-api", "127.0.0.1:1")
	if code != exitFail || !strings.Contains(errs, "is lbd running there?") {
		t.Errorf("%d %s", code, errs)
	}
}
