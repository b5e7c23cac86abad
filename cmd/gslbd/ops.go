package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"
	"time"

	"github.com/gslbd/gslbd/anycast"
	"github.com/gslbd/gslbd/gslb"
	"github.com/gslbd/gslbd/gslb/api"
	"github.com/gslbd/gslbd/gslb/state"
	"github.com/gslbd/gslbd/zones"
)

// stateConfig is the state: section: where overrides, the audit log and
// the vantage points' probe results live.
type stateConfig struct {
	Backend   string        `yaml:"backend"`    // bolt (one node, default) or etcd (a cluster)
	Path      string        `yaml:"path"`       // bolt file; gslbd-state.db in the working directory
	Etcd      etcdConfig    `yaml:"etcd"`       // backend: etcd
	Vantage   string        `yaml:"vantage"`    // this gslbd's name among vantage points; the hostname
	Publish   time.Duration `yaml:"publish"`    // how often probe results are published; 2s
	ReportTTL time.Duration `yaml:"report_ttl"` // a silent vantage point stops counting after; 3 x publish
	// Cache keeps the last overrides seen from etcd, applied when etcd is
	// unreachable after a restart; gslbd-overrides.json in the working directory.
	Cache string `yaml:"cache"`
}

type etcdConfig struct {
	Endpoints      []string      `yaml:"endpoints"`       // ["https://10.0.0.1:2379", ...]
	Prefix         string        `yaml:"prefix"`          // "/gslbd/"
	Username       string        `yaml:"username"`        // "" = no auth
	Password       string        `yaml:"password"`        //
	PasswordFile   string        `yaml:"password_file"`   // read the password from this file instead
	DialTimeout    time.Duration `yaml:"dial_timeout"`    // 2s
	RequestTimeout time.Duration `yaml:"request_timeout"` // 2s: a write not committed by then is refused (503)
	TLS            tlsFiles      `yaml:"tls"`
}

type tlsFiles struct {
	CA   string `yaml:"ca"`   // CA bundle to verify the server; "" = system roots
	Cert string `yaml:"cert"` // client certificate (etcd) / server certificate (api)
	Key  string `yaml:"key"`
}

// apiConfig is the api: section.
type apiConfig struct {
	Listen        string        `yaml:"listen"` // "" = no API
	Tokens        []tokenConfig `yaml:"tokens"`
	AnonymousRead *bool         `yaml:"anonymous_read"` // reads without a token; default true only without tokens on loopback
	TLS           tlsFiles      `yaml:"tls"`            // cert + key: serve HTTPS (reloaded when the files change)
	MaxBody       int64         `yaml:"max_body"`       // 65536
}

type tokenConfig struct {
	Name   string `yaml:"name"`   // the author recorded for changes made with it
	SHA256 string `yaml:"sha256"` // hex SHA-256 of the token (gslbctl token new prints both)
	Scope  string `yaml:"scope"`  // read, write or admin
}

// openStore opens the configured state store.
func openStore(ctx context.Context, sc stateConfig, d *daemon) (state.Store, error) {
	switch sc.Backend {
	case "", "bolt":
		path := cmp.Or(sc.Path, "gslbd-state.db")
		if dir := filepath.Dir(path); dir != "." {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return nil, fmt.Errorf("state.path: %w", err)
			}
		}
		return state.OpenBolt(path, nil)
	case "etcd":
		// An etcd without quorum at start must not keep DNS down: open it
		// in the background (writes are refused until then).
		st, err := state.OpenRetrying(ctx, func(ctx context.Context) (state.Store, error) {
			return openEtcd(ctx, sc.Etcd, d)
		}, 5*time.Second, d.log)
		if err != nil {
			return nil, err
		}
		return state.WithLastKnown(st, cmp.Or(sc.Cache, "gslbd-overrides.json"), d.log), nil
	}
	return nil, fmt.Errorf("state.backend: %q is not bolt or etcd", sc.Backend)
}

