package gslb

import (
	"net/netip"
	"time"

	"github.com/gslbd/gslbd/gslb/state"
)

// EndpointStatus is an endpoint as operators see it: its health verdict
// (with every vantage point's view), the override that applies to it and
// what that leaves in answers.
type EndpointStatus struct {
	Name      string     `json:"name"`
	Address   netip.Addr `json:"address"`
	Site      string     `json:"site"`
	Pool      string     `json:"pool"`
	Weight    int        `json:"weight"`
	Monitored bool       `json:"monitored"`
	// Healthy is the probes' verdict (the quorum of vantage points when
	// several publish), before overrides.
	Healthy bool   `json:"healthy"`
	Reason  string `json:"reason"`
	Views   []View `json:"views,omitempty"`
	// Override is the one applying to the endpoint (endpoint, then site,
	// then pool), nil when none.
	Override *state.Override `json:"override,omitempty"`
	// Factor is the share of answers the override leaves (drain ramps it
	// from 1 to 0); 1 without an override, 0 when the endpoint is out.
	Factor float64 `json:"factor"`
	// Up is whether the endpoint can appear in answers now.
	Up bool `json:"up"`
	// EffectiveWeight is Weight × Factor when Up, else 0.
	EffectiveWeight float64 `json:"effective_weight"`
}

// Status returns every endpoint's status at the engine's clock.
func (e *Engine) Status() []EndpointStatus {
	s := e.snap.Load()
	now := e.clock.Now()
	out := make([]EndpointStatus, len(s.cfg.Endpoints))
	for i, ep := range s.cfg.Endpoints {
		out[i] = s.endpointStatus(ep, now)
	}
	return out
}

// EndpointStatus returns one endpoint's status (Name empty when there is
// no such endpoint).
func (e *Engine) EndpointStatus(name string) EndpointStatus {
	s := e.snap.Load()
	for _, ep := range s.cfg.Endpoints {
		if ep.Name == name {
			return s.endpointStatus(ep, e.clock.Now())
		}
	}
	return EndpointStatus{}
}

func (s *snapshot) endpointStatus(ep *Endpoint, now time.Time) EndpointStatus {
	h := s.health[ep.Index]
	st := EndpointStatus{Name: ep.Name, Address: ep.Addr, Site: ep.Site.Name, Pool: ep.Pool, Weight: ep.Weight,
		Monitored: ep.Target != nil, Healthy: h.up, Reason: h.reason, Views: h.views, Factor: 1, Up: h.up}
	if s.epOverride != nil {
		if o := s.epOverride[ep.Index]; o != nil {
			if f, active := o.Factor(now); active {
				oc := *o
				st.Override = &oc
				st.Factor = f
				switch o.Kind {
				case state.KindUp:
					st.Up = true
				case state.KindDrain:
					st.Up = h.up && f > 0
				default:
					st.Up = false
				}
			}
		}
	}
	if !st.Up {
		st.Factor = 0
	}
	st.EffectiveWeight = float64(ep.Weight) * st.Factor
	return st
}

// Drain is how far an override's target has emptied.
type Drain struct {
	// Absent is when the last of the target's endpoints left answers (the
	// end of the drain ramp, or the override's creation for down and
	// maintenance); zero while some are still answered.
	Absent time.Time `json:"absent,omitzero"`
	// MaxTTL is the longest TTL any record answering the target's
	// endpoints hands out: resolvers may keep answers that long.
	MaxTTL time.Duration `json:"max_ttl_ns"`
	// Drained is true once the target has been absent from answers for
	// longer than MaxTTL: no resolver should still hold it.
	Drained bool `json:"drained"`
	// Remaining lists the target's endpoints still in answers because a
	// more specific override (an endpoint's "up") beats this one.
	Remaining []string `json:"remaining,omitempty"`
}

// DrainState reports whether o's target has left answers and resolver
// caches. It is meaningful for down, maintenance and drain overrides.
func (e *Engine) DrainState(o state.Override) Drain {
	s := e.snap.Load()
	now := e.clock.Now()
	var d Drain
	var absent time.Time
	matched := 0
	for _, ep := range s.cfg.Endpoints {
		if !targets(o.Target, ep) {
			continue
		}
		matched++
		var eff *state.Override
		if s.epOverride != nil {
			eff = s.epOverride[ep.Index]
		}
		if eff == nil || eff.Kind == state.KindUp || !eff.Active(now) {
			d.Remaining = append(d.Remaining, ep.Name)
			continue
		}
		gone := eff.Created
		if eff.Kind == state.KindDrain {
			gone = eff.Created.Add(eff.Ramp)
		}
		if gone.After(now) {
			d.Remaining = append(d.Remaining, ep.Name)
			continue
		}
		if gone.After(absent) {
			absent = gone
		}
		d.MaxTTL = max(d.MaxTTL, s.cfg.maxTTL(ep))
	}
	if matched == 0 || len(d.Remaining) > 0 {
		return d
	}
	d.Absent = absent
	d.Drained = now.Sub(absent) > d.MaxTTL
	return d
}

// targets reports whether t names ep (itself, its site or its pool).
func targets(t state.Target, ep *Endpoint) bool {
	switch t.Type {
	case state.TargetEndpoint:
		return ep.Name == t.Name
	case state.TargetSite:
		return ep.Site.Name == t.Name
	case state.TargetPool:
		return ep.Pool == t.Name
	}
	return false
}

// maxTTL is the longest TTL a record may give an answer holding ep.
func (c *Config) maxTTL(ep *Endpoint) time.Duration {
	var m uint32
	for _, r := range c.Records {
		if (r.Pool != nil && r.Pool.Name == ep.Pool) || (r.Fallback != nil && r.Fallback.Name == ep.Pool) {
			m = max(m, min(max(r.TTL, r.TTLMin), r.TTLMax))
		}
	}
	return time.Duration(m) * time.Second
}

// HasTarget reports whether t names something in the configuration.
func (e *Engine) HasTarget(t state.Target) bool {
	c := e.snap.Load().cfg
	switch t.Type {
	case state.TargetSite:
		return c.Sites[t.Name] != nil
	case state.TargetPool:
		return c.Pools[t.Name] != nil
	case state.TargetEndpoint:
		for _, ep := range c.Endpoints {
			if ep.Name == t.Name {
				return true
			}
		}
	}
	return false
}

// LocalViews returns this gslbd's own probe results for every monitored
// endpoint, by endpoint name: what it publishes as its vantage report.
func (e *Engine) LocalViews() map[string]state.EndpointView {
	s := e.snap.Load()
	out := make(map[string]state.EndpointView, len(s.cfg.Endpoints))
	for _, ep := range s.cfg.Endpoints {
		if ep.Target == nil {
			continue
		}
		if st, ok := s.statuses[ep.Target.Key()]; ok {
			out[ep.Name] = state.EndpointView{Up: st.Up, Reason: st.Reason, Since: st.Since}
		}
	}
	return out
}
