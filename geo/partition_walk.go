package geo

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"
	"go4.org/netipx"
)

// leaf is one prefix of a partition being built.
type leaf struct {
	hi, lo uint64 // first address, left-aligned: IPv4 in the top 32 bits of hi
	bits   uint8
	cls    int32 // class index, or aliasClass
}

// aliasClass marks a leaf of the IPv6 tree that aliases the IPv4 tree.
const aliasClass = -1

// walker lists the networks of one address family in order, fills what the
// listing leaves out, and merges equal siblings as they come.
type walker struct {
	r      *maxminddb.Reader
	c      *classifier
	leaves []leaf     // the partition so far, merged
	next   netip.Addr // the first address not covered yet; invalid once all is
	first  int        // prefix length of the first network listed, -1 before it
	v4     []leaf     // IPv6 only: the IPv4 partition, which aliases point to
	l0     int        // IPv6 only: the first IPv4 network's length
	what   string     // "ipv4" or "ipv6", for errors
}

// walkIPv4 partitions the IPv4 tree of the database (the ::/96 subtree of
// an IPv6 database). It also returns the length of the first network the
// database lists there, which identifies aliases of that tree in IPv6.
func walkIPv4(c *classifier) ([]leaf, int, error) {
	w := &walker{r: c.d.r, c: c, next: netip.IPv4Unspecified(), first: -1, what: "ipv4"}
	if err := w.walk(netip.PrefixFrom(netip.IPv4Unspecified(), 0)); err != nil {
		return nil, 0, err
	}
	return w.leaves, max(w.first, 0), nil
}

// walkIPv6 partitions the IPv6 tree. ::/96 is the IPv4 tree, which Lookup
// reaches through an alias leaf; the rest is listed as the 96 prefixes
// beside the path to it, so the IPv4 networks are not listed twice. The
// listing skips the other aliases of the IPv4 tree: walk finds them in its
// gaps.
func walkIPv6(c *classifier, v4 []leaf, l0 int) ([]leaf, error) {
	w := &walker{r: c.d.r, c: c, next: netip.IPv6Unspecified(), first: -1, v4: v4, l0: l0, what: "ipv6"}
	if c.d.r.Metadata.IPVersion != 6 {
		// An IPv4 database knows nothing about IPv6.
		w.emit(netip.PrefixFrom(netip.IPv6Unspecified(), 0), c.none)
		return w.leaves, nil
	}
	w.emitAlias(netip.PrefixFrom(netip.IPv6Unspecified(), 96))
	w.next = netip.MustParseAddr("::1:0:0")
	for i := 95; i >= 0; i-- {
		var a [16]byte
		a[i/8] = 0x80 >> (i % 8)
		if err := w.walk(netip.PrefixFrom(netip.AddrFrom16(a), i+1)); err != nil {
			return nil, err
		}
	}
	if w.next.IsValid() {
		return nil, fmt.Errorf("ipv6: listing ended at %s", w.next)
	}
	return w.leaves, nil
}

// walk lists the networks within p, which must begin at w.next.
func (w *walker) walk(p netip.Prefix) error {
	last := netipx.PrefixLastIP(p)
	for res := range w.r.NetworksWithin(p, maxminddb.IncludeNetworksWithoutData()) {
		if err := res.Err(); err != nil {
			return fmt.Errorf("%s: read networks within %s: %w", w.what, p, err)
		}
		q := res.Prefix()
		if w.first < 0 {
			w.first = 0
			if q.Addr().Is4() {
				w.first = q.Bits()
			}
		}
		if q.Addr().Is4() != p.Addr().Is4() || q.Bits() <= p.Bits() {
			// The listing began inside a network, which covers all of p;
			// for IPv4 without an IPv4 subtree it is an IPv6 prefix.
			q = p
		}
		if !w.next.IsValid() || !p.Contains(q.Addr()) || q.Addr().Less(w.next) {
			return fmt.Errorf("%s: network %s out of order (expected one from %s)", w.what, res.Prefix(), w.next)
		}
		if q.Addr() != w.next {
			if err := w.fill(q.Addr().Prev()); err != nil {
				return err
			}
		}
		cls, err := w.c.of(res)
		if err != nil {
			return fmt.Errorf("%s: network %s: %w", w.what, q, err)
		}
		w.emit(q, cls)
		w.next = netipx.PrefixLastIP(q).Next()
	}
	if w.next.IsValid() && !last.Less(w.next) {
		return w.fill(last)
	}
	return nil
}

