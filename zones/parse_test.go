package zones

import (
	"os"
	"strings"
	"testing"
	"testing/fstest"
)

// TestLines checks the file and line of every record of a fixture with
// multi-line entries, quotes, escapes, nested $INCLUDEs and $GENERATE.
func TestLines(t *testing.T) {
	z, err := LoadZone(os.DirFS("testdata/lines"), "example.com.zone")
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		owner string
		file  string
		line  int
	}{
		{"example.com.", "example.com.zone", 4}, // SOA spanning lines 4-8
		{"example.com.", "example.com.zone", 10},
		{"ns1.example.com.", "example.com.zone", 11},
		{"txt.example.com.", "example.com.zone", 12},
		{"multi.example.com.", "example.com.zone", 14},
		{"inc1.example.com.", "inc/hosts.inc", 3},
		{"inc2.example.com.", "inc/hosts.inc", 4},
		{"nested.example.com.", "inc/nested.inc", 1},
		{"inc3.example.com.", "inc/hosts.inc", 7},
		{"after.example.com.", "example.com.zone", 17},
		{"gen1.example.com.", "example.com.zone", 18},
		{"gen3.example.com.", "example.com.zone", 18},
		{"gen5.example.com.", "example.com.zone", 18},
		{"last.example.com.", "example.com.zone", 19},
		{`esc\;aped.example.com.`, "example.com.zone", 20},
		{"paren.example.com.", "example.com.zone", 24},
	}
	if len(z.Records) != len(want) {
		t.Fatalf("got %d records, want %d", len(z.Records), len(want))
	}
	for i, w := range want {
		r := z.Records[i]
		if r.RR.Header().Name != w.owner || r.File != w.file || r.Line != w.line {
			t.Errorf("record %d: %s from %s:%d, want %s from %s:%d",
				i, r.RR.Header().Name, r.File, r.Line, w.owner, w.file, w.line)
		}
	}
	if strings.Join(z.Includes, ",") != "inc/hosts.inc,inc/nested.inc" {
		t.Errorf("Includes = %v", z.Includes)
	}
	if len(z.Warnings) != 1 || !strings.Contains(z.Warnings[0].String(), "example.com.zone:18: warning: $GENERATE without an explicit TTL") {
		t.Errorf("Warnings = %v", z.Warnings)
	}
}

