package geo

import (
	"fmt"
	"net/netip"
)

// Networks returns up to limit IPv4 networks of the database whose
// location satisfies match, spread evenly over the address space the
// database lists (so a sample of a country covers its many operators, not
// the first few). It walks the whole IPv4 tree: for tools (gslbctl
// simulate), not for the answer path.
func (d *DB) Networks(match func(Location) bool, limit int) ([]netip.Prefix, error) {
	out, err := d.NetworksFor([]func(Location) bool{match}, limit)
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// NetworksFor is Networks for several matchers in one walk of the tree:
// out[i] samples the networks matchers[i] accepts.
func (d *DB) NetworksFor(matchers []func(Location) bool, limit int) ([][]netip.Prefix, error) {
	all := make([][]netip.Prefix, len(matchers))
	if limit <= 0 {
		return all, nil
	}
	for res := range d.r.NetworksWithin(netip.PrefixFrom(netip.IPv4Unspecified(), 0)) {
		if err := res.Err(); err != nil {
			return nil, fmt.Errorf("%s: walk networks: %w", d.name, err)
		}
		p := res.Prefix()
		if a := p.Addr().Unmap(); a.Is4() && p.Addr().Is6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a, p.Bits()-96)
		}
		if !p.Addr().Is4() {
			continue
		}
		r := d.Lookup(p.Addr())
		if !r.Found {
			continue
		}
		for i, m := range matchers {
			if m(r.Location) {
				all[i] = append(all[i], p)
			}
		}
	}
	for i, nets := range all {
		if len(nets) > limit {
			out := make([]netip.Prefix, 0, limit)
			for j := range limit {
				out = append(out, nets[j*len(nets)/limit])
			}
			all[i] = out
		}
	}
	return all, nil
}
