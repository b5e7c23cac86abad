package xdp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// XDP modes as Modes reports them.
const (
	modeDriver  = "driver"
	modeGeneric = "generic"
)

// attachAll attaches lb to every configured interface (rolling back the
// links it created if one fails), fills tx_ports and removes the links of
// interfaces no longer configured.
func (l *Loader) attachAll() error {
	idx := make(map[string]int, len(l.cfg.Interfaces))
	for _, name := range l.cfg.Interfaces {
		i, err := ifindex(name)
		if err != nil {
			return err
		}
		idx[name] = i
	}
	if err := l.syncTxPorts(idx); err != nil {
		return err
	}
	var fresh []link.Link
	for _, name := range l.cfg.Interfaces {
		pin := filepath.Join(l.cfg.PinPath, linkPrefix+name)
		lk, mode, isNew, err := attachXDP(l.objs.Lb, name, idx[name], pin, l.cfg.Generic)
		if err != nil {
			for _, f := range fresh {
				_ = f.Unpin()
				_ = f.Close()
			}
			for n, lk := range l.links {
				_ = lk.Close()
				delete(l.links, n)
			}
			return err
		}
		if isNew {
			fresh = append(fresh, lk)
		}
		l.links[name] = lk
		l.modes[name] = mode
	}
	return removeStaleLinks(l.cfg.PinPath, l.cfg.Interfaces)
}

// syncTxPorts makes tx_ports hold exactly the configured interfaces.
func (l *Loader) syncTxPorts(idx map[string]int) error {
	want := make(map[uint32]bool, len(idx))
	for name, i := range idx {
		want[uint32(i)] = true
		if err := l.objs.TxPorts.Put(uint32(i), uint32(i)); err != nil {
			return fmt.Errorf("xdp: add %s to tx_ports: %w", name, err)
		}
	}
	var stale []uint32
	var k, v uint32
	it := l.objs.TxPorts.Iterate()
	for it.Next(&k, &v) {
		if !want[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("xdp: read tx_ports: %w", err)
	}
	for _, k := range stale {
		if err := l.objs.TxPorts.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("xdp: remove ifindex %d from tx_ports: %w", k, err)
		}
	}
	return nil
}

// attachXDP attaches prog to the interface through a link pinned at pin.
// An existing pinned link for the same interface gets the new program
// atomically; isNew reports whether a link was created.
func attachXDP(prog *ebpf.Program, iface string, ifindex int, pin string, generic bool) (lk link.Link, mode string, isNew bool, err error) {
	old, err := link.LoadPinnedLink(pin, nil)
	switch {
	case err == nil:
		info, ierr := old.Info()
		if ierr == nil && info.XDP() != nil && int(info.XDP().Ifindex) == ifindex {
			if err := old.Update(prog); err != nil {
				old.Close()
				return nil, "", false, fmt.Errorf("xdp: replace the program attached to %s (link %s): %w", iface, pin, err)
			}
			mode, err := xdpMode(ifindex)
			if err != nil {
				old.Close()
				return nil, "", false, fmt.Errorf("xdp: %s: %w", iface, err)
			}
			return old, mode, false, nil
		}
		// The pinned link is for an interface that was removed or
		// recreated: it no longer attaches anything.
		_ = old.Unpin()
		_ = old.Close()
	case !errors.Is(err, fs.ErrNotExist):
		return nil, "", false, fmt.Errorf("xdp: load pinned link %s: %w", pin, err)
	}

	modes := []link.XDPAttachFlags{link.XDPDriverMode, link.XDPGenericMode}
	if generic {
		modes = modes[1:]
	}
	var errs []error
	for _, m := range modes {
		lk, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: m})
		if err != nil {
			hint := ""
			if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) {
				hint = " (another XDP program is attached)"
			}
			errs = append(errs, fmt.Errorf("%s mode%s: %w", modeName(m), hint, err))
			continue
		}
		if err := lk.Pin(pin); err != nil {
			lk.Close()
			return nil, "", false, fmt.Errorf("xdp: pin the link of %s at %s: %w", iface, pin, err)
		}
		return lk, modeName(m), true, nil
	}
	return nil, "", false, fmt.Errorf("xdp: attach to %s: %w", iface, joinErrors(errs))
}

