package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gslbd/gslbd/dataplane"
)

// defaultWatch is how often run checks the config file for changes. It
// reads and hashes the file rather than watching inotify events, so that
// every way of replacing it (in place, rename, a symlink swap by a config
// manager) is seen.
const defaultWatch = 2 * time.Second

// dataplaneHandle is the kernel side as run uses it (xdp.Loader).
type dataplaneHandle interface {
	dataplane.Programmer
	// Close releases lbd's handles; the pinned program keeps forwarding.
	Close() error
	// Detach removes the program and its pinned maps.
	Detach() error
	// Modes is the XDP mode per interface ("driver", "generic").
	Modes() map[string]string
}

// daemonOptions are run's inputs; tests replace open, hup and the hooks.
type daemonOptions struct {
	configPath   string
	detachOnExit bool
	watch        time.Duration
	stderr       io.Writer
	open         func(*dataplane.Config) (dataplaneHandle, error)
	// hup delivers reload requests; nil subscribes to SIGHUP.
	hup <-chan os.Signal
	// ready, optional, is called with the API's address once serving.
	ready func(apiAddr string)
	// reloaded, optional, is called after every reload attempt.
	reloaded func(error)
}

// daemon is a running lbd.
type daemon struct {
	opts    daemonOptions
	log     *slog.Logger
	level   *slog.LevelVar
	dp      dataplaneHandle
	checker *dataplane.HealthChecker
	ctrl    *dataplane.Controller
	feed    *dataplane.Feed
	reg     *prometheus.Registry
	reloads *prometheus.CounterVec
	lastOK  prometheus.Gauge

	// started is the config lbd started with: what needs a restart
	// (interfaces, maps, API address) stays as it says.
	started *dataplane.Config

	mu   sync.Mutex // guards cfg and hash (reloads are serialized by it)
	cfg  *dataplane.Config
	hash [32]byte
}

// runDaemon runs lbd until ctx is done. Errors before serving (config,
// attach, listen) are returned; later ones are logged.
func runDaemon(ctx context.Context, opts daemonOptions) error {
	data, err := os.ReadFile(opts.configPath)
	if err != nil {
		return fmt.Errorf("-config: %w", err)
	}
	cfg, err := loadChecked(opts.configPath, data)
	if err != nil {
		return err
	}
	d := &daemon{opts: opts, cfg: cfg, started: cfg, hash: sha256.Sum256(data), level: new(slog.LevelVar), reg: prometheus.NewRegistry()}
	d.level.Set(cfg.LogLevel)
	d.log = newLogger(opts.stderr, d.level, cfg.LogFormat)
	if d.dp, err = opts.open(cfg); err != nil {
		return fmt.Errorf("attach to %s: %w", strings.Join(cfg.Interfaces, ","), err)
	}
	defer d.releaseDataplane()
	d.log.Info("xdp attached", "modes", fmt.Sprint(d.dp.Modes()), "pin_path", cfg.PinPath)
	if err := d.build(); err != nil {
		return err
	}
	defer d.checker.Close()
	ln, err := net.Listen("tcp", cfg.APIListen)
	if err != nil {
		return fmt.Errorf("api.listen %s: %w", cfg.APIListen, err)
	}
	return d.serve(ctx, ln)
}

// loadChecked parses and validates a config, including the data path's
// limits.
func loadChecked(path string, data []byte) (*dataplane.Config, error) {
	cfg, err := dataplane.ParseConfig(path, data)
	if err != nil {
		return nil, err
	}
	if err := checkLimits(path, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

// build creates the checker, controller, feed and metrics, and programs
// the first configuration.
func (d *daemon) build() error {
	var err error
	d.checker = dataplane.NewHealthChecker(dataplane.HealthConfig{
		Logger: d.log,
		// Reconcile pushes only what changed; its errors are logged by the
		// controller and retried by its Run.
		OnChange: func(dataplane.HealthChange) { _ = d.ctrl.Reconcile() },
		// After a restart, VIPs keep their pinned tables until their
		// backends are probed; each first probe lets them go.
		OnProbe: func(dataplane.HealthTarget, dataplane.HealthStatus) { d.ctrl.HealthProbed() },
	})
	d.ctrl, err = dataplane.NewController(dataplane.ControllerConfig{
		Programmer: d.dp, Health: d.checker, Logger: d.log, StateFile: d.cfg.StateFile,
	})
	if err != nil {
		d.checker.Close()
		return err
	}
	d.feed, err = dataplane.NewFeed(dataplane.FeedConfig{Site: d.cfg.Site, Source: d.dp, Settings: d.cfg.Feed, Logger: d.log})
	if err != nil {
		d.checker.Close()
		return err
	}
	d.checker.SetTargets(d.cfg.HealthTargets())
	if err := d.ctrl.SetConfig(d.cfg); err != nil {
		d.log.Error("some services are not programmed yet; retrying", "err", err)
	}
	d.checker.Start()
	d.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lbd_config_reloads_total", Help: "Configuration reloads, by result.",
	}, []string{"result"})
	d.lastOK = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "lbd_config_last_reload_successful", Help: "1 when the last reload succeeded (or there was none).",
	})
	d.lastOK.Set(1)
	d.reloads.WithLabelValues("success")
	d.reloads.WithLabelValues("failure")
	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		dataplane.NewCollector(dataplane.MetricsConfig{Counters: d.dp, Controller: d.ctrl, Feed: d.feed}), d.reloads, d.lastOK)
	return nil
}

