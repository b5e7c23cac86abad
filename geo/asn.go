package geo

import (
	"fmt"
	"net/netip"
	"os"

	"github.com/oschwald/maxminddb-golang/v2"
)

// ASNDB is an opened autonomous-system database (GeoLite2-ASN, DB-IP ASN,
// or any database whose records carry autonomous_system_number). It is
// immutable and safe for concurrent use.
type ASNDB struct {
	r    *maxminddb.Reader
	name string
	asns records[uint32]
}

// maxIndexedASNs bounds the records decoded when an ASN database is opened
// (GeoLite2-ASN has tens of thousands; each costs a few bytes).
const maxIndexedASNs = 1 << 17

// OpenASN opens an ASN database, reading the whole file into memory.
func OpenASN(path string) (*ASNDB, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("open asn database: %w", err)
	}
	return OpenASNBytes(path, b)
}

// OpenASNBytes is OpenASN for a database already in memory; name identifies
// it in errors and Describe. The ASNDB keeps b, which must not be modified.
func OpenASNBytes(name string, b []byte) (*ASNDB, error) {
	r, err := maxminddb.OpenBytes(b)
	if err != nil {
		return nil, fmt.Errorf("open asn database %s: %w", name, err)
	}
	d := &ASNDB{r: r, name: name}
	if err := d.init(); err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("open asn database %s: %w", name, err)
	}
	return d, nil
}

func (d *ASNDB) init() error {
	l, err := detectLayout(d.r)
	if err != nil {
		return err
	}
	if l != layoutASN {
		return fmt.Errorf("no autonomous_system_number in its records (%s layout): not an ASN database", l)
	}
	d.asns, err = indexRecords(d.r, maxIndexedASNs, decodeASN)
	return err
}

// Lookup returns the autonomous system number of addr and the network the
// database matched. ok is false when the database has no data for addr;
// network is then the empty network around it, as in Result.
func (d *ASNDB) Lookup(addr netip.Addr) (asn uint32, network netip.Prefix, ok bool) {
	if !addr.IsValid() {
		return 0, netip.Prefix{}, false
	}
	addr = addr.Unmap().WithZone("")
	res := d.r.Lookup(addr)
	network = lookupNetwork(addr, res)
	if !res.Found() {
		return 0, network, false
	}
	asn, ok = d.asns.get(res)
	return asn, network, ok
}

// Close releases the database. No Lookup may run during or after it.
func (d *ASNDB) Close() error {
	if err := d.r.Close(); err != nil {
		return fmt.Errorf("close asn database %s: %w", d.name, err)
	}
	return nil
}

// Describe says what the database is, for logs and explain output.
func (d *ASNDB) Describe() string {
	return describe(d.r, layoutASN, d.asns, d.name)
}
