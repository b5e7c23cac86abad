package geo

import (
	"math/rand/v2"
	"net/netip"
	"strconv"
	"sync"
	"testing"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/oschwald/maxminddb-golang/v2"
	"go4.org/netipx"
)

// Classes in these tests are two-letter codes packed into an int, so a
// failure reads "GB", not 18242; "--" is no data, "??" a record without
// the field.
const (
	noData  = '-'<<8 | '-'
	noField = '?'<<8 | '?'
)

func code(s string) int {
	if len(s) != 2 {
		return noField
	}
	return int(s[0])<<8 | int(s[1])
}

func codeString(c int) string {
	if c < '-'<<8 || c > 'Z'<<8|'Z' {
		return strconv.Itoa(c)
	}
	return string([]byte{byte(c >> 8), byte(c)})
}

var classifiers = []struct {
	name     string
	classify func(Location, bool) int
}{
	{"country", func(l Location, found bool) int {
		if !found {
			return noData
		}
		return code(l.Country)
	}},
	{"continent", func(l Location, found bool) int {
		if !found {
			return noData
		}
		return code(l.Continent)
	}},
	{"found", func(_ Location, found bool) int {
		if found {
			return 1
		}
		return 0
	}},
	{"constant", func(Location, bool) int { return 7 }},
}

func classifierNamed(t testing.TB, name string) func(Location, bool) int {
	t.Helper()
	for _, c := range classifiers {
		if c.name == name {
			return c.classify
		}
	}
	t.Fatalf("no classifier %q", name)
	return nil
}

// partitionFixture has neighbours of one country held in different records
// (they merge), another country inside a block (it splits the block), gaps,
// and IPv4 aliased into IPv6 (::/96, ::ffff:0:0/96, 2001::/32, 2002::/16).
// mmdbwriter replaces data in order, so KR cuts into JP.
func partitionFixture(t testing.TB) []byte {
	rec := func(continent, country, city string) mmdbtype.Map {
		return geoip2Record(continent, country, "", city, 0, 0, false)
	}
	return buildMMDB(t, mmdbwriter.Options{DatabaseType: "GeoIP2-City", IPVersion: 6, RecordSize: 28}, []fixtureNet{
		{"192.0.2.0/25", rec("EU", "GB", "London")},
		{"192.0.2.128/26", rec("EU", "GB", "Manchester")},
		{"192.0.2.192/27", rec("EU", "GB", "Leeds")},
		{"192.0.2.224/27", rec("EU", "FR", "Paris")},
		{"198.51.100.0/24", rec("EU", "DE", "Berlin")},
		{"198.51.101.0/24", rec("EU", "DE", "Hamburg")},
		{"203.0.113.0/24", rec("NA", "US", "")},
		{"2001:db8:4::/48", rec("NA", "US", "Boston")},
		{"2001:db8:5::/48", rec("NA", "US", "Denver")},
		{"2001:db8:6::/47", rec("NA", "CA", "Toronto")},
		{"2001:db8:8::/46", rec("AS", "JP", "Tokyo")},
		{"2001:db8:9::/48", rec("AS", "KR", "Seoul")},
	})
}

