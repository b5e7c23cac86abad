package dataplane

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestSipHashVectors pins sipHash24 to the reference implementation's test
// vectors (key 00 01 .. 0f, message 00 01 .. len-1).
func TestSipHashVectors(t *testing.T) {
	k0, k1 := uint64(0x0706050403020100), uint64(0x0f0e0d0c0b0a0908)
	msg := make([]byte, 64)
	for i := range msg {
		msg[i] = byte(i)
	}
	for _, tc := range []struct {
		n    int
		want uint64
	}{
		{0, 0x726fdb47dd0e0e31},
		{1, 0x74f839c593dc67fd},
		{7, 0xab0200f58b01d137},
		{8, 0x93f5f5799a932462},
		{15, 0xa129ca6149be45e5}, // the paper's worked example
		{63, 0x958a324ceb064572},
	} {
		if got := sipHash24(k0, k1, msg[:tc.n]); got != tc.want {
			t.Errorf("siphash(%d bytes) = %#016x, want %#016x", tc.n, got, tc.want)
		}
	}
}

// TestMaglevHashGolden pins the permutation of a few IDs: if this fails,
// LBs of one site running different versions would build different tables
// and break each other's flows on ECMP changes. Do not update these values.
func TestMaglevHashGolden(t *testing.T) {
	for _, tc := range []struct {
		id           string
		seed         uint64
		offsetHash   uint64
		skipHash     uint64
		offset, skip uint64 // at M = 65537
	}{
		{"198.18.1.2", 0, 0xd1de0e35a3e32868, 0xd8c755b0f403e9f3, 49374, 59892},
		{"198.18.1.2", 1234, 0xbaff2f7848f5501e, 0x02add179bc793c4c, 31651, 15437},
		{"2001:db8::10", 0, 0xdf4c3dbaa2f09375, 0xdc4567fa5d5e8c75, 20212, 35958},
		{"2001:db8::10", 1234, 0xe6b7881b929b804a, 0x7d203cac3956bc76, 36628, 48247},
	} {
		if h := maglevHash(tc.seed, maglevOffsetKey, tc.id); h != tc.offsetHash {
			t.Errorf("offset hash(%q, seed %d) = %#016x, want %#016x", tc.id, tc.seed, h, tc.offsetHash)
		}
		if h := maglevHash(tc.seed, maglevSkipKey, tc.id); h != tc.skipHash {
			t.Errorf("skip hash(%q, seed %d) = %#016x, want %#016x", tc.id, tc.seed, h, tc.skipHash)
		}
		off, skip := maglevPermutation(tc.id, DefaultMaglevSize, tc.seed)
		if off != tc.offsetHash%DefaultMaglevSize || skip != tc.skipHash%(DefaultMaglevSize-1)+1 {
			t.Errorf("permutation(%q, seed %d) = offset %d skip %d, not derived from the hashes", tc.id, tc.seed, off, skip)
		}
		if off != tc.offset || skip != tc.skip {
			t.Errorf("permutation(%q, seed %d) = offset %d skip %d, want %d %d", tc.id, tc.seed, off, skip, tc.offset, tc.skip)
		}
	}
}

func equalBackends(n int) []MaglevBackend {
	bs := make([]MaglevBackend, n)
	for i := range bs {
		bs[i] = MaglevBackend{ID: fmt.Sprintf("198.18.%d.%d", i/250, i%250+1), Index: uint32(i), Weight: 1}
	}
	return bs
}

func shares(table []uint32) map[uint32]int {
	out := make(map[uint32]int)
	for _, e := range table {
		out[e]++
	}
	return out
}

func mustMaglev(t testing.TB, bs []MaglevBackend, m uint32, seed uint64) []uint32 {
	t.Helper()
	table, err := Maglev(bs, m, seed)
	if err != nil {
		t.Fatal(err)
	}
	if len(table) != int(m) {
		t.Fatalf("table has %d entries, want %d", len(table), m)
	}
	return table
}