// buildAPI checks the api: section and builds the server.
func buildAPI(ac apiConfig, b api.Backend, d *daemon) (*api.Server, error) {
	c := api.Config{MaxBody: ac.MaxBody, Logger: d.log, Registerer: d.reg}
	for i, t := range ac.Tokens {
		scope, err := api.ParseScope(t.Scope)
		if err != nil {
			return nil, fmt.Errorf("api.tokens[%d].scope: %w", i, err)
		}
		c.Tokens = append(c.Tokens, api.Token{Name: t.Name, SHA256: t.SHA256, Scope: scope})
	}
	loopback := false
	if host, _, err := net.SplitHostPort(ac.Listen); err == nil {
		if a, err := netip.ParseAddr(host); err == nil && a.IsLoopback() {
			loopback = true
		}
		if host == "localhost" {
			loopback = true
		}
	} else {
		return nil, fmt.Errorf("api.listen: %q is not address:port", ac.Listen)
	}
	switch {
	case ac.AnonymousRead != nil:
		c.AnonymousRead = *ac.AnonymousRead
	case len(c.Tokens) == 0 && loopback:
		c.AnonymousRead = true
		d.log.Warn("api: no tokens configured: reads are open on loopback, writes are refused", "listen", ac.Listen)
	case len(c.Tokens) == 0:
		return nil, fmt.Errorf("api.tokens: required when api.listen (%s) is not a loopback address", ac.Listen)
	}
	return api.New(c, b)
}

// opsRuntime owns the state store, the sync loop and the API listener.
type opsRuntime struct {
	d        *daemon
	store    state.Store
	vantage  string
	sc       stateConfig
	api      *api.Listener
	lastSync atomic.Int64 // unix nanos of the last state applied
}

func newOpsRuntime(d *daemon, sc stateConfig, ac apiConfig) (*opsRuntime, error) {
	o := &opsRuntime{d: d, sc: sc}
	if o.vantage = sc.Vantage; o.vantage == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("state.vantage: not set and no hostname: %w", err)
		}
		o.vantage = h
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := openStore(ctx, sc, d)
	if err != nil {
		return nil, err
	}
	backend := cmp.Or(sc.Backend, "bolt")
	o.store = state.Instrument(st, d.reg, backend)
	if ac.Listen == "" {
		return o, nil
	}
	b := api.Backend{Engine: d.gslb.engine, Store: o.store, Vantage: o.vantage, Ready: d.ready, Reload: d.reloadNow}
	if d.announcer != nil {
		b.Anycast = func() any { return d.announcer.Status() }
	}
	srv, err := buildAPI(ac, b, d)
	if err != nil {
		o.store.Close()
		return nil, err
	}
	if o.api, err = api.Listen(ac.Listen, ac.TLS.Cert, ac.TLS.Key, srv, d.log); err != nil {
		o.store.Close()
		return nil, err
	}
	return o, nil
}

// run runs the sync loop (and the API) until ctx is done.
func (o *opsRuntime) run(ctx context.Context, goRun func(func(context.Context) error)) {
	sc := gslb.SyncConfig{Store: o.store, Vantage: o.vantage, Publish: o.sc.Publish, ReportTTL: o.sc.ReportTTL,
		Logger: o.d.log, Changed: func() { o.lastSync.Store(time.Now().UnixNano()) }}
	if a := o.d.announcer; a != nil {
		sc.Anycast = func() map[string]string {
			out := map[string]string{}
			for _, v := range a.Status().VIPs {
				out[v.Prefix.String()] = v.State.String()
			}
			return out
		}
	}
	goRun(func(ctx context.Context) error { return o.d.gslb.engine.Sync(ctx, sc) })
	if o.api != nil {
		goRun(o.api.Serve)
	}
}

// guard is the anycast last-site guard: does another gslbd (another site)
// announce prefix now? It knows only with a shared store (etcd) whose
// state reached this gslbd recently.
func (o *opsRuntime) guard(prefix netip.Prefix) (others, known bool) {
	if o.sc.Backend != "etcd" {
		return false, false
	}
	fresh := 3 * cmp.Or(o.sc.Publish, 2*time.Second)
	if time.Since(time.Unix(0, o.lastSync.Load())) > fresh {
		return false, false
	}
	self, reports := o.d.gslb.engine.Vantages()
	for _, r := range reports {
		if r.Vantage == self {
			continue
		}
		switch r.Anycast[prefix.String()] {
		case anycast.Announced.String(), anycast.Depreferred.String():
			return true, true
		}
	}
	return false, true
}

