package test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// digCases drive gslbd with dig; each output is compared with a golden file
// in testdata/golden (go test ./test -run TestDigGolden -update rewrites them).
var digCases = []struct {
	name string
	args []string
}{
	{"a", []string{"www.example.test", "A"}},
	{"aaaa", []string{"www.example.test", "AAAA"}},
	{"case-echo", []string{"WwW.ExAmPlE.TeSt", "A"}},
	{"nxdomain", []string{"missing.example.test", "A"}},
	{"nodata", []string{"www.example.test", "MX"}},
	{"empty-non-terminal", []string{"b.c.example.test", "A"}},
	{"wildcard", []string{"anything.wild.example.test", "A"}},
	{"wildcard-deep", []string{"a.b.wild.example.test", "A"}},
	{"wildcard-nodata", []string{"anything.wild.example.test", "TXT"}},
	{"wildcard-no-synthesis-past-existing", []string{"y.x.wild.example.test", "A"}},
	{"cname", []string{"alias.example.test", "A"}},
	{"cname-chain", []string{"chain1.example.test", "AAAA"}},
	{"cname-out-of-zone", []string{"outside.example.test", "A"}},
	{"cname-dangling", []string{"dangling.example.test", "A"}},
	{"referral", []string{"host.sub.example.test", "A"}},
	{"referral-at-cut", []string{"sub.example.test", "NS"}},
	{"ds-at-cut", []string{"sub.example.test", "DS"}},
	{"mx-additional", []string{"example.test", "MX"}},
	{"srv-additional", []string{"_sip._tcp.example.test", "SRV"}},
	{"ns-apex", []string{"example.test", "NS"}},
	{"soa", []string{"example.test", "SOA"}},
	{"any-udp", []string{"www.example.test", "ANY"}},
	{"any-tcp", []string{"+tcp", "www.example.test", "ANY"}},
	{"refused-outside", []string{"www.example.net", "A"}},
	{"chaos-version-refused", []string{"version.bind", "TXT", "CH"}},
	{"edns-badvers", []string{"+edns=1", "+noednsnegotiation", "www.example.test", "A"}},
	{"edns-do", []string{"+dnssec", "www.example.test", "A"}},
	{"no-edns", []string{"+noedns", "www.example.test", "A"}},
	{"truncated-no-edns", []string{"+noedns", "+ignore", "big.example.test", "TXT"}},
	{"big-edns", []string{"+bufsize=4096", "big.example.test", "TXT"}},
	{"big-tcp", []string{"+tcp", "big.example.test", "TXT"}},
	{"opcode-status", []string{"+opcode=status", "www.example.test", "A"}},
	{"rd-copied", []string{"+rec", "www.example.test", "A"}},
	{"axfr-refused", []string{"example.test", "AXFR"}},
}

var digID = regexp.MustCompile(`id: \d+`)

func TestDigGolden(t *testing.T) {
	g := startGslbd(t, "-zones", "testdata/zones")
	for _, tc := range digCases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"+nocmd", "+nostats", "+nocookie"}, tc.args...)
			if !containsPrefix(tc.args, "+rec") {
				args = append(args, "+norec")
			}
			out := digID.ReplaceAllString(dig(t, g.DNS, args...), "id: ID")
			checkGolden(t, filepath.Join("testdata", "golden", tc.name+".dig"), out)
		})
	}
}

func containsPrefix(args []string, p string) bool {
	for _, a := range args {
		if strings.HasPrefix(a, p) {
			return true
		}
	}
	return false
}

// checkGolden compares got with a golden file, or rewrites it with -update.
func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./test -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
