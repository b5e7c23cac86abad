package main

// The wiring to the kernel side (dataplane/xdp) is kept in this file only.

import (
	"fmt"
	"net/netip"

	"github.com/gslbd/gslbd/dataplane"
	"github.com/gslbd/gslbd/dataplane/xdp"
)

// openXDP loads and attaches the load balancer for cfg.
func openXDP(cfg *dataplane.Config) (dataplaneHandle, error) {
	l, err := xdp.Open(xdp.Config{
		Interfaces: cfg.Interfaces, PinPath: cfg.PinPath, Generic: cfg.Generic,
		TunnelSource4: cfg.TunnelSource4, TunnelSource6: cfg.TunnelSource6, ConntrackSize: cfg.ConntrackSize,
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// checkLimits checks cfg against the data path's compiled-in limits, so
// that "lbd check" catches what the loader would refuse at run time.
func checkLimits(path string, cfg *dataplane.Config) error {
	var problems []string
	if n := len(cfg.VIPs); n > xdp.MaxVIPs {
		problems = append(problems, fmt.Sprintf("vips: %d VIPs, the data path takes at most %d", n, xdp.MaxVIPs))
	}
	total := 0
	for i, v := range cfg.VIPs {
		total += len(v.Backends)
		// Slots are dense (the lowest free one is taken), so the largest
		// Index is below the number of backends.
		if n := len(v.Backends); n > xdp.MaxBackends {
			problems = append(problems, fmt.Sprintf("vips[%d].backends: %d backends, the data path takes at most %d per VIP", i, n, xdp.MaxBackends))
		}
	}
	if total > xdp.MaxBackendSlots {
		problems = append(problems, fmt.Sprintf("vips: %d backends in all, the data path takes at most %d", total, xdp.MaxBackendSlots))
	}
	if cfg.MaglevSize > xdp.MaxTableSize {
		problems = append(problems, fmt.Sprintf("maglev.size: %d is more than the data path's %d", cfg.MaglevSize, xdp.MaxTableSize))
	}
	if len(problems) > 0 {
		return &dataplane.ConfigError{File: path, Problems: problems}
	}
	return nil
}

// decap attaches (or detaches) the IPIP decapsulator on a proxy host.
func decap(iface, pinPath string, local []netip.Addr, detach bool) error {
	if detach {
		return xdp.DetachDecap(iface, pinPath)
	}
	if len(local) > xdp.MaxDecapLocal {
		return fmt.Errorf("-local: %d addresses, at most %d", len(local), xdp.MaxDecapLocal)
	}
	return xdp.AttachDecap(iface, pinPath, local)
}
