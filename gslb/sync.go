package gslb

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/gslbd/gslbd/gslb/state"
)

// SyncConfig configures Sync.
type SyncConfig struct {
	Store   state.Store
	Vantage string // this gslbd's vantage-point name
	// Publish is how often this gslbd publishes its probe results
	// (default 2 s); a report lapses after ReportTTL (default 3 x Publish).
	Publish   time.Duration
	ReportTTL time.Duration
	// Expire is how often overrides past their expiry are removed and
	// audited (default 1 s). Answers ignore an expired override at once
	// either way.
	Expire time.Duration
	Logger *slog.Logger
	// Changed is called after new state reached the engine (may be nil).
	Changed func()
	// Anycast, when set, returns what this gslbd's announcer does with
	// each VIP prefix; it is published with the probe results.
	Anycast func() map[string]string
}

// Sync keeps the engine in step with the shared state until ctx is done:
// it applies overrides and other vantage points' reports on every change
// the store signals (so a change reaches answers in well under a second),
// publishes this gslbd's own probe results, and expires overrides. When
// the store fails, the engine keeps its last state (DNS keeps answering)
// and Sync retries.
func (e *Engine) Sync(ctx context.Context, cfg SyncConfig) error {
	if cfg.Publish <= 0 {
		cfg.Publish = 2 * time.Second
	}
	if cfg.ReportTTL <= 0 {
		cfg.ReportTTL = 3 * cfg.Publish
	}
	if cfg.Expire <= 0 {
		cfg.Expire = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	st := cfg.Store
	changes := st.Watch(ctx)
	publish := time.NewTicker(cfg.Publish)
	defer publish.Stop()
	expire := time.NewTicker(cfg.Expire)
	defer expire.Stop()
	failing := false
	report := func(op string, err error) {
		switch {
		case err != nil && !failing:
			failing = true
			cfg.Logger.Error("state store failing: answering from the last known state", "op", op, "err", err)
		case err == nil && failing:
			failing = false
			cfg.Logger.Info("state store working again", "op", op)
		}
	}
	apply := func() {
		// Overrides and vantage reports are applied independently: a store
		// that can give one (the last known overrides during an outage)
		// but not the other still gets that one to the answers.
		ovs, oerr := st.Overrides(ctx, e.clock.Now())
		reps, verr := st.Vantages(ctx)
		if oerr == nil || verr == nil {
			e.rebuild(func(s *snapshot) {
				if oerr == nil {
					s.overrides = ovs
				}
				if verr == nil {
					s.self, s.vantages = cfg.Vantage, reps
				}
			})
			if cfg.Changed != nil && oerr == nil && verr == nil {
				cfg.Changed()
			}
		}
		if ctx.Err() == nil {
			report("read", errors.Join(oerr, verr))
		}
	}
	publishNow := func() {
		r := state.VantageReport{Vantage: cfg.Vantage, Published: e.clock.Now(), Endpoints: e.LocalViews()}
		if cfg.Anycast != nil {
			r.Anycast = cfg.Anycast()
		}
		err := st.PublishHealth(ctx, r, cfg.ReportTTL)
		if ctx.Err() == nil {
			report("publish", err)
		}
	}
	publishNow()
	apply()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-changes:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				// The store was closed under us: nothing more will come.
				cfg.Logger.Warn("state store closed; overrides are frozen at their last state")
				changes = nil
				continue
			}
			apply()
		case <-publish.C:
			publishNow()
		case <-expire.C:
			if n, err := st.ExpireDue(ctx); err != nil {
				if ctx.Err() == nil {
					report("expire", err)
				}
			} else if n > 0 {
				cfg.Logger.Info("overrides expired", "count", n)
			}
		}
	}
}
