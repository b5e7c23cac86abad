package xdp

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/gslbd/gslbd/dataplane"
)

// vipState is what the loader knows a VIP holds in the maps.
type vipState struct {
	index     uint32
	mode      dataplane.Mode
	published bool            // its vips entry is written: packets find it
	backends  map[uint32]slot // present backend slots by Backend.Index
}

// slot is one present backend slot. addr and mac are its identity: a
// Backend with the same Index but another address is a new backend (new
// counters; its slot is taken out before it is rewritten).
type slot struct {
	addr netip.Addr
	mac  [6]byte
	real uint32 // counter slot
}

const backendPresent = 1

// SetService installs or replaces a service. Order of writes, so that a
// packet never sees a half-made service: backend slots (new ones
// written absent, then marked present), then the Maglev table (a new
// inner map swapped in whole), then the VIP entry, then the slots of
// backends that left are marked absent (their flows are re-picked).
// Changing a service's mode first empties it (new packets are dropped as
// "no_backend" for the few map writes it takes), so no packet is sent in
// one mode to a backend set up for the other.
//
// If a map write fails, the error says so and the loader's view matches
// what was written: calling SetService again finishes the job.
func (l *Loader) SetService(s dataplane.Service) error {
	if err := l.validate(s); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.cleanZombies(); err != nil {
		return fmt.Errorf("xdp: set service %s: %w", s.VIP, err)
	}
	if err := l.setService(s); err != nil {
		return fmt.Errorf("xdp: set service %s: %w", s.VIP, err)
	}
	return nil
}

func (l *Loader) setService(s dataplane.Service) error {
	st := l.vips[s.VIP]
	if st == nil {
		idx, err := l.allocVIP()
		if err != nil {
			return err
		}
		st = &vipState{index: idx, mode: s.Mode, backends: make(map[uint32]slot)}
		l.vips[s.VIP] = st
	} else if st.mode != s.Mode && st.published {
		if err := l.emptyVIP(st); err != nil {
			return err
		}
		if err := l.putVIP(s.VIP, st.index, s.Mode); err != nil {
			return err
		}
	}
	st.mode = s.Mode
	if err := l.writeBackends(st, s.Backends); err != nil {
		return err
	}
	if err := l.putTable(st.index, s.Table); err != nil {
		return err
	}
	if !st.published {
		if err := l.putVIP(s.VIP, st.index, s.Mode); err != nil {
			return err
		}
		st.published = true
	}
	if err := l.syncVIPAddr(s.VIP.Addr, s.VIP.Proto); err != nil {
		return err
	}
	keep := make(map[uint32]bool, len(s.Backends))
	for _, b := range s.Backends {
		keep[b.Index] = true
	}
	for _, idx := range sortedKeys(st.backends) {
		if !keep[idx] {
			if err := l.removeSlot(st, idx, st.backends[idx]); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeBackends writes the slots of backends that are new or changed
// identity, with fresh counters.
func (l *Loader) writeBackends(st *vipState, backends []dataplane.Backend) error {
	bs := slices.Clone(backends)
	slices.SortFunc(bs, func(a, b dataplane.Backend) int { return cmp.Compare(a.Index, b.Index) })
	var changed []dataplane.Backend
	for _, b := range bs {
		old, ok := st.backends[b.Index]
		if !ok || old.addr != b.Addr || old.mac != mac6(b.MAC) {
			changed = append(changed, b)
		}
	}
	reals, err := l.allocReals(len(changed))
	if err != nil {
		return err
	}
	for i, b := range changed {
		if err := l.writeBackend(st, b, reals[i]); err != nil {
			l.freeReals(reals[i:])
			return err
		}
	}
	return nil
}

func (l *Loader) writeBackend(st *vipState, b dataplane.Backend, real uint32) error {
	ns := slot{addr: b.Addr, mac: mac6(b.MAC), real: real}
	if err := l.zeroReal(real); err != nil {
		return err
	}
	if old, ok := st.backends[b.Index]; ok {
		if err := l.removeSlot(st, b.Index, old); err != nil {
			return err
		}
	}
	// Absent first: the bytes change while readers ignore them.
	if err := l.writeSlot(st.index, b.Index, ns, false); err != nil {
		return err
	}
	if err := l.writeSlot(st.index, b.Index, ns, true); err != nil {
		return err
	}
	st.backends[b.Index] = ns
	return nil
}

// DeleteService removes a VIP: from the first write on, its packets are
// passed to the stack. Deleting a VIP that is not installed is not an
// error.
func (l *Loader) DeleteService(v dataplane.VIP) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.cleanZombies(); err != nil {
		return fmt.Errorf("xdp: delete service %s: %w", v, err)
	}
	st := l.vips[v]
	if st == nil {
		return nil
	}
	if err := l.objs.Vips.Delete(vipKey(v)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("xdp: delete service %s: %w", v, err)
	}
	delete(l.vips, v)
	// Until its table and slots are cleared, the VIP's index and counter
	// slots stay reserved: a new VIP must not inherit present slots.
	l.zombies = append(l.zombies, st)
	if err := l.syncVIPAddr(v.Addr, v.Proto); err != nil {
		return fmt.Errorf("xdp: delete service %s: %w", v, err)
	}
	if err := l.cleanZombies(); err != nil {
		return fmt.Errorf("xdp: delete service %s: %w", v, err)
	}
	return nil
}

// cleanZombies finishes clearing deleted VIPs.
func (l *Loader) cleanZombies() error {
	for len(l.zombies) > 0 {
		if err := l.emptyVIP(l.zombies[0]); err != nil {
			return err
		}
		l.zombies = l.zombies[1:]
	}
	return nil
}

// Installed lists the VIPs installed in the data path, including those
// an earlier lbd left pinned: after a restart, the control plane deletes
// the ones it no longer configures.
func (l *Loader) Installed() []dataplane.VIP {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]dataplane.VIP, 0, len(l.vips))
	for v := range l.vips {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b dataplane.VIP) int {
		return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port))
	})
	return out
}

