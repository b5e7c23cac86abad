package main

import (
	"fmt"
	"io"
	"os"

	"github.com/gslbd/gslbd/dataplane"
)

// cmdCheck validates a config file, with the data path's limits, and
// prints a summary. Every problem is reported, each naming its field.
func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("check", stderr)
	path := fs.String("config", "", "configuration file (required)")
	if _, err := parseFlags(fs, args); err != nil {
		return usageError(stderr, err)
	}
	if *path == "" {
		fmt.Fprintln(stderr, "lbd check: -config FILE is required")
		return exitUsage
	}
	data, err := os.ReadFile(*path)
	if err != nil {
		fmt.Fprintf(stderr, "lbd check: -config: %v\n", err)
		return exitFail
	}
	cfg, err := loadChecked(*path, data)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFail
	}
	backends := 0
	for _, v := range cfg.VIPs {
		backends += len(v.Backends)
	}
	fmt.Fprintf(stdout, "%s: ok: site %s, %d VIPs, %d backends, %d health checks, maglev size %d\n",
		*path, cfg.Site, len(cfg.VIPs), backends, len(cfg.HealthTargets()), cfg.MaglevSize)
	for _, v := range cfg.VIPs {
		fmt.Fprintf(stdout, "  %s %s: %d backends\n", v.VIP, dataplane.ModeString(v.Mode), len(v.Backends))
	}
	return exitOK
}