// ready is nil once zones and the GSLB configuration are loaded.
func (d *daemon) ready() error {
	if d.zoneSet() == nil {
		return fmt.Errorf("zones not loaded")
	}
	if !d.started.Load() {
		return fmt.Errorf("starting: DNS not listening yet")
	}
	return nil
}

// reloadNow re-reads zones and the GSLB file (the API's POST /v1/reload).
// Zone errors are found by parsing the directory here; the watcher then
// applies the same files.
func (d *daemon) reloadNow(context.Context) (api.ReloadResult, error) {
	var res api.ReloadResult
	var errs []error
	if d.watcher != nil {
		set, zerrs := zones.Load(os.DirFS(d.cfg.zonesDir))
		files := make([]string, 0, len(zerrs))
		for f := range zerrs {
			files = append(files, f)
		}
		sort.Strings(files)
		for _, f := range files {
			errs = append(errs, fmt.Errorf("%s: %w", f, zerrs[f]))
		}
		if set != nil {
			res.Zones = set.Names()
		}
		d.watcher.Reload()
	} else {
		res.Zones = d.embedded.Names()
	}
	if err := d.gslb.loadConfig(d.zoneSet()); err != nil {
		errs = append(errs, err)
	}
	res.GSLB = cmp.Or(d.gslb.path, "embedded")
	for _, e := range errs {
		res.Errors = append(res.Errors, e.Error())
	}
	if len(errs) > 0 {
		return res, fmt.Errorf("%d problem(s), previous versions kept: %w", len(errs), errors.Join(errs...))
	}
	return res, nil
}

// emptyState reports whether the state: section says nothing.
func emptyState(sc stateConfig) bool {
	return sc.Backend == "" && sc.Path == "" && len(sc.Etcd.Endpoints) == 0 && sc.Vantage == "" && sc.Publish == 0 && sc.ReportTTL == 0 && sc.Cache == ""
}

// checkOpsConfig validates the state: and api: sections before anything
// loads, so a typo fails the start at once with the field's name.
func checkOpsConfig(sc stateConfig, ac apiConfig) error {
	switch sc.Backend {
	case "", "bolt", "etcd":
	default:
		return fmt.Errorf("state.backend: %q is not bolt or etcd", sc.Backend)
	}
	if sc.Backend == "etcd" && len(sc.Etcd.Endpoints) == 0 {
		return errors.New("state.etcd.endpoints: required with backend etcd")
	}
	if sc.Publish < 0 || sc.ReportTTL < 0 {
		return errors.New("state.publish, state.report_ttl: must not be negative")
	}
	if sc.ReportTTL > 0 && sc.ReportTTL <= cmp.Or(sc.Publish, 2*time.Second) {
		return fmt.Errorf("state.report_ttl: %s must be longer than state.publish, or every report lapses before the next one", sc.ReportTTL)
	}
	if ac.Listen == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(ac.Listen)
	if err != nil {
		return fmt.Errorf("api.listen: %q is not address:port", ac.Listen)
	}
	a, err := netip.ParseAddr(host)
	loopback := host == "localhost" || (err == nil && a.IsLoopback())
	if len(ac.Tokens) == 0 && !loopback && (ac.AnonymousRead == nil || !*ac.AnonymousRead) {
		return fmt.Errorf("api.tokens: required when api.listen (%s) is not a loopback address", ac.Listen)
	}
	for i, t := range ac.Tokens {
		if _, err := api.ParseScope(t.Scope); err != nil {
			return fmt.Errorf("api.tokens[%d].scope: %w", i, err)
		}
		if b, err := hex.DecodeString(t.SHA256); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("api.tokens[%d].sha256: want 64 hex digits (the SHA-256 of the token), got %q", i, t.SHA256)
		}
	}
	if (ac.TLS.Cert == "") != (ac.TLS.Key == "") {
		return errors.New("api.tls: give both cert and key, or neither")
	}
	return nil
}
