package gslb

import (
	"math/rand/v2"

	"github.com/gslbd/gslbd/gslb/state"
)

// SetOverrides swaps in the operators' overrides (from the state store).
// For each endpoint the most specific one applies: endpoint, then site,
// then pool. up forces it healthy, down and maintenance force it out,
// drain keeps it in a decision with a probability that ramps from 1 to 0
// (so its share of answers falls smoothly to nothing, whatever the chain).
func (e *Engine) SetOverrides(ovs []state.Override) {
	e.rebuild(func(s *snapshot) { s.overrides = ovs })
}

// endpointOverrides resolves the overrides of every endpoint of cfg.
func endpointOverrides(cfg *Config, ovs []state.Override) []*state.Override {
	if len(ovs) == 0 {
		return nil
	}
	byTarget := map[state.Target]*state.Override{}
	for i := range ovs {
		byTarget[ovs[i].Target] = &ovs[i]
	}
	out := make([]*state.Override, len(cfg.Endpoints))
	for i, ep := range cfg.Endpoints {
		for _, t := range []state.Target{
			{Type: state.TargetEndpoint, Name: ep.Name},
			{Type: state.TargetSite, Name: ep.Site.Name},
			{Type: state.TargetPool, Name: ep.Pool},
		} {
			if o := byTarget[t]; o != nil {
				out[i] = o
				break
			}
		}
	}
	return out
}

// applyOverride adjusts an endpoint's health for one decision. A drain is
// drawn once per override and decision, so a drained site's endpoints stay
// or go together and the site's share is the ramp's factor.
func (d *decision) applyOverride(o *state.Override, up bool) bool {
	if o == nil {
		return up
	}
	f, active := o.Factor(d.now)
	switch {
	case !active:
		return up
	case o.Kind == state.KindUp:
		return true
	case o.Kind == state.KindDrain:
		return up && d.drainKeeps(o, f)
	}
	return false // down, maintenance
}

// drainKeeps draws (once per override per decision) whether a draining
// target stays in this decision: with probability f.
func (d *decision) drainKeeps(o *state.Override, f float64) bool {
	switch {
	case f <= 0:
		return false
	case f >= 1:
		return true
	}
	for _, dr := range d.draws {
		if dr.o == o {
			return dr.keep
		}
	}
	keep := rand.Float64() < f
	d.draws = append(d.draws, drainDraw{o: o, keep: keep})
	return keep
}

type drainDraw struct {
	o    *state.Override
	keep bool
}
