package dataplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// CountersSource reads the data path's counters (a Programmer).
type CountersSource interface {
	Counters() (Counters, error)
}

// APIConfig configures the local HTTP API.
type APIConfig struct {
	Controller *Controller    // required
	Counters   CountersSource // nil: no counters in /v1/vips
	Feed       *Feed          // nil: /v1/feed answers 404
	Metrics    http.Handler   // served at /metrics; nil: 404
	Logger     *slog.Logger   // discards when nil
}

// NewAPI returns lbd's local HTTP API. It binds loopback by default
// (api.listen) and has no authentication: whoever reaches it can drain
// backends.
//
// Routes (a VIP in a path is VIPID, "tcp-192.0.2.10-80", or VIP.String
// URL-escaped, "tcp%2F192.0.2.10%3A80"; a backend is its address):
//
//	GET    /v1/vips                                 every VIP: mode, table, backends (weight, health, reason, operator state), counters
//	GET    /v1/vips/{vip}                           one VIP, same shape
//	POST   /v1/vips/{vip}/backends/{backend}/drain    new flows go elsewhere, established ones continue; 200 + the backend
//	POST   /v1/vips/{vip}/backends/{backend}/undrain  cancel a drain or a removal; 200 + the backend
//	DELETE /v1/vips/{vip}/backends/{backend}          remove a draining backend (409 otherwise); 204
//	GET    /v1/feed                                 the RTT/load feed (see Feed)
//	GET    /healthz                                 200 when every VIP is programmed (or keeps its pinned tables during the warm-up), else 503
//	GET    /metrics                                 Prometheus
//
// Errors are RFC 9457 problem details (application/problem+json) with
// these types: urn:gslbd:lbd:unknown-vip and unknown-backend (404),
// not-draining (409), bad-request (400), state-not-saved (500: nothing
// changed), internal (500), dataplane (502: the action is recorded and
// retried, the data path has not taken it yet; 503 from /healthz);
// about:blank for an unknown route (404) or method (405).
func NewAPI(cfg APIConfig) (http.Handler, error) {
	if cfg.Controller == nil {
		return nil, errors.New("new api: no controller")
	}
	a := &api{ctrl: cfg.Controller, counters: cfg.Counters, feed: cfg.Feed, log: cfg.Logger}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	routes := []struct {
		method, path string
		h            http.HandlerFunc
	}{
		{"GET", "/v1/vips", a.listVIPs},
		{"GET", "/v1/vips/{vip}", a.getVIP},
		{"POST", "/v1/vips/{vip}/backends/{backend}/drain", a.operate("drain", a.ctrl.Drain)},
		{"POST", "/v1/vips/{vip}/backends/{backend}/undrain", a.operate("undrain", a.ctrl.Undrain)},
		{"DELETE", "/v1/vips/{vip}/backends/{backend}", a.remove},
		{"GET", "/v1/feed", a.getFeed},
		{"GET", "/healthz", a.healthz},
	}
	allowed := map[string][]string{}
	for _, r := range routes {
		mux.HandleFunc(r.method+" "+r.path, r.h)
		allowed[r.path] = append(allowed[r.path], r.method)
	}
	// The same paths without a method answer 405 with Allow, in
	// problem+json like every other error (ServeMux's own is text).
	for path, methods := range allowed {
		allow := strings.Join(methods, ", ")
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeProblem(w, http.StatusMethodNotAllowed, "about:blank", fmt.Sprintf("%s is not allowed here; use %s", r.Method, allow))
		})
	}
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", cfg.Metrics)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, "about:blank", fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path))
	})
	return mux, nil
}

type api struct {
	ctrl     *Controller
	counters CountersSource
	feed     *Feed
	log      *slog.Logger
}

// problem is an RFC 9457 problem details object.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

