package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gslbd/gslbd/anycast"
	"github.com/gslbd/gslbd/dnsserver"
	"github.com/gslbd/gslbd/gslb"
	"github.com/gslbd/gslbd/zones"
)

// config is the validated, typed configuration of the daemon.
type config struct {
	zonesDir        string
	metricsAddr     string
	shutdownTimeout time.Duration
	reload          reloadConfig
	transport       dnsserver.TransportConfig
	responder       dnsserver.Config
	gslb            gslbConfig
	anycast         anycastConfig
	state           stateConfig
	api             apiConfig
	ops             bool // a state store (and maybe the API) is configured
	logger          *slog.Logger
}

// buildConfig applies defaults and checks every field; errors name it.
func buildConfig(fc *fileConfig) (*config, error) {
	logger, err := newLogger(fc.Log)
	if err != nil {
		return nil, err
	}
	c := &config{zonesDir: fc.Zones, metricsAddr: "127.0.0.1:9153", shutdownTimeout: fc.ShutdownTimeout, reload: fc.Reload, gslb: fc.GSLB, anycast: fc.Anycast,
		state: fc.State, api: fc.API, ops: fc.API.Listen != "" || !emptyState(fc.State), logger: logger}
	if fc.Metrics != nil {
		c.metricsAddr = *fc.Metrics
	}
	if err := checkOpsConfig(fc.State, fc.API); err != nil {
		return nil, err
	}
	if c.shutdownTimeout == 0 {
		c.shutdownTimeout = 5 * time.Second
	}
	listen := fc.Listen
	if len(listen) == 0 {
		listen = []string{"127.0.0.1:5353"}
	}
	for i, a := range listen {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, fmt.Errorf("listen[%d]: %q is not address:port: %w", i, a, err)
		}
	}
	c.transport = dnsserver.TransportConfig{
		Addrs: listen, Workers: fc.Workers, TCPMaxConns: fc.TCP.MaxConnections,
		TCPIdleTimeout: fc.TCP.IdleTimeout, TCPReadTimeout: fc.TCP.ReadTimeout,
		TCPWriteTimeout: fc.TCP.WriteTimeout, TCPMaxQueries: fc.TCP.MaxQueries, Logger: logger,
	}
	c.responder = dnsserver.Config{
		MaxUDPSize:  fc.MaxUDPSize,
		Identity:    dnsserver.Identity(fc.Identity),
		QuerySample: fc.Log.QuerySample,
		Logger:      logger,
	}
	if c.responder.Transfers, err = buildTransfers(fc.Transfers); err != nil {
		return nil, err
	}
	return c, nil
}

func buildTransfers(tc transferConfig) (dnsserver.TransferConfig, error) {
	out := dnsserver.TransferConfig{Zones: map[string]dnsserver.ZoneTransfer{}}
	for i, k := range tc.Keys {
		if k.Name == "" {
			return out, fmt.Errorf("transfers.keys[%d].name: missing", i)
		}
		if _, err := base64.StdEncoding.DecodeString(k.Secret); err != nil || k.Secret == "" {
			return out, fmt.Errorf("transfers.keys[%d].secret: not base64", i)
		}
		out.Keys = append(out.Keys, dnsserver.TSIGKey{Name: k.Name, Algorithm: k.Algorithm, Secret: k.Secret})
	}
	for zone, z := range tc.Zones {
		zt := dnsserver.ZoneTransfer{NotifyKey: z.NotifyKey}
		for i, rule := range z.Allow {
			r := dnsserver.ACLRule{Key: rule.Key}
			for j, p := range rule.Prefixes {
				pfx, err := gslb.ParsePrefix(p)
				if err != nil {
					return out, fmt.Errorf("transfers.zones[%s].allow[%d].prefixes[%d]: %w", zone, i, j, err)
				}
				r.Prefixes = append(r.Prefixes, pfx)
			}
			zt.Allow = append(zt.Allow, r)
		}
		for i, n := range z.Notify {
			ap, err := netip.ParseAddrPort(n)
			if err != nil {
				return out, fmt.Errorf("transfers.zones[%s].notify[%d]: %q is not address:port", zone, i, n)
			}
			zt.Notify = append(zt.Notify, ap)
		}
		out.Zones[strings.ToLower(strings.TrimSuffix(zone, "."))+"."] = zt
	}
	return out, nil
}

