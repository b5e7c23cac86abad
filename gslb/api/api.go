// Package api is gslbd's REST API: health and decisions for operators to
// read, overrides to write, reload and audit. JSON over HTTP under /v1/,
// bearer tokens stored as SHA-256 hashes with read/write/admin scopes,
// errors as application/problem+json (RFC 9457), the OpenAPI 3 document
// at /v1/openapi.json. /healthz and /readyz are unauthenticated.
package api

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gslbd/gslbd/gslb"
	"github.com/gslbd/gslbd/gslb/state"
)

//go:embed openapi.json
var openAPI []byte

// OpenAPI returns the committed OpenAPI 3 document served at
// /v1/openapi.json.
func OpenAPI() []byte { return openAPI }

// Backend is what the API reads and drives. Engine and Store are
// required; the functions may be nil when the feature is absent.
type Backend struct {
	Engine *gslb.Engine
	Store  state.Store
	// Vantage is this gslbd's vantage-point name.
	Vantage string
	// Ready returns nil once zones and GSLB configuration are loaded.
	Ready func() error
	// Reload re-reads zones and the GSLB configuration; an error means
	// something was rejected (the previous version keeps serving).
	Reload func(ctx context.Context) (ReloadResult, error)
	// Anycast returns the announcer's status (nil: not configured).
	Anycast func() any
}

// ReloadResult says what a reload did.
type ReloadResult struct {
	Zones  []string `json:"zones"`            // zones now served
	GSLB   string   `json:"gslb"`             // the GSLB file loaded ("embedded", a path, or "" for none)
	Errors []string `json:"errors,omitempty"` // what was rejected
}

// Config configures the API.
type Config struct {
	Tokens []Token
	// AnonymousRead lets requests without a token read (never write).
	AnonymousRead bool
	// MaxBody caps request bodies (default 64 KiB); larger ones get 413.
	MaxBody int64
	// ApplyTimeout bounds state-store writes (default 5 s).
	ApplyTimeout time.Duration
	Logger       *slog.Logger
	Registerer   prometheus.Registerer // nil: no metrics
	Now          func() time.Time      // default time.Now
}

// Server is the API's HTTP handler.
type Server struct {
	cfg     Config
	b       Backend
	tokens  tokenSet
	mux     *http.ServeMux
	routes  []route
	metrics *apiMetrics
}

// route is one documented endpoint.
type route struct {
	method, pattern string
	scope           Scope // scopeNone: no authentication
	h               func(w http.ResponseWriter, r *http.Request, p principal) error
}

// New builds the API server.
func New(cfg Config, b Backend) (*Server, error) {
	if b.Engine == nil || b.Store == nil {
		return nil, errors.New("api: Engine and Store are required")
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 64 << 10
	}
	if cfg.ApplyTimeout <= 0 {
		cfg.ApplyTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	ts, err := newTokenSet(cfg.Tokens)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, b: b, tokens: ts, mux: http.NewServeMux(), metrics: newAPIMetrics(cfg.Registerer)}
	s.routes = []route{
		{"GET", "/healthz", scopeNone, s.healthz},
		{"GET", "/readyz", scopeNone, s.readyz},
		{"GET", "/v1/openapi.json", scopeNone, s.openapi},
		{"GET", "/v1/status", ScopeRead, s.status},
		{"GET", "/v1/sites", ScopeRead, s.sites},
		{"GET", "/v1/sites/{name}", ScopeRead, s.site},
		{"GET", "/v1/pools", ScopeRead, s.pools},
		{"GET", "/v1/pools/{name}", ScopeRead, s.pool},
		{"GET", "/v1/endpoints", ScopeRead, s.endpoints},
		{"GET", "/v1/endpoints/{name}", ScopeRead, s.endpoint},
		{"GET", "/v1/records", ScopeRead, s.records},
		{"GET", "/v1/records/{name}", ScopeRead, s.record},
		{"GET", "/v1/explain", ScopeRead, s.explain},
		{"GET", "/v1/vantages", ScopeRead, s.vantages},
		{"GET", "/v1/overrides", ScopeRead, s.listOverrides},
		{"POST", "/v1/overrides", ScopeWrite, s.createOverride},
		{"GET", "/v1/overrides/{id}", ScopeRead, s.getOverride},
		{"DELETE", "/v1/overrides/{id}", ScopeWrite, s.deleteOverride},
		{"GET", "/v1/audit", ScopeRead, s.audit},
		{"POST", "/v1/reload", ScopeAdmin, s.reload},
		{"GET", "/v1/anycast", ScopeRead, s.anycast},
	}
	for _, rt := range s.routes {
		s.mux.Handle(rt.method+" "+rt.pattern, s.wrap(rt))
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.metrics.observe("unknown", http.StatusNotFound, 0)
		writeProblem(w, &Problem{Status: http.StatusNotFound, Type: "not-found",
			Title: "no such route", Detail: r.Method + " " + r.URL.Path + " is not a route of this API; see /v1/openapi.json"})
	})
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Routes lists "METHOD /pattern" of every route (for the OpenAPI test).
func (s *Server) Routes() []string {
	out := make([]string, len(s.routes))
	for i, rt := range s.routes {
		out[i] = rt.method + " " + rt.pattern
	}
	return out
}

// statusWriter remembers the status code for metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// wrap authenticates, limits the body, runs the handler and turns its
// error into a problem document.
func (s *Server) wrap(rt route) http.Handler {
	label := rt.method + " " + rt.pattern
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() { s.metrics.observe(label, sw.code, time.Since(start)) }()
		p, prob := s.authenticate(r, rt.scope)
		if prob != nil {
			if prob.Status == http.StatusUnauthorized {
				sw.Header().Set("WWW-Authenticate", `Bearer realm="gslbd"`)
			}
			writeProblem(sw, prob)
			return
		}
		r.Body = http.MaxBytesReader(sw, r.Body, s.cfg.MaxBody)
		if err := rt.h(sw, r, p); err != nil {
			var prob *Problem
			if !errors.As(err, &prob) {
				prob = problemFromError(err)
			}
			if prob.Status >= 500 {
				s.cfg.Logger.Error("api request failed", "route", label, "err", err)
			}
			writeProblem(sw, prob)
		}
	})
}

// problemFromError maps store errors to problem documents.
func problemFromError(err error) *Problem {
	var fe *state.FieldError
	switch {
	case errors.As(err, &fe):
		return &Problem{Status: http.StatusBadRequest, Type: "invalid-field", Title: "invalid field", Detail: fe.Error(), Field: fe.Field}
	case errors.Is(err, state.ErrNotFound):
		return &Problem{Status: http.StatusNotFound, Type: "not-found", Title: "not found", Detail: err.Error()}
	case errors.Is(err, state.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return &Problem{Status: http.StatusServiceUnavailable, Type: "state-unavailable",
			Title: "state store unavailable: the change was not made", Detail: err.Error()}
	}
	return &Problem{Status: http.StatusInternalServerError, Type: "internal", Title: "internal error", Detail: err.Error()}
}

// writeJSON writes v with status code.
func writeJSON(w http.ResponseWriter, code int, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)+1))
	w.WriteHeader(code)
	_, _ = w.Write(append(data, '\n'))
	return nil
}