func modeName(m link.XDPAttachFlags) string {
	if m == link.XDPGenericMode {
		return modeGeneric
	}
	return modeDriver
}

// removeStaleLinks detaches the load balancer's links pinned under dir
// whose interface is not in keep.
func removeStaleLinks(dir string, keep []string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("xdp: list %s: %w", dir, err)
	}
	var errs []error
	for _, e := range entries {
		iface, ok := strings.CutPrefix(e.Name(), linkPrefix)
		if !ok || slices.Contains(keep, iface) {
			continue
		}
		if err := unpinLink(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// unpinLink removes a pinned link, which detaches its program.
func unpinLink(pin string) error {
	lk, err := link.LoadPinnedLink(pin, nil)
	if err != nil {
		return fmt.Errorf("xdp: load pinned link %s: %w", pin, err)
	}
	defer lk.Close()
	if err := lk.Unpin(); err != nil {
		return fmt.Errorf("xdp: unpin link %s: %w", pin, err)
	}
	return nil
}

// xdpMode asks rtnetlink how XDP is attached to the interface: the
// kernel knows it for a link that an earlier lbd created.
func xdpMode(ifindex int) (string, error) {
	rib, err := syscall.NetlinkRIB(syscall.RTM_GETLINK, syscall.AF_UNSPEC)
	if err != nil {
		return "", fmt.Errorf("netlink dump of links: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return "", fmt.Errorf("netlink dump of links: %w", err)
	}
	for i := range msgs {
		m := &msgs[i]
		if m.Header.Type != unix.RTM_NEWLINK || len(m.Data) < unix.SizeofIfInfomsg {
			continue
		}
		ifi := (*unix.IfInfomsg)(unsafe.Pointer(&m.Data[0]))
		if int(ifi.Index) != ifindex {
			continue
		}
		attrs, err := syscall.ParseNetlinkRouteAttr(m)
		if err != nil {
			return "", fmt.Errorf("netlink link attributes: %w", err)
		}
		for _, a := range attrs {
			if a.Attr.Type&^unix.NLA_F_NESTED != unix.IFLA_XDP {
				continue
			}
			switch xdpAttached(a.Value) {
			case 1: // XDP_ATTACHED_DRV
				return modeDriver, nil
			case 2: // XDP_ATTACHED_SKB
				return modeGeneric, nil
			case 3: // XDP_ATTACHED_HW
				return "offload", nil
			default:
				return "", errors.New("no XDP program attached")
			}
		}
		return "", errors.New("no XDP attributes in the link dump")
	}
	return "", fmt.Errorf("ifindex %d not in the link dump", ifindex)
}

// xdpAttached finds IFLA_XDP_ATTACHED in the nested IFLA_XDP attribute.
func xdpAttached(b []byte) uint8 {
	for len(b) >= unix.SizeofRtAttr {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		t := binary.NativeEndian.Uint16(b[2:4])
		if l < unix.SizeofRtAttr || l > len(b) {
			return 0
		}
		if t == unix.IFLA_XDP_ATTACHED && l > unix.SizeofRtAttr {
			return b[unix.SizeofRtAttr]
		}
		b = b[min(len(b), (l+unix.RTA_ALIGNTO-1)&^(unix.RTA_ALIGNTO-1)):]
	}
	return 0
}

// joinErrors is errors.Join on one line.
func joinErrors(errs []error) error {
	return oneLine{errors.Join(errs...)}
}

type oneLine struct{ error }

func (e oneLine) Error() string { return strings.ReplaceAll(e.error.Error(), "\n", "; ") }
func (e oneLine) Unwrap() error { return e.error }
