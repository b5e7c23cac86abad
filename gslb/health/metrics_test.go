package health

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			name := mf.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[name] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[name] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[name+"_count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	ta, tb := tcpTarget(addrA), tcpTarget(addr6)
	tb.Monitor = Monitor{Kind: KindDNS, Query: "x.", Interval: 10 * time.Second}
	h := newHarness(t, Config{}, []Target{ta, tb})
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(h.c.Collector())
	h.setResult(addrA, context.DeadlineExceeded)
	for range 3 {
		h.probeNext(ta.Key())
	}
	h.setResult(addrA, nil)
	h.probeNext(ta.Key())
	h.probeNext(ta.Key()) // up again
	h.probeNext(tb.Key())
	got := gather(t, reg)
	want := map[string]float64{
		"gslbd_health_probes_total{kind=tcp,result=timeout}":              3,
		"gslbd_health_probes_total{kind=tcp,result=ok}":                   2,
		"gslbd_health_probes_total{kind=dns,result=ok}":                   float64(h.callCount(addr6)),
		"gslbd_health_probe_duration_seconds{kind=tcp}_count":             5,
		"gslbd_health_transitions_total{kind=tcp,reason=timeout,to=down}": 1,
		"gslbd_health_transitions_total{kind=tcp,reason=ok,to=up}":        1,
		"gslbd_health_targets{kind=tcp,state=up}":                         1,
		"gslbd_health_targets{kind=tcp,state=down}":                       0,
		"gslbd_health_targets{kind=dns,state=up}":                         1,
		"gslbd_health_targets{kind=http,state=up}":                        0,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	for k := range got {
		if strings.Contains(k, "192.0.2") || strings.Contains(k, "2001:db8") {
			t.Errorf("address in a label: %s", k)
		}
	}
}
