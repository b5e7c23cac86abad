package geo

import (
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// centroid returns the embedded centroid of a country, for expectations.
func centroid(t testing.TB, cc string) (float64, float64) {
	t.Helper()
	lat, lon, ok := Centroid(cc)
	if !ok {
		t.Fatalf("no centroid for %s", cc)
	}
	return lat, lon
}

type lookupCase struct {
	addr    string
	network string // exact prefix expected
	found   bool
	loc     Location
}

func checkLookups(t *testing.T, d *DB, cases []lookupCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.addr, func(t *testing.T) {
			got := d.Lookup(netip.MustParseAddr(tc.addr))
			if got.Found != tc.found || got.Network != netip.MustParsePrefix(tc.network) {
				t.Fatalf("Lookup(%s) = found %v network %v, want found %v network %s",
					tc.addr, got.Found, got.Network, tc.found, tc.network)
			}
			if !sameLocation(got.Location, tc.loc) {
				t.Errorf("Lookup(%s).Location = %+v, want %+v", tc.addr, got.Location, tc.loc)
			}
		})
	}
}

// sameLocation compares coordinates to 1e-4 degrees (DB-IP stores float32).
func sameLocation(a, b Location) bool {
	la, lb := a, b
	la.Lat, la.Lon, lb.Lat, lb.Lon = 0, 0, 0, 0
	return la == lb && math.Abs(a.Lat-b.Lat) < 1e-4 && math.Abs(a.Lon-b.Lon) < 1e-4
}

func TestLookupGeoIP2City(t *testing.T) {
	d := openFixture(t, cityFixture(t))
	usLat, usLon := centroid(t, "US")
	jpLat, jpLon := centroid(t, "JP")
	london := Location{Continent: "EU", Country: "GB", Subdivision: "ENG", City: "London",
		Lat: 51.5074, Lon: -0.1278, HasCoords: true}
	checkLookups(t, d, []lookupCase{
		{"192.0.2.1", "192.0.2.0/24", true, london},
		{"192.0.2.255", "192.0.2.0/24", true, london},
		{"::ffff:192.0.2.7", "192.0.2.0/24", true, london}, // IPv4-mapped: looked up as IPv4
		{"198.51.100.77", "198.51.100.0/24", true, Location{Continent: "EU", Country: "DE", Subdivision: "HE",
			City: "Frankfurt am Main", Lat: 50.1109, Lon: 8.6821, HasCoords: true}},
		{"81.2.69.142", "81.2.69.142/31", true, Location{Continent: "EU", Country: "GB", Subdivision: "ENG",
			City: "London", Lat: 51.5142, Lon: -0.0931, HasCoords: true}},
		{"81.2.69.143", "81.2.69.142/31", true, Location{Continent: "EU", Country: "GB", Subdivision: "ENG",
			City: "London", Lat: 51.5142, Lon: -0.0931, HasCoords: true}},
		// No coordinates in the record: the country centroid.
		{"2001:db8:1:2::3", "2001:db8:1::/48", true, Location{Continent: "NA", Country: "US",
			Lat: usLat, Lon: usLon, HasCoords: true}},
		// Registered country only: country from it, continent from the table.
		{"203.0.113.9", "203.0.113.0/25", true, Location{Continent: "AS", Country: "JP",
			Lat: jpLat, Lon: jpLon, HasCoords: true}},
		{"203.0.113.200", "203.0.113.128/25", true, Location{}}, // a record without location data
		// Outside every network: the enclosing empty network.
		{"192.0.3.1", "192.0.3.0/24", false, Location{}},
		{"10.1.2.3", "0.0.0.0/2", false, Location{}},
		{"81.2.69.141", "81.2.69.140/31", false, Location{}},
		{"2001:db8:2::1", "2001:db8:2::/47", false, Location{}},
	})
}

func TestLookupDBIPFlat(t *testing.T) {
	d := openFixture(t, flatFixture(t))
	frLat, frLon := centroid(t, "FR")
	checkLookups(t, d, []lookupCase{
		// state1 is a name, not an ISO 3166-2 code: no Subdivision.
		{"192.0.2.1", "192.0.2.0/24", true, Location{Continent: "EU", Country: "GB", City: "London",
			Lat: 51.5074, Lon: -0.1278, HasCoords: true}},
		{"::ffff:198.51.100.1", "198.51.100.0/24", true, Location{Continent: "EU", Country: "DE",
			City: "Frankfurt am Main", Lat: 50.1109, Lon: 8.6821, HasCoords: true}},
		{"203.0.113.4", "203.0.113.0/24", true, Location{Continent: "EU", Country: "FR",
			Lat: frLat, Lon: frLon, HasCoords: true}},
		{"10.1.2.3", "0.0.0.0/1", false, Location{}},
		// An IPv4-only database knows nothing about IPv6.
		{"2001:db8::1", "::/0", false, Location{}},
	})
	nlLat, nlLon := centroid(t, "NL")
	checkLookups(t, openFixture(t, flatIPv6Fixture(t)), []lookupCase{
		{"2001:db8:1::1", "2001:db8:1::/48", true, Location{Continent: "EU", Country: "NL",
			Lat: nlLat, Lon: nlLon, HasCoords: true}},
		// The reader ends in an empty IPv6 network above the IPv4 subtree:
		// nothing is known about IPv4 at all.
		{"192.0.2.1", "0.0.0.0/0", false, Location{}},
		{"::ffff:192.0.2.1", "0.0.0.0/0", false, Location{}},
	})
	if got := d.Lookup(netip.Addr{}); got != (Result{}) {
		t.Errorf("Lookup(invalid) = %+v, want zero", got)
	}
}

