package state

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Operation label values of the state metrics, one per Store method.
const (
	opPutOverride   = "put_override"
	opClearOverride = "clear_override"
	opOverrides     = "overrides"
	opAudit         = "audit"
	opPublishHealth = "publish_health"
	opVantages      = "vantages"
	opWatch         = "watch"
	opClose         = "close"
	opExpireDue     = "expire_due"
)

// Instrument returns s with every method counted and timed in reg:
//
//	gslbd_state_operations_total{op,result="ok"|"error"}
//	gslbd_state_operation_duration_seconds{op}
//	gslbd_state_backend_up{backend}   only if s has Healthy() bool
//
// backend names the implementation ("etcd", "bolt"). The returned Store
// also has Healthy (true if s has none), so callers can keep asserting
// for it. It panics if the metrics are already registered in reg, like
// prometheus.MustRegister; reg nil registers nothing.
func Instrument(s Store, reg prometheus.Registerer, backend string) Store {
	m := &instrumented{
		s: s,
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gslbd_state_operations_total",
			Help: "State store operations, by operation and result (ok or error).",
		}, []string{"op", "result"}),
		dur: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gslbd_state_operation_duration_seconds",
			Help: "Time state store operations took, by operation.",
			// From cache reads (microseconds) to writes waiting out a
			// lost quorum (the request timeout, seconds).
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 9),
		}, []string{"op"}),
	}
	// Every series exists from the start, so that rate() and alerts
	// see zeros rather than nothing.
	for _, op := range []string{opPutOverride, opClearOverride, opOverrides, opAudit,
		opPublishHealth, opVantages, opWatch, opClose, opExpireDue} {
		m.ops.WithLabelValues(op, "ok")
		m.ops.WithLabelValues(op, "error")
		m.dur.WithLabelValues(op)
	}
	cs := []prometheus.Collector{m.ops, m.dur}
	if h, ok := s.(interface{ Healthy() bool }); ok {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "gslbd_state_backend_up",
			Help:        "1 if the state store's backend is reachable and takes writes (etcd: in touch with a quorum).",
			ConstLabels: prometheus.Labels{"backend": backend},
		}, func() float64 {
			if h.Healthy() {
				return 1
			}
			return 0
		}))
	}
	if reg != nil {
		reg.MustRegister(cs...)
	}
	return m
}

type instrumented struct {
	s   Store
	ops *prometheus.CounterVec
	dur *prometheus.HistogramVec
}

// observe records one call of op that started at start and returned *err.
func (m *instrumented) observe(op string, start time.Time, err *error) {
	m.dur.WithLabelValues(op).Observe(time.Since(start).Seconds())
	result := "ok"
	if *err != nil {
		result = "error"
	}
	m.ops.WithLabelValues(op, result).Inc()
}

// Each method names its results so that the deferred observe sees the
// error the call returned.

func (m *instrumented) PutOverride(ctx context.Context, o Override) (out Override, err error) {
	defer m.observe(opPutOverride, time.Now(), &err)
	return m.s.PutOverride(ctx, o)
}

func (m *instrumented) ClearOverride(ctx context.Context, id, author, reason string) (err error) {
	defer m.observe(opClearOverride, time.Now(), &err)
	return m.s.ClearOverride(ctx, id, author, reason)
}

func (m *instrumented) Overrides(ctx context.Context, now time.Time) (out []Override, err error) {
	defer m.observe(opOverrides, time.Now(), &err)
	return m.s.Overrides(ctx, now)
}

func (m *instrumented) Audit(ctx context.Context, since uint64, limit int) (out []AuditEntry, err error) {
	defer m.observe(opAudit, time.Now(), &err)
	return m.s.Audit(ctx, since, limit)
}

func (m *instrumented) PublishHealth(ctx context.Context, r VantageReport, ttl time.Duration) (err error) {
	defer m.observe(opPublishHealth, time.Now(), &err)
	return m.s.PublishHealth(ctx, r, ttl)
}

func (m *instrumented) Vantages(ctx context.Context) (out []VantageReport, err error) {
	defer m.observe(opVantages, time.Now(), &err)
	return m.s.Vantages(ctx)
}

func (m *instrumented) Watch(ctx context.Context) <-chan struct{} {
	defer m.observe(opWatch, time.Now(), new(error))
	return m.s.Watch(ctx)
}

func (m *instrumented) Close() (err error) {
	defer m.observe(opClose, time.Now(), &err)
	return m.s.Close()
}

func (m *instrumented) ExpireDue(ctx context.Context) (n int, err error) {
	defer m.observe(opExpireDue, time.Now(), &err)
	return m.s.ExpireDue(ctx)
}

// Healthy delegates to the wrapped store's Healthy; a store without one
// has nothing to report and counts as healthy.
func (m *instrumented) Healthy() bool {
	if h, ok := m.s.(interface{ Healthy() bool }); ok {
		return h.Healthy()
	}
	return true
}
