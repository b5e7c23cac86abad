package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gslbd/gslbd/dataplane"
)

// fakeDataplane stands in for the XDP loader.
type fakeDataplane struct {
	mu       sync.Mutex
	services map[dataplane.VIP]dataplane.Service
	closed   bool
	detached bool
	changed  chan struct{} // signalled on every SetService/DeleteService
}

func newFakeDataplane() *fakeDataplane {
	return &fakeDataplane{services: make(map[dataplane.VIP]dataplane.Service), changed: make(chan struct{}, 100)}
}

func (f *fakeDataplane) SetService(s dataplane.Service) error {
	f.mu.Lock()
	f.services[s.VIP] = s
	f.mu.Unlock()
	f.changed <- struct{}{}
	return nil
}

func (f *fakeDataplane) DeleteService(v dataplane.VIP) error {
	f.mu.Lock()
	delete(f.services, v)
	f.mu.Unlock()
	f.changed <- struct{}{}
	return nil
}

func (f *fakeDataplane) Counters() (dataplane.Counters, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := dataplane.Counters{VIPs: map[dataplane.VIP]dataplane.VIPCounters{}, Backends: map[dataplane.BackendKey]dataplane.BackendCounters{}, ActiveFlows: 7}
	for v := range f.services {
		c.VIPs[v] = dataplane.VIPCounters{Packets: 100, NewFlows: 10}
	}
	return c, nil
}

func (f *fakeDataplane) RTT() ([]dataplane.RTTSample, error) {
	return []dataplane.RTTSample{{Prefix: netip.MustParsePrefix("198.18.0.0/24"), Count: 3, Mean: 12 * time.Millisecond}}, nil
}

func (f *fakeDataplane) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	return nil
}

func (f *fakeDataplane) Detach() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.detached = true
	return nil
}

func (f *fakeDataplane) Modes() map[string]string { return map[string]string{"eth0": "driver"} }

// service returns the programmed service of v.
func (f *fakeDataplane) service(v dataplane.VIP) (dataplane.Service, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.services[v]
	return s, ok
}

// waitFor waits, for at most 10s, until cond holds after a change of the
// data path.
func (f *fakeDataplane) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-f.changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// proxy is a fake L7 proxy's health endpoint.
type proxy struct {
	srv    *httptest.Server
	status atomic.Int32
}

func newProxy(t *testing.T) *proxy {
	p := &proxy{}
	p.status.Store(200)
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(int(p.status.Load())) }))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *proxy) port() string { return p.srv.URL[strings.LastIndexByte(p.srv.URL, ':')+1:] }

