package dataplane

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
)

// DefaultMaglevSize is the Maglev table size M when the configuration
// leaves it out: a prime, enough for 655 weighted backends per VIP at the
// 100 x N the paper recommends (Katran uses the same).
const DefaultMaglevSize = 65537

// MaglevMinRatio is the minimum table size per weighted backend. Below
// about 100 entries per backend the tables of two backend sets that differ
// in one backend differ in more than ~1% of entries (Eisenbud et al. 2016,
// section 5.3), and each backend's share drifts further from its weight.
const MaglevMinRatio = 100

// MaglevBackend is one backend as Maglev sees it.
type MaglevBackend struct {
	// ID is the backend's stable identity (its address, "198.18.1.2"). The
	// backend's permutation of the table is a hash of (seed, ID) only, so
	// a backend keeps its preferred slots when others come and go, on
	// every LB of the site that uses the same seed.
	ID string
	// Index is what the table entries hold (Backend.Index).
	Index uint32
	// Weight is the backend's relative share of the entries; 0 gives it
	// none (draining).
	Weight uint32
}

// Maglev builds the lookup table of Eisenbud et al., "Maglev: A Fast and
// Reliable Software Network Load Balancer" (NSDI 2016), section 3.4, with
// weights: it returns m entries, each the Index of a backend.
//
// Each backend's permutation of the slots is offset + j*skip (mod m), with
// offset and skip drawn from SipHash-2-4 of its ID keyed with the seed
// (maglevHash); the hash is part of the format and must never change, or
// every LB of a site running a different version would disagree on tables.
// Backends take turns claiming their next unclaimed slot, in the order of
// their IDs (so the input order does not matter). Weights decide who gets
// a turn: in each round every backend earns its weight in credit and takes
// a turn when it holds the largest weight's worth, so the turns, hence the
// entries, are proportional to the weights within one entry.
//
// m must be prime (so every skip walks all slots) and at least
// MaglevMinRatio times the number of backends with a non-zero weight. With
// no such backend the table is empty (nil): no backend is available. IDs
// must be unique and non-empty, and two weighted backends must not share
// an Index.
//
// The cost is about m table writes plus the permutation steps skipped over
// claimed slots (m ln m in all, as in the paper); with very unequal weights
// the rounds where light backends wait add up to m x len(backends) credit
// checks at worst.
func Maglev(backends []MaglevBackend, m uint32, seed uint64) ([]uint32, error) {
	if !isPrime(m) {
		return nil, fmt.Errorf("maglev: table size %d is not prime (the next prime is %d)", m, nextPrime(m))
	}
	bs, err := weightedBackends(backends)
	if err != nil {
		return nil, err
	}
	if len(bs) == 0 {
		return nil, nil
	}
	if need := uint64(len(bs)) * MaglevMinRatio; uint64(m) < need {
		return nil, fmt.Errorf("maglev: table size %d is less than %d x %d weighted backends (%d); use a prime >= %d",
			m, MaglevMinRatio, len(bs), need, nextPrime(uint32(min(need, 1<<32-1))))
	}
	return populate(bs, m, seed), nil
}

// weightedBackends checks the input and returns the backends with a
// non-zero weight, sorted by ID.
func weightedBackends(backends []MaglevBackend) ([]MaglevBackend, error) {
	bs := make([]MaglevBackend, 0, len(backends))
	seen := make(map[string]bool, len(backends))
	for _, b := range backends {
		if b.ID == "" {
			return nil, fmt.Errorf("maglev: backend with index %d has an empty ID", b.Index)
		}
		if seen[b.ID] {
			return nil, fmt.Errorf("maglev: backend ID %q appears twice", b.ID)
		}
		seen[b.ID] = true
		if b.Weight > 0 {
			bs = append(bs, b)
		}
	}
	slices.SortFunc(bs, func(a, b MaglevBackend) int { return cmp.Compare(a.ID, b.ID) })
	idx := make(map[uint32]string, len(bs))
	for _, b := range bs {
		if other, dup := idx[b.Index]; dup {
			return nil, fmt.Errorf("maglev: backends %q and %q share index %d", other, b.ID, b.Index)
		}
		idx[b.Index] = b.ID
	}
	return bs, nil
}

