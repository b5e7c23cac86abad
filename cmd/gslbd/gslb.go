package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gslbd/gslbd/dnsserver"
	"github.com/gslbd/gslbd/geo"
	"github.com/gslbd/gslbd/gslb"
	"github.com/gslbd/gslbd/gslb/health"
	"github.com/gslbd/gslbd/zones"
)

// gslbConfig is the gslb: section of the YAML config.
type gslbConfig struct {
	Config        string        `yaml:"config"`        // GSLB YAML; default <zones>/gslb.yaml when it exists
	GeoIP         string        `yaml:"geoip"`         // mmdb (GeoIP2/GeoLite2/DB-IP); "" = embedded DB-IP Country Lite
	MaxConcurrent int           `yaml:"max_probes"`    // probes in flight at most; 64
	InitialDown   bool          `yaml:"initial_down"`  // endpoints start down until they pass rise probes
	PollInterval  time.Duration `yaml:"poll"`          // how often the GSLB file is checked for changes; 2s
	FeedInterval  time.Duration `yaml:"feed_interval"` // how often sites' lbd feeds are read; 10s
}

// gslbRuntime owns the GSLB engine, its health checker, the GeoIP source
// and the GSLB config file.
type gslbRuntime struct {
	d       *daemon
	path    string // "" = no GSLB configuration
	engine  *gslb.Engine
	checker *health.Checker
	geo     *geo.Source
	feeds   *gslb.FeedPoller
	poll    time.Duration
	mu      sync.Mutex // serialises loads; guards stamp
	stamp   fileStamp
}

type fileStamp struct {
	size  int64
	mtime time.Time
	ok    bool
}

func stampOf(path string) fileStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{size: fi.Size(), mtime: fi.ModTime(), ok: true}
}

// gslbPath is the GSLB file to use: the configured one, else gslb.yaml in
// the zones directory when it exists.
func gslbPath(gc gslbConfig, zonesDir string) string {
	if gc.Config != "" {
		return gc.Config
	}
	if zonesDir == "" {
		return ""
	}
	p := filepath.Join(zonesDir, "gslb.yaml")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

func newGSLBRuntime(d *daemon, gc gslbConfig) (*gslbRuntime, error) {
	g := &gslbRuntime{d: d, path: gslbPath(gc, d.cfg.zonesDir), poll: gc.PollInterval}
	if g.poll == 0 {
		g.poll = 2 * time.Second
	}
	g.engine = gslb.NewEngine(gslb.EngineConfig{Logger: d.log})
	g.feeds = &gslb.FeedPoller{Engine: g.engine, Interval: gc.FeedInterval, Logger: d.log}
	var err error
	if g.checker, err = health.NewChecker(health.Config{
		Logger: d.log, MaxConcurrent: gc.MaxConcurrent, InitialDown: gc.InitialDown,
		OnProbe: func(health.TargetKey, health.Status) { g.engine.SetHealth(g.checker.Statuses()) },
	}); err != nil {
		return nil, err
	}
	if g.geo, err = geo.NewSource(gc.GeoIP, d.log); err != nil {
		return nil, err
	}
	g.geo.OnReload = func(err error) {
		if err == nil {
			g.engine.SetGeo(g.geo.DB())
		}
	}
	g.engine.SetGeo(g.geo.DB())
	d.reg.MustRegister(g.checker.Collector(), g.engine)
	return g, nil
}

// loadConfig reads, compiles and checks the GSLB file against the zones.
// On error nothing changes: the previous configuration keeps serving.
func (g *gslbRuntime) loadConfig(set *zones.Set) error {
	if g.path == "" && g.d.cfg.zonesDir != "" {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	var cfg *gslb.Config
	var err error
	if g.path == "" {
		cfg, err = embeddedGSLB(set)
	} else {
		g.stamp = stampOf(g.path)
		cfg, err = readGSLB(g.path, set)
	}
	if err != nil {
		return err
	}
	g.engine.SetConfig(cfg)
	g.checker.SetTargets(cfg.Targets)
	g.engine.SetHealth(g.checker.Statuses())
	g.d.log.Info("gslb config loaded", "path", cmp.Or(g.path, "embedded"), "records", len(cfg.Records), "endpoints", len(cfg.Endpoints), "probes", len(cfg.Targets))
	return g.d.responder.GSLBChanged()
}

// embeddedGSLB is the embedded example's gslb.yaml (zones/default).
func embeddedGSLB(set *zones.Set) (*gslb.Config, error) {
	data, err := fs.ReadFile(zones.DefaultFS(), "gslb.yaml")
	if err != nil {
		return nil, fmt.Errorf("embedded gslb.yaml: %w", err)
	}
	cfg, err := gslb.Load("embedded gslb.yaml", data)
	if err != nil {
		return nil, err
	}
	if errs := dnsserver.CheckGSLB(set, cfg); len(errs) > 0 {
		return nil, fmt.Errorf("embedded gslb.yaml: %w", errors.Join(errs...))
	}
	return cfg, nil
}

// readGSLB loads the GSLB file and checks it against the zones.
func readGSLB(path string, set *zones.Set) (*gslb.Config, error) {
	cfg, err := gslb.LoadFile(path)
	if err != nil {
		return nil, err
	}
	if errs := dnsserver.CheckGSLB(set, cfg); len(errs) > 0 {
		return nil, fmt.Errorf("%s: %w", path, errors.Join(errs...))
	}
	return cfg, nil
}

// watch reloads the GSLB file when it changes (polled: it is small).
func (g *gslbRuntime) watch(ctx context.Context) error {
	if g.path == "" {
		return nil
	}
	t := time.NewTicker(g.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			g.mu.Lock()
			changed := stampOf(g.path) != g.stamp
			g.mu.Unlock()
			if changed {
				g.reload()
			}
		}
	}
}

func (g *gslbRuntime) reload() {
	if err := g.loadConfig(g.d.zoneSet()); err != nil {
		g.d.log.Error("gslb config rejected, previous version kept", "err", err)
	}
}
