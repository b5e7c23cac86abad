// Command lbd is the per-site XDP L4 load balancer: it attaches the XDP
// program of dataplane/xdp to the site's interfaces, checks the health of
// the L7 proxies behind each VIP, programs Maglev tables, serves a local
// HTTP API and metrics, and publishes the RTT/load feed gslbd steers with.
//
//	lbd run -config /etc/lbd/lbd.yaml [-detach-on-exit]
//	lbd check -config /etc/lbd/lbd.yaml
//	lbd decap -iface eth0 [-local 198.18.1.2,2001:db8::2] [-detach]
//	lbd vips [-api 127.0.0.1:9300] [-o table|json]
//	lbd drain VIP BACKEND      (VIP: tcp-192.0.2.10-80 or tcp/192.0.2.10:80)
//	lbd undrain VIP BACKEND
//	lbd remove VIP BACKEND
//
// run: SIGHUP, or a change of the file's content, reloads the config (a
// bad one is logged and the running one kept). SIGTERM or SIGINT stop it;
// the XDP program and its maps stay pinned, so forwarding continues with
// the last tables until lbd starts again, unless -detach-on-exit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1 // the command failed
	exitUsage = 2 // bad flags or arguments
)

const usage = `usage: lbd COMMAND [flags]

commands:
  run -config FILE [-detach-on-exit] [-watch 2s]   run the load balancer
  check -config FILE                               validate a config file
  decap -iface IFACE [-local ADDR,...] [-pin-path DIR] [-detach]
                                                   attach (or detach) the IPIP decapsulator on a proxy host
  vips [-api ADDR | -config FILE] [-o table|json]  show VIPs, backends, health, counters
  drain VIP BACKEND [-api ADDR | -config FILE]     new flows go elsewhere; established ones continue
  undrain VIP BACKEND [-api ADDR | -config FILE]   cancel a drain or a removal
  remove VIP BACKEND [-api ADDR | -config FILE]    remove a drained backend (its flows are re-balanced)

VIP is tcp-192.0.2.10-80 or tcp/192.0.2.10:80 (port 0 or * for every port);
BACKEND is the backend's address. Run "lbd COMMAND -h" for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches to a command and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(args, stderr)
	case "check":
		return cmdCheck(args, stdout, stderr)
	case "decap":
		return cmdDecap(args, stdout, stderr)
	case "vips":
		return cmdVIPs(args, stdout, stderr)
	case "drain", "undrain", "remove":
		return cmdOperate(cmd, args, stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "lbd: unknown command %q\n\n%s", cmd, usage)
	return exitUsage
}

// parseFlags parses flags that may come before, between or after the
// positional arguments ("lbd drain VIP BACKEND -api ADDR" and
// "lbd drain -api ADDR VIP BACKEND" both work), and checks their number.
func parseFlags(fs *flag.FlagSet, args []string, positional ...string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != len(positional) {
		want := "no arguments"
		if len(positional) > 0 {
			want = strings.Join(positional, " ")
		}
		return nil, fmt.Errorf("%s: want %s, got %d argument(s)", fs.Name(), want, len(pos))
	}
	return pos, nil
}

// newFlagSet returns a flag set that prints its errors and usage to stderr.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("lbd "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func cmdRun(args []string, stderr io.Writer) int {
	fs := newFlagSet("run", stderr)
	opts := daemonOptions{stderr: stderr, open: openXDP}
	fs.StringVar(&opts.configPath, "config", "", "configuration file (required)")
	fs.BoolVar(&opts.detachOnExit, "detach-on-exit", false, "on exit, detach XDP and remove the pinned maps (stops forwarding; established flows are lost)")
	fs.DurationVar(&opts.watch, "watch", defaultWatch, "how often to check the config file for changes; 0: only on SIGHUP")
	if _, err := parseFlags(fs, args); err != nil {
		return usageError(stderr, err)
	}
	if opts.configPath == "" {
		fmt.Fprintln(stderr, "lbd run: -config FILE is required")
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := runDaemon(ctx, opts); err != nil {
		fmt.Fprintf(stderr, "lbd run: %v\n", err)
		return exitFail
	}
	return exitOK
}

func usageError(stderr io.Writer, err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	fmt.Fprintf(stderr, "lbd %v\n", err)
	return exitUsage
}

func newLogger(w io.Writer, level *slog.LevelVar, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