func TestPartitionFixture(t *testing.T) {
	d := openFixture(t, partitionFixture(t))
	tests := []struct {
		classifier, addr string
		class            int
		network          string
	}{
		// Same country, different records: merged up to where FR starts.
		{"country", "192.0.2.1", code("GB"), "192.0.2.0/25"},
		{"country", "192.0.2.130", code("GB"), "192.0.2.128/26"},
		{"country", "192.0.2.200", code("GB"), "192.0.2.192/27"},
		{"country", "192.0.2.230", code("FR"), "192.0.2.224/27"},
		{"country", "198.51.100.1", code("DE"), "198.51.100.0/23"},
		{"country", "198.51.101.255", code("DE"), "198.51.100.0/23"},
		{"country", "203.0.113.5", code("US"), "203.0.113.0/24"},
		// Gaps: the largest empty prefix.
		{"country", "203.0.112.1", noData, "203.0.112.0/24"},
		{"country", "10.1.2.3", noData, "0.0.0.0/1"},
		{"country", "2001:db8:100::1", noData, "2001:db8:100::/40"},
		{"country", "3000::1", noData, "3000::/4"},
		// IPv6, a country cut by another.
		{"country", "2001:db8:4:1::1", code("US"), "2001:db8:4::/47"},
		{"country", "2001:db8:7::1", code("CA"), "2001:db8:6::/47"},
		{"country", "2001:db8:8::1", code("JP"), "2001:db8:8::/48"},
		{"country", "2001:db8:9::1", code("KR"), "2001:db8:9::/48"},
		{"country", "2001:db8:b::1", code("JP"), "2001:db8:a::/47"},
		// IPv4-mapped is IPv4; aliases of the IPv4 tree extend its networks.
		{"country", "::ffff:192.0.2.230", code("FR"), "192.0.2.224/27"},
		{"country", "::192.0.2.1", code("GB"), "::192.0.2.0/121"},
		{"country", "2002:c000:2e6::", code("FR"), "2002:c000:2e0::/43"},
		{"country", "2001:0:c000:201::1", code("GB"), "2001:0:c000:200::/57"},
		{"country", "2002:a00::1", noData, "2002::/17"},
		// Continents merge across countries.
		{"continent", "192.0.2.230", code("EU"), "192.0.2.0/24"},
		{"continent", "198.51.100.1", code("EU"), "198.51.100.0/23"},
		{"continent", "2001:db8:7::1", code("NA"), "2001:db8:4::/46"},
		{"continent", "2001:db8:9::1", code("AS"), "2001:db8:8::/46"},
		{"continent", "2002:c000:201::", code("EU"), "2002:c000:200::/40"},
		{"found", "2001:db8:9::1", 1, "2001:db8:8::/46"},
		{"found", "203.0.113.200", 1, "203.0.113.0/24"},
		{"constant", "192.0.2.1", 7, "0.0.0.0/0"},
		{"constant", "2001:db8:9::1", 7, "::/0"},
	}
	parts := map[string]*Partition{}
	for _, tc := range tests {
		p := parts[tc.classifier]
		if p == nil {
			var err error
			if p, err = d.Partition(classifierNamed(t, tc.classifier)); err != nil {
				t.Fatalf("Partition(%s): %v", tc.classifier, err)
			}
			parts[tc.classifier] = p
		}
		class, network := p.Lookup(netip.MustParseAddr(tc.addr))
		if class != tc.class || network != netip.MustParsePrefix(tc.network) {
			t.Errorf("%s: Lookup(%s) = %s %v, want %s %s", tc.classifier, tc.addr,
				codeString(class), network, codeString(tc.class), tc.network)
		}
	}
}

// refLookup is Partition.Lookup by brute force: addr's class, and the
// shortest prefix of addr within which every network the database lists
// (aliases of the IPv4 tree included) has that class.
func refLookup(t testing.TB, d *DB, classify func(Location, bool) int, addr netip.Addr) (int, netip.Prefix) {
	t.Helper()
	addr = addr.Unmap()
	res := d.Lookup(addr)
	class := classify(res.Location, res.Found)
	for bits := 0; bits <= addr.BitLen(); bits++ {
		p := netip.PrefixFrom(addr, bits).Masked()
		if refUniform(t, d, classify, p, class) {
			return class, p
		}
	}
	t.Fatalf("%s: no prefix has one class", addr)
	return 0, netip.Prefix{}
}

func refUniform(t testing.TB, d *DB, classify func(Location, bool) int, p netip.Prefix, class int) bool {
	t.Helper()
	if p.Addr().Is6() && d.r.Metadata.IPVersion == 4 {
		return true // no IPv6 data at all
	}
	opts := []maxminddb.NetworksOption{maxminddb.IncludeAliasedNetworks(), maxminddb.IncludeNetworksWithoutData()}
	for res := range d.r.NetworksWithin(p, opts...) {
		if err := res.Err(); err != nil {
			t.Fatalf("networks within %s: %v", p, err)
		}
		a := res.Prefix().Addr()
		if a.Is4() && p.Addr().Is6() { // the IPv4 tree at ::/96
			b := a.As4()
			a = netip.AddrFrom16([16]byte{12: b[0], 13: b[1], 14: b[2], 15: b[3]})
		}
		if !p.Contains(a) { // a network that contains p
			a = p.Addr()
		}
		if r := d.Lookup(a); classify(r.Location, r.Found) != class {
			return false
		}
	}
	return true
}

