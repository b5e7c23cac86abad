package main

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"net/netip"
	"sort"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/oschwald/maxminddb-golang/v2"
	"go4.org/netipx"
)

// countryStats says what went into the country database.
type countryStats struct {
	Inserted    map[int]int    // networks inserted, by IP version
	Reserved    int            // networks skipped: inside a reserved range
	Aliased     int            // networks skipped: inside an IPv4 alias (::ffff:0:0/96, 2001::/32, 2002::/16)
	Countries   map[string]int // networks per country code
	Unknown     []string       // country codes the continent table lacks
	BuildEpoch  int64          // the newest input build epoch
	NodeCount   int            // of the written tree
	Networks    int            // networks in the written database (IPv4 aliases not counted)
	MMDBSize    int            // bytes, uncompressed
	GzipSize    int            // bytes
	Gzipped     []byte
	DBType      string
	Description string
}

// countryTables are the names the GeoIP2-Country layout records carry.
type countryTables struct {
	continentOf    map[string]string // country -> continent code
	countryName    map[string]string // country -> English name
	continentNames map[string]string // continent code -> English name
}

// buildCountry merges the DB-IP Country Lite IPv4 and IPv6 databases into one
// IPv6 tree in the GeoIP2-Country layout and returns it gzipped.
func buildCountry(pkg *npmPackage, tabs countryTables) (*countryStats, error) {
	st := &countryStats{Inserted: map[int]int{}, Countries: map[string]int{}}
	st.DBType = "DBIP-Country-Lite"
	st.Description = fmt.Sprintf("DB-IP IP to Country Lite (%s %s) in the GeoIP2-Country layout. "+
		"IP Geolocation by DB-IP (https://db-ip.com), CC BY 4.0.", pkg.Name, pkg.Version)
	var readers []*maxminddb.Reader
	for _, f := range []string{"dbip-country-ipv4.mmdb", "dbip-country-ipv6.mmdb"} {
		r, err := maxminddb.OpenBytes(pkg.Files[f])
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", f, err)
		}
		st.BuildEpoch = max(st.BuildEpoch, int64(r.Metadata.BuildEpoch)) //nolint:gosec // epochs fit
		readers = append(readers, r)
	}
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		BuildEpoch:   st.BuildEpoch,
		DatabaseType: st.DBType,
		Description:  map[string]string{"en": st.Description},
		Languages:    []string{"en"},
		IPVersion:    6,
		RecordSize:   24,
	})
	if err != nil {
		return nil, fmt.Errorf("new tree: %w", err)
	}
	records := map[string]mmdbtype.Map{}
	for _, r := range readers {
		if err := insertCountries(tree, r, tabs, records, st); err != nil {
			return nil, err
		}
	}
	for cc := range st.Countries {
		if tabs.continentOf[cc] == "" {
			st.Unknown = append(st.Unknown, cc)
		}
	}
	sort.Strings(st.Unknown)
	return st, st.write(tree)
}

// insertCountries copies every network of r into tree.
func insertCountries(tree *mmdbwriter.Tree, r *maxminddb.Reader, tabs countryTables,
	records map[string]mmdbtype.Map, st *countryStats) error {
	for res := range r.Networks() {
		var rec struct {
			CountryCode string `maxminddb:"country_code"`
		}
		if err := res.Decode(&rec); err != nil {
			return fmt.Errorf("decode %s: %w", res.Prefix(), err)
		}
		if rec.CountryCode == "" {
			continue
		}
		value, ok := records[rec.CountryCode]
		if !ok {
			value = countryRecord(rec.CountryCode, tabs)
			records[rec.CountryCode] = value
		}
		p := res.Prefix()
		err := tree.Insert(netipx.PrefixIPNet(p), value)
		var reserved *mmdbwriter.ReservedNetworkError
		var aliased *mmdbwriter.AliasedNetworkError
		switch {
		case errors.As(err, &reserved):
			st.Reserved++
			continue
		case errors.As(err, &aliased):
			st.Aliased++
			continue
		case err != nil:
			return fmt.Errorf("insert %s: %w", p, err)
		}
		st.Inserted[familyOf(p)]++
		st.Countries[rec.CountryCode]++
	}
	return nil
}

func familyOf(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 4
	}
	return 6
}

// countryRecord is the GeoIP2-Country layout record of one country.
func countryRecord(cc string, tabs countryTables) mmdbtype.Map {
	country := mmdbtype.Map{"iso_code": mmdbtype.String(cc)}
	if name := tabs.countryName[cc]; name != "" {
		country["names"] = mmdbtype.Map{"en": mmdbtype.String(name)}
	}
	rec := mmdbtype.Map{"country": country}
	if cont := tabs.continentOf[cc]; cont != "" {
		rec["continent"] = mmdbtype.Map{
			"code":  mmdbtype.String(cont),
			"names": mmdbtype.Map{"en": mmdbtype.String(tabs.continentNames[cont])},
		}
	}
	return rec
}

// write serialises tree, gzips it and counts what a reader sees in it.
func (st *countryStats) write(tree *mmdbwriter.Tree) error {
	var buf bytes.Buffer
	if _, err := tree.WriteTo(&buf); err != nil {
		return fmt.Errorf("write tree: %w", err)
	}
	st.MMDBSize = buf.Len()
	r, err := maxminddb.OpenBytes(buf.Bytes())
	if err != nil {
		return fmt.Errorf("reopen written tree: %w", err)
	}
	st.NodeCount = int(r.Metadata.NodeCount) //nolint:gosec // fits
	for res := range r.Networks() {
		if err := res.Err(); err != nil {
			return fmt.Errorf("walk written tree: %w", err)
		}
		st.Networks++
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return fmt.Errorf("gzip: %w", err)
	}
	if _, err := zw.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("gzip: %w", err)
	}
	st.Gzipped, st.GzipSize = gz.Bytes(), gz.Len()
	return nil
}
