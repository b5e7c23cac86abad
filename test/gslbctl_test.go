package test

import (
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// gslbDir is a zones directory with gslb.yaml and a GeoIP fixture.
func gslbDir(t *testing.T) (dir, mmdb string) {
	t.Helper()
	dir = copyZones(t)
	// Probes (when gslbd runs) go to a loopback port nobody listens on.
	lon, fra := closedPorts(t)
	y := strings.NewReplacer("LONPORT", lon, "FRAPORT", fra).Replace(gslbYAML)
	writeFile(t, filepath.Join(dir, "gslb.yaml"), y)
	mmdb = filepath.Join(t.TempDir(), "city.mmdb")
	geoFixture(t, mmdb)
	return dir, mmdb
}

// closedPorts returns two distinct loopback TCP ports that were free a
// moment ago (distinct, so the two sites' monitors are two probe targets).
func closedPorts(t *testing.T) (string, string) {
	t.Helper()
	var ports [2]string
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		_, ports[i], _ = net.SplitHostPort(ln.Addr().String())
	}
	return ports[0], ports[1]
}

func gslbctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(filepath.Join(binDir, "gslbctl"), args...).CombinedOutput()
	return string(out), err
}

func TestGslbctlExplain(t *testing.T) {
	dir, mmdb := gslbDir(t)
	out, err := gslbctl(t, "explain", "--zones", dir, "--geoip", mmdb, "--client", "127.0.0.1", "--ecs", "81.2.69.0/24", "gslb.example.test")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{"country GB (same answer for 81.2.69.0/24) -> sites [lon fra]", "answer: 192.0.2.10  ttl 20  ecs scope /24"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
	// "What if London goes down": the same client is sent to Frankfurt.
	out, err = gslbctl(t, "explain", "--zones", dir, "--geoip", mmdb, "--client", "127.0.0.1", "--ecs", "81.2.69.0/24", "--down", "lon", "gslb.example.test")
	if err != nil || !strings.Contains(out, "answer: 203.0.113.10") || !strings.Contains(out, "1 of 2 up") {
		t.Errorf("explain --down lon: %v\n%s", err, out)
	}
	if out, err = gslbctl(t, "explain", "--zones", dir, "--client", "not-an-ip", "gslb.example.test"); err == nil || !strings.Contains(out, `--client "not-an-ip"`) {
		t.Errorf("bad --client accepted: %s", out)
	}
}

func TestGslbctlCheckGSLB(t *testing.T) {
	dir, _ := gslbDir(t)
	if out, err := gslbctl(t, "check", dir); err != nil {
		t.Fatalf("good directory: %v\n%s", err, out)
	}
	// A GSLB name that also has static A records, and an unknown site.
	bad := strings.Replace(gslbYAML, "name: gslb.example.test", "name: www.example.test", 1)
	bad = strings.Replace(bad, "site: fra, probe", "site: par, probe", 1)
	lon, fra := closedPorts(t)
	bad = strings.NewReplacer("LONPORT", lon, "FRAPORT", fra).Replace(bad)
	writeFile(t, filepath.Join(dir, "gslb.yaml"), bad)
	out, err := gslbctl(t, "check", dir)
	if err == nil || !strings.Contains(out, `pools.web.endpoints[1].site: unknown site "par"`) {
		t.Errorf("unknown site: %v\n%s", err, out)
	}
	bad = strings.Replace(bad, "site: par, probe", "site: fra, probe", 1)
	writeFile(t, filepath.Join(dir, "gslb.yaml"), bad)
	out, err = gslbctl(t, "check", dir)
	if err == nil || !strings.Contains(out, "www.example.test.: example.test.zone:") || !strings.Contains(out, "static A record") {
		t.Errorf("GSLB name with static A: %v\n%s", err, out)
	}
}
