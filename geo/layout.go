package geo

import (
	"fmt"
	"strings"

	"github.com/oschwald/geoip2-golang/v2"
	"github.com/oschwald/maxminddb-golang/v2"
)

// layout is the shape of a database's records.
type layout int

const (
	layoutUnknown layout = iota
	layoutGeoIP2         // GeoIP2/GeoLite2 City and Country; DB-IP's own mmdb releases
	layoutFlat           // @ip-location-db DB-IP: country_code, state1, city, latitude, longitude
	layoutASN            // GeoLite2-ASN, DB-IP ASN: autonomous_system_number
)

func (l layout) String() string {
	switch l {
	case layoutGeoIP2:
		return "GeoIP2"
	case layoutFlat:
		return "DB-IP flat"
	case layoutASN:
		return "ASN"
	}
	return "unknown"
}

// detectSample is how many records detectLayout reads before giving up.
const detectSample = 64

// detectLayout reads the first records of r until one has fields that name
// its layout. The metadata's database_type is no guide: DB-IP names its
// GeoIP2-layout files "DBIP-City-Lite", the npm packages "city ipv4".
func detectLayout(r *maxminddb.Reader) (layout, error) {
	n := 0
	for res := range r.Networks() {
		if err := res.Err(); err != nil {
			return layoutUnknown, fmt.Errorf("read networks: %w", err)
		}
		var fields map[string]any
		if err := res.Decode(&fields); err != nil {
			return layoutUnknown, fmt.Errorf("decode record for %s: %w", res.Prefix(), err)
		}
		if l := layoutOf(fields); l != layoutUnknown {
			return l, nil
		}
		if n++; n == detectSample {
			break
		}
	}
	if n == 0 {
		return layoutUnknown, fmt.Errorf("no networks (database_type %q)", r.Metadata.DatabaseType)
	}
	return layoutUnknown, fmt.Errorf("no known fields in the first %d records (database_type %q)",
		n, r.Metadata.DatabaseType)
}

func layoutOf(fields map[string]any) layout {
	for _, k := range []string{"country", "registered_country", "continent", "city", "location", "subdivisions"} {
		if _, ok := fields[k]; ok {
			if k == "city" {
				if _, flat := fields["country_code"]; flat {
					return layoutFlat // DB-IP flat has a city string too
				}
			}
			return layoutGeoIP2
		}
	}
	if _, ok := fields["country_code"]; ok {
		return layoutFlat
	}
	if _, ok := fields["autonomous_system_number"]; ok {
		return layoutASN
	}
	return layoutUnknown
}

// flatRecord is the @ip-location-db DB-IP layout (city or country). Its
// state1 is a name, not an ISO 3166-2 code, so it is not used.
type flatRecord struct {
	CountryCode string   `maxminddb:"country_code"`
	City        string   `maxminddb:"city"`
	Lat         *float64 `maxminddb:"latitude"`
	Lon         *float64 `maxminddb:"longitude"`
}

// decodeLocation decodes the record behind res in layout l.
func (l layout) decodeLocation(res maxminddb.Result) (Location, error) {
	var loc Location
	switch l {
	case layoutGeoIP2:
		var c geoip2.City
		if err := res.Decode(&c); err != nil {
			return loc, fmt.Errorf("decode record: %w", err)
		}
		loc = Location{Continent: c.Continent.Code, Country: c.Country.ISOCode, City: c.City.Names.English}
		if loc.Country == "" {
			loc.Country = c.RegisteredCountry.ISOCode // the best guess left
		}
		if len(c.Subdivisions) > 0 {
			loc.Subdivision = c.Subdivisions[0].ISOCode // the largest one
		}
		if c.Location.HasCoordinates() {
			loc.Lat, loc.Lon, loc.HasCoords = *c.Location.Latitude, *c.Location.Longitude, true
		}
	case layoutFlat:
		var f flatRecord
		if err := res.Decode(&f); err != nil {
			return loc, fmt.Errorf("decode record: %w", err)
		}
		loc = Location{Country: f.CountryCode, City: f.City}
		if f.Lat != nil && f.Lon != nil {
			loc.Lat, loc.Lon, loc.HasCoords = *f.Lat, *f.Lon, true
		}
	default:
		return loc, fmt.Errorf("decode record: no location in %s layout", l)
	}
	return complete(loc), nil
}

// complete fills what the database left out from the tables: the continent
// from the country, and the country's centroid for coordinates.
func complete(loc Location) Location {
	loc.Country = strings.ToUpper(loc.Country)
	loc.Continent = strings.ToUpper(loc.Continent)
	if loc.Continent == "" {
		loc.Continent = ContinentOf(loc.Country)
	}
	if !loc.HasCoords {
		loc.Lat, loc.Lon, loc.HasCoords = Centroid(loc.Country)
	}
	return loc
}

// decodeASN decodes the autonomous system number behind res.
func decodeASN(res maxminddb.Result) (uint32, error) {
	var a geoip2.ASN
	if err := res.Decode(&a); err != nil {
		return 0, fmt.Errorf("decode record: %w", err)
	}
	if a.AutonomousSystemNumber > 1<<32-1 {
		return 0, fmt.Errorf("decode record: autonomous_system_number %d out of range", a.AutonomousSystemNumber)
	}
	return uint32(a.AutonomousSystemNumber), nil
}
