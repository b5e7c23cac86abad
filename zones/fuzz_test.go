package zones

import (
	"errors"
	"testing"
	"testing/fstest"
)

// FuzzLoadZone feeds arbitrary zone text (with an include file beside it)
// to LoadZone and Check: they must never panic, and a zone that loads must
// be consistent. The seed corpus is in testdata/fuzz/FuzzLoadZone.
func FuzzLoadZone(f *testing.F) {
	f.Add([]byte(zoneText(1, "$INCLUDE inc/a.inc\n$GENERATE 1-3 g$ 60 A 192.0.2.$\n")))
	f.Fuzz(func(t *testing.T, data []byte) {
		fsys := fstest.MapFS{
			"example.com.zone": {Data: data},
			"inc/a.inc":        {Data: []byte("www A 192.0.2.80\n")},
		}
		z, err := LoadZone(fsys, "example.com.zone")
		issues, fatal := Check(fsys)
		if (err != nil) != fatal {
			t.Fatalf("LoadZone error %v but Check fatal = %v: %v", err, fatal, issues)
		}
		if err != nil {
			var le *LoadError
			if !errors.As(err, &le) || len(le.Issues) == 0 || z != nil {
				t.Fatalf("LoadZone = %v, %v", z, err)
			}
			return
		}
		if z.Origin != "example.com." || z.SOA == nil || z.Serial != z.SOA.Serial || len(z.Records) == 0 {
			t.Fatalf("inconsistent zone: %+v", z)
		}
		for _, r := range z.Records {
			if r.File == "" || r.RR == nil {
				t.Fatalf("record without origin: %+v", r)
			}
		}
	})
}
