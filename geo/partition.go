package geo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/oschwald/maxminddb-golang/v2"
)

// Partition maps every address to a class (a small int chosen by the
// classify function given to DB.Partition) and to the largest prefix around
// it in which every address has the same class. When an answer depends on
// the client only through its class, that prefix is the ECS scope (RFC 7871)
// the answer may claim: a whole /12 of one country when the classes are
// countries, instead of the /24 the database happens to store. This is
// gdnsd's merged map, computed once per database rather than per query.
//
// A Partition holds no reference to the DB it was built from; it is
// immutable and safe for concurrent use.
type Partition struct {
	v4, v6  trie  // the IPv4 tree (32 bits) and the IPv6 tree (128 bits)
	classes []int // class values, by the index a trie leaf holds
	unknown int   // classify(Location{}, false): the class of invalid addresses
	leaves  int   // merged leaf prefixes in both trees
}

// Partition classifies every network of the database, both families and
// the gaps between them (addresses the database has nothing for are
// classified with found false and a zero Location), and merges sibling
// prefixes of equal class bottom-up into the largest supernets.
//
// classify must be a pure function of its arguments: it is called once per
// distinct database record (and once for "no data"), not per network.
// Location.ASN is always 0: an ASN database attached with WithASN is not
// consulted, and Partition's networks are not narrowed by its networks.
//
// IPv4 is partitioned as its own 32-bit tree, from the IPv4 part of the
// database. Where an IPv6 database aliases that part into IPv6 (::/96, and
// usually ::ffff:0:0/96, 2002::/16 and 2001::/32), Lookup follows the alias
// as the database does: the 32 bits after the alias's prefix are looked up
// in the IPv4 tree, and the network is the alias's prefix extended by the
// IPv4 network. Such a network is uniform but may not be maximal at the
// alias's own boundary.
func (d *DB) Partition(classify func(loc Location, found bool) int) (*Partition, error) {
	if classify == nil {
		return nil, errors.New("partition geo database: nil classify")
	}
	c := &classifier{d: d, classify: classify,
		byOffset: map[uintptr]int32{}, byValue: map[int]int32{}}
	p, err := c.partition()
	if err != nil {
		return nil, fmt.Errorf("partition geo database %s: %w", d.name, err)
	}
	return p, nil
}

func (c *classifier) partition() (*Partition, error) {
	none, err := c.index(c.classify(Location{}, false))
	if err != nil {
		return nil, err
	}
	c.none = none
	v4, l0, err := walkIPv4(c)
	if err != nil {
		return nil, err
	}
	v6, err := walkIPv6(c, v4, l0)
	if err != nil {
		return nil, err
	}
	p := &Partition{classes: c.values, unknown: c.values[none], leaves: len(v4) + len(v6)}
	if p.v4, err = buildTrie(v4); err != nil {
		return nil, fmt.Errorf("ipv4: %w", err)
	}
	if p.v6, err = buildTrie(v6); err != nil {
		return nil, fmt.Errorf("ipv6: %w", err)
	}
	return p, nil
}

// Lookup returns the class of addr and the largest prefix around it whose
// addresses all have that class. IPv4-mapped IPv6 addresses are looked up
// as IPv4; zones are ignored. An invalid addr gets the class of "no data"
// and the zero Prefix. It does not allocate.
func (p *Partition) Lookup(addr netip.Addr) (class int, network netip.Prefix) {
	if !addr.IsValid() {
		return p.unknown, netip.Prefix{}
	}
	addr = addr.Unmap()
	if addr.Is4() {
		a4 := addr.As4()
		v := binary.BigEndian.Uint32(a4[:])
		e := p.v4.lookup4(v)
		bits := entryBits(e)
		var m [4]byte
		binary.BigEndian.PutUint32(m[:], v&^(^uint32(0)>>bits))
		return p.classes[entryClass(e)], netip.PrefixFrom(netip.AddrFrom4(m), bits)
	}
	a16 := addr.As16()
	hi, lo := binary.BigEndian.Uint64(a16[:8]), binary.BigEndian.Uint64(a16[8:])
	e := p.v6.lookup6(hi, lo)
	bits := entryBits(e)
	if entryClass(e) == aliasIndex {
		// The 32 bits after the alias's prefix are an IPv4 address.
		e = p.v4.lookup4(uint32(shiftLeft(hi, lo, bits) >> 32))
		bits += entryBits(e)
	}
	if bits <= 64 {
		hi, lo = hi&^(^uint64(0)>>bits), 0
	} else {
		lo &^= ^uint64(0) >> (bits - 64)
	}
	var m [16]byte
	binary.BigEndian.PutUint64(m[:8], hi)
	binary.BigEndian.PutUint64(m[8:], lo)
	return p.classes[entryClass(e)], netip.PrefixFrom(netip.AddrFrom16(m), bits)
}

// Len is the number of prefixes the address space is cut into after
// merging (IPv4 and IPv6 together; an alias of the IPv4 tree counts once).
func (p *Partition) Len() int { return p.leaves }

// sizeBytes is the memory the lookup structures take.
func (p *Partition) sizeBytes() int {
	return 4*(len(p.v4.a)+len(p.v6.a)) + 8*len(p.classes)
}

// shiftLeft returns the top 64 bits of the 128-bit hi:lo shifted left by n.
func shiftLeft(hi, lo uint64, n int) uint64 {
	switch {
	case n == 0:
		return hi
	case n < 64:
		return hi<<n | lo>>(64-n)
	default:
		return lo << (n - 64)
	}
}

// classifier gives every database record a class index, calling classify
// once per distinct record.
type classifier struct {
	d        *DB
	classify func(Location, bool) int
	byOffset map[uintptr]int32 // record data offset -> class index
	byValue  map[int]int32     // class value -> class index
	values   []int             // class index -> class value
	none     int32             // the class index of "no data"
}

func (c *classifier) index(v int) (int32, error) {
	if i, ok := c.byValue[v]; ok {
		return i, nil
	}
	if len(c.values) >= maxClasses {
		return 0, fmt.Errorf("classify returned more than %d distinct classes", maxClasses)
	}
	i := int32(len(c.values)) //nolint:gosec // bounded by maxClasses
	c.byValue[v] = i
	c.values = append(c.values, v)
	return i, nil
}

// of is the class index of the network res, as Lookup would classify it.
func (c *classifier) of(res maxminddb.Result) (int32, error) {
	if !res.Found() {
		return c.none, nil
	}
	off := res.Offset()
	if i, ok := c.byOffset[off]; ok {
		return i, nil
	}
	loc, ok := c.d.locs.get(res)
	if !ok {
		loc = Location{} // a corrupt record: Lookup reports nothing known
	}
	i, err := c.index(c.classify(loc, ok))
	if err != nil {
		return 0, err
	}
	c.byOffset[off] = i
	return i, nil
}
