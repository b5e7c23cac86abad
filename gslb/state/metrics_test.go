package state

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// gathered returns the value of the one series of name with the label
// values given (counter, gauge, or a histogram's count), or -1.
func gathered(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue series
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return -1
}

func TestInstrument(t *testing.T) {
	b, clk, _ := openTest(t)
	reg := prometheus.NewPedanticRegistry()
	s := Instrument(b, reg, "bolt")
	ctx := t.Context()

	o := mustPut(t, s, validOverride())
	if _, err := s.PutOverride(ctx, Override{}); err == nil {
		t.Fatal("invalid override accepted")
	}
	if err := s.ClearOverride(ctx, "nope", "a", "r"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("clear unknown: %v", err)
	}
	if err := s.ClearOverride(ctx, o.ID, "a", "r"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Overrides(ctx, clk.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Audit(ctx, 0, 0); err == nil {
		t.Fatal("audit limit 0 accepted")
	}
	if err := s.PublishHealth(ctx, VantageReport{Vantage: "v"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Vantages(ctx); err != nil {
		t.Fatal(err)
	}
	_ = s.Watch(ctx)
	if _, err := s.ExpireDue(ctx); err != nil {
		t.Fatal(err)
	}

	want := []struct {
		op, result string
		n          float64
	}{
		{opPutOverride, "ok", 1}, {opPutOverride, "error", 1},
		{opClearOverride, "ok", 1}, {opClearOverride, "error", 1},
		{opOverrides, "ok", 1}, {opAudit, "error", 1}, {opAudit, "ok", 0},
		{opPublishHealth, "ok", 1}, {opVantages, "ok", 1}, {opWatch, "ok", 1},
		{opExpireDue, "ok", 1}, {opClose, "ok", 0},
	}
	for _, w := range want {
		if got := gathered(t, reg, "gslbd_state_operations_total", map[string]string{"op": w.op, "result": w.result}); got != w.n {
			t.Errorf("operations_total{op=%q,result=%q} = %v, want %v", w.op, w.result, got, w.n)
		}
	}
	if got := gathered(t, reg, "gslbd_state_operation_duration_seconds", map[string]string{"op": opPutOverride}); got != 2 {
		t.Errorf("duration count{op=put_override} = %v, want 2", got)
	}
	up := map[string]string{"backend": "bolt"}
	if got := gathered(t, reg, "gslbd_state_backend_up", up); got != 1 {
		t.Errorf("backend_up = %v, want 1 while open", got)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if got := gathered(t, reg, "gslbd_state_backend_up", up); got != 0 {
		t.Errorf("backend_up = %v, want 0 after Close", got)
	}
	if got := gathered(t, reg, "gslbd_state_operations_total", map[string]string{"op": opClose, "result": "ok"}); got != 1 {
		t.Errorf("operations_total{op=close,result=ok} = %v, want 1", got)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil || len(problems) != 0 {
		t.Errorf("metric lint: %v %+v", err, problems)
	}
}

// bareStore has only the Store methods of what it wraps: no Healthy.
type bareStore struct{ Store }

func TestInstrumentWithoutExtras(t *testing.T) {
	b, _, _ := openTest(t)
	reg := prometheus.NewPedanticRegistry()
	s := Instrument(bareStore{b}, reg, "bare")
	if got := gathered(t, reg, "gslbd_state_backend_up", nil); got != -1 {
		t.Errorf("backend_up exported (%v) for a store without Healthy", got)
	}
	h, ok := s.(interface{ Healthy() bool })
	if !ok || !h.Healthy() {
		t.Error("wrapper of a store without Healthy: want Healthy() true")
	}
	// A second Instrument on the same registry is a programming error.
	defer func() {
		if recover() == nil {
			t.Error("registering the metrics twice did not panic")
		}
	}()
	Instrument(b, reg, "bolt")
}
