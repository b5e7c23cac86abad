// Package test holds gslbd's integration tests: they build the binaries,
// start them on free loopback ports and drive them with real clients (dig,
// kdig, Knot as a secondary), comparing answers with golden files.
//
// Tools come from Debian (make test installs them). Where a tool is missing
// a test skips, except in CI (CI=true), where a missing tool fails the run.
package test