func TestLookupWithASN(t *testing.T) {
	city := openFixture(t, cityFixture(t))
	asn, err := OpenASNBytes("asn", asnFixture(t))
	if err != nil {
		t.Fatal(err)
	}
	d := city.WithASN(asn)
	tests := []struct {
		addr, network string
		asn           uint32
	}{
		{"192.0.2.1", "192.0.2.0/25", 64496},       // the ASN network is narrower
		{"192.0.2.200", "192.0.2.128/25", 0},       // no ASN there: its empty network
		{"198.51.100.1", "198.51.100.0/24", 64497}, // same networks
		{"2001:db8:1::1", "2001:db8:1::/48", 64498},
	}
	for _, tc := range tests {
		got := d.Lookup(netip.MustParseAddr(tc.addr))
		if !got.Found || got.Location.ASN != tc.asn || got.Network != netip.MustParsePrefix(tc.network) {
			t.Errorf("Lookup(%s) = ASN %d network %v found %v, want ASN %d network %s",
				tc.addr, got.Location.ASN, got.Network, got.Found, tc.asn, tc.network)
		}
	}
	if got := city.Lookup(netip.MustParseAddr("192.0.2.1")); got.Location.ASN != 0 {
		t.Errorf("without an ASN database: ASN %d, want 0", got.Location.ASN)
	}
	if n, p, ok := asn.Lookup(netip.MustParseAddr("::ffff:198.51.100.9")); !ok || n != 64497 || p.String() != "198.51.100.0/24" {
		t.Errorf("ASNDB.Lookup(mapped) = %d %v %v", n, p, ok)
	}
	if _, p, ok := asn.Lookup(netip.MustParseAddr("203.0.113.1")); ok || !p.Contains(netip.MustParseAddr("203.0.113.1")) {
		t.Errorf("ASNDB.Lookup(outside) = %v %v, want not found with its empty network", p, ok)
	}
	if s := d.Describe(); !strings.Contains(s, "GeoLite2-ASN") || !strings.Contains(s, "GeoIP2-City") {
		t.Errorf("Describe = %q, want both databases", s)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if got := city.Lookup(netip.MustParseAddr("192.0.2.1")); !got.Found {
		t.Error("closing the WithASN DB closed the city database")
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name string
		open func() error
		path string
		want string
	}{
		{"missing", nil, filepath.Join(dir, "nope.mmdb"), "no such file"},
		{"garbage", nil, write("garbage.mmdb", []byte("not a maxmind db")), "garbage.mmdb"},
		{"truncated", nil, write("trunc.mmdb", cityFixture(t)[:1000]), "trunc.mmdb"},
		{"asn as geo", nil, write("asn.mmdb", asnFixture(t)), "OpenASN"},
		{"geo as asn", func() error {
			_, err := OpenASN(write("city.mmdb", cityFixture(t)))
			return err
		}, "", "not an ASN database"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.open != nil {
				err = tc.open()
			} else {
				_, err = Open(tc.path)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if tc.path != "" && !strings.Contains(err.Error(), tc.path) {
				t.Errorf("error %v does not name %s", err, tc.path)
			}
		})
	}
}

func TestOpenFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "city.mmdb")
	writeFile(t, p, cityFixture(t))
	d, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	desc := d.Describe()
	for _, want := range []string{"GeoIP2-City", "GeoIP2 layout", p, "6 networks", "6 records"} {
		if !strings.Contains(desc, want) {
			t.Errorf("Describe = %q, want %q in it", desc, want)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestDefault(t *testing.T) {
	d := mustDefault(t)
	tests := []struct {
		addr      string
		countries []string // any of these is plausible
	}{
		{"1.1.1.1", []string{"AU", "US"}},
		{"8.8.8.8", []string{"US"}},
		{"::ffff:8.8.8.8", []string{"US"}},
		{"9.9.9.9", []string{"US", "CH", "DE"}},
		{"81.2.69.142", []string{"GB"}},
		{"2001:4860:4860::8888", []string{"US", "CA"}},
		{"2a00:1450:4001::1", []string{"DE", "IE", "NL", "PL", "BE", "GB"}},
	}
	for _, tc := range tests {
		addr := netip.MustParseAddr(tc.addr)
		got := d.Lookup(addr)
		loc := got.Location
		if !got.Found || loc.Continent == "" || !contains(tc.countries, loc.Country) {
			t.Errorf("Lookup(%s) = %+v, want found in one of %v", tc.addr, got, tc.countries)
			continue
		}
		if loc.Continent != ContinentOf(loc.Country) {
			t.Errorf("Lookup(%s): continent %s, table says %s", tc.addr, loc.Continent, ContinentOf(loc.Country))
		}
		lat, lon, _ := Centroid(loc.Country)
		if !loc.HasCoords || loc.Lat != lat || loc.Lon != lon {
			t.Errorf("Lookup(%s): coords %v,%v (%v), want the %s centroid %v,%v",
				tc.addr, loc.Lat, loc.Lon, loc.HasCoords, loc.Country, lat, lon)
		}
		if !got.Network.Contains(addr.Unmap()) || got.Network.Bits() < 8 {
			t.Errorf("Lookup(%s): network %v", tc.addr, got.Network)
		}
	}
	if got := d.Lookup(netip.MustParseAddr("10.1.2.3")); got.Found || got.Network.String() != "10.0.0.0/8" {
		t.Errorf("Lookup(10.1.2.3) = %+v, want not found in 10.0.0.0/8", got)
	}
	if desc := d.Describe(); !strings.Contains(desc, "DBIP-Country-Lite") || !strings.Contains(desc, "embedded") ||
		!strings.Contains(desc, "IP Geolocation by DB-IP") {
		t.Errorf("Describe = %q", desc)
	}
	t.Log(d.Describe())
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestLazyRecords checks the cache used for large databases against the
// table used for small ones.
func TestLazyRecords(t *testing.T) {
	d := openFixture(t, cityFixture(t))
	lazy := *d
	var err error
	lazy.locs, err = indexRecords(d.r, 1, d.layout.decodeLocation)
	if err != nil {
		t.Fatal(err)
	}
	if lazy.locs.cache == nil || lazy.locs.table != nil {
		t.Fatal("limit 1 did not select the cache")
	}
	for _, a := range []string{"192.0.2.1", "198.51.100.1", "81.2.69.142", "2001:db8:1::1", "203.0.113.1", "10.0.0.1"} {
		addr := netip.MustParseAddr(a)
		for range 2 { // a miss, then a hit
			if got, want := lazy.Lookup(addr), d.Lookup(addr); got != want {
				t.Errorf("lazy Lookup(%s) = %+v, want %+v", a, got, want)
			}
		}
	}
	if !strings.Contains(lazy.Describe(), "search-tree nodes") {
		t.Errorf("Describe = %q", lazy.Describe())
	}
	addr := netip.MustParseAddr("192.0.2.1")
	if n := testing.AllocsPerRun(100, func() { lazy.Lookup(addr) }); n != 0 {
		t.Errorf("cached Lookup allocates %v times", n)
	}
}

func TestLookupAllocs(t *testing.T) {
	city := openFixture(t, cityFixture(t))
	def := mustDefault(t)
	tests := []struct {
		name string
		d    *DB
		addr string
	}{
		{"city", city, "192.0.2.1"},
		{"city mapped", city, "::ffff:192.0.2.1"},
		{"city not found", city, "10.0.0.1"},
		{"default v4", def, "8.8.8.8"},
		{"default v6", def, "2001:4860:4860::8888"},
	}
	for _, tc := range tests {
		addr := netip.MustParseAddr(tc.addr)
		if n := testing.AllocsPerRun(100, func() { tc.d.Lookup(addr) }); n != 0 {
			t.Errorf("%s: Lookup allocates %v times, want 0", tc.name, n)
		}
	}
}

func BenchmarkLookup(b *testing.B) {
	city := openFixture(b, cityFixture(b))
	def := mustDefault(b)
	benches := []struct {
		name  string
		d     *DB
		addrs []string
	}{
		{"default/v4", def, []string{"1.1.1.1", "8.8.8.8", "81.2.69.142", "203.0.113.1", "100.64.0.1", "185.1.2.3"}},
		{"default/v6", def, []string{"2001:4860:4860::8888", "2a00:1450:4001::1", "2606:4700::1111", "2001:db8::1"}},
		{"city-fixture", city, []string{"192.0.2.1", "198.51.100.1", "81.2.69.142", "2001:db8:1::1"}},
	}
	for _, bc := range benches {
		addrs := make([]netip.Addr, len(bc.addrs))
		for i, a := range bc.addrs {
			addrs[i] = netip.MustParseAddr(a)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				bc.d.Lookup(addrs[i%len(addrs)])
				i++
			}
		})
	}
}