// daemon wires the zones source, the responder, the transport and metrics.
type daemon struct {
	cfg       *config
	log       *slog.Logger
	responder *dnsserver.Responder
	server    *dnsserver.Server
	watcher   *zones.Watcher // nil when serving the embedded default
	embedded  *zones.Set     // the embedded default, when no directory is given
	notifier  *dnsserver.Notifier
	gslb      *gslbRuntime
	announcer *anycast.Announcer // nil without an anycast: section
	monitor   *anycast.Monitor
	ops       *opsRuntime // nil without state: or api:
	reg       *prometheus.Registry
	started   atomic.Bool // DNS is listening
}

// zoneSet is the zone set being served.
func (d *daemon) zoneSet() *zones.Set {
	if d.watcher != nil {
		return d.watcher.Current()
	}
	return d.embedded
}

func newDaemon(cfg *config) (*daemon, error) {
	d := &daemon{cfg: cfg, log: cfg.logger, reg: prometheus.NewRegistry()}
	var err error
	if d.gslb, err = newGSLBRuntime(d, cfg.gslb); err != nil {
		return nil, err
	}
	cfg.responder.GSLB = d.gslb.engine
	if d.responder, err = dnsserver.NewResponder(cfg.responder); err != nil {
		return nil, err
	}
	if d.notifier, err = dnsserver.NewNotifier(cfg.responder.Transfers, cfg.logger); err != nil {
		return nil, err
	}
	if err := d.loadZones(); err != nil {
		return nil, err
	}
	if err := d.gslb.loadConfig(d.zoneSet()); err != nil {
		return nil, err
	}
	if d.server, err = dnsserver.NewServer(cfg.transport, d.responder); err != nil {
		return nil, err
	}
	// Built before anything listens, so a bad anycast section fails the start cleanly.
	if d.announcer, d.monitor, err = d.newAnnouncer(cfg.anycast); err != nil {
		return nil, err
	}
	if cfg.ops {
		if d.ops, err = newOpsRuntime(d, cfg.state, cfg.api); err != nil {
			return nil, err
		}
	}
	d.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		d.responder, d.server.Collector())
	return d, nil
}

// loadZones does the initial load, from the directory or the embedded default.
func (d *daemon) loadZones() error {
	if d.cfg.zonesDir == "" {
		set, errs := zones.Load(zones.DefaultFS())
		for file, err := range errs {
			return fmt.Errorf("embedded zone %s: %w", file, err)
		}
		d.log.Info("serving the embedded example zones (use -zones DIR for your own)")
		d.embedded = set
		if err := d.responder.SetZones(set); err != nil {
			return err
		}
		d.notifier.ZonesChanged(set)
		return nil
	}
	w, err := zones.NewWatcher(zones.WatcherConfig{
		Dir: d.cfg.zonesDir, Logger: d.log, Debounce: d.cfg.reload.Debounce, Poll: d.cfg.reload.Poll,
		OnReload: func(ev zones.ReloadEvent) {
			if !ev.Removed {
				d.responder.ObserveReload(ev.Zone, ev.Err == nil)
			}
		},
	})
	if err != nil {
		return err
	}
	d.watcher = w
	set := w.Current()
	if err := d.responder.SetZones(set); err != nil {
		return err
	}
	d.notifier.ZonesChanged(set)
	return nil
}

