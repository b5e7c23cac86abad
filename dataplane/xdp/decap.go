package xdp

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf/rlimit"
)

const decapPrefix = "decap_"

// AttachDecap attaches the IPIP decapsulator (bpf/decap.c) to iface on a
// proxy host: IPv4-in-IPv4 and IPv6-in-IPv6 packets lose their outer
// header and go up the stack; everything else passes untouched. With
// local addresses, only packets whose outer destination is one of them
// are decapsulated; with none, every IPIP packet is.
//
// The link is pinned under pinPath (a bpffs directory, created if
// missing) so the decapsulator outlives the command; attaching again
// replaces the program (and its address list) atomically.
func AttachDecap(iface, pinPath string, local []netip.Addr) error {
	if len(local) > MaxDecapLocal {
		return fmt.Errorf("xdp: decap on %s: %d local addresses, at most %d", iface, len(local), MaxDecapLocal)
	}
	for _, a := range local {
		if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
			return fmt.Errorf("xdp: decap on %s: local address %q must be plain IPv4 or IPv6", iface, a)
		}
	}
	if !filepath.IsAbs(pinPath) {
		return fmt.Errorf("xdp: decap on %s: pin path %q is not absolute", iface, pinPath)
	}
	idx, err := ifindex(iface)
	if err != nil {
		return err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("xdp: raise RLIMIT_MEMLOCK: %w", err)
	}
	if err := ensureBPFFS(pinPath); err != nil {
		return err
	}
	objs, err := loadDecapWith(local)
	if err != nil {
		return fmt.Errorf("xdp: decap on %s: %w", iface, err)
	}
	// The link holds the program and the program its map.
	defer objs.Close()
	lk, _, _, err := attachXDP(objs.Decap, iface, idx, filepath.Join(pinPath, decapPrefix+iface), false)
	if err != nil {
		return err
	}
	return lk.Close()
}

// DetachDecap removes the decapsulator AttachDecap pinned for iface. The
// error wraps fs.ErrNotExist when there is none.
func DetachDecap(iface, pinPath string) error {
	pin := filepath.Join(pinPath, decapPrefix+iface)
	if _, err := os.Stat(pin); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("xdp: no decapsulator pinned for %s at %s: %w", iface, pin, fs.ErrNotExist)
	}
	return unpinLink(pin)
}

// loadDecapWith loads decap.c with its local address list.
func loadDecapWith(local []netip.Addr) (*decapObjects, error) {
	spec, err := loadDecap()
	if err != nil {
		return nil, fmt.Errorf("parse embedded decap object: %w", err)
	}
	if err := spec.Variables[decapVarHaveLocal].Set(boolByte(len(local) > 0)); err != nil {
		return nil, fmt.Errorf("set have_local: %w", err)
	}
	var objs decapObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, loadError("decap", "", err)
	}
	for _, a := range local {
		k := decapLocalKey{Addr: addr16(a), Family: family(a)}
		if err := objs.DecapLocal.Put(k, uint8(1)); err != nil {
			objs.Close()
			return nil, fmt.Errorf("add local address %s: %w", a, err)
		}
	}
	return &objs, nil
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}
