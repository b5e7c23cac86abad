package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gslbd/gslbd/gslb"
	"github.com/gslbd/gslbd/gslb/state"
)

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request, _ principal) error {
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request, _ principal) error {
	if s.b.Ready != nil {
		if err := s.b.Ready(); err != nil {
			return &Problem{Status: http.StatusServiceUnavailable, Type: "not-ready", Title: "not ready", Detail: err.Error()}
		}
	}
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) openapi(w http.ResponseWriter, _ *http.Request, _ principal) error {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI)
	return nil
}

// SiteView is a site with its endpoints' health.
type SiteView struct {
	Name      string   `json:"name"`
	Country   string   `json:"country,omitempty"`
	Continent string   `json:"continent,omitempty"`
	Lat       *float64 `json:"lat,omitempty"`
	Lon       *float64 `json:"lon,omitempty"`
	Capacity  float64  `json:"capacity,omitempty"`
	Endpoints int      `json:"endpoints"`
	Up        int      `json:"up"` // endpoints that can be answered now
	// Override is the override on the site itself, if any.
	Override *OverrideView `json:"override,omitempty"`
}

// PoolView is a pool with its endpoints' health.
type PoolView struct {
	Name      string        `json:"name"`
	Endpoints []string      `json:"endpoints"`
	Up        int           `json:"up"`
	Override  *OverrideView `json:"override,omitempty"`
}

// StatusView is the whole picture: what `gslbctl status` prints.
type StatusView struct {
	Vantage   string                `json:"vantage"`
	Quorum    string                `json:"quorum"`
	Sites     []SiteView            `json:"sites"`
	Pools     []PoolView            `json:"pools"`
	Endpoints []gslb.EndpointStatus `json:"endpoints"`
	Overrides []OverrideView        `json:"overrides"`
	Vantages  []string              `json:"vantages"` // vantage points publishing, this one included
	// StateError says why the state store could not be read (the
	// overrides shown are then the ones the answers follow).
	StateError string `json:"state_error,omitempty"`
}

func (s *Server) snapshot(ctx context.Context) (StatusView, error) {
	cfg := s.b.Engine.Config()
	eps := s.b.Engine.Status()
	ovs, err := s.overrideViews(ctx)
	stateErr := ""
	if errors.Is(err, state.ErrUnavailable) {
		// The status must stay readable in an outage of the store: show
		// the overrides the answers follow (the engine's last state).
		stateErr = err.Error()
		ovs = nil
		for _, o := range s.b.Engine.Overrides() {
			if o.Active(s.cfg.Now()) {
				ovs = append(ovs, s.overrideView(o))
			}
		}
	} else if err != nil {
		return StatusView{}, err
	}
	byTarget := map[state.Target]*OverrideView{}
	for i := range ovs {
		byTarget[ovs[i].Target] = &ovs[i]
	}
	v := StatusView{Vantage: s.b.Vantage, Quorum: cfg.Quorum.String(), Endpoints: eps, Overrides: ovs, StateError: stateErr}
	if v.Overrides == nil {
		v.Overrides = []OverrideView{}
	}
	for _, site := range cfg.SiteList {
		sv := SiteView{Name: site.Name, Country: site.Country, Continent: site.Continent, Capacity: site.Capacity,
			Override: byTarget[state.Target{Type: state.TargetSite, Name: site.Name}]}
		if site.HasCoords {
			sv.Lat, sv.Lon = &site.Lat, &site.Lon
		}
		for _, ep := range eps {
			if ep.Site == site.Name {
				sv.Endpoints++
				if ep.Up {
					sv.Up++
				}
			}
		}
		v.Sites = append(v.Sites, sv)
	}
	for _, name := range sortedKeys(cfg.Pools) {
		pv := PoolView{Name: name, Endpoints: []string{}, Override: byTarget[state.Target{Type: state.TargetPool, Name: name}]}
		for _, ep := range eps {
			if ep.Pool == name {
				pv.Endpoints = append(pv.Endpoints, ep.Name)
				if ep.Up {
					pv.Up++
				}
			}
		}
		v.Pools = append(v.Pools, pv)
	}
	_, reports := s.b.Engine.Vantages() // what the verdicts use
	v.Vantages = []string{s.b.Vantage}
	for _, r := range reports {
		if r.Vantage != s.b.Vantage {
			v.Vantages = append(v.Vantages, r.Vantage)
		}
	}
	return v, nil
}

