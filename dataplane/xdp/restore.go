package xdp

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/gslbd/gslbd/dataplane"
)

// restore rebuilds the loader's view of the services from the maps an
// earlier lbd pinned, and undoes what a crash in the middle of SetService
// or DeleteService left behind: backend slots and tables of VIP indexes
// that no VIP entry names, and vip_addrs entries without a VIP.
func (l *Loader) restore() error {
	byIndex := make(map[uint32]*vipState)
	var bad []lbVipKey
	var k lbVipKey
	var m lbVipMeta
	it := l.objs.Vips.Iterate()
	for it.Next(&k, &m) {
		if m.Index >= MaxVIPs || byIndex[m.Index] != nil {
			bad = append(bad, k)
			continue
		}
		st := &vipState{index: m.Index, mode: dataplane.Mode(m.Mode), published: true, backends: make(map[uint32]slot)}
		byIndex[m.Index] = st
		l.vips[vipFromKey(k)] = st
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("xdp: restore: read vips: %w", err)
	}
	for _, k := range bad {
		if err := l.objs.Vips.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("xdp: restore: delete bad vips entry: %w", err)
		}
	}

	type orphan struct {
		key uint32
		b   lbBackend
	}
	var orphans []orphan
	err := scan(l.objs.Backends, func(key uint32, b lbBackend) {
		if b.Flags&backendPresent == 0 {
			return
		}
		st := byIndex[key/MaxBackends]
		if st == nil || b.Real >= MaxBackendSlots || l.reals[b.Real] {
			orphans = append(orphans, orphan{key, b})
			return
		}
		l.reals[b.Real] = true
		st.backends[key%MaxBackends] = slot{addr: addrFrom16(b.Addr, b.Family), mac: b.Mac, real: b.Real}
	})
	if err != nil {
		return fmt.Errorf("xdp: restore: read backends: %w", err)
	}
	for _, o := range orphans {
		o.b.Flags = 0
		if err := l.objs.Backends.Put(o.key, o.b); err != nil {
			return fmt.Errorf("xdp: restore: clear orphan backend slot %d: %w", o.key, err)
		}
	}
	for i := uint32(0); i < MaxVIPs; i++ {
		if byIndex[i] != nil {
			continue
		}
		if err := l.objs.Maglev.Delete(i); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("xdp: restore: clear orphan maglev table %d: %w", i, err)
		}
	}

	for v := range l.vips {
		if err := l.syncVIPAddr(v.Addr, v.Proto); err != nil {
			return fmt.Errorf("xdp: restore: %w", err)
		}
	}
	want := make(map[lbVipAddrKey]bool, len(l.vips))
	for v := range l.vips {
		want[vipAddrKey(v)] = true
	}
	var ak lbVipAddrKey
	var stale []lbVipAddrKey
	ait := l.objs.VipAddrs.Iterate()
	for ait.Next(&ak, &m) {
		if !want[ak] {
			stale = append(stale, ak)
		}
	}
	if err := ait.Err(); err != nil {
		return fmt.Errorf("xdp: restore: read vip_addrs: %w", err)
	}
	for _, k := range stale {
		if err := l.objs.VipAddrs.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("xdp: restore: clear vip_addrs: %w", err)
		}
	}
	return nil
}
