// Package geo answers "where is this client" for the GSLB engine: a
// continent, country, subdivision, city, coordinates and (optionally) ASN
// for an address, together with the network the database matched, whose
// length is the least ECS scope (RFC 7871) an answer shaped by it may claim.
//
// It reads MaxMind DB files: GeoIP2/GeoLite2 City and Country (and DB-IP's
// own mmdb releases, which use that layout), the flat DB-IP layout of the
// @ip-location-db npm packages, and GeoLite2-ASN / DB-IP ASN. With no file
// configured it serves an embedded DB-IP Country Lite database ("IP
// Geolocation by DB-IP", https://db-ip.com, CC BY 4.0; see data/PROVENANCE.md)
// whose networks get IP-weighted country centroids as coordinates.
//
// A DB is immutable and safe for concurrent use; Lookup decodes each
// database record once and then serves it from memory without allocating.
// Source holds the current DB and swaps in a new one when the file changes.
// No maxminddb or geoip2 type leaves this package.
package geo

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"
)

// Location is what the database knows about a network.
type Location struct {
	Continent   string  // two-letter continent code: AF AN AS EU NA OC SA; "" unknown
	Country     string  // ISO 3166-1 alpha-2, upper case; "" unknown
	Subdivision string  // ISO 3166-2 subdivision code without country prefix ("ENG"), "" if the DB has none
	City        string  // English name, "" if none
	Lat, Lon    float64 // degrees; HasCoords false when unknown
	HasCoords   bool
	ASN         uint32 // 0 unless an ASN database is configured
}

// Result is the outcome of a lookup: the location and the network (prefix)
// the database matched, i.e. every address in Network gets the same
// Location. Network.Bits() is what an ECS SCOPE should be at least.
//
// When nothing is known about the address (Found false), Network is the
// largest network around it that the database has no data for, which is a
// valid scope too: 10.0.0.0/8 in a database without private ranges,
// 0.0.0.0/0 or ::/0 when the database has no data for that family at all.
// Network is the zero Prefix only for an invalid address.
type Result struct {
	Location Location
	Network  netip.Prefix
	Found    bool
}

// DB is an opened geolocation database. It is immutable once opened and
// safe for concurrent use.
type DB struct {
	r      *maxminddb.Reader
	name   string // the path, or a name for the log
	layout layout
	locs   records[Location]
	asn    *ASNDB // attached by WithASN; nil otherwise
	shared bool   // made by WithASN: Close leaves the readers open
}

// maxIndexedLocations bounds the records decoded when a database is opened:
// country databases (a few hundred to a few thousand records) are decoded
// whole, city databases are decoded record by record as lookups reach them.
const maxIndexedLocations = 1 << 14

// Open opens a GeoIP2/GeoLite2 City or Country database, a DB-IP database in
// either the GeoIP2 layout or the flat @ip-location-db layout, reading the
// whole file into memory (so a file rewritten in place cannot corrupt a DB
// in use). The layout is detected from the records' fields.
func Open(path string) (*DB, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("open geo database: %w", err)
	}
	return OpenBytes(path, b)
}

// OpenBytes is Open for a database already in memory; name identifies it in
// errors and Describe. The DB keeps b, which must not be modified.
func OpenBytes(name string, b []byte) (*DB, error) {
	r, err := maxminddb.OpenBytes(b)
	if err != nil {
		return nil, fmt.Errorf("open geo database %s: %w", name, err)
	}
	d := &DB{r: r, name: name}
	if err := d.init(); err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("open geo database %s: %w", name, err)
	}
	return d, nil
}

func (d *DB) init() error {
	l, err := detectLayout(d.r)
	if err != nil {
		return err
	}
	switch l {
	case layoutGeoIP2, layoutFlat:
	case layoutASN:
		return errors.New("it is an ASN database (autonomous_system_number): open it with OpenASN")
	default:
		return fmt.Errorf("unsupported record layout (database_type %q)", d.r.Metadata.DatabaseType)
	}
	d.layout = l
	d.locs, err = indexRecords(d.r, maxIndexedLocations, l.decodeLocation)
	return err
}

// Lookup returns what the database knows about addr. IPv4-mapped IPv6
// addresses are looked up as IPv4; zones are ignored.
func (d *DB) Lookup(addr netip.Addr) Result {
	if !addr.IsValid() {
		return Result{}
	}
	addr = addr.Unmap().WithZone("")
	res := d.r.Lookup(addr)
	network := lookupNetwork(addr, res)
	if !res.Found() {
		return Result{Network: network}
	}
	loc, ok := d.locs.get(res)
	if !ok {
		return Result{Network: network}
	}
	if d.asn != nil {
		asn, asnNet, _ := d.asn.Lookup(addr)
		loc.ASN = asn // 0 when the ASN database has nothing: true for all of asnNet
		network = narrower(network, asnNet)
	}
	return Result{Location: loc, Network: network, Found: true}
}

// lookupNetwork is the network res matched, in addr's family. The reader
// reports an IPv6 prefix when an IPv4 address falls in an empty part of an
// IPv6 tree above the IPv4 subtree, and none when the database lacks the
// family: then nothing is known about the whole family.
func lookupNetwork(addr netip.Addr, res maxminddb.Result) netip.Prefix {
	if res.Err() != nil {
		return wholeFamily(addr)
	}
	p := res.Prefix()
	if !p.IsValid() || p.Addr().Is4() != addr.Is4() {
		return wholeFamily(addr)
	}
	return p
}

func wholeFamily(addr netip.Addr) netip.Prefix {
	if addr.Is4() {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
}

// narrower is the longer of two prefixes that both contain the same address:
// their intersection.
func narrower(a, b netip.Prefix) netip.Prefix {
	if !b.IsValid() || a.Addr().Is4() != b.Addr().Is4() || b.Bits() <= a.Bits() {
		return a
	}
	return b
}

// WithASN returns a DB that also fills Location.ASN from asn, narrowing
// Result.Network to the intersection of both databases' networks. It shares
// d's and asn's readers: its Close is a no-op, close d and asn instead.
func (d *DB) WithASN(asn *ASNDB) *DB {
	c := *d
	c.asn, c.shared = asn, true
	return &c
}

// Close releases the database. No Lookup may run during or after it. A DB
// that is no longer referenced needs no Close: its memory is reclaimed.
func (d *DB) Close() error {
	if d.shared {
		return nil
	}
	if err := d.r.Close(); err != nil {
		return fmt.Errorf("close geo database %s: %w", d.name, err)
	}
	return nil
}

// Describe says what the database is, for logs and explain output: type,
// layout, build date, size and where it came from; for the embedded
// default also the attribution its licence asks for.
func (d *DB) Describe() string {
	s := describe(d.r, d.layout, d.locs, d.name)
	if d.name == defaultDBName {
		s += "; IP Geolocation by DB-IP (https://db-ip.com), CC BY 4.0"
	}
	if d.asn != nil {
		s += "; with " + d.asn.Describe()
	}
	return s
}

func describe(r *maxminddb.Reader, l layout, recs interface{ counts() (int, int) }, name string) string {
	m := r.Metadata
	built := time.Unix(int64(m.BuildEpoch), 0).UTC().Format(time.DateOnly) //nolint:gosec // epochs fit
	networks, records := recs.counts()
	size := fmt.Sprintf("%d search-tree nodes", m.NodeCount)
	if networks > 0 {
		size = fmt.Sprintf("%d networks, %d records", networks, records)
	}
	return fmt.Sprintf("%s (%s layout, IPv%d) built %s, %s, from %s",
		m.DatabaseType, l, m.IPVersion, built, size, name)
}