func (s *Server) status(w http.ResponseWriter, r *http.Request, _ principal) error {
	v, err := s.snapshot(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, v)
}

func (s *Server) sites(w http.ResponseWriter, r *http.Request, _ principal) error {
	v, err := s.snapshot(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, v.Sites)
}

func (s *Server) site(w http.ResponseWriter, r *http.Request, _ principal) error {
	v, err := s.snapshot(r.Context())
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	for _, site := range v.Sites {
		if site.Name == name {
			return writeJSON(w, http.StatusOK, map[string]any{"site": site, "endpoints": filterEndpoints(v.Endpoints, func(e gslb.EndpointStatus) bool { return e.Site == name })})
		}
	}
	return notFound("site", name)
}

func (s *Server) pools(w http.ResponseWriter, r *http.Request, _ principal) error {
	v, err := s.snapshot(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, v.Pools)
}

func (s *Server) pool(w http.ResponseWriter, r *http.Request, _ principal) error {
	v, err := s.snapshot(r.Context())
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	for _, p := range v.Pools {
		if p.Name == name {
			return writeJSON(w, http.StatusOK, map[string]any{"pool": p, "endpoints": filterEndpoints(v.Endpoints, func(e gslb.EndpointStatus) bool { return e.Pool == name })})
		}
	}
	return notFound("pool", name)
}

func (s *Server) endpoints(w http.ResponseWriter, _ *http.Request, _ principal) error {
	return writeJSON(w, http.StatusOK, s.b.Engine.Status())
}

func (s *Server) endpoint(w http.ResponseWriter, r *http.Request, _ principal) error {
	st := s.b.Engine.EndpointStatus(r.PathValue("name"))
	if st.Name == "" {
		return notFound("endpoint", r.PathValue("name"))
	}
	return writeJSON(w, http.StatusOK, st)
}