// sampleAddrs returns n addresses of interest in d: random ones, ones in
// and at the edges of its networks, IPv4-mapped ones and aliased ones.
func sampleAddrs(t testing.TB, d *DB, rng *rand.Rand, n int) []netip.Addr {
	t.Helper()
	var nets []netip.Prefix
	seen := 0
	for res := range d.r.Networks(maxminddb.IncludeNetworksWithoutData(), maxminddb.IncludeAliasedNetworks()) {
		if err := res.Err(); err != nil {
			t.Fatal(err)
		}
		// Reservoir sampling keeps this cheap over a large database.
		if seen++; len(nets) < n {
			nets = append(nets, res.Prefix())
		} else if j := rng.IntN(seen); j < n {
			nets[j] = res.Prefix()
		}
	}
	addrs := make([]netip.Addr, 0, n)
	for len(addrs) < n {
		pr := nets[rng.IntN(len(nets))]
		var a netip.Addr
		switch rng.IntN(6) {
		case 0:
			a = pr.Addr()
		case 1:
			a = netipx.PrefixLastIP(pr)
		case 2:
			a = randomIn(rng, pr)
		case 3:
			a = randomIn(rng, netip.MustParsePrefix("0.0.0.0/0"))
		case 4:
			a = randomIn(rng, netip.MustParsePrefix("2000::/3"))
		case 5: // the IPv4 tree through ::ffff:0:0/96, 2002::/16 or ::/96
			v4 := randomIn(rng, netip.MustParsePrefix("0.0.0.0/0")).As4()
			b := [16]byte{10: 0xff, 11: 0xff, 12: v4[0], 13: v4[1], 14: v4[2], 15: v4[3]}
			switch rng.IntN(3) {
			case 1:
				b = [16]byte{0: 0x20, 1: 0x02, 2: v4[0], 3: v4[1], 4: v4[2], 5: v4[3]}
			case 2:
				b = [16]byte{12: v4[0], 13: v4[1], 14: v4[2], 15: v4[3]}
			}
			a = netip.AddrFrom16(b)
		}
		addrs = append(addrs, a)
	}
	return addrs
}

// randomIn returns a uniformly random address in p.
func randomIn(rng *rand.Rand, p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := range b {
		r := byte(rng.Uint32())
		if keep := p.Bits() - 8*i; keep >= 8 {
			continue
		} else if keep > 0 {
			r &= 0xff >> keep
		}
		b[i] |= r
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// TestPartitionReference checks Lookup against d.Lookup and classify (the
// class), and against refLookup (the network: uniform and maximal).
func TestPartitionReference(t *testing.T) {
	fixtures := []struct {
		name string
		mmdb func(testing.TB) []byte
	}{
		{"partition", partitionFixture},
		{"city", cityFixture},
		{"flat-ipv4", flatFixture},
		{"flat-ipv6", flatIPv6Fixture},
		{"geoip2-ipv4", func(t testing.TB) []byte {
			return buildMMDB(t, mmdbwriter.Options{DatabaseType: "GeoIP2-City", IPVersion: 4, RecordSize: 24},
				[]fixtureNet{{"192.0.2.0/24", geoip2Record("EU", "GB", "", "", 0, 0, false)}})
		}},
	}
	for _, fx := range fixtures {
		d := openFixture(t, fx.mmdb(t))
		for _, cl := range classifiers {
			t.Run(fx.name+"/"+cl.name, func(t *testing.T) {
				p, err := d.Partition(cl.classify)
				if err != nil {
					t.Fatal(err)
				}
				rng := rand.New(rand.NewPCG(1, uint64(len(fx.name)*31+len(cl.name))))
				for _, a := range sampleAddrs(t, d, rng, 300) {
					checkPartitionLookup(t, d, p, cl.classify, a, true)
				}
			})
		}
	}
}

// checkPartitionLookup checks one address; exact also compares the network
// with the brute-force refLookup.
func checkPartitionLookup(t *testing.T, d *DB, p *Partition, classify func(Location, bool) int,
	a netip.Addr, exact bool) {
	t.Helper()
	class, network := p.Lookup(a)
	res := d.Lookup(a)
	if want := classify(res.Location, res.Found); class != want {
		t.Fatalf("Lookup(%s) = class %s, want %s (d.Lookup %+v)", a, codeString(class), codeString(want), res)
	}
	if !network.Contains(a.Unmap()) || network != network.Masked() {
		t.Fatalf("Lookup(%s) = network %v, not a masked prefix containing it", a, network)
	}
	// Every database network the partition's network holds is of the class.
	if !refUniform(t, d, classify, network, class) {
		t.Fatalf("Lookup(%s) = %s %v, which holds other classes", a, codeString(class), network)
	}
	if !exact {
		return
	}
	if wc, wn := refLookup(t, d, classify, a); wc != class || wn != network {
		t.Fatalf("Lookup(%s) = %s %v, brute force says %s %v", a, codeString(class), network, codeString(wc), wn)
	}
}

var (
	defaultContinents = sync.OnceValues(func() (*Partition, error) {
		d, err := defaultDB()
		if err != nil {
			return nil, err
		}
		return d.Partition(classifiers[1].classify)
	})
	defaultCountries = sync.OnceValues(func() (*Partition, error) {
		d, err := defaultDB()
		if err != nil {
			return nil, err
		}
		return d.Partition(classifiers[0].classify)
	})
)

func TestPartitionDefault(t *testing.T) {
	d := mustDefault(t)
	p, err := defaultContinents()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		addr    string
		class   int
		minBits int // the network is no longer than the database's
	}{
		{"8.8.8.8", code("NA"), 8},
		{"::ffff:8.8.8.8", code("NA"), 8},
		{"1.1.1.1", code("OC"), 8},
		{"81.2.69.142", code("EU"), 8},
		{"2001:4860:4860::8888", code("NA"), 16},
		{"2a00:1450:4001::1", code("EU"), 16},
		{"10.1.2.3", noData, 8},
	}
	for _, tc := range tests {
		a := netip.MustParseAddr(tc.addr)
		class, network := p.Lookup(a)
		dbNet := d.Lookup(a).Network
		if class != tc.class || network.Bits() < tc.minBits || network.Bits() > dbNet.Bits() {
			t.Errorf("Lookup(%s) = %s %v, want %s no longer than %v, at least /%d",
				tc.addr, codeString(class), network, codeString(tc.class), dbNet, tc.minBits)
		}
		checkPartitionLookup(t, d, p, classifiers[1].classify, a, true)
	}
	t.Logf("continents: %d prefixes, %.1f MiB", p.Len(), float64(p.sizeBytes())/(1<<20))
	rng := rand.New(rand.NewPCG(2, 3))
	n, exact := 20000, 200
	if testing.Short() {
		n, exact = 2000, 20
	}
	for i, a := range sampleAddrs(t, d, rng, n) {
		checkPartitionLookup(t, d, p, classifiers[1].classify, a, i < exact)
	}
}

func TestPartitionDefaultCountries(t *testing.T) {
	d := mustDefault(t)
	p, err := defaultCountries()
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(4, 5))
	for i, a := range sampleAddrs(t, d, rng, 2000) {
		checkPartitionLookup(t, d, p, classifiers[0].classify, a, i < 50)
	}
}

