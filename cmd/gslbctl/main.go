// Command gslbctl is the operator's CLI for gslbd.
//
// Online commands talk to gslbd's REST API (address and token from
// --api/--token, the environment GSLB_API/GSLB_TOKEN, or the config file
// ~/.config/gslbctl/config.yaml): status, override, drain, explain, audit,
// anycast status, reload. Offline commands work on a zones directory:
// check, explain --zones, simulate. token new makes API tokens.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// exitError carries an exit code (1: the check failed, 2: usage).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErr(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

// globals are the persistent flags.
type globals struct {
	api, token, configFile, output, ca string
	insecure                           bool
	stdout, stderr                     io.Writer
}

func run(args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintf(stderr, "gslbctl: %v\n", ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(stderr, "gslbctl: %v\n", err)
	return 1
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "gslbctl",
		Short:         "Operate gslbd: status, overrides, drains, explain, simulate, check",
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if g.output != "table" && g.output != "json" {
				return usageErr("--output %q: want table or json", g.output)
			}
			return nil
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitError{code: 2, err: err} })
	pf := root.PersistentFlags()
	pf.StringVar(&g.api, "api", "", "gslbd API address, e.g. http://127.0.0.1:9080 (env GSLB_API)")
	pf.StringVar(&g.token, "token", "", "API bearer token (env GSLB_TOKEN)")
	pf.StringVar(&g.configFile, "config", "", "config file with api, token and ca (default ~/.config/gslbctl/config.yaml)")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: table or json")
	pf.StringVar(&g.ca, "ca", "", "CA bundle to verify the API's TLS certificate")
	pf.BoolVar(&g.insecure, "insecure", false, "do not verify the API's TLS certificate")
	root.AddCommand(
		newStatusCmd(g), newOverrideCmd(g), newDrainCmd(g), newExplainCmd(g), newAuditCmd(g),
		newAnycastCmd(g), newReloadCmd(g), newCheckCmd(g), newSimulateCmd(g), newTokenCmd(g),
	)
	return root
}