// populate fills the table (the paper's Pseudocode 1, with weighted turns).
// bs is non-empty, sorted, weighted; m is prime and > len(bs).
func populate(bs []MaglevBackend, m uint32, seed uint64) []uint32 {
	n := len(bs)
	pos := make([]uint64, n)  // the slot each backend tries next
	skip := make([]uint64, n) // its step through the slots
	credit := make([]uint64, n)
	var wmax uint64
	for i, b := range bs {
		pos[i], skip[i] = maglevPermutation(b.ID, uint64(m), seed)
		wmax = max(wmax, uint64(b.Weight))
	}
	const free = -1
	owner := make([]int32, m)
	for i := range owner {
		owner[i] = free
	}
	mm := uint64(m)
	filled := uint64(0)
	for {
		for i := range n {
			credit[i] += uint64(bs[i].Weight)
			if credit[i] < wmax {
				continue
			}
			credit[i] -= wmax
			c := pos[i]
			for owner[c] != free {
				if c += skip[i]; c >= mm {
					c -= mm
				}
			}
			owner[c] = int32(i)
			if c += skip[i]; c >= mm {
				c -= mm
			}
			pos[i] = c
			if filled++; filled == mm {
				table := make([]uint32, m)
				for s, o := range owner {
					table[s] = bs[o].Index
				}
				return table
			}
		}
	}
}

// maglevPermutation returns a backend's first slot (offset) and its step
// (skip, in [1, m-1]) through a table of prime size m.
func maglevPermutation(id string, m, seed uint64) (offset, skip uint64) {
	offset = maglevHash(seed, maglevOffsetKey, id) % m
	skip = maglevHash(seed, maglevSkipKey, id)%(m-1) + 1
	return offset, skip
}

// Second SipHash key halves, one per use, so that offset and skip are
// independent hashes of the same (seed, ID). ASCII "lbd-offs" and
// "lbd-skip" read as little-endian integers. Part of the table format:
// never change them.
const (
	maglevOffsetKey uint64 = 0x7366666f2d64626c
	maglevSkipKey   uint64 = 0x70696b732d64626c
)

// maglevHash is SipHash-2-4 (Aumasson and Bernstein, 2012) of id with the
// 128-bit key (seed, k1). It is implemented here rather than taken from a
// library so that its output is pinned by this package's tests (the
// reference test vectors and golden values), not by a dependency's version.
func maglevHash(seed, k1 uint64, id string) uint64 {
	return sipHash24(seed, k1, []byte(id))
}

// sipHash24 is SipHash-2-4 with key (k0, k1), k0 being the first eight key
// bytes read as a little-endian integer.
func sipHash24(k0, k1 uint64, msg []byte) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13)
		v1 ^= v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16)
		v3 ^= v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21)
		v3 ^= v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17)
		v1 ^= v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	last := uint64(len(msg)) << 56
	for ; len(msg) >= 8; msg = msg[8:] {
		w := binary.LittleEndian.Uint64(msg)
		v3 ^= w
		round()
		round()
		v0 ^= w
	}
	for i := len(msg) - 1; i >= 0; i-- {
		last |= uint64(msg[i]) << (8 * uint(i))
	}
	v3 ^= last
	round()
	round()
	v0 ^= last
	v2 ^= 0xff
	round()
	round()
	round()
	round()
	return v0 ^ v1 ^ v2 ^ v3
}

// isPrime reports whether n is prime, by trial division (at most 32768
// divisions for a uint32; table sizes are checked once per config).
func isPrime(n uint32) bool {
	if n < 2 {
		return false
	}
	if n%2 == 0 {
		return n == 2
	}
	for d := uint64(3); d*d <= uint64(n); d += 2 {
		if uint64(n)%d == 0 {
			return false
		}
	}
	return true
}

// nextPrime returns the smallest prime >= n, or 0 when there is none that
// fits a uint32.
func nextPrime(n uint32) uint32 {
	for p := uint64(max(n, 2)); p < 1<<32; p++ {
		if isPrime(uint32(p)) {
			return uint32(p)
		}
	}
	return 0
}
