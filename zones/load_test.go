package zones

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

func TestZoneFiles(t *testing.T) {
	fsys := fstest.MapFS{
		"example.com.zone":       {},
		"example.net":            {},
		"2.0.192.in-addr.arpa.":  {},
		".hidden.zone":           {},
		".git/config":            {},
		"example.com.zone~":      {},
		"#example.com.zone#":     {},
		".example.com.zone.swp":  {},
		"example.com.zone.swp":   {},
		"example.com.zone.swx":   {},
		"example.com.zone.tmp":   {},
		"example.com.zone.bak":   {},
		"example.com.zone.orig":  {},
		"example.com.zone.rej":   {},
		"gslb.yaml":              {},
		"gslb.yml":               {},
		"pools.json":             {},
		"README.md":              {},
		"NOTES.TXT":              {},
		"README":                 {},
		"LICENSE":                {},
		"hosts.inc":              {},
		"inc/hosts":              {},
		"sub/example.org.zone":   {},
		"fifo.example":           {Mode: os.ModeNamedPipe},
		"example.org.zone/inner": {},
	}
	got, err := ZoneFiles(fsys)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"2.0.192.in-addr.arpa.", "example.com.zone", "example.net"}
	if !slices.Equal(got, want) {
		t.Errorf("ZoneFiles = %q, want %q", got, want)
	}
	if _, err := ZoneFiles(os.DirFS(filepath.Join(t.TempDir(), "missing"))); err == nil {
		t.Error("ZoneFiles of a missing directory: no error")
	}
}

// TestZoneFilesSymlink: a symlink to a regular file is a zone (Kubernetes
// ConfigMap volumes are made of those); a dangling one or one to a
// directory is not.
func TestZoneFilesSymlink(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, ".target"), []byte("x"), 0o644))
	must(t, os.Mkdir(filepath.Join(dir, "d"), 0o755))
	must(t, os.Symlink(".target", filepath.Join(dir, "example.com.zone")))
	must(t, os.Symlink("nowhere", filepath.Join(dir, "dangling.zone")))
	must(t, os.Symlink("d", filepath.Join(dir, "dir.zone")))
	got, err := ZoneFiles(os.DirFS(dir))
	if err != nil || !slices.Equal(got, []string{"example.com.zone"}) {
		t.Errorf("ZoneFiles = %q, %v", got, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestOriginFromFile(t *testing.T) {
	tests := []struct {
		file, want string
	}{
		{"example.com.zone", "example.com."},
		{"example.com", "example.com."},
		{"example.com.", "example.com."},
		{"Example.COM.Zone", "example.com."},
		{"2.0.192.in-addr.arpa.zone", "2.0.192.in-addr.arpa."},
		{"localhost", "localhost."},
		{".zone", ""},
		{"a..b.zone", ""},
		{"inc/example.com.zone", ""},
		{strings.Repeat("a", 64) + ".com", ""},
	}
	for _, tt := range tests {
		got, err := originFromFile(tt.file)
		if got != tt.want || (err != nil) != (tt.want == "") {
			t.Errorf("originFromFile(%q) = %q, %v; want %q", tt.file, got, err, tt.want)
		}
	}
}

func TestLoadDuplicateOrigin(t *testing.T) {
	set, errs := Load(os.DirFS("testdata/dupe"))
	if _, ok := set.Zones["example.com."]; ok {
		t.Error("example.com. served although two files define it")
	}
	if z := set.Zones["example.net."]; z == nil || z.File != "example.net.zone" {
		t.Errorf("example.net. = %+v, want it loaded", z)
	}
	if len(errs) != 2 {
		t.Fatalf("errs = %v, want 2", errs)
	}
	for file, other := range map[string]string{"example.com": "example.com.zone", "example.com.zone": "example.com"} {
		var le *LoadError
		if !errors.As(errs[file], &le) {
			t.Fatalf("errs[%q] = %v, want a *LoadError", file, errs[file])
		}
		msg := le.Error()
		if !strings.HasPrefix(msg, file+": zone example.com. is also defined by "+other) {
			t.Errorf("errs[%q] = %q: does not name both files", file, msg)
		}
	}
	issues, fatal := Check(os.DirFS("testdata/dupe"))
	if !fatal || len(issues) != 2 {
		t.Errorf("Check = %v, %v", issues, fatal)
	}
}

func TestLoadReportsEveryBrokenFile(t *testing.T) {
	fsys := fstest.MapFS{
		"good.example.zone": {Data: []byte("@ SOA ns1 h 1 2 3 4 5\n@ NS ns1\nns1 A 192.0.2.1\n")},
		"bad.example.zone":  {Data: []byte("@ SOA ns1 h 1 2 3 4 5\nwww A 192.0.2.1\nwww CNAME x.example.net.\n")},
		"syntax.example":    {Data: []byte("@ SOA ns1 h 1 2 3 4 (\n")},
	}
	set, errs := Load(fsys)
	if len(set.Zones) != 1 || set.Zones["good.example."] == nil {
		t.Errorf("zones = %v", set.Zones)
	}
	bad := errs["bad.example.zone"]
	if bad == nil || len(strings.Split(bad.Error(), "\n")) != 2 {
		t.Errorf("bad.example.zone: %v; want 2 issues, one per line", bad)
	}
	if want := "bad.example.zone: no NS records at the zone apex bad.example.\nbad.example.zone:3: www.bad.example. has a CNAME"; bad == nil || !strings.HasPrefix(bad.Error(), want) {
		t.Errorf("bad.example.zone: %q, want prefix %q", bad, want)
	}
	if e := errs["syntax.example"]; e == nil || !strings.Contains(e.Error(), "syntax.example:1: bad SOA zone parameter: \"unbalanced brace\"") {
		t.Errorf("syntax.example: %v", e)
	}
	if _, err := LoadZone(fsys, "missing.zone"); err == nil || !strings.Contains(err.Error(), "missing.zone: cannot read zone file: file does not exist") {
		t.Errorf("missing file: %v", err)
	}
}

func TestIssueString(t *testing.T) {
	tests := []struct {
		is   Issue
		want string
	}{
		{Issue{File: "a.zone", Line: 3, Msg: "bad"}, "a.zone:3: bad"},
		{Issue{File: "a.zone", Msg: "bad"}, "a.zone: bad"},
		{Issue{File: "inc/x.inc", Line: 1, Msg: "hm", Warning: true}, "inc/x.inc:1: warning: hm"},
	}
	for _, tt := range tests {
		if got := tt.is.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.is, got, tt.want)
		}
	}
}

func TestCheckDefault(t *testing.T) {
	issues, fatal := Check(DefaultFS())
	if fatal || len(issues) != 0 {
		t.Errorf("Check(DefaultFS()) = %v, %v", issues, fatal)
	}
	issues, fatal = Check(fstest.MapFS{})
	if fatal || len(issues) != 1 || !strings.Contains(issues[0].String(), "no zone files found") {
		t.Errorf("Check(empty) = %v, %v", issues, fatal)
	}
}
