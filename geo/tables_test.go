package geo

import (
	"math"
	"strings"
	"testing"
)

func TestContinentOf(t *testing.T) {
	tests := map[string]string{
		"GB": "EU", "DE": "EU", "RU": "EU", "US": "NA", "CA": "NA", "MX": "NA", "BR": "SA", "AR": "SA",
		"AU": "OC", "NZ": "OC", "FJ": "OC", "JP": "AS", "CN": "AS", "IN": "AS", "TR": "AS",
		"ZA": "AF", "EG": "AF", "NG": "AF", "AQ": "AN",
		"gb": "EU", // lenient about case
		"XX": "", "": "", "GBR": "",
	}
	for cc, want := range tests {
		if got := ContinentOf(cc); got != want {
			t.Errorf("ContinentOf(%q) = %q, want %q", cc, got, want)
		}
	}
}

func TestTablesCoverage(t *testing.T) {
	// Every ISO 3166-1 alpha-2 code (249) has a continent; every centroid's
	// country does too.
	if len(continents) < 249 {
		t.Errorf("continents has %d countries, want every ISO 3166-1 code (249)", len(continents))
	}
	if len(centroids) < 240 {
		t.Errorf("centroids has %d countries, want most of them", len(centroids))
	}
	for cc := range centroids {
		if continents[cc] == "" {
			t.Errorf("centroid for %s, which has no continent", cc)
		}
	}
}

func TestCentroid(t *testing.T) {
	// Bounding boxes of where each country's users are.
	tests := []struct {
		cc             string
		latMin, latMax float64
		lonMin, lonMax float64
	}{
		{"GB", 50, 56, -4, 1},
		{"DE", 47, 55, 6, 15},
		{"US", 30, 45, -110, -75},
		{"AU", -38, -25, 135, 153},
		{"JP", 31, 40, 130, 142},
		{"BR", -30, -10, -55, -38},
		{"fr", 42, 51, -2, 8},
		{"FJ", -20, -15, 176, 180}, // near the antimeridian: a mean of vectors, not of degrees
	}
	for _, tc := range tests {
		lat, lon, ok := Centroid(tc.cc)
		if !ok || lat < tc.latMin || lat > tc.latMax || lon < tc.lonMin || lon > tc.lonMax {
			t.Errorf("Centroid(%s) = %v, %v, %v; want within lat %v..%v lon %v..%v",
				tc.cc, lat, lon, ok, tc.latMin, tc.latMax, tc.lonMin, tc.lonMax)
		}
	}
	if _, _, ok := Centroid("XX"); ok {
		t.Error("Centroid(XX) ok")
	}
}

func TestDistance(t *testing.T) {
	tests := []struct {
		name                   string
		lat1, lon1, lat2, lon2 float64
		want, tolerance        float64
	}{
		{"London-Frankfurt", 51.5074, -0.1278, 50.1109, 8.6821, 636, 5},
		{"same point", 48.85, 2.35, 48.85, 2.35, 0, 1e-9},
		{"antipodes", 0, 0, 0, 180, math.Pi * earthRadiusKm, 1e-6},
		{"pole to pole", 90, 0, -90, 0, math.Pi * earthRadiusKm, 1e-6},
		{"across the antimeridian", 0, 179.5, 0, -179.5, 111.2, 0.1},
		{"New York-Sydney", 40.7128, -74.0060, -33.8688, 151.2093, 15990, 30},
	}
	for _, tc := range tests {
		got := Distance(tc.lat1, tc.lon1, tc.lat2, tc.lon2)
		if math.Abs(got-tc.want) > tc.tolerance {
			t.Errorf("%s: Distance = %.3f km, want %.3f ± %v", tc.name, got, tc.want, tc.tolerance)
		}
		if back := Distance(tc.lat2, tc.lon2, tc.lat1, tc.lon1); math.Abs(back-got) > 1e-9 {
			t.Errorf("%s: not symmetric: %v vs %v", tc.name, got, back)
		}
	}
}

func TestParseTable(t *testing.T) {
	tests := []struct {
		name, text, wantErr string
	}{
		{"ok", "# comment\nGB\tEU\n\nFR\tEU\n", ""},
		{"lower case", "gb\tEU\n", "bad country code"},
		{"long code", "GBR\tEU\n", "bad country code"},
		{"duplicate", "GB\tEU\nGB\tEU\n", "duplicate"},
		{"bad continent", "GB\tXX\n", "bad continent"},
		{"columns", "GB\tEU\tAS\n", "want 2 columns"},
	}
	for _, tc := range tests {
		m, err := parseTable(tc.text, parseContinent)
		switch {
		case tc.wantErr == "" && (err != nil || m["GB"] != "EU" || m["FR"] != "EU"):
			t.Errorf("%s: %v %v", tc.name, m, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.wantErr)
		}
	}
	for _, bad := range []string{"GB\t91\t0\n", "GB\t0\t-181\n", "GB\tx\t0\n", "GB\t0\n"} {
		if _, err := parseTable(bad, parseCentroid); err == nil {
			t.Errorf("parseCentroid accepted %q", bad)
		}
	}
}