// run serves until ctx is done, then shuts down gracefully.
func (d *daemon) run(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	if err := d.server.Listen(); err != nil {
		signal.Stop(hup)
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 16)
	goRun := func(f func(context.Context) error) {
		wg.Go(func() {
			if err := f(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- err
				cancel()
			}
		})
	}
	metricsAddr, err := d.startMetrics(ctx, goRun)
	if err != nil {
		return err
	}
	d.started.Store(true)
	apiAddr := ""
	if d.ops != nil {
		defer d.ops.store.Close()
		d.ops.run(ctx, goRun)
		if d.ops.api != nil {
			apiAddr = d.ops.api.Addr().String()
		}
	}
	ann, mon := d.announcer, d.monitor
	// The announcer outlives ctx: on SIGTERM it drains (65535:0), then
	// withdraws, and only then does DNS stop answering.
	annCtx, annCancel := context.WithCancel(context.Background())
	defer annCancel()
	if ann != nil {
		wg.Go(func() {
			if err := ann.Run(annCtx); err != nil {
				errc <- err
				cancel()
			}
		})
		goRun(mon.Run)
	}
	// DNS keeps answering until the anycast drain is over: it has its own
	// context, ended after Shutdown below.
	srvCtx, srvCancel := context.WithCancel(context.Background())
	defer srvCancel()
	wg.Go(func() {
		if err := d.server.Serve(srvCtx); err != nil && !errors.Is(err, context.Canceled) {
			errc <- err
			cancel()
		}
	})
	goRun(d.notifier.Run)
	goRun(d.gslb.checker.Run)
	goRun(d.gslb.geo.Run)
	goRun(d.gslb.watch)
	goRun(d.gslb.feeds.Run)
	if d.watcher != nil {
		goRun(d.watcher.Run)
		goRun(d.applyUpdates)
	}
	goRun(func(ctx context.Context) error { return d.handleSIGHUP(ctx, hup) })
	var addrs []string
	for _, a := range d.server.Addrs() {
		addrs = append(addrs, a.String())
	}
	d.log.Info("listening", "dns", strings.Join(addrs, ","), "metrics", metricsAddr, "api", apiAddr)
	<-ctx.Done()
	d.log.Info("shutting down")
	if ann != nil {
		drain := cmpDuration(d.cfg.anycast.Drain, 10*time.Second)
		actx, acancel := context.WithTimeout(context.Background(), drain+5*time.Second)
		if err := ann.Shutdown(actx, drain); err != nil {
			d.log.Error("anycast shutdown", "err", err)
		}
		acancel()
		annCancel()
	}
	sctx, scancel := context.WithTimeout(context.Background(), d.cfg.shutdownTimeout)
	defer scancel()
	serr := d.server.Shutdown(sctx)
	srvCancel()
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	return serr
}

// applyUpdates swaps in each new zone set from the watcher.
func (d *daemon) applyUpdates(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case set := <-d.watcher.Updates():
			if err := d.responder.SetZones(set); err != nil {
				d.log.Error("zone compile failed, previous version kept", "err", err)
			}
			d.notifier.ZonesChanged(set)
			if cfg := d.gslb.engine.Config(); len(cfg.Records) > 0 {
				for _, err := range dnsserver.CheckGSLB(set, cfg) {
					d.log.Warn("gslb record not served after zone change; static data wins", "err", err)
				}
			}
		}
	}
}

// handleSIGHUP reloads on SIGHUP. Notify is called before run starts any
// goroutine (see run), so a SIGHUP right after start never kills us.
func (d *daemon) handleSIGHUP(ctx context.Context, hup chan os.Signal) error {
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			d.gslb.reload()
			if d.watcher == nil {
				continue
			}
			d.log.Info("SIGHUP: reloading zones")
			d.watcher.Reload()
		}
	}
}

// startMetrics serves /metrics on its own listener; "" disables it.
func (d *daemon) startMetrics(ctx context.Context, goRun func(func(context.Context) error)) (string, error) {
	if d.cfg.metricsAddr == "" {
		return "", nil
	}
	ln, err := net.Listen("tcp", d.cfg.metricsAddr)
	if err != nil {
		return "", fmt.Errorf("metrics listen %s: %w", d.cfg.metricsAddr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelError)}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	goRun(func(ctx context.Context) error {
		go func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = srv.Shutdown(sctx)
		}()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("metrics server: %w", err)
		}
		return nil
	})
	return ln.Addr().String(), nil
}

func cmpDuration(v, d time.Duration) time.Duration {
	if v <= 0 {
		return d
	}
	return v
}