func writeProblem(w http.ResponseWriter, status int, typ, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(problem{Type: typ, Title: http.StatusText(status), Status: status, Detail: detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// The JSON shapes of /v1/vips.
type (
	vipsDoc struct {
		VIPs []vipDoc `json:"vips"`
		// CountersError is set when the data path's counters could not be
		// read (counters are then absent).
		CountersError string `json:"counters_error,omitempty"`
	}
	vipDoc struct {
		ID         string     `json:"id"`  // for paths: tcp-192.0.2.10-80
		VIP        string     `json:"vip"` // tcp/192.0.2.10:80
		Address    netip.Addr `json:"address"`
		Protocol   string     `json:"protocol"`
		Port       uint16     `json:"port"` // 0 = every port
		Mode       string     `json:"mode"`
		TableSize  int        `json:"table_size"` // 0: no backend available, new flows dropped
		Programmed bool       `json:"programmed"`
		// Waiting: after a restart, the data path keeps the previous
		// tables until the backends' first probes (a few seconds).
		Waiting  bool         `json:"waiting_for_health,omitempty"`
		Error    string       `json:"error,omitempty"`
		Counters *vipCounters `json:"counters,omitempty"`
		Backends []backendDoc `json:"backends"`
	}
	vipCounters struct {
		Packets   uint64            `json:"packets"`
		Bytes     uint64            `json:"bytes"`
		NewFlows  uint64            `json:"new_flows"`
		LRUHits   uint64            `json:"lru_hits"`
		LRUMisses uint64            `json:"lru_misses"`
		Drops     map[string]uint64 `json:"drops"`
	}
	backendDoc struct {
		Address      netip.Addr       `json:"address"`
		Index        uint32           `json:"index"`
		Weight       uint32           `json:"weight"`
		MAC          string           `json:"mac,omitempty"`
		Check        string           `json:"check"`
		Health       string           `json:"health"` // up or down
		Reason       string           `json:"reason"`
		HealthSince  time.Time        `json:"health_since"`
		State        string           `json:"state"` // active, draining, removed
		Draining     bool             `json:"draining"`
		StateSince   *time.Time       `json:"state_since,omitempty"`
		InService    bool             `json:"in_service"`    // established flows continue
		TableEntries int              `json:"table_entries"` // share of new flows: entries / table_size
		Counters     *backendCounters `json:"counters,omitempty"`
	}
	backendCounters struct {
		Packets  uint64 `json:"packets"`
		Bytes    uint64 `json:"bytes"`
		NewFlows uint64 `json:"new_flows"`
	}
)

func (a *api) readCounters() (*Counters, string) {
	if a.counters == nil {
		return nil, ""
	}
	c, err := a.counters.Counters()
	if err != nil {
		a.log.Warn("counters not read", "err", err)
		return nil, err.Error()
	}
	return &c, ""
}

func (a *api) listVIPs(w http.ResponseWriter, r *http.Request) {
	c, cerr := a.readCounters()
	doc := vipsDoc{VIPs: []vipDoc{}, CountersError: cerr}
	for _, vs := range a.ctrl.Status() {
		doc.VIPs = append(doc.VIPs, newVIPDoc(vs, c))
	}
	writeJSON(w, http.StatusOK, doc)
}

func (a *api) getVIP(w http.ResponseWriter, r *http.Request) {
	v, ok := pathVIP(w, r)
	if !ok {
		return
	}
	vs, ok := a.vipStatus(v)
	if !ok {
		writeProblem(w, http.StatusNotFound, "urn:gslbd:lbd:unknown-vip", fmt.Sprintf("%s is not configured", v))
		return
	}
	c, _ := a.readCounters()
	writeJSON(w, http.StatusOK, newVIPDoc(vs, c))
}

func (a *api) vipStatus(v VIP) (VIPStatus, bool) {
	for _, vs := range a.ctrl.Status() {
		if vs.VIP == v {
			return vs, true
		}
	}
	return VIPStatus{}, false
}

func newVIPDoc(vs VIPStatus, c *Counters) vipDoc {
	d := vipDoc{
		ID: VIPID(vs.VIP), VIP: vs.VIP.String(), Address: vs.VIP.Addr, Protocol: protoName(vs.VIP.Proto), Port: vs.VIP.Port,
		Mode: ModeString(vs.Mode), TableSize: vs.TableSize, Programmed: vs.Programmed, Waiting: vs.Waiting, Error: vs.Error, Backends: []backendDoc{},
	}
	if c != nil {
		vc := c.VIPs[vs.VIP]
		d.Counters = &vipCounters{Packets: vc.Packets, Bytes: vc.Bytes, NewFlows: vc.NewFlows, LRUHits: vc.LRUHits, LRUMisses: vc.LRUMisses, Drops: map[string]uint64{}}
		for _, reason := range DropReasons {
			d.Counters.Drops[reason] = vc.Drops[reason]
		}
	}
	for _, b := range vs.Backends {
		d.Backends = append(d.Backends, newBackendDoc(vs.VIP, b, c))
	}
	return d
}

func newBackendDoc(v VIP, b BackendStatus, c *Counters) backendDoc {
	health := "down"
	if b.Health.Up {
		health = "up"
	}
	d := backendDoc{
		Address: b.Addr, Index: b.Index, Weight: b.Weight, Check: b.Check, Health: health, Reason: b.Health.Reason,
		HealthSince: b.Health.Since, State: b.State, Draining: b.State == opDraining, InService: b.InService, TableEntries: b.TableEntries,
	}
	if len(b.MAC) > 0 {
		d.MAC = b.MAC.String()
	}
	if !b.Since.IsZero() {
		since := b.Since
		d.StateSince = &since
	}
	if c != nil {
		bc := c.Backends[BackendKey{VIP: v, Addr: b.Addr}]
		d.Counters = &backendCounters{Packets: bc.Packets, Bytes: bc.Bytes, NewFlows: bc.NewFlows}
	}
	return d
}

// pathVIP parses {vip}, answering 400 when it is not a VIP.
func pathVIP(w http.ResponseWriter, r *http.Request) (VIP, bool) {
	v, err := ParseVIP(r.PathValue("vip"))
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "urn:gslbd:lbd:bad-request", err.Error())
		return VIP{}, false
	}
	return v, true
}

// pathBackend parses {vip} and {backend}.
func pathBackend(w http.ResponseWriter, r *http.Request) (VIP, netip.Addr, bool) {
	v, ok := pathVIP(w, r)
	if !ok {
		return VIP{}, netip.Addr{}, false
	}
	a, err := netip.ParseAddr(r.PathValue("backend"))
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "urn:gslbd:lbd:bad-request", fmt.Sprintf("backend %q is not an IP address", r.PathValue("backend")))
		return VIP{}, netip.Addr{}, false
	}
	return v, a.Unmap(), true
}