// fill covers w.next through last, which the listing skipped. Only aliases
// of the IPv4 tree are skipped, and only in IPv6.
func (w *walker) fill(last netip.Addr) error {
	if w.v4 == nil {
		return fmt.Errorf("%s: no network listed for %s-%s", w.what, w.next, last)
	}
	for _, g := range netipx.IPRangeFrom(w.next, last).Prefixes() {
		if err := w.alias(g); err != nil {
			return err
		}
	}
	w.next = last.Next()
	return nil
}

// alias covers g, a prefix the listing skipped: one alias of the IPv4 tree
// or several. An alias at g is a node whose subtree is the IPv4 tree, so
// the first network within it is g's length plus that of the IPv4 tree's
// first network; two aliases at g's halves would give one more.
func (w *walker) alias(g netip.Prefix) error {
	if g.Bits() > 96 {
		return fmt.Errorf("%s: no network listed for %s", w.what, g)
	}
	var first maxminddb.Result
	for res := range w.r.NetworksWithin(g, maxminddb.IncludeAliasedNetworks(), maxminddb.IncludeNetworksWithoutData()) {
		first = res
		break
	}
	if err := first.Err(); err != nil {
		return fmt.Errorf("%s: read networks within %s: %w", w.what, g, err)
	}
	if q := first.Prefix(); q.Addr().Is6() && q.Bits() == g.Bits()+w.l0 {
		w.emitAlias(g)
		return nil
	}
	half := netip.PrefixFrom(g.Addr(), g.Bits()+1)
	if err := w.alias(half); err != nil {
		return err
	}
	return w.alias(netip.PrefixFrom(netipx.PrefixLastIP(half).Next(), g.Bits()+1))
}

// emitAlias adds a leaf that looks up the IPv4 tree, or the IPv4 tree's
// class when it has only one.
func (w *walker) emitAlias(g netip.Prefix) {
	if len(w.v4) == 1 {
		w.emit(g, w.v4[0].cls)
		return
	}
	w.emit(g, aliasClass)
}

// emit adds the next prefix in address order and merges it with its
// sibling while both have the same class. Aliases never merge.
func (w *walker) emit(p netip.Prefix, cls int32) {
	l := leaf{bits: uint8(p.Bits()), cls: cls} //nolint:gosec // at most 128
	if p.Addr().Is4() {
		a := p.Addr().As4()
		l.hi = uint64(binary.BigEndian.Uint32(a[:])) << 32
	} else {
		a := p.Addr().As16()
		l.hi, l.lo = binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])
	}
	if len(w.leaves) == cap(w.leaves) { // double: append grows large slices by 1.25
		w.leaves = append(make([]leaf, 0, max(1024, 2*cap(w.leaves))), w.leaves...)
	}
	w.leaves = append(w.leaves, l)
	for n := len(w.leaves); n >= 2; n-- {
		x, y := &w.leaves[n-2], &w.leaves[n-1]
		// Leaves are contiguous: y is x's sibling when they have the same
		// length and x is a left half.
		if x.cls != y.cls || x.cls == aliasClass || x.bits != y.bits || x.bits == 0 ||
			bitAt(x.hi, x.lo, int(x.bits)-1) != 0 {
			break
		}
		x.bits--
		w.leaves = w.leaves[:n-1]
	}
}

// bitAt is bit i (0 the most significant) of the 128-bit hi:lo.
func bitAt(hi, lo uint64, i int) uint64 {
	if i < 64 {
		return hi >> (63 - i) & 1
	}
	return lo >> (127 - i) & 1
}
