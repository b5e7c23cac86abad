// Command gslbctl is the operator's CLI for gslbd.
//
//	gslbctl check DIR    validate a zones directory and its gslb.yaml (exit 1 on errors)
//	gslbctl explain ...  say why a GSLB name answers what it does, offline
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `usage: gslbctl <command> [arguments]

commands:
  check DIR   validate every zone file in DIR, and DIR/gslb.yaml against them,
              the way gslbd loads them; prints file:line: message for each
              problem, exits 1 if any is fatal
  explain     run a GSLB record's filter chain for a client and print every
              step: gslbctl explain -zones DIR -client IP [-ecs PREFIX]
              [-type A|AAAA] [-geoip FILE] [-down NAME,...] NAME
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "check":
		return runCheck(args[1:], stdout, stderr)
	case "explain":
		return runExplain(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "gslbctl: unknown command %q\n\n%s", args[0], usage)
	return 2
}
