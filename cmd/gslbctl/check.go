package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/gslbd/gslbd/dnsserver"
	"github.com/gslbd/gslbd/gslb"
	"github.com/gslbd/gslbd/zones"
)

func newCheckCmd(g *globals) *cobra.Command {
	var quiet bool
	cmd := &cobra.Command{
		Use:   "check DIR",
		Short: "Validate a zones directory and its gslb.yaml the way gslbd loads them (exit 1 on errors)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if code := runCheck(args[0], quiet, g.stdout, g.stderr); code != 0 {
				return &exitError{code: code, err: errors.New("")}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only errors, not warnings")
	return cmd
}

// runCheck validates a zones directory with the server's own loader.
func runCheck(dir string, quiet bool, stdout, stderr io.Writer) int {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		fmt.Fprintf(stderr, "gslbctl check: %s is not a readable directory\n", dir)
		return 2
	}
	fsys := os.DirFS(dir)
	files, err := zones.ZoneFiles(fsys)
	if err != nil {
		fmt.Fprintf(stderr, "gslbctl check: %v\n", err)
		return 2
	}
	issues, fatal := zones.Check(fsys)
	gslbErrs := checkGSLBFile(dir, fsys)
	errs, warns := 0, 0
	for _, is := range issues {
		if is.Warning {
			warns++
			if !quiet {
				fmt.Fprintf(stdout, "warning: %s\n", is)
			}
			continue
		}
		errs++
		fmt.Fprintf(stdout, "error: %s\n", is)
	}
	for _, err := range gslbErrs {
		errs++
		fmt.Fprintf(stdout, "error: %v\n", err)
	}
	fmt.Fprintf(stderr, "%d zone files, %d errors, %d warnings\n", len(files), errs, warns)
	if fatal || len(gslbErrs) > 0 {
		return 1
	}
	return 0
}

// checkGSLBFile validates DIR/gslb.yaml, when present, against the zones.
func checkGSLBFile(dir string, fsys fs.FS) []error {
	path := filepath.Join(dir, "gslb.yaml")
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	cfg, err := gslb.LoadFile(path)
	if err != nil {
		return []error{err}
	}
	set, _ := zones.Load(fsys)
	return dnsserver.CheckGSLB(set, cfg)
}
