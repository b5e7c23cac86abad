// Command gslbd is the authoritative DNS server and GSLB engine.
//
//	gslbd -listen 127.0.0.1:5353 -zones DIR
//	gslbd -config /etc/gslbd/gslbd.yaml
//
// Without -zones (or zones: in the config) it serves the embedded example
// zone. SIGHUP reloads zones; SIGTERM and SIGINT stop it gracefully.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
)

type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("gslbd", flag.ContinueOnError)
	var (
		listen     listFlag
		configPath = fs.String("config", "", "YAML configuration file")
		zonesDir   = fs.String("zones", "", "zones directory (default: the embedded example zone)")
		workers    = fs.Int("workers", -1, "UDP sockets per listen address (default: one per CPU)")
		metrics    = fs.String("metrics", "\x00", `metrics listen address, "" to disable (default 127.0.0.1:9153)`)
		logLevel   = fs.String("log-level", "", "debug, info, warn or error (default info)")
		apiAddr    = fs.String("api", "", "REST API listen address, e.g. 127.0.0.1:9080 (default: none, or api.listen)")
		cpuProfile = fs.String("cpuprofile", "", "write a CPU profile to this file until exit (for performance work)")
	)
	fs.Var(&listen, "listen", "address:port to serve DNS on, UDP and TCP; repeat or comma-separate (default 127.0.0.1:5353)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "gslbd: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	fc := &fileConfig{}
	if *configPath != "" {
		var err error
		if fc, err = loadConfigFile(*configPath); err != nil {
			fmt.Fprintf(os.Stderr, "gslbd: %v\n", err)
			return 2
		}
	}
	if len(listen) > 0 {
		fc.Listen = listen
	}
	if *zonesDir != "" {
		fc.Zones = *zonesDir
	}
	if *workers >= 0 {
		fc.Workers = *workers
	}
	if *metrics != "\x00" {
		fc.Metrics = metrics
	}
	if *logLevel != "" {
		fc.Log.Level = *logLevel
	}
	if *apiAddr != "" {
		fc.API.Listen = *apiAddr
	}
	cfg, err := buildConfig(fc)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gslbd: %v\n", err)
		return 2
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "gslbd: -cpuprofile: %v\n", err)
			return 2
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "gslbd: -cpuprofile: %v\n", err)
			return 2
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	d, err := newDaemon(cfg)
	if err != nil {
		cfg.logger.Error("start failed", "err", err)
		return 1
	}
	if err := d.run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		cfg.logger.Error("stopped with error", "err", err)
		return 1
	}
	return 0
}

func newLogger(c logConfig) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Level)); err != nil && c.Level != "" {
		return nil, fmt.Errorf("log.level: %q is not one of debug, info, warn, error", c.Level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.Format {
	case "", "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("log.format: %q is not text or json", c.Format)
}