func TestMaglevBalance(t *testing.T) {
	const n = 100
	table := mustMaglev(t, equalBackends(n), DefaultMaglevSize, 1234)
	s := shares(table)
	if len(s) != n {
		t.Fatalf("%d backends have entries, want %d", len(s), n)
	}
	most := 0
	for _, c := range s {
		most = max(most, c)
	}
	avg := float64(DefaultMaglevSize) / n
	if r := float64(most) / avg; r > 1.01 {
		t.Errorf("max/avg = %.4f (max %d entries, avg %.1f), want <= 1.01", r, most, avg)
	}
}

// TestMaglevRemoveDisruption: removing one of N backends must move its own
// entries and few others (connections whose LRU entry expired would be
// re-balanced needlessly).
func TestMaglevRemoveDisruption(t *testing.T) {
	for _, n := range []int{10, 100, 655} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			bs := equalBackends(n)
			before := mustMaglev(t, bs, DefaultMaglevSize, 1234)
			for _, gone := range []int{0, n / 2, n - 1} {
				rest := append(append([]MaglevBackend(nil), bs[:gone]...), bs[gone+1:]...)
				after := mustMaglev(t, rest, DefaultMaglevSize, 1234)
				removedShare, collateral := 0, 0
				for i := range before {
					switch {
					case before[i] == uint32(gone):
						removedShare++
						if after[i] == uint32(gone) {
							t.Fatalf("slot %d still points at the removed backend", i)
						}
					case before[i] != after[i]:
						collateral++
					}
				}
				t.Logf("removing %d of %d: %d own slots, %d others moved", gone, n, removedShare, collateral)
				if frac := float64(collateral) / DefaultMaglevSize; frac > 0.01 {
					t.Errorf("removing backend %d moved %d other slots (%.2f%%), want <= 1%% (its own share: %d)",
						gone, collateral, 100*frac, removedShare)
				}
			}
		})
	}
}

func TestMaglevWeights(t *testing.T) {
	bs := []MaglevBackend{
		{ID: "198.18.1.1", Index: 0, Weight: 1},
		{ID: "198.18.1.2", Index: 1, Weight: 2},
		{ID: "198.18.1.3", Index: 2, Weight: 3},
		{ID: "198.18.1.4", Index: 3, Weight: 0}, // draining
	}
	table := mustMaglev(t, bs, DefaultMaglevSize, 1234)
	s := shares(table)
	if s[3] != 0 {
		t.Errorf("weight-0 backend has %d entries, want 0", s[3])
	}
	for i, want := range []float64{1.0 / 6, 2.0 / 6, 3.0 / 6} {
		got := float64(s[uint32(i)]) / DefaultMaglevSize
		if d := got - want; d > 0.01 || d < -0.01 {
			t.Errorf("backend %d (weight %d) has share %.4f, want %.4f +- 0.01", i, i+1, got, want)
		}
	}
}

// TestMaglevGolden pins a whole table: same input, same table, in every
// version (LBs of a site must agree). Do not update the value.
func TestMaglevGolden(t *testing.T) {
	bs := []MaglevBackend{
		{ID: "198.18.1.2", Index: 0, Weight: 1},
		{ID: "198.18.1.3", Index: 1, Weight: 1},
		{ID: "198.18.1.4", Index: 2, Weight: 2},
		{ID: "2001:db8::10", Index: 7, Weight: 1},
		{ID: "198.18.1.5", Index: 3, Weight: 0},
	}
	table := mustMaglev(t, bs, 1009, 1234)
	const want = "5b89a318e5e0540bf5718aadec4b75cd8945ed41c192dd999484d956a911c251"
	if got := tableDigest(table); got != want {
		t.Errorf("table sha256 = %s, want %s", got, want)
	}
	table = mustMaglev(t, equalBackends(100), DefaultMaglevSize, 42)
	const want100 = "0b17cefc4c4827236b733dac6cd619b70858cfd6815b447b55b2be7883f4bec5"
	if got := tableDigest(table); got != want100 {
		t.Errorf("100-backend table sha256 = %s, want %s", got, want100)
	}
}