// emptyVIP removes a VIP's table and marks its backend slots absent.
func (l *Loader) emptyVIP(st *vipState) error {
	if err := l.objs.Maglev.Delete(st.index); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("remove maglev table %d: %w", st.index, err)
	}
	for _, idx := range sortedKeys(st.backends) {
		if err := l.removeSlot(st, idx, st.backends[idx]); err != nil {
			return err
		}
	}
	return nil
}

func (l *Loader) removeSlot(st *vipState, idx uint32, old slot) error {
	// Only the flag changes: a reader sees the old slot or an absent one.
	if err := l.writeSlot(st.index, idx, old, false); err != nil {
		return err
	}
	l.reals[old.real] = false
	delete(st.backends, idx)
	return nil
}

func (l *Loader) writeSlot(vidx, idx uint32, s slot, present bool) error {
	v := lbBackend{Addr: addr16(s.addr), Mac: s.mac, Family: family(s.addr), Real: s.real}
	if present {
		v.Flags = backendPresent
	}
	if err := l.objs.Backends.Put(vidx*MaxBackends+idx, v); err != nil {
		return fmt.Errorf("write backend slot %d: %w", idx, err)
	}
	return nil
}

func (l *Loader) putVIP(v dataplane.VIP, idx uint32, mode dataplane.Mode) error {
	if err := l.objs.Vips.Put(vipKey(v), lbVipMeta{Index: idx, Mode: uint8(mode)}); err != nil {
		return fmt.Errorf("write vips entry: %w", err)
	}
	return nil
}