func TestPartitionInvalid(t *testing.T) {
	d := openFixture(t, partitionFixture(t))
	if _, err := d.Partition(nil); err == nil {
		t.Error("Partition(nil) succeeded")
	}
	p, err := d.Partition(classifiers[0].classify)
	if err != nil {
		t.Fatal(err)
	}
	if class, network := p.Lookup(netip.Addr{}); class != noData || network.IsValid() {
		t.Errorf("Lookup(invalid) = %s %v, want -- and the zero Prefix", codeString(class), network)
	}
	if class, network := p.Lookup(netip.MustParseAddr("2001:db8:9::1%eth0")); class != code("KR") ||
		network != netip.MustParsePrefix("2001:db8:9::/48") {
		t.Errorf("Lookup(with zone) = %s %v", codeString(class), network)
	}
}

// TestPartitionCallsClassifyOncePerRecord: classify runs per record (the
// default database has one per country), not per network.
func TestPartitionCallsClassifyOncePerRecord(t *testing.T) {
	d := openFixture(t, partitionFixture(t))
	calls := 0
	if _, err := d.Partition(func(l Location, found bool) int { calls++; return code(l.Country) }); err != nil {
		t.Fatal(err)
	}
	if want := 12 + 1; calls != want { // 12 records and "no data"
		t.Errorf("classify called %d times, want %d", calls, want)
	}
}

func TestPartitionAllocs(t *testing.T) {
	p, err := defaultCountries()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"8.8.8.8", "::ffff:8.8.8.8", "2001:4860:4860::8888", "2002:808:808::1", "fe80::1%eth0"} {
		a := netip.MustParseAddr(s)
		if n := testing.AllocsPerRun(100, func() { p.Lookup(a) }); n != 0 {
			t.Errorf("Lookup(%s) allocates %v times, want 0", s, n)
		}
	}
}

func BenchmarkPartition(b *testing.B) {
	d := mustDefault(b)
	for _, cl := range classifiers[:2] {
		b.Run(cl.name, func(b *testing.B) {
			var p *Partition
			for b.Loop() {
				var err error
				if p, err = d.Partition(cl.classify); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(p.Len()), "prefixes")
			b.ReportMetric(float64(p.sizeBytes())/(1<<20), "MiB")
		})
	}
}

func BenchmarkPartitionLookup(b *testing.B) {
	d := mustDefault(b)
	p, err := defaultCountries()
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(6, 7))
	var v4, v6 []netip.Addr
	for _, a := range sampleAddrs(b, d, rng, 1<<14) {
		if a.Unmap().Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	for _, bc := range []struct {
		name  string
		addrs []netip.Addr
	}{{"v4", v4}, {"v6", v6}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				p.Lookup(bc.addrs[i%len(bc.addrs)])
				i++
			}
		})
	}
}
