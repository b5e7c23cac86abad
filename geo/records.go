package geo

import (
	"fmt"
	"sync/atomic"

	"github.com/oschwald/maxminddb-golang/v2"
)

// records turns database records into decoded values of type T, so that a
// lookup decodes nothing it decoded before. Small databases are decoded
// whole when opened (table); large ones fill a lock-free cache on demand.
type records[T any] struct {
	table    map[uintptr]T // every record, by data offset; nil when cache is used
	cache    *cache[T]
	decode   func(maxminddb.Result) (T, error)
	networks int // networks walked when building table
}

// indexRecords walks r's networks and decodes every distinct record if
// there are at most limit of them. Otherwise it stops at limit and leaves
// the rest to the cache, seeded with what it decoded.
func indexRecords[T any](r *maxminddb.Reader, limit int,
	decode func(maxminddb.Result) (T, error)) (records[T], error) {
	rs := records[T]{decode: decode}
	table := make(map[uintptr]T)
	networks := 0
	for res := range r.Networks() {
		if err := res.Err(); err != nil {
			return rs, fmt.Errorf("read networks: %w", err)
		}
		networks++
		off := res.Offset()
		if _, ok := table[off]; ok {
			continue
		}
		if len(table) == limit {
			rs.cache = newCache[T]()
			for off, v := range table {
				rs.cache.put(off, v)
			}
			return rs, nil
		}
		v, err := decode(res)
		if err != nil {
			return rs, fmt.Errorf("network %s: %w", res.Prefix(), err)
		}
		table[off] = v
	}
	rs.table, rs.networks = table, networks
	return rs, nil
}

// get returns the decoded record behind res, which must be Found.
func (rs records[T]) get(res maxminddb.Result) (T, bool) {
	off := res.Offset()
	if rs.table != nil {
		v, ok := rs.table[off]
		return v, ok
	}
	if v, ok := rs.cache.get(off); ok {
		return v, true
	}
	v, err := rs.decode(res)
	if err != nil {
		return v, false // a corrupt record: nothing known
	}
	rs.cache.put(off, v)
	return v, true
}

// counts reports the networks and distinct records seen when indexing, or
// zeros when the database was too large to index.
func (rs records[T]) counts() (networks, records int) {
	return rs.networks, len(rs.table)
}

// cacheBits sizes the cache: 2^16 slots (512 KiB of pointers per database).
const cacheBits = 16

// cache is a direct-mapped, lock-free cache of decoded records keyed by
// their data offset. A slot holds one immutable entry; a colliding record
// replaces it.
type cache[T any] struct {
	slots []atomic.Pointer[cacheEntry[T]]
}

type cacheEntry[T any] struct {
	off uintptr
	v   T
}

func newCache[T any]() *cache[T] {
	return &cache[T]{slots: make([]atomic.Pointer[cacheEntry[T]], 1<<cacheBits)}
}

func (c *cache[T]) slot(off uintptr) *atomic.Pointer[cacheEntry[T]] {
	return &c.slots[(uint64(off)*0x9e3779b97f4a7c15)>>(64-cacheBits)]
}

func (c *cache[T]) get(off uintptr) (T, bool) {
	if e := c.slot(off).Load(); e != nil && e.off == off {
		return e.v, true
	}
	var zero T
	return zero, false
}

func (c *cache[T]) put(off uintptr, v T) {
	c.slot(off).Store(&cacheEntry[T]{off: off, v: v})
}
