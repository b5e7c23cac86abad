package main

import (
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/gslbd/gslbd/dnsserver"
	"github.com/gslbd/gslbd/gslb"
	"github.com/gslbd/gslbd/zones"
)

// runCheck validates a zones directory with the server's own loader.
func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quiet := fs.Bool("q", false, "print only errors, not warnings")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: gslbctl check [-q] DIR")
		return 2
	}
	dir := fs.Arg(0)
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
			if !*quiet {
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