type daemonHarness struct {
	dp       *fakeDataplane
	api      string
	hup      chan os.Signal
	reloaded chan error
	config   string
	logs     *syncBuffer
	cancel   context.CancelFunc
	done     chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startDaemon(t *testing.T, config string, detach bool, watch time.Duration) *daemonHarness {
	t.Helper()
	h := &daemonHarness{dp: newFakeDataplane(), hup: make(chan os.Signal, 1), reloaded: make(chan error, 10),
		config: writeFile(t, "lbd.yaml", config), logs: &syncBuffer{}, done: make(chan error, 1)}
	ready := make(chan string, 1)
	opts := daemonOptions{
		configPath: h.config, detachOnExit: detach, watch: watch, stderr: h.logs, hup: h.hup,
		open:     func(*dataplane.Config) (dataplaneHandle, error) { return h.dp, nil },
		ready:    func(addr string) { ready <- addr },
		reloaded: func(err error) { h.reloaded <- err },
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- runDaemon(ctx, opts) }()
	select {
	case h.api = <-ready:
	case err := <-h.done:
		t.Fatalf("daemon did not start: %v\n%s", err, h.logs)
	case <-time.After(10 * time.Second):
		t.Fatal("daemon not ready in 10s")
	}
	t.Cleanup(func() { h.stop(t) })
	return h
}

func (h *daemonHarness) stop(t *testing.T) {
	t.Helper()
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	if err := <-h.done; err != nil {
		t.Errorf("daemon: %v", err)
	}
}

func (h *daemonHarness) rewrite(t *testing.T, content string) {
	t.Helper()
	if err := os.WriteFile(h.config, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (h *daemonHarness) waitReload(t *testing.T) error {
	t.Helper()
	select {
	case err := <-h.reloaded:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("no reload in 10s")
		return nil
	}
}

func daemonConfig(stateFile string, p2, p3 *proxy, extra string) string {
	return fmt.Sprintf(`
site: lon
interfaces: [eth0]
tunnel_source4: 198.18.255.0/24
state_file: %s
api: {listen: "127.0.0.1:0"}
vips:
  - address: 192.0.2.10
    port: 80
    backends:
      - {address: 198.18.1.2, check: {type: http, address: 127.0.0.1, port: %s, interval: 100ms, rise: 1, fall: 1}}
      - {address: 198.18.1.3, check: {type: http, address: 127.0.0.1, port: %s, interval: 100ms, rise: 1, fall: 1}}
%s`, stateFile, p2.port(), p3.port(), extra)
}

var (
	vip80  = dataplane.VIP{Addr: netip.MustParseAddr("192.0.2.10"), Proto: dataplane.ProtoTCP, Port: 80}
	vip443 = dataplane.VIP{Addr: netip.MustParseAddr("192.0.2.10"), Proto: dataplane.ProtoTCP, Port: 443}
)

func backendAddrs(s dataplane.Service) string {
	var out []string
	for _, b := range s.Backends {
		out = append(out, b.Addr.String())
	}
	return strings.Join(out, ",")
}

// entriesOf counts the table entries of the backend with index idx.
func entriesOf(s dataplane.Service, idx uint32) int {
	n := 0
	for _, e := range s.Table {
		if e == idx {
			n++
		}
	}
	return n
}

func TestDaemon(t *testing.T) {
	p2, p3 := newProxy(t), newProxy(t)
	state := filepath.Join(t.TempDir(), "state.json")
	h := startDaemon(t, daemonConfig(state, p2, p3, ""), false, 0)
	h.dp.waitFor(t, "vip 80 programmed", func() bool { _, ok := h.dp.service(vip80); return ok })

	// The operator's view.
	code, out, errs := lbd("vips", "-api", h.api)
	if code != exitOK || !strings.Contains(out, "tcp/192.0.2.10:80") || !strings.Contains(out, "198.18.1.3") {
		t.Fatalf("lbd vips: %d\n%s%s", code, out, errs)
	}
	code, out, _ = lbd("vips", "-api", h.api, "-o", "json")
	var doc struct {
		VIPs []struct {
			ID string `json:"id"`
		} `json:"vips"`
	}
	if code != exitOK || json.Unmarshal([]byte(out), &doc) != nil || len(doc.VIPs) != 1 || doc.VIPs[0].ID != "tcp-192.0.2.10-80" {
		t.Errorf("lbd vips -o json: %d %s", code, out)
	}

	// A proxy fails its check: it leaves the service.
	p3.status.Store(503)
	h.dp.waitFor(t, ".3 out after a 503", func() bool { s, _ := h.dp.service(vip80); return backendAddrs(s) == "198.18.1.2" })
	p3.status.Store(200)
	h.dp.waitFor(t, ".3 back", func() bool { s, _ := h.dp.service(vip80); return backendAddrs(s) == "198.18.1.2,198.18.1.3" })

	// Drain, remove before drain refused, remove, undrain.
	if code, _, errs := lbd("remove", "tcp-192.0.2.10-80", "198.18.1.3", "-api", h.api); code != exitFail || !strings.Contains(errs, "409 Conflict") {
		t.Errorf("remove before drain: %d %s", code, errs)
	}
	if code, out, errs := lbd("drain", "-api", h.api, "tcp/192.0.2.10:80", "198.18.1.3"); code != exitOK || !strings.Contains(out, "is draining") {
		t.Errorf("drain: %d %s %s", code, out, errs)
	}
	s, _ := h.dp.service(vip80)
	if backendAddrs(s) != "198.18.1.2,198.18.1.3" || entriesOf(s, 1) != 0 {
		t.Errorf("draining: backends %s, .3 has %d entries", backendAddrs(s), entriesOf(s, 1))
	}
	if code, _, errs := lbd("remove", "tcp-192.0.2.10-80", "198.18.1.3", "-api", h.api); code != exitOK {
		t.Errorf("remove: %d %s", code, errs)
	}
	if s, _ := h.dp.service(vip80); backendAddrs(s) != "198.18.1.2" {
		t.Errorf("removed: backends %s", backendAddrs(s))
	}
	if data, err := os.ReadFile(state); err != nil || !strings.Contains(string(data), `"state": "removed"`) {
		t.Errorf("state file: %v\n%s", err, data)
	}
	if code, _, errs := lbd("undrain", "tcp-192.0.2.10-80", "198.18.1.3", "-api", h.api); code != exitOK {
		t.Errorf("undrain: %d %s", code, errs)
	}
	// Draining both: the operator is warned that new flows are dropped.
	lbd("drain", "tcp-192.0.2.10-80", "198.18.1.2", "-api", h.api)
	code, out, _ = lbd("drain", "tcp-192.0.2.10-80", "198.18.1.3", "-api", h.api)
	if code != exitOK || !strings.Contains(out, "WARNING: no backend of tcp/192.0.2.10:80 takes new flows") {
		t.Errorf("draining the last backend: %d %s", code, out)
	}
	if _, out, _ := lbd("vips", "-api", h.api); !strings.Contains(out, "tcp/192.0.2.10:80: no backend takes new flows") {
		t.Errorf("lbd vips with no backend:\n%s", out)
	}
	lbd("undrain", "tcp-192.0.2.10-80", "198.18.1.2", "-api", h.api)
	lbd("undrain", "tcp-192.0.2.10-80", "198.18.1.3", "-api", h.api)

	// A bad config is refused and the running one kept.
	h.rewrite(t, "site: lon\ninterfaces: [eth0]\nvips: [{address: 192.0.2.10}]\n")
	h.hup <- os.Interrupt
	if err := h.waitReload(t); err == nil || !strings.Contains(err.Error(), "vips[0].backends: required") {
		t.Errorf("bad reload: %v", err)
	}
	if _, ok := h.dp.service(vip80); !ok || !strings.Contains(h.logs.String(), "keeping the running config") {
		t.Errorf("the running config was not kept:\n%s", h.logs)
	}

	// A good one adds a VIP.
	h.rewrite(t, daemonConfig(state, p2, p3, `
  - address: 192.0.2.10
    port: 443
    backends: [{address: 198.18.1.4, check: {type: none}}]
`))
	h.hup <- os.Interrupt
	if err := h.waitReload(t); err != nil {
		t.Fatalf("reload: %v", err)
	}
	h.dp.waitFor(t, "vip 443", func() bool { _, ok := h.dp.service(vip443); return ok })

	// The feed and the metrics.
	resp, err := http.Get("http://" + h.api + "/v1/feed")
	if err != nil {
		t.Fatal(err)
	}
	var feed dataplane.FeedSnapshot
	err = json.NewDecoder(resp.Body).Decode(&feed)
	resp.Body.Close()
	if err != nil || feed.Site != "lon" || feed.IntervalS != 10 || len(feed.RTT) != 1 || feed.Load.ActiveFlows != 7 {
		t.Errorf("feed: %v %+v", err, feed)
	}
	resp, err = http.Get("http://" + h.api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`lbd_config_reloads_total{result="failure"} 1`, `lbd_config_reloads_total{result="success"} 1`, `lbd_backend_up{backend="198.18.1.2",vip="tcp/192.0.2.10:80"} 1`, "go_goroutines"} {
		if !strings.Contains(body.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	h.stop(t)
	if !h.dp.closed || h.dp.detached {
		t.Errorf("on exit: closed %v detached %v, want the pins kept", h.dp.closed, h.dp.detached)
	}
}

// TestDaemonWatch: a change of the file's content is picked up without
// SIGHUP; -detach-on-exit detaches.
func TestDaemonWatch(t *testing.T) {
	p2, p3 := newProxy(t), newProxy(t)
	h := startDaemon(t, daemonConfig(`""`, p2, p3, ""), true, 20*time.Millisecond)
	h.dp.waitFor(t, "vip 80 programmed", func() bool { _, ok := h.dp.service(vip80); return ok })
	h.rewrite(t, strings.Replace(daemonConfig(`""`, p2, p3, ""), "port: 80\n", "port: 443\n", 1))
	if err := h.waitReload(t); err != nil {
		t.Fatal(err)
	}
	h.dp.waitFor(t, "vip 80 replaced by 443", func() bool {
		_, has80 := h.dp.service(vip80)
		_, has443 := h.dp.service(vip443)
		return !has80 && has443
	})
	h.stop(t)
	if !h.dp.detached {
		t.Error("-detach-on-exit did not detach")
	}
}

func TestDaemonStartErrors(t *testing.T) {
	p2, p3 := newProxy(t), newProxy(t)
	var logs bytes.Buffer
	// The API address is taken.
	busy := httptest.NewServer(http.NotFoundHandler())
	defer busy.Close()
	cfg := strings.Replace(daemonConfig(`""`, p2, p3, ""), "127.0.0.1:0", strings.TrimPrefix(busy.URL, "http://"), 1)
	dp := newFakeDataplane()
	err := runDaemon(context.Background(), daemonOptions{configPath: writeFile(t, "lbd.yaml", cfg), stderr: &logs,
		open: func(*dataplane.Config) (dataplaneHandle, error) { return dp, nil }})
	if err == nil || !strings.Contains(err.Error(), "api.listen "+strings.TrimPrefix(busy.URL, "http://")) {
		t.Errorf("busy API address: %v", err)
	}
	if !dp.closed {
		t.Error("data path not released after a failed start")
	}
	// The data path cannot be opened.
	err = runDaemon(context.Background(), daemonOptions{configPath: writeFile(t, "lbd.yaml", daemonConfig(`""`, p2, p3, "")), stderr: &logs,
		open: func(*dataplane.Config) (dataplaneHandle, error) { return nil, fmt.Errorf("operation not permitted") }})
	if err == nil || !strings.Contains(err.Error(), "attach to eth0: operation not permitted") {
		t.Errorf("open failure: %v", err)
	}
}