func filterEndpoints(eps []gslb.EndpointStatus, keep func(gslb.EndpointStatus) bool) []gslb.EndpointStatus {
	out := []gslb.EndpointStatus{}
	for _, e := range eps {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

func notFound(kind, name string) error {
	return &Problem{Status: http.StatusNotFound, Type: "not-found", Title: kind + " not found",
		Detail: fmt.Sprintf("no %s named %q in the configuration being served", kind, name)}
}

// RecordView is a GSLB record and its filter chain.
type RecordView struct {
	Name     string   `json:"name"`
	Pool     string   `json:"pool"`
	TTL      uint32   `json:"ttl"`
	TTLMin   uint32   `json:"ttl_min"`
	TTLMax   uint32   `json:"ttl_max"`
	Chain    []string `json:"chain"`
	AllDown  string   `json:"all_down"`
	Fallback string   `json:"fallback,omitempty"`
}

func recordView(r *gslb.Record) RecordView {
	v := RecordView{Name: r.Name, TTL: r.TTL, TTLMin: r.TTLMin, TTLMax: r.TTLMax, AllDown: r.AllDown.String(), Chain: []string{}}
	if r.Pool != nil {
		v.Pool = r.Pool.Name
	}
	if r.Fallback != nil {
		v.Fallback = r.Fallback.Name
	}
	for _, f := range r.Chain {
		v.Chain = append(v.Chain, f.Name())
	}
	return v
}

func (s *Server) records(w http.ResponseWriter, _ *http.Request, _ principal) error {
	cfg := s.b.Engine.Config()
	out := []RecordView{}
	for _, name := range sortedKeys(cfg.Records) {
		out = append(out, recordView(cfg.Records[name]))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) record(w http.ResponseWriter, r *http.Request, _ principal) error {
	name := canonical(r.PathValue("name"))
	rec := s.b.Engine.Config().Records[name]
	if rec == nil {
		return notFound("GSLB record", name)
	}
	return writeJSON(w, http.StatusOK, recordView(rec))
}

func canonical(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) + "." }

// ExplainView is a decision with its reasons.
type ExplainView struct {
	Name      string                `json:"name"`
	Type      string                `json:"type"`
	Client    string                `json:"client"`
	ECS       string                `json:"ecs,omitempty"`
	Outcome   string                `json:"outcome"`
	Addresses []netip.Addr          `json:"addresses"`
	TTL       uint32                `json:"ttl"`
	Scope     uint8                 `json:"scope"`
	UsedECS   bool                  `json:"used_ecs"`
	Trace     []StepView            `json:"trace"`
	Endpoints []gslb.EndpointStatus `json:"endpoints"` // the record's pools' endpoints, with every vantage point's view
}

// StepView is one filter's effect.
type StepView struct {
	Filter string   `json:"filter"`
	In     []string `json:"in"`
	Out    []string `json:"out"`
	Note   string   `json:"note,omitempty"`
}

// ParseExplainQuery builds a query from explain's parameters; its errors
// name the parameter.
func ParseExplainQuery(name, qtype, client, ecs string) (gslb.Query, error) {
	var q gslb.Query
	if strings.TrimSpace(name) == "" {
		return q, badField("name", "required: the GSLB name to explain")
	}
	q.Name = canonical(name)
	switch strings.ToUpper(cmpOr(qtype, "A")) {
	case "A":
	case "AAAA":
		q.IPv6 = true
	default:
		return q, badField("type", "want A or AAAA, got %q", qtype)
	}
	if client == "" {
		return q, badField("client", "required: the resolver's address")
	}
	a, err := netip.ParseAddr(client)
	if err != nil {
		return q, badField("client", "not an IP address: %q", client)
	}
	q.Resolver = a.Unmap()
	if ecs != "" {
		p, err := netip.ParsePrefix(ecs)
		if err != nil {
			return q, badField("ecs", "not a prefix like 81.2.69.0/24: %q", ecs)
		}
		q.ECS = p.Masked()
	}
	return q, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (s *Server) explain(w http.ResponseWriter, r *http.Request, _ principal) error {
	qv := r.URL.Query()
	q, err := ParseExplainQuery(qv.Get("name"), qv.Get("type"), qv.Get("client"), qv.Get("ecs"))
	if err != nil {
		return err
	}
	rec := s.b.Engine.Config().Records[q.Name]
	if rec == nil {
		return &Problem{Status: http.StatusNotFound, Type: "not-found", Title: "GSLB record not found", Field: "name",
			Detail: fmt.Sprintf("%s is not a GSLB record in the configuration being served", q.Name)}
	}
	return writeJSON(w, http.StatusOK, Explain(s.b.Engine, q))
}

// Explain decides q on e and says why: the view GET /v1/explain returns
// (and gslbctl explain --zones prints as JSON).
func Explain(e *gslb.Engine, q gslb.Query) ExplainView {
	a := e.Explain(q)
	v := ExplainView{Name: q.Name, Type: map[bool]string{false: "A", true: "AAAA"}[q.IPv6], Client: q.Resolver.String(),
		Outcome: a.Outcome.String(), Addresses: a.Addrs, TTL: a.TTL, Scope: a.Scope, UsedECS: a.UsedECS, Trace: []StepView{}}
	if v.Addresses == nil {
		v.Addresses = []netip.Addr{}
	}
	if q.ECS.IsValid() {
		v.ECS = q.ECS.String()
	}
	for _, st := range a.Trace {
		v.Trace = append(v.Trace, StepView{Filter: st.Filter, In: st.In, Out: st.Out, Note: st.Note})
	}
	rec := e.Config().Records[q.Name]
	v.Endpoints = filterEndpoints(e.Status(), func(ep gslb.EndpointStatus) bool {
		return rec != nil && ((rec.Pool != nil && ep.Pool == rec.Pool.Name) || (rec.Fallback != nil && ep.Pool == rec.Fallback.Name))
	})
	return v
}

func (s *Server) vantages(w http.ResponseWriter, r *http.Request, _ principal) error {
	reports, err := s.b.Store.Vantages(r.Context())
	if err != nil {
		return err
	}
	if reports == nil {
		reports = []state.VantageReport{}
	}
	return writeJSON(w, http.StatusOK, map[string]any{"self": s.b.Vantage, "reports": reports})
}

// OverrideView is an override as the API shows it.
type OverrideView struct {
	ID      string       `json:"id"`
	Target  state.Target `json:"target"`
	Kind    state.Kind   `json:"kind"`
	Reason  string       `json:"reason"`
	Author  string       `json:"author"`
	Created time.Time    `json:"created"`
	Expires time.Time    `json:"expires,omitzero"`
	Ramp    string       `json:"ramp,omitempty"` // drain: Go duration
	// Factor is the share of answers the target keeps now (drain ramps 1 -> 0).
	Factor float64 `json:"factor"`
	// Drain says whether the target has left answers and caches (down,
	// maintenance and drain only).
	Drain *gslb.Drain `json:"drain,omitempty"`
}

func (s *Server) overrideView(o state.Override) OverrideView {
	f, _ := o.Factor(s.cfg.Now())
	v := OverrideView{ID: o.ID, Target: o.Target, Kind: o.Kind, Reason: o.Reason, Author: o.Author,
		Created: o.Created, Expires: o.Expires, Factor: f}
	if o.Ramp > 0 {
		v.Ramp = o.Ramp.String()
	}
	if o.Kind != state.KindUp {
		d := s.b.Engine.DrainState(o)
		v.Drain = &d
	}
	return v
}

func (s *Server) overrideViews(ctx context.Context) ([]OverrideView, error) {
	ovs, err := s.b.Store.Overrides(ctx, s.cfg.Now())
	if err != nil {
		return nil, err
	}
	out := make([]OverrideView, 0, len(ovs))
	for _, o := range ovs {
		out = append(out, s.overrideView(o))
	}
	return out, nil
}

func (s *Server) listOverrides(w http.ResponseWriter, r *http.Request, _ principal) error {
	out, err := s.overrideViews(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) getOverride(w http.ResponseWriter, r *http.Request, _ principal) error {
	out, err := s.overrideViews(r.Context())
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	for _, o := range out {
		if o.ID == id {
			return writeJSON(w, http.StatusOK, o)
		}
	}
	return &Problem{Status: http.StatusNotFound, Type: "not-found", Title: "override not found",
		Detail: fmt.Sprintf("no active override has id %q", id)}
}

// OverrideRequest is the body of POST /v1/overrides.
type OverrideRequest struct {
	Target  state.Target `json:"target"`
	Kind    state.Kind   `json:"kind"`
	Reason  string       `json:"reason"`
	Ramp    string       `json:"ramp,omitempty"`    // drain: Go duration ("5m"); 0 or absent = at once
	Expires string       `json:"expires,omitempty"` // RFC 3339 time
	TTL     string       `json:"ttl,omitempty"`     // Go duration from now; instead of expires
}

func (s *Server) createOverride(w http.ResponseWriter, r *http.Request, p principal) error {
	var req OverrideRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	now := s.cfg.Now()
	o := state.Override{Target: req.Target, Kind: req.Kind, Reason: req.Reason, Author: p.name}
	if req.Ramp != "" {
		d, err := time.ParseDuration(req.Ramp)
		if err != nil {
			return badField("ramp", "not a duration like 5m or 90s: %q", req.Ramp)
		}
		o.Ramp = d
	}
	switch {
	case req.Expires != "" && req.TTL != "":
		return badField("ttl", "give expires or ttl, not both")
	case req.Expires != "":
		t, err := time.Parse(time.RFC3339, req.Expires)
		if err != nil {
			return badField("expires", "not an RFC 3339 time like 2026-11-22T18:00:00Z: %q", req.Expires)
		}
		o.Expires = t
	case req.TTL != "":
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 {
			return badField("ttl", "not a positive duration like 2h: %q", req.TTL)
		}
		o.Expires = now.Add(d)
	}
	if o.Target.Type != "" && strings.TrimSpace(o.Target.Name) != "" && !s.b.Engine.HasTarget(o.Target) {
		switch o.Target.Type {
		case state.TargetEndpoint, state.TargetSite, state.TargetPool:
			return badField("target.name", "no %s named %q in the configuration being served", o.Target.Type, o.Target.Name)
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ApplyTimeout)
	defer cancel()
	saved, err := s.b.Store.PutOverride(ctx, o)
	if err != nil {
		return err
	}
	s.cfg.Logger.Info("override set", "id", saved.ID, "target", saved.Target.String(), "kind", saved.Kind, "author", saved.Author, "reason", saved.Reason)
	w.Header().Set("Location", "/v1/overrides/"+saved.ID)
	return writeJSON(w, http.StatusCreated, s.overrideView(saved))
}

func (s *Server) deleteOverride(w http.ResponseWriter, r *http.Request, p principal) error {
	reason := r.URL.Query().Get("reason")
	if reason == "" && r.ContentLength != 0 {
		var body struct {
			Reason string `json:"reason"`
		}
		if err := decodeBody(r, &body); err != nil {
			return err
		}
		reason = body.Reason
	}
	if strings.TrimSpace(reason) == "" {
		return badField("reason", "required: say why the override is cleared (query parameter or JSON body)")
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ApplyTimeout)
	defer cancel()
	id := r.PathValue("id")
	if err := s.b.Store.ClearOverride(ctx, id, p.name, reason); err != nil {
		return err
	}
	s.cfg.Logger.Info("override cleared", "id", id, "author", p.name, "reason", reason)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) audit(w http.ResponseWriter, r *http.Request, _ principal) error {
	q := r.URL.Query()
	var since uint64
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return badField("since", "not a sequence number: %q", v)
		}
		since = n
	}
	limit := 100
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return badField("limit", "want 1..1000, got %q", v)
		}
		limit = n
	}
	entries, err := s.b.Store.Audit(r.Context(), since, limit)
	if err != nil {
		return err
	}
	if target := q.Get("target"); target != "" {
		entries = slices.DeleteFunc(entries, func(e state.AuditEntry) bool { return e.Target != target })
	}
	if entries == nil {
		entries = []state.AuditEntry{}
	}
	return writeJSON(w, http.StatusOK, entries)
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request, p principal) error {
	if s.b.Reload == nil {
		return &Problem{Status: http.StatusNotImplemented, Type: "not-configured", Title: "reload not available", Detail: "this server has nothing to reload"}
	}
	res, err := s.b.Reload(r.Context())
	s.cfg.Logger.Info("reload requested", "author", p.name, "err", err)
	if err != nil {
		return &Problem{Status: http.StatusUnprocessableEntity, Type: "reload-rejected",
			Title: "reload rejected: the previous version keeps serving", Detail: err.Error()}
	}
	return writeJSON(w, http.StatusOK, res)
}

func (s *Server) anycast(w http.ResponseWriter, _ *http.Request, _ principal) error {
	if s.b.Anycast == nil {
		return &Problem{Status: http.StatusNotFound, Type: "not-configured", Title: "anycast not configured",
			Detail: "this gslbd has no anycast: section in its configuration"}
	}
	return writeJSON(w, http.StatusOK, s.b.Anycast())
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
