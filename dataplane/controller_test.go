package dataplane

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const ctrlYAML = `
site: lon
interfaces: [eth0]
tunnel_source4: 198.18.255.0/24
state_file: ""
vips:
  - address: 192.0.2.10
    port: 80
    backends:
      - {address: 198.18.1.2}
      - {address: 198.18.1.3}
      - {address: 198.18.1.4, weight: 2}
`

var (
	vip80 = VIP{Addr: netip.MustParseAddr("192.0.2.10"), Proto: ProtoTCP, Port: 80}
	be2   = netip.MustParseAddr("198.18.1.2")
	be3   = netip.MustParseAddr("198.18.1.3")
	be4   = netip.MustParseAddr("198.18.1.4")
	be5   = netip.MustParseAddr("198.18.1.5")
)

func mustParse(t *testing.T, y string) *Config {
	t.Helper()
	cfg, err := ParseConfig("test.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

type ctrlHarness struct {
	c      *Controller
	prog   *fakeProgrammer
	health *fakeHealth
	cfg    *Config
}

func newCtrl(t *testing.T, y, stateFile string) *ctrlHarness {
	t.Helper()
	h := &ctrlHarness{prog: newFakeProgrammer(), health: &fakeHealth{}, cfg: mustParse(t, y)}
	var err error
	h.c, err = NewController(ControllerConfig{Programmer: h.prog, Health: h.health, StateFile: stateFile, Clock: NewFakeClock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.c.SetConfig(h.cfg); err != nil {
		t.Fatal(err)
	}
	return h
}

// target returns the health target of backend addr of the first VIP.
func (h *ctrlHarness) target(t *testing.T, addr netip.Addr) HealthTarget {
	t.Helper()
	for _, b := range h.cfg.VIPs[0].Backends {
		if b.Addr == addr {
			return b.HealthTarget()
		}
	}
	t.Fatalf("no backend %s", addr)
	return HealthTarget{}
}

// layout describes a service: its Backends as "addr#index" and each
// index's table entries.
func layout(s Service) (backends []string, entries map[uint32]int) {
	for _, b := range s.Backends {
		backends = append(backends, b.Addr.String()+"#"+itoa(int(b.Index)))
	}
	entries = shares(s.Table)
	return backends, entries
}

func TestControllerInitial(t *testing.T) {
	h := newCtrl(t, ctrlYAML, "")
	s := h.prog.service(t, vip80)
	bs, e := layout(s)
	if got := strings.Join(bs, " "); got != "198.18.1.2#0 198.18.1.3#1 198.18.1.4#2" {
		t.Errorf("backends %s", got)
	}
	if len(s.Table) != DefaultMaglevSize {
		t.Errorf("table of %d entries", len(s.Table))
	}
	// Weights 1:1:2.
	for idx, want := range map[uint32]float64{0: 0.25, 1: 0.25, 2: 0.5} {
		if got := float64(e[idx]) / DefaultMaglevSize; got < want-0.01 || got > want+0.01 {
			t.Errorf("index %d has share %.3f, want %.2f", idx, got, want)
		}
	}
	if s.Mode != ModeIPIP {
		t.Errorf("mode %v", s.Mode)
	}
	// Nothing changed: nothing pushed.
	if err := h.c.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if n := h.prog.setCount(); n != 1 {
		t.Errorf("%d pushes, want 1", n)
	}
}

func TestControllerBackendDown(t *testing.T) {
	h := newCtrl(t, ctrlYAML, "")
	h.health.set(h.target(t, be3), false, "connection refused")
	if err := h.c.Reconcile(); err != nil {
		t.Fatal(err)
	}
	bs, e := layout(h.prog.service(t, vip80))
	if got := strings.Join(bs, " "); got != "198.18.1.2#0 198.18.1.4#2" {
		t.Errorf("backends with .3 down: %s", got)
	}
	if e[1] != 0 || e[0]+e[2] != DefaultMaglevSize {
		t.Errorf("entries %v: the down backend must have none", e)
	}
	st := h.c.Status()[0]
	if b := st.Backends[1]; b.Health.Up || b.Health.Reason != "connection refused" || b.InService || b.TableEntries != 0 {
		t.Errorf("status of the down backend: %+v", b)
	}
	// Everything down: no backend, empty table (the data path drops new
	// flows and counts them).
	h.health.set(h.target(t, be2), false, "timeout")
	h.health.set(h.target(t, be4), false, "timeout")
	h.c.Reconcile()
	if s := h.prog.service(t, vip80); len(s.Backends) != 0 || len(s.Table) != 0 {
		t.Errorf("all down: %d backends, %d entries", len(s.Backends), len(s.Table))
	}
	// Back up: the same slots.
	for _, a := range []netip.Addr{be2, be3, be4} {
		h.health.set(h.target(t, a), true, "")
	}
	h.c.Reconcile()
	if bs, _ := layout(h.prog.service(t, vip80)); strings.Join(bs, " ") != "198.18.1.2#0 198.18.1.3#1 198.18.1.4#2" {
		t.Errorf("after recovery: %v", bs)
	}
	if n := h.prog.setCount(); n != 4 {
		t.Errorf("%d pushes, want 4 (initial, .3 down, all down, all up)", n)
	}
}

func TestControllerDrainRemove(t *testing.T) {
	h := newCtrl(t, ctrlYAML, "")
	if err := h.c.Remove(vip80, be2); !errors.Is(err, ErrNotDraining) {
		t.Fatalf("remove before drain: %v, want ErrNotDraining", err)
	}
	if err := h.c.Drain(vip80, be2); err != nil {
		t.Fatal(err)
	}
	bs, e := layout(h.prog.service(t, vip80))
	if len(bs) != 3 || e[0] != 0 {
		t.Errorf("draining: backends %v (want all 3: its flows continue), its entries %d (want 0)", bs, e[0])
	}
	if got := float64(e[2]) / DefaultMaglevSize; got < 0.66 || got > 0.68 {
		t.Errorf("weight 2 of 3 left has share %.3f, want 2/3", got)
	}
	if st := h.c.Status()[0].Backends[0]; st.State != "draining" || !st.InService || st.TableEntries != 0 || !st.Since.Equal(t0) {
		t.Errorf("status %+v", st)
	}
	if err := h.c.Remove(vip80, be2); err != nil {
		t.Fatal(err)
	}
	if bs, _ := layout(h.prog.service(t, vip80)); strings.Join(bs, " ") != "198.18.1.3#1 198.18.1.4#2" {
		t.Errorf("removed: backends %v", bs)
	}
	if err := h.c.Remove(vip80, be2); err != nil {
		t.Errorf("removing twice: %v", err)
	}
	if err := h.c.Undrain(vip80, be2); err != nil {
		t.Fatal(err)
	}
	if bs, e := layout(h.prog.service(t, vip80)); len(bs) != 3 || e[0] == 0 {
		t.Errorf("undrained: backends %v, entries %v", bs, e)
	}
	for _, tc := range []struct {
		v    VIP
		a    netip.Addr
		want error
	}{
		{VIP{Addr: vip80.Addr, Proto: ProtoTCP, Port: 81}, be2, ErrUnknownVIP},
		{vip80, be5, ErrUnknownBackend},
	} {
		if err := h.c.Drain(tc.v, tc.a); !errors.Is(err, tc.want) {
			t.Errorf("drain %s %s: %v, want %v", tc.v, tc.a, err, tc.want)
		}
	}
}

func TestControllerWeightZero(t *testing.T) {
	h := newCtrl(t, strings.Replace(ctrlYAML, "{address: 198.18.1.3}", "{address: 198.18.1.3, weight: 0}", 1), "")
	bs, e := layout(h.prog.service(t, vip80))
	if len(bs) != 3 || e[1] != 0 {
		t.Errorf("weight 0: backends %v, entries %v", bs, e)
	}
}

func TestControllerReload(t *testing.T) {
	h := newCtrl(t, ctrlYAML+`
  - address: 192.0.2.11
    protocol: udp
    port: 53
    backends: [{address: 198.18.2.2}]
`, "")
	vip53 := VIP{Addr: netip.MustParseAddr("192.0.2.11"), Proto: ProtoUDP, Port: 53}
	h.prog.service(t, vip53)
	before := h.prog.setCount()
	// .2 leaves, .5 joins: .5 takes the free slot 0; .3 and .4 keep
	// theirs. VIP 53 goes, VIP 443 comes.
	h.cfg = mustParse(t, `
site: lon
interfaces: [eth0]
tunnel_source4: 198.18.255.0/24
state_file: ""
vips:
  - address: 192.0.2.10
    port: 80
    backends:
      - {address: 198.18.1.3}
      - {address: 198.18.1.4, weight: 2}
      - {address: 198.18.1.5}
  - address: 192.0.2.10
    port: 443
    mode: dsr
    backends: [{address: 198.18.1.2, mac: "02:00:00:00:00:02"}]
`)
	if err := h.c.SetConfig(h.cfg); err != nil {
		t.Fatal(err)
	}
	bs, _ := layout(h.prog.service(t, vip80))
	if got := strings.Join(bs, " "); got != "198.18.1.5#0 198.18.1.3#1 198.18.1.4#2" {
		t.Errorf("backends after reload: %s", got)
	}
	vip443 := VIP{Addr: vip80.Addr, Proto: ProtoTCP, Port: 443}
	s := h.prog.service(t, vip443)
	if s.Mode != ModeDSR || s.Backends[0].MAC.String() != "02:00:00:00:00:02" {
		t.Errorf("dsr service %+v", s.Backends)
	}
	if len(h.prog.deletes) != 1 || h.prog.deletes[0] != vip53 {
		t.Errorf("deletes %v, want [%s]", h.prog.deletes, vip53)
	}
	if n := h.prog.setCount() - before; n != 2 {
		t.Errorf("%d pushes on reload, want 2 (vip 80 changed, vip 443 new)", n)
	}
	// The same file again (a SIGHUP without changes): nothing pushed.
	before = h.prog.setCount()
	if err := h.c.SetConfig(h.cfg); err != nil {
		t.Fatal(err)
	}
	if n := h.prog.setCount() - before; n != 0 {
		t.Errorf("%d pushes for an unchanged config", n)
	}
}

func TestControllerDrainForgottenWhenUnconfigured(t *testing.T) {
	h := newCtrl(t, ctrlYAML, "")
	h.c.Drain(vip80, be3)
	without := strings.Replace(ctrlYAML, "      - {address: 198.18.1.3}\n", "", 1)
	h.c.SetConfig(mustParse(t, without))
	h.c.SetConfig(mustParse(t, ctrlYAML))
	if st := h.c.Status()[0].Backends[1]; st.Addr != be3 || st.State != "active" {
		t.Errorf("a backend configured again must start active: %+v", st)
	}
}

func TestControllerPersistence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "lbd", "state.json")
	h := newCtrl(t, ctrlYAML, file)
	if err := h.c.Drain(vip80, be3); err != nil {
		t.Fatal(err)
	}
	// Restart with the backends listed in another order and a VIP
	// dropped: slots and the drain survive.
	reordered := `
site: lon
interfaces: [eth0]
tunnel_source4: 198.18.255.0/24
vips:
  - address: 192.0.2.10
    port: 80
    backends:
      - {address: 198.18.1.5}
      - {address: 198.18.1.4, weight: 2}
      - {address: 198.18.1.3}
      - {address: 198.18.1.2}
`
	h2 := newCtrl(t, reordered, file)
	bs, e := layout(h2.prog.service(t, vip80))
	if got := strings.Join(bs, " "); got != "198.18.1.2#0 198.18.1.3#1 198.18.1.4#2 198.18.1.5#3" {
		t.Errorf("backends after restart: %s", got)
	}
	if e[1] != 0 {
		t.Errorf("the drained backend got %d entries after a restart", e[1])
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"198.18.1.5": 3`) || !strings.Contains(string(data), `"state": "draining"`) {
		t.Errorf("state file:\n%s", data)
	}

	// A VIP the previous run programmed and the config dropped is deleted.
	other := strings.Replace(reordered, "port: 80", "port: 8080", 1)
	h3 := newCtrl(t, other, file)
	if len(h3.prog.deletes) != 1 || h3.prog.deletes[0] != vip80 {
		t.Errorf("deletes at start %v, want [%s]", h3.prog.deletes, vip80)
	}

	if err := os.WriteFile(file, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := NewController(ControllerConfig{Programmer: newFakeProgrammer(), StateFile: file}); err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("corrupt state file: %v", err)
	}
}

func TestControllerStateNotSaved(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "state.json")
	h := newCtrl(t, ctrlYAML, file)
	// A directory where the file should be: the rename fails.
	os.Remove(file)
	if err := os.Mkdir(file, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := h.c.Drain(vip80, be2); err == nil {
		t.Fatal("drain succeeded without saving")
	}
	if st := h.c.Status()[0].Backends[0]; st.State != "active" {
		t.Errorf("unsaved drain applied: %+v", st)
	}
}

func TestControllerRetry(t *testing.T) {
	prog := newFakeProgrammer()
	prog.setFail(errBoom)
	clock := NewFakeClock(t0)
	c, err := NewController(ControllerConfig{Programmer: prog, Clock: clock, RetryInterval: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = c.SetConfig(mustParse(t, ctrlYAML))
	var pe *ProgramError
	if !errors.As(err, &pe) || pe.VIP != vip80 || !errors.Is(err, errBoom) {
		t.Fatalf("SetConfig: %v, want a ProgramError for %s", err, vip80)
	}
	if st := c.Status()[0]; st.Programmed || !strings.Contains(st.Error, "map update failed") {
		t.Errorf("status %+v", st)
	}
	prog.pushed = make(chan Service, 1)
	prog.setFail(nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	if err := clock.WaitForTimers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(5 * time.Second)
	select {
	case s := <-prog.pushed:
		if s.VIP != vip80 {
			t.Errorf("pushed %s", s.VIP)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no retry")
	}
	if st := c.Status()[0]; !st.Programmed || st.Error != "" {
		t.Errorf("status after retry %+v", st)
	}
}

func TestAssignSlots(t *testing.T) {
	bs := func(addrs ...netip.Addr) []BackendConfig {
		var out []BackendConfig
		for _, a := range addrs {
			out = append(out, BackendConfig{Addr: a})
		}
		return out
	}
	s := assignSlots(nil, bs(be2, be3, be4))
	s = assignSlots(s, bs(be2, be4)) // .3 leaves slot 1 free
	s = assignSlots(s, bs(be5, be2, be4, be3))
	want := map[netip.Addr]uint32{be2: 0, be5: 1, be4: 2, be3: 3}
	for a, idx := range want {
		if s[a] != idx {
			t.Errorf("%s has slot %d, want %d", a, s[a], idx)
		}
	}
}

// installedProgrammer knows the VIPs an earlier run left (like the XDP
// loader's pinned maps).
type installedProgrammer struct {
	*fakeProgrammer
	installed []VIP
}

func (p installedProgrammer) Installed() []VIP { return p.installed }

func TestControllerDeletesLeftovers(t *testing.T) {
	stale := VIP{Addr: netip.MustParseAddr("192.0.2.99"), Proto: ProtoUDP, Port: 53}
	prog := installedProgrammer{fakeProgrammer: newFakeProgrammer(), installed: []VIP{stale, vip80}}
	c, err := NewController(ControllerConfig{Programmer: prog})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetConfig(mustParse(t, ctrlYAML)); err != nil {
		t.Fatal(err)
	}
	if len(prog.deletes) != 1 || prog.deletes[0] != stale {
		t.Errorf("deletes %v, want [%s] (installed, not configured)", prog.deletes, stale)
	}
	prog.service(t, vip80)
}

// TestControllerWarmUp: after a restart, a VIP the data path still has
// keeps its pinned tables until its backends are probed (or the warm-up
// ends); a VIP it does not have is programmed at once.
func TestControllerWarmUp(t *testing.T) {
	cfg := mustParse(t, ctrlYAML+`
  - address: 192.0.2.11
    port: 80
    backends: [{address: 198.18.2.2}]
`)
	vip11 := VIP{Addr: netip.MustParseAddr("192.0.2.11"), Proto: ProtoTCP, Port: 80}
	health := &fakeHealth{}
	for _, v := range cfg.VIPs {
		for _, b := range v.Backends {
			health.setProbed(b.HealthTarget(), false)
		}
	}
	prog := installedProgrammer{fakeProgrammer: newFakeProgrammer(), installed: []VIP{vip80}}
	clock := NewFakeClock(t0)
	c, err := NewController(ControllerConfig{Programmer: prog, Health: health, Clock: clock, WarmUp: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	prog.service(t, vip11) // not in the data path: at once
	if _, ok := prog.services[vip80]; ok {
		t.Fatal("installed VIP pushed before its backends were probed")
	}
	if st := c.Status()[0]; st.VIP != vip80 || !st.Waiting || st.Programmed {
		t.Errorf("status %+v", st)
	}
	// .3 probed down, .2 probed up, .4 not yet: still waiting.
	b := cfg.VIPs[0].Backends
	health.setProbed(b[0].HealthTarget(), true)
	health.setProbed(b[1].HealthTarget(), true)
	health.set(b[1].HealthTarget(), false, "connection refused")
	c.HealthProbed()
	if _, ok := prog.services[vip80]; ok {
		t.Fatal("pushed with a backend unprobed")
	}
	health.setProbed(b[2].HealthTarget(), true)
	c.HealthProbed()
	if bs, _ := layout(prog.service(t, vip80)); strings.Join(bs, " ") != "198.18.1.2#0 198.18.1.4#2" {
		t.Errorf("after the first probes: %v (the dead .3 must never have been pushed)", bs)
	}

	// Another restart where probes never come: the warm-up ends.
	prog2 := installedProgrammer{fakeProgrammer: newFakeProgrammer(), installed: []VIP{vip80}}
	health2 := &fakeHealth{}
	health2.setProbed(b[0].HealthTarget(), false)
	c2, err := NewController(ControllerConfig{Programmer: prog2, Health: health2, Clock: clock, WarmUp: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	c2.SetConfig(mustParse(t, ctrlYAML))
	prog2.pushed = make(chan Service, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c2.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	for range 2 { // Run's timer: at the retry interval (5s), then at the end of the warm-up
		if err := clock.WaitForTimers(ctx, 1); err != nil {
			t.Fatal(err)
		}
		clock.Advance(5 * time.Second)
	}
	select {
	case s := <-prog2.pushed:
		if s.VIP != vip80 || len(s.Backends) != 3 {
			t.Errorf("after the warm-up: %+v", s.Backends)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("not pushed at the end of the warm-up")
	}
}
