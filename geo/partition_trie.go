package geo

import (
	"errors"
	"fmt"
)

// A trie is a binary trie in one flat array of uint32 entries. The first
// 1<<rootBits entries are indexed by the top rootBits bits of the address;
// an entry is either a leaf or the offset in the array of a pair of
// children (for bit 0 and bit 1 at the next depth). A leaf packs the class
// index and the prefix length, so a lookup needs nothing else.
type trie struct {
	a []uint32
}

const (
	rootBits   = 16
	leafFlag   = 1 << 31
	classShift = 8
	// maxClasses bounds the class indexes a leaf holds (23 bits); the index
	// maxClasses itself marks an alias of the IPv4 tree.
	maxClasses = 1<<(31-classShift) - 1
	aliasIndex = maxClasses
)

func entryBits(e uint32) int  { return int(e & (1<<classShift - 1)) }
func entryClass(e uint32) int { return int(e&^leafFlag) >> classShift }

// buildTrie builds the trie of a partition's leaves, which are in address
// order and cover the whole family.
func buildTrie(leaves []leaf) (trie, error) {
	a := make([]uint32, 1<<rootBits, 1<<rootBits+2*len(leaves))
	for _, l := range leaves {
		idx := aliasIndex
		if l.cls != aliasClass {
			idx = int(l.cls)
		}
		e := leafFlag | uint32(idx)<<classShift | uint32(l.bits) //nolint:gosec // idx < 1<<23
		s := int(l.hi >> (64 - rootBits))
		if l.bits <= rootBits {
			for i := range 1 << (rootBits - l.bits) {
				a[s+i] = e
			}
			continue
		}
		for depth := rootBits; depth < int(l.bits); depth++ {
			if a[s] == 0 {
				if len(a) >= leafFlag-2 {
					return trie{}, errors.New("too many prefixes for 31-bit offsets")
				}
				a[s] = uint32(len(a)) //nolint:gosec // checked above
				a = append(a, 0, 0)
			} else if a[s]&leafFlag != 0 {
				return trie{}, fmt.Errorf("prefix /%d at depth %d overlaps a shorter one", l.bits, depth)
			}
			s = int(a[s]) + int(bitAt(l.hi, l.lo, depth))
		}
		if a[s] != 0 {
			return trie{}, fmt.Errorf("prefix /%d overlaps another", l.bits)
		}
		a[s] = e
	}
	for i, e := range a {
		if e == 0 {
			return trie{}, fmt.Errorf("entry %d not covered", i)
		}
	}
	return trie{a: a[:len(a):len(a)]}, nil
}

// lookup4 returns the leaf for an IPv4 address.
func (t *trie) lookup4(v uint32) uint32 {
	a := t.a
	e := a[v>>(32-rootBits)]
	for d := rootBits; e&leafFlag == 0; d++ {
		e = a[e+(v>>(31-d))&1]
	}
	return e
}

// lookup6 returns the leaf for an IPv6 address hi:lo.
func (t *trie) lookup6(hi, lo uint64) uint32 {
	a := t.a
	e := a[hi>>(64-rootBits)]
	x := hi << rootBits // the next bit on top
	for d := rootBits; e&leafFlag == 0; d++ {
		if d == 64 {
			x = lo
		}
		e = a[uint64(e)+x>>63]
		x <<= 1
	}
	return e
}