// putTable swaps in a new inner map holding [M, table...], or removes
// the VIP's table when it is empty.
func (l *Loader) putTable(vidx uint32, table []uint32) error {
	if len(table) == 0 {
		if err := l.objs.Maglev.Delete(vidx); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("remove maglev table: %w", err)
		}
		return nil
	}
	inner, err := ebpf.NewMap(&ebpf.MapSpec{
		Name: fmt.Sprintf("maglev_%d", vidx), Type: ebpf.Array, KeySize: 4, ValueSize: 4,
		MaxEntries: uint32(len(table) + 1), Flags: unix.BPF_F_INNER_MAP,
	})
	if err != nil {
		return fmt.Errorf("create maglev table (M=%d): %w", len(table), err)
	}
	defer inner.Close() // the outer map holds its own reference
	if err := fillTable(inner, table); err != nil {
		return fmt.Errorf("fill maglev table (M=%d): %w", len(table), err)
	}
	if err := l.objs.Maglev.Put(vidx, inner); err != nil {
		return fmt.Errorf("swap maglev table: %w", err)
	}
	return nil
}

func fillTable(m *ebpf.Map, table []uint32) error {
	const chunk = 1 << 16
	keys := make([]uint32, 0, chunk)
	vals := make([]uint32, 0, chunk)
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		_, err := m.BatchUpdate(keys, vals, nil)
		if errors.Is(err, ebpf.ErrNotSupported) {
			for i := range keys {
				if err := m.Put(keys[i], vals[i]); err != nil {
					return err
				}
			}
			err = nil
		}
		keys, vals = keys[:0], vals[:0]
		return err
	}
	keys = append(keys, 0)
	vals = append(vals, uint32(len(table)))
	for i, v := range table {
		keys = append(keys, uint32(i+1))
		vals = append(vals, v)
		if len(keys) == chunk {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// syncVIPAddr sets the vip_addrs entry of (addr, proto) to the VIP with
// the lowest index there (where drops without a port are counted), or
// removes it when no VIP is left.
func (l *Loader) syncVIPAddr(addr netip.Addr, proto uint8) error {
	var best *vipState
	var bestVIP dataplane.VIP
	for v, st := range l.vips {
		if st.published && v.Addr == addr && v.Proto == proto && (best == nil || st.index < best.index) {
			best, bestVIP = st, v
		}
	}
	key := vipAddrKey(dataplane.VIP{Addr: addr, Proto: proto})
	if best == nil {
		if err := l.objs.VipAddrs.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("remove vip_addrs entry: %w", err)
		}
		return nil
	}
	meta := lbVipMeta{Index: best.index, Mode: uint8(l.vips[bestVIP].mode)}
	if err := l.objs.VipAddrs.Put(key, meta); err != nil {
		return fmt.Errorf("write vip_addrs entry: %w", err)
	}
	return nil
}

func (l *Loader) allocVIP() (uint32, error) {
	used := make([]bool, MaxVIPs)
	for _, st := range l.vips {
		used[st.index] = true
	}
	for _, st := range l.zombies {
		used[st.index] = true
	}
	for i, u := range used {
		if !u {
			if err := l.objs.VipStats.Put(uint32(i), make([]lbVipCounters, l.ncpu)); err != nil {
				return 0, fmt.Errorf("reset counters of VIP slot %d: %w", i, err)
			}
			return uint32(i), nil
		}
	}
	return 0, fmt.Errorf("all %d VIP slots are in use", MaxVIPs)
}

// allocReals reserves n backend counter slots.
func (l *Loader) allocReals(n int) ([]uint32, error) {
	out := make([]uint32, 0, n)
	for i := 0; i < len(l.reals) && len(out) < n; i++ {
		if !l.reals[i] {
			out = append(out, uint32(i))
		}
	}
	if len(out) < n {
		return nil, fmt.Errorf("%d new backends but only %d of %d backend counter slots are free", n, len(out), MaxBackendSlots)
	}
	for _, r := range out {
		l.reals[r] = true
	}
	return out, nil
}

func (l *Loader) freeReals(rs []uint32) {
	for _, r := range rs {
		l.reals[r] = false
	}
}

func (l *Loader) zeroReal(r uint32) error {
	if err := l.objs.RealStats.Put(r, make([]lbRealCounters, l.ncpu)); err != nil {
		return fmt.Errorf("reset backend counter slot %d: %w", r, err)
	}
	return nil
}

func mac6(m net.HardwareAddr) (out [6]byte) {
	copy(out[:], m)
	return out
}

func sortedKeys(m map[uint32]slot) []uint32 {
	keys := make([]uint32, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// validate checks a service against what the data path can carry; the
// error names the VIP and the problem.
func (l *Loader) validate(s dataplane.Service) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("xdp: service %s: %s", s.VIP, fmt.Sprintf(format, args...))
	}
	v := s.VIP
	switch {
	case !v.Addr.IsValid():
		return fail("no VIP address")
	case v.Addr.Zone() != "" || v.Addr.Is4In6():
		return fail("VIP address %s must be plain IPv4 or IPv6 (no zone, no IPv4-mapped form)", v.Addr)
	case v.Proto != dataplane.ProtoTCP && v.Proto != dataplane.ProtoUDP:
		return fail("protocol %d is neither TCP nor UDP", v.Proto)
	}
	switch s.Mode {
	case dataplane.ModeIPIP:
		if v.Addr.Is4() && !l.cfg.TunnelSource4.IsValid() {
			return fail("IPIP needs an IPv4 tunnel source prefix (Config.TunnelSource4)")
		}
		if v.Addr.Is6() && !l.cfg.TunnelSource6.IsValid() {
			return fail("IPIP needs an IPv6 tunnel source prefix (Config.TunnelSource6)")
		}
	case dataplane.ModeDSR:
	default:
		return fail("unknown mode %d", s.Mode)
	}
	if len(s.Backends) > MaxBackends {
		return fail("%d backends, at most %d", len(s.Backends), MaxBackends)
	}
	var indexes [MaxBackends]bool
	addrs := make(map[netip.Addr]uint32, len(s.Backends))
	for _, b := range s.Backends {
		if b.Index >= MaxBackends {
			return fail("backend %s: index %d is out of range 0..%d", b.Addr, b.Index, MaxBackends-1)
		}
		if indexes[b.Index] {
			return fail("backend index %d appears twice", b.Index)
		}
		indexes[b.Index] = true
		if !b.Addr.IsValid() || b.Addr.Zone() != "" || b.Addr.Is4In6() {
			return fail("backend %d: address %q must be plain IPv4 or IPv6", b.Index, b.Addr)
		}
		if other, dup := addrs[b.Addr]; dup {
			return fail("backends %d and %d have the same address %s", other, b.Index, b.Addr)
		}
		addrs[b.Addr] = b.Index
		switch s.Mode {
		case dataplane.ModeIPIP:
			if b.Addr.Is4() != v.Addr.Is4() {
				return fail("backend %d (%s): IPIP needs a backend of the VIP's address family", b.Index, b.Addr)
			}
		case dataplane.ModeDSR:
			if len(b.MAC) != 6 {
				return fail("backend %d (%s): DSR needs its 6-byte MAC address, have %q", b.Index, b.Addr, b.MAC)
			}
			if b.MAC[0]&1 != 0 || mac6(b.MAC) == ([6]byte{}) {
				return fail("backend %d (%s): MAC %s is not a unicast address", b.Index, b.Addr, b.MAC)
			}
		}
	}
	if m := len(s.Table); m > 0 {
		if m > MaxTableSize || !isPrime(uint32(m)) {
			return fail("Maglev table size %d is not a prime in 2..%d", m, MaxTableSize)
		}
		for i, e := range s.Table {
			if e >= MaxBackends || !indexes[e] {
				return fail("Maglev table entry %d refers to backend index %d, which is not in Backends", i, e)
			}
		}
	}
	return nil
}

func isPrime(n uint32) bool {
	if n < 2 {
		return false
	}
	for d := uint32(2); d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}