func (a *api) operate(name string, op func(VIP, netip.Addr) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, b, ok := pathBackend(w, r)
		if !ok {
			return
		}
		if err := op(v, b); err != nil {
			a.writeOpError(w, err)
			return
		}
		vs, _ := a.vipStatus(v)
		c, _ := a.readCounters()
		for _, bs := range vs.Backends {
			if bs.Addr == b {
				writeJSON(w, http.StatusOK, newBackendDoc(v, bs, c))
				return
			}
		}
		writeProblem(w, http.StatusNotFound, "urn:gslbd:lbd:unknown-backend", fmt.Sprintf("%s is no longer a backend of %s", b, v))
	}
}

func (a *api) remove(w http.ResponseWriter, r *http.Request) {
	v, b, ok := pathBackend(w, r)
	if !ok {
		return
	}
	if err := a.ctrl.Remove(v, b); err != nil {
		a.writeOpError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// writeOpError answers for an operator action's error. A ProgramError
// means the action is recorded (and saved) but the data path refused the
// new service: 502, and the controller retries.
func (a *api) writeOpError(w http.ResponseWriter, err error) {
	var pe *ProgramError
	switch {
	case errors.Is(err, ErrUnknownVIP):
		writeProblem(w, http.StatusNotFound, "urn:gslbd:lbd:unknown-vip", err.Error())
	case errors.Is(err, ErrUnknownBackend):
		writeProblem(w, http.StatusNotFound, "urn:gslbd:lbd:unknown-backend", err.Error())
	case errors.Is(err, ErrNotDraining):
		writeProblem(w, http.StatusConflict, "urn:gslbd:lbd:not-draining", err.Error())
	case errors.As(err, &pe):
		writeProblem(w, http.StatusBadGateway, "urn:gslbd:lbd:dataplane",
			"recorded, but the data path refused it (retried every few seconds): "+err.Error())
	case errors.Is(err, ErrStateNotSaved):
		a.log.Error("operator action not saved", "err", err)
		writeProblem(w, http.StatusInternalServerError, "urn:gslbd:lbd:state-not-saved", err.Error())
	default:
		a.log.Error("operator action failed", "err", err)
		writeProblem(w, http.StatusInternalServerError, "urn:gslbd:lbd:internal", err.Error())
	}
}

func (a *api) getFeed(w http.ResponseWriter, r *http.Request) {
	if a.feed == nil {
		writeProblem(w, http.StatusNotFound, "about:blank", "the feed is not enabled")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(a.feed.JSON())
}

func (a *api) healthz(w http.ResponseWriter, r *http.Request) {
	var bad []string
	for _, vs := range a.ctrl.Status() {
		if !vs.Programmed && !vs.Waiting {
			bad = append(bad, vs.VIP.String()+": "+vs.Error)
		}
	}
	if len(bad) > 0 {
		writeProblem(w, http.StatusServiceUnavailable, "urn:gslbd:lbd:dataplane", "not programmed: "+strings.Join(bad, "; "))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}
