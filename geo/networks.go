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
	if limit <= 0 {
		return nil, nil
	}
	var all []netip.Prefix
	for res := range d.r.NetworksWithin(netip.PrefixFrom(netip.IPv4Unspecified(), 0)) {
		if err := res.Err(); err != nil {
			return nil, fmt.Errorf("%s: walk networks: %w", d.name, err)
		}
		p := res.Prefix()
		a := p.Addr().Unmap()
		if a.Is4() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a, p.Bits()-96)
		}
		if !p.Addr().Is4() {
			continue
		}
		if r := d.Lookup(p.Addr()); r.Found && match(r.Location) {
			all = append(all, p)
		}
	}
	if len(all) <= limit {
		return all, nil
	}
	out := make([]netip.Prefix, 0, limit)
	for i := range limit {
		out = append(out, all[i*len(all)/limit])
	}
	return out, nil
}
