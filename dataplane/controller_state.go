package dataplane

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// The controller persists, in Config.StateFile, what must survive a
// restart of lbd while the pinned data path keeps forwarding:
//   - each backend's slot (Backend.Index): the connection table holds
//     slots, so a restart that numbered backends differently would send
//     established flows to the wrong proxies;
//   - the operator's drains and removals: an upgrade restart must not
//     undrain the backend being worked on;
//   - which VIPs were programmed, so that a VIP dropped from the config
//     while lbd was down is deleted from the data path at start.
//
// The file is JSON, written to a temporary file and renamed over the old
// one, so a crash leaves the old or the new version, never half of one:
//
//	{"version": 1, "vips": [{"vip": "tcp/192.0.2.10:80",
//	  "slots": {"198.18.1.2": 0, "198.18.1.3": 1},
//	  "operator": {"198.18.1.3": {"state": "draining", "since": "2025-01-02T03:04:05Z"}}}]}
type persistedState struct {
	Version int            `json:"version"`
	VIPs    []persistedVIP `json:"vips"`
}

type persistedVIP struct {
	VIP      string                `json:"vip"`
	Slots    map[string]uint32     `json:"slots"`
	Operator map[string]operatorOp `json:"operator,omitempty"`
}

// operatorOp is an operator's action on a backend.
type operatorOp struct {
	State string    `json:"state"` // "draining" or "removed"
	Since time.Time `json:"since"`
}

const (
	opDraining = "draining"
	opRemoved  = "removed"
)

// savedState is the state file as loaded.
type savedState struct {
	slots map[VIP]map[netip.Addr]uint32
	ops   map[BackendKey]operatorOp
}

// loadState reads the state file; a missing file is an empty state. A
// corrupt file is an error: starting with other slots than the running
// data path's would break established flows, so the operator decides.
func loadState(path string) (savedState, error) {
	st := savedState{slots: make(map[VIP]map[netip.Addr]uint32), ops: make(map[BackendKey]operatorOp)}
	if path == "" {
		return st, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read state file: %w", err)
	}
	var ps persistedState
	if err := json.Unmarshal(data, &ps); err != nil {
		return st, fmt.Errorf("state file %s: %w (fix it, or remove it to renumber backends)", path, err)
	}
	if ps.Version != 1 {
		return st, fmt.Errorf("state file %s: version %d is not 1", path, ps.Version)
	}
	for i, pv := range ps.VIPs {
		v, err := ParseVIP(pv.VIP)
		if err != nil {
			return st, fmt.Errorf("state file %s: vips[%d]: %w", path, i, err)
		}
		slots := make(map[netip.Addr]uint32, len(pv.Slots))
		used := make(map[uint32]bool, len(pv.Slots))
		for a, idx := range pv.Slots {
			addr, err := netip.ParseAddr(a)
			if err != nil {
				return st, fmt.Errorf("state file %s: vips[%d].slots: %q is not an address", path, i, a)
			}
			if used[idx] {
				return st, fmt.Errorf("state file %s: vips[%d].slots: index %d is used twice", path, i, idx)
			}
			used[idx] = true
			slots[addr] = idx
		}
		st.slots[v] = slots
		for a, op := range pv.Operator {
			addr, err := netip.ParseAddr(a)
			if err != nil || (op.State != opDraining && op.State != opRemoved) {
				return st, fmt.Errorf("state file %s: vips[%d].operator[%q]: invalid entry", path, i, a)
			}
			st.ops[BackendKey{VIP: v, Addr: addr}] = op
		}
	}
	return st, nil
}

// encodeState renders the controller's persistent state. Called with c.mu
// held.
func (c *Controller) encodeState() ([]byte, error) {
	ps := persistedState{Version: 1, VIPs: []persistedVIP{}}
	for _, v := range slices.SortedFunc(maps.Keys(c.vips), compareVIPs) {
		st := c.vips[v]
		if st.cfg == nil {
			continue // being deleted: forget it
		}
		pv := persistedVIP{VIP: v.String(), Slots: make(map[string]uint32, len(st.slots))}
		for a, idx := range st.slots {
			pv.Slots[a.String()] = idx
		}
		for k, op := range c.ops {
			if k.VIP == v {
				if pv.Operator == nil {
					pv.Operator = make(map[string]operatorOp)
				}
				pv.Operator[k.Addr.String()] = op
			}
		}
		ps.VIPs = append(ps.VIPs, pv)
	}
	return json.MarshalIndent(ps, "", "  ")
}

// saveState writes the state file atomically. Called with c.mu held.
func (c *Controller) saveState() error {
	if c.stateFile == "" {
		return nil
	}
	data, err := c.encodeState()
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	if err := writeFileAtomic(c.stateFile, data); err != nil {
		return fmt.Errorf("save state file: %w", err)
	}
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after a successful rename, a no-op
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

func compareVIPs(a, b VIP) int {
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Proto, b.Proto); c != 0 {
		return c
	}
	return cmp.Compare(a.Port, b.Port)
}
