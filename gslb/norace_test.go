//go:build !race

package gslb

const raceEnabled = false