// serve runs the API, the controller's retries, the feed and the reloads
// until ctx is done, then stops them.
func (d *daemon) serve(ctx context.Context, ln net.Listener) error {
	handler, err := dataplane.NewAPI(dataplane.APIConfig{
		Controller: d.ctrl, Counters: d.dp, Feed: d.feed, Logger: d.log,
		Metrics: promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelError)}),
	})
	if err != nil {
		ln.Close()
		return err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)}
	hup := d.opts.hup
	if hup == nil {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGHUP)
		defer signal.Stop(ch)
		hup = ch
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("api server stopped", "err", err)
			cancel()
		}
	})
	wg.Go(func() { _ = d.ctrl.Run(ctx) })
	wg.Go(func() { _ = d.feed.Run(ctx) })
	wg.Go(func() { d.watchConfig(ctx, hup) })
	d.log.Info("lbd running", "site", d.cfg.Site, "api", ln.Addr().String(), "vips", len(d.cfg.VIPs))
	if d.opts.ready != nil {
		d.opts.ready(ln.Addr().String())
	}
	<-ctx.Done()
	d.log.Info("shutting down", "detach", d.opts.detachOnExit)
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		d.log.Warn("api shutdown", "err", err)
	}
	cancel()
	wg.Wait()
	return nil
}

// releaseDataplane closes the loader (keeping the pins, so forwarding
// continues across a restart) or, with -detach-on-exit, detaches it.
func (d *daemon) releaseDataplane() {
	if d.opts.detachOnExit {
		if err := d.dp.Detach(); err != nil {
			d.log.Error("detach", "err", err)
		} else {
			d.log.Info("xdp detached, pinned maps removed")
		}
		return
	}
	if err := d.dp.Close(); err != nil {
		d.log.Error("close data path", "err", err)
		return
	}
	d.log.Info("data path left running with the last tables (pinned)")
}

// watchConfig reloads on SIGHUP and when the file's content changes.
func (d *daemon) watchConfig(ctx context.Context, hup <-chan os.Signal) {
	var tick <-chan time.Time
	if d.opts.watch > 0 {
		t := time.NewTicker(d.opts.watch)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			d.log.Info("SIGHUP: reloading config", "file", d.opts.configPath)
			d.reload(true)
		case <-tick:
			d.reload(false)
		}
	}
}

// reload reads the config file and applies it if it changed (or if force).
// A config that does not load is logged and the running one kept.
func (d *daemon) reload(force bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	data, err := os.ReadFile(d.opts.configPath)
	if err == nil {
		sum := sha256.Sum256(data)
		if !force && bytes.Equal(sum[:], d.hash[:]) {
			return
		}
		d.hash = sum // a bad file is reported once, not at every poll
	}
	var cfg *dataplane.Config
	if err == nil {
		cfg, err = loadChecked(d.opts.configPath, data)
	}
	if err != nil {
		d.reloads.WithLabelValues("failure").Inc()
		d.lastOK.Set(0)
		d.log.Error("config reload failed; keeping the running config", "err", err)
		d.notifyReload(err)
		return
	}
	if fields := cfg.RestartRequired(d.started); len(fields) > 0 {
		d.log.Warn("config changes that need a restart of lbd are not applied", "fields", strings.Join(fields, ","))
	}
	d.level.Set(cfg.LogLevel)
	d.checker.SetTargets(cfg.HealthTargets())
	if err := d.ctrl.SetConfig(cfg); err != nil {
		d.log.Error("some services are not programmed yet; retrying", "err", err)
	}
	d.cfg = cfg
	d.reloads.WithLabelValues("success").Inc()
	d.lastOK.Set(1)
	d.log.Info("config reloaded", "vips", len(cfg.VIPs))
	d.notifyReload(nil)
}

func (d *daemon) notifyReload(err error) {
	if d.opts.reloaded != nil {
		d.opts.reloaded(err)
	}
}