func tableDigest(table []uint32) string {
	buf := make([]byte, 4*len(table))
	for i, e := range table {
		binary.LittleEndian.PutUint32(buf[4*i:], e)
	}
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:])
}

func TestMaglevOrderIndependent(t *testing.T) {
	bs := equalBackends(50)
	for i := range bs {
		bs[i].Weight = uint32(i%4 + 1)
	}
	want := tableDigest(mustMaglev(t, bs, 5003, 7))
	r := rand.New(rand.NewPCG(1, 2))
	for range 5 {
		r.Shuffle(len(bs), func(i, j int) { bs[i], bs[j] = bs[j], bs[i] })
		if got := tableDigest(mustMaglev(t, bs, 5003, 7)); got != want {
			t.Fatalf("shuffled input gave a different table")
		}
	}
}

func TestMaglevSeedMatters(t *testing.T) {
	bs := equalBackends(20)
	if tableDigest(mustMaglev(t, bs, 5003, 1)) == tableDigest(mustMaglev(t, bs, 5003, 2)) {
		t.Error("seeds 1 and 2 gave the same table")
	}
}

func TestMaglevEmpty(t *testing.T) {
	for _, bs := range [][]MaglevBackend{nil, {{ID: "198.18.1.2", Weight: 0}}} {
		table, err := Maglev(bs, DefaultMaglevSize, 0)
		if err != nil || len(table) != 0 {
			t.Errorf("Maglev(%v) = %d entries, %v; want an empty table", bs, len(table), err)
		}
	}
}

func TestMaglevErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		bs   []MaglevBackend
		m    uint32
		want string
	}{
		{"not prime", equalBackends(1), 65536, "table size 65536 is not prime (the next prime is 65537)"},
		{"one", equalBackends(1), 1, "table size 1 is not prime"},
		{"too small", equalBackends(700), DefaultMaglevSize, "table size 65537 is less than 100 x 700 weighted backends (70000); use a prime >= 70001"},
		{"empty id", []MaglevBackend{{ID: "", Index: 3, Weight: 1}}, 101, "backend with index 3 has an empty ID"},
		{"dup id", []MaglevBackend{{ID: "a", Weight: 1}, {ID: "a", Index: 1, Weight: 0}}, 211, `backend ID "a" appears twice`},
		{"dup index", []MaglevBackend{{ID: "a", Weight: 1}, {ID: "b", Weight: 1}}, 211, `backends "a" and "b" share index 0`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Maglev(tc.bs, tc.m, 0)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	// Draining backends do not count against the size.
	bs := equalBackends(700)
	for i := range bs[600:] {
		bs[600+i].Weight = 0
	}
	if _, err := Maglev(bs, DefaultMaglevSize, 0); err != nil {
		t.Errorf("600 weighted of 700: %v", err)
	}
}

func TestPrimes(t *testing.T) {
	for n, want := range map[uint32]bool{0: false, 1: false, 2: true, 3: true, 4: false, 1009: true, 65537: true, 65539: true, 655373: true, 655371: false, 4294967291: true, 4294967295: false} {
		if isPrime(n) != want {
			t.Errorf("isPrime(%d) = %v", n, !want)
		}
	}
	if p := nextPrime(65538); p != 65539 {
		t.Errorf("nextPrime(65538) = %d", p)
	}
	if p := nextPrime(4294967292); p != 0 {
		t.Errorf("nextPrime(max) = %d, want 0", p)
	}
}

func BenchmarkMaglev(b *testing.B) {
	for _, tc := range []struct {
		n int
		m uint32
	}{{100, DefaultMaglevSize}, {1000, 655373}} {
		b.Run(fmt.Sprintf("N=%d/M=%d", tc.n, tc.m), func(b *testing.B) {
			bs := equalBackends(tc.n)
			for b.Loop() {
				if _, err := Maglev(bs, tc.m, 1234); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