func TestPrescan(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []entry // kind, line, endLine, count, noTTL
	}{
		{"empty", "", nil},
		{"blank and comments", "\n   \n; x\n  ; y (\n", nil},
		{"one record", "a A 192.0.2.1\n", []entry{{entryRecord, 1, 1, 1, false}}},
		{"no final newline", "a A 192.0.2.1", []entry{{entryRecord, 1, 1, 1, false}}},
		{"indented owner omitted", "a A 192.0.2.1\n  A 192.0.2.2\n", []entry{{entryRecord, 1, 1, 1, false}, {entryRecord, 2, 2, 1, false}}},
		{"parens", "@ SOA a b (\n 1 2\n 3 4 5 )\nb A 1.2.3.4\n", []entry{{entryRecord, 1, 3, 1, false}, {entryRecord, 4, 4, 1, false}}},
		{"paren in comment", "@ SOA a b ( ; )\n 1 2 3 4 5 )\n", []entry{{entryRecord, 1, 2, 1, false}}},
		{"quoted newline", "t TXT \"a\nb\"\nc A 1.2.3.4\n", []entry{{entryRecord, 1, 2, 1, false}, {entryRecord, 3, 3, 1, false}}},
		{"quoted escapes", "t TXT \"a\\\"(;\" \\( x\nc A 1.2.3.4\n", []entry{{entryRecord, 1, 1, 1, false}, {entryRecord, 2, 2, 1, false}}},
		{"escaped semicolon", "a\\;b TXT x ; real comment (\nc A 1.2.3.4\n", []entry{{entryRecord, 1, 1, 1, false}, {entryRecord, 2, 2, 1, false}}},
		{"directives", "$ORIGIN x.\n$TTL 60\n$include inc/a\n", []entry{{entryOrigin, 1, 1, 0, false}, {entryTTL, 2, 2, 0, false}, {entryInclude, 3, 3, 0, false}}},
		{"indented directive is not one", " $TTL 60\n", []entry{{entryRecord, 1, 1, 1, false}}},
		{"generate", "$GENERATE 1-10/3 h$ 60 A 192.0.2.$\n", []entry{{entryGenerate, 1, 1, 4, false}}},
		{"generate class ttl", "$GENERATE 0-1 h$ IN 1h A 192.0.2.$\n", []entry{{entryGenerate, 1, 1, 2, false}}},
		{"generate no ttl", "$GENERATE 5-5 h$ IN A 192.0.2.$\n", []entry{{entryGenerate, 1, 1, 1, true}}},
		{"crlf", "a A 192.0.2.1\r\nb A 192.0.2.2\r\n", []entry{{entryRecord, 1, 1, 1, false}, {entryRecord, 2, 2, 1, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := prescan([]byte(tt.in))
			if len(got) != len(tt.want) {
				t.Fatalf("prescan = %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("entry %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestGenerateCount(t *testing.T) {
	tests := []struct {
		rng  string
		want int
	}{
		{"1-10", 10}, {"0-0", 1}, {"1-10/2", 5}, {"1-10/3", 4}, {"0-65535", 65536},
		{"0-65536/2", 32769}, {"0-65536", 0}, {"10-1", 0}, {"1-10/0", 0}, {"a-b", 0}, {"5", 0}, {"1-2/", 0},
	}
	for _, tt := range tests {
		if got := generateCount(tt.rng); got != tt.want {
			t.Errorf("generateCount(%q) = %d, want %d", tt.rng, got, tt.want)
		}
	}
}

// TestLineFallback checks that records get Line 0, not a wrong line, when
// the parser returns a different number of records than pre-scanned.
func TestLineFallback(t *testing.T) {
	in := newInstance("f", []byte("a A 192.0.2.1\nb A 192.0.2.2\n"))
	recs := make([]Record, 3)
	for i := range recs {
		recs[i].Line = in.next(i)
	}
	if recs[0].Line != 1 || recs[1].Line != 2 || recs[2].Line != 0 {
		t.Fatalf("lines before finish: %+v", recs)
	}
	in.finish(recs)
	for i, r := range recs {
		if r.Line != 0 {
			t.Errorf("record %d: line %d after a count mismatch, want 0", i, r.Line)
		}
	}

	ok := newInstance("f", []byte("a A 192.0.2.1\n"))
	recs = []Record{{Line: ok.next(0)}}
	ok.finish(recs)
	if recs[0].Line != 1 {
		t.Errorf("line %d after matching counts, want 1", recs[0].Line)
	}
}

func TestSplitParseError(t *testing.T) {
	msg, line := splitParseError(`z.zone: dns: bad A A: "1.2.3" at line: 12:20`, "z.zone")
	if msg != `bad A A: "1.2.3"` || line != 12 {
		t.Errorf("got %q, %d", msg, line)
	}
	msg, line = splitParseError("something else", "z.zone")
	if msg != "something else" || line != 0 {
		t.Errorf("got %q, %d", msg, line)
	}
}

const digestZone = `$TTL 300
@ SOA ns1 h 1 2 3 4 5
@ NS ns1
ns1 A 192.0.2.1
$INCLUDE inc/a.inc
`

// TestDigest checks that the digest depends on content only, covers the
// included files, and matches what the watcher computes without parsing.
func TestDigest(t *testing.T) {
	fsys := fstest.MapFS{
		"example.com.zone": {Data: []byte(digestZone)},
		"inc/a.inc":        {Data: []byte("www A 192.0.2.80\n")},
	}
	z1, err := LoadZone(fsys, "example.com.zone")
	if err != nil {
		t.Fatal(err)
	}
	z2, err := LoadZone(fsys, "example.com.zone")
	if err != nil {
		t.Fatal(err)
	}
	if z1 == z2 || z1.Digest != z2.Digest {
		t.Errorf("same content, different digests")
	}
	if d := digestFiles(fsys, append([]string{"example.com.zone"}, z1.Includes...)); d != z1.Digest {
		t.Errorf("digestFiles = %x, Zone.Digest = %x", d, z1.Digest)
	}
	fsys["inc/a.inc"] = &fstest.MapFile{Data: []byte("www A 192.0.2.81\n")}
	z3, err := LoadZone(fsys, "example.com.zone")
	if err != nil {
		t.Fatal(err)
	}
	if z3.Digest == z1.Digest {
		t.Errorf("include changed, digest did not")
	}
	// Moving bytes between files must change the digest too.
	fsys["example.com.zone"] = &fstest.MapFile{Data: []byte(digestZone + "x A 192.0.2.9\n")}
	fsys["inc/a.inc"] = &fstest.MapFile{Data: []byte("")}
	a := digestFiles(fsys, []string{"example.com.zone", "inc/a.inc"})
	fsys["example.com.zone"] = &fstest.MapFile{Data: []byte(digestZone)}
	fsys["inc/a.inc"] = &fstest.MapFile{Data: []byte("x A 192.0.2.9\n")}
	b := digestFiles(fsys, []string{"example.com.zone", "inc/a.inc"})
	if a == b {
		t.Errorf("digest ignores file boundaries")
	}
}

// TestIncludePaths: a relative $INCLUDE path is resolved against the
// including file's directory, a leading "/" against the zones directory,
// and nothing may leave the zones directory.
func TestIncludePaths(t *testing.T) {
	base := "@ SOA ns1 h 1 2 3 4 5\n@ NS ns1\nns1 A 192.0.2.1\n"
	tests := []struct {
		name    string
		zone    string
		files   map[string]string
		want    []string // Records' files, after the 3 base records
		wantErr string
	}{
		{"relative", "$INCLUDE inc/a.inc\n", map[string]string{"inc/a.inc": "a A 192.0.2.2\n"}, []string{"inc/a.inc"}, ""},
		{"absolute is the zones dir", "$INCLUDE /inc/a.inc\n", map[string]string{"inc/a.inc": "a A 192.0.2.2\n"}, []string{"inc/a.inc"}, ""},
		{"nested relative to the includer", "$INCLUDE inc/a.inc\n", map[string]string{
			"inc/a.inc": "$INCLUDE b.inc\n$INCLUDE /c.inc\n", "inc/b.inc": "b A 192.0.2.3\n", "c.inc": "c A 192.0.2.4\n",
		}, []string{"inc/b.inc", "c.inc"}, ""},
		{"dot-dot", "$INCLUDE inc/../../x.inc\n", nil, nil, "example.com.zone:4: $INCLUDE inc/../../x.inc (../x.inc in the zones directory): path is outside the zones directory"},
		{"nested dot-dot", "$INCLUDE inc/a.inc\n", map[string]string{"inc/a.inc": "\n$INCLUDE ../../x.inc\n"}, nil, "inc/a.inc:2: $INCLUDE ../../x.inc (../x.inc in the zones directory): path is outside"},
		{"a directory", "$INCLUDE inc\n", map[string]string{"inc/a.inc": ""}, nil, "example.com.zone:4: $INCLUDE inc: read inc: not a regular file"},
		{"include loop", "$INCLUDE example.com.zone\n", nil, nil, "too deeply nested $INCLUDE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{"example.com.zone": {Data: []byte(base + tt.zone)}}
			for name, text := range tt.files {
				fsys[name] = &fstest.MapFile{Data: []byte(text)}
			}
			z, err := LoadZone(fsys, "example.com.zone")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range z.Records[3:] {
				got = append(got, r.File)
			}
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Errorf("record files = %v, want %v", got, tt.want)
			}
		})
	}
}
