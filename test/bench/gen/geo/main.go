// Command geo writes the data set of the "gslb" query mix of the
// side-by-side DNS benchmark (test/bench/run.sh): the same GSLB setup for
// gslbd (gslb.yaml) and for gdnsd (geoip and weighted plugins, DYNA
// records), a GeoIP2-City database both read, the client networks the
// queries come from and a dnsperf query file.
//
//	go run ./test/bench/gen/geo -base ZONEFILE -out DIR
//
// ZONEFILE is the static mix's zone (written by test/bench/gen); both
// servers serve a copy of it, so the GSLB names live in a full-size zone.
// DIR receives:
//
//	GeoIP2-City.mmdb              the client networks below (mmdbwriter)
//	zones/gslbd/bench.example.zone  the base zone, unchanged
//	zones/gslbd/gslb.yaml         sites, pool and the two GSLB records
//	zones/gslbd/gslbd-config.yaml gslbd -config file: gslb: {geoip: ...}
//	zones/gdnsd/bench.example.zone  the base zone plus two DYNA records
//	zones/gdnsd/gdnsd-config.inc  plugins => { geoip => ..., weighted => ... }
//	queries.bin                   dnsperf -B input: 80% geo.<zone> A, 20% wrr.<zone> A,
//	                              each with the ECS option of one client network
//	                              (an equal share per network), shuffled
//	queries.txt                   the same queries in text, for people
//	networks.txt                  one client network a line (see below)
//
// networks.txt columns: CIDR, the dnsperf -E value of its ECS option
// (8:<hex>), country, continent, the site both servers must answer for
// geo.<zone>, and that site's addresses (comma-separated, sorted).
//
// The output is a pure function of the flags (fixed seed, sorted maps;
// mmdbwriter writes the same tree for the same inserts).
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/miekg/dns"
)

// client is a client network of the mix and what the GeoIP DB says of it.
type client struct {
	cidr      string
	continent string
	country   string
	sub       string // ISO 3166-2 subdivision without the country prefix
	city      string
	lat, lon  float64
	site      string // the site geo.<zone> must answer with first
}

// clients: 81.2.69.0/24 (MaxMind's test network, GB) and /24s of the
// benchmark range 198.18.0.0/15. The addresses are only data.
var clients = []client{
	{"81.2.69.0/24", "EU", "GB", "ENG", "London", 51.5142, -0.0931, "lon"},
	{"198.18.10.0/24", "EU", "GB", "ENG", "Manchester", 53.4808, -2.2426, "lon"},
	{"198.18.11.0/24", "EU", "DE", "HE", "Frankfurt am Main", 50.1109, 8.6821, "fra"},
	{"198.18.12.0/24", "EU", "FR", "IDF", "Paris", 48.8566, 2.3522, "fra"},
	{"198.18.13.0/24", "EU", "NL", "NH", "Amsterdam", 52.3676, 4.9041, "fra"},
	{"198.18.14.0/24", "NA", "US", "NY", "New York", 40.7128, -74.0060, "nyc"},
	{"198.18.15.0/24", "NA", "US", "IL", "Chicago", 41.8781, -87.6298, "nyc"},
	{"198.18.16.0/24", "NA", "CA", "ON", "Toronto", 43.6532, -79.3832, "nyc"},
	{"198.18.17.0/24", "AS", "JP", "13", "Tokyo", 35.6762, 139.6503, "lon"},      // default
	{"198.18.18.0/24", "SA", "BR", "SP", "Sao Paulo", -23.5505, -46.6333, "lon"}, // default
}

// site is a datacenter: coordinates, and its two endpoints.
type site struct {
	name, country, continent string
	lat, lon                 float64
	addrs                    [2]string
}

var sites = []site{
	{"lon", "GB", "EU", 51.51, -0.13, [2]string{"192.0.2.10", "192.0.2.11"}},
	{"fra", "DE", "EU", 50.11, 8.68, [2]string{"192.0.2.20", "192.0.2.21"}},
	{"nyc", "US", "NA", 40.71, -74.01, [2]string{"192.0.2.30", "192.0.2.31"}},
}

const (
	ttl      = 30
	geoShare = 80 // percent of the queries for geo.<zone>; the rest wrr.<zone>
)

func main() {
	base := flag.String("base", "", "zone file of the static mix to copy (required)")
	out := flag.String("out", "", "output directory (required)")
	zone := flag.String("zone", "bench.example.", "zone name (absolute); the base file must be that zone")
	count := flag.Int("count", 1000, "number of query lines")
	seed := flag.Uint64("seed", 20240602, "random seed (shuffles the query lines)")
	flag.Parse()
	if *base == "" || *out == "" || *count < 10 {
		flag.Usage()
		os.Exit(2)
	}
	origin := strings.ToLower(*zone)
	if !strings.HasSuffix(origin, ".") {
		origin += "."
	}
	dir, err := filepath.Abs(*out)
	if err != nil {
		fail(err)
	}
	baseZone, err := os.ReadFile(*base)
	if err != nil {
		fail(err)
	}
	gslbdDir := filepath.Join(dir, "zones", "gslbd")
	gdnsdDir := filepath.Join(dir, "zones", "gdnsd")
	for _, d := range []string{gslbdDir, gdnsdDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			fail(err)
		}
	}
	mmdb := filepath.Join(dir, "GeoIP2-City.mmdb")
	zoneFile := strings.TrimSuffix(origin, ".") + ".zone"

	must(writeMMDB(mmdb))
	must(os.WriteFile(filepath.Join(gslbdDir, zoneFile), baseZone, 0o644))
	must(writeFile(filepath.Join(gslbdDir, "gslb.yaml"), func(w *bufio.Writer) { writeGSLBYAML(w, origin) }))
	must(writeFile(filepath.Join(gslbdDir, "gslbd-config.yaml"), func(w *bufio.Writer) {
		fmt.Fprintf(w, "# generated by test/bench/gen/geo; gslbd -config\ngslb:\n  geoip: %q\n", mmdb)
	}))
	must(writeFile(filepath.Join(gdnsdDir, zoneFile), func(w *bufio.Writer) {
		w.Write(baseZone)
		if len(baseZone) > 0 && baseZone[len(baseZone)-1] != '\n' {
			w.WriteByte('\n')
		}
		fmt.Fprintf(w, "; gslb mix (test/bench/gen/geo)\n")
		fmt.Fprintf(w, "geo\t%d\tDYNA\tgeoip!geo\n", ttl)
		fmt.Fprintf(w, "wrr\t%d\tDYNA\tweighted!wrr\n", ttl)
	}))
	must(writeFile(filepath.Join(gdnsdDir, "gdnsd-config.inc"), func(w *bufio.Writer) { writeGdnsdInc(w, mmdb) }))
	rng := rand.New(rand.NewPCG(*seed, *seed^0x9e3779b97f4a7c15))
	qs := mixQueries(origin, *count, rng)
	var binErr error
	must(writeFile(filepath.Join(dir, "queries.bin"), func(w *bufio.Writer) { binErr = writeQueriesBin(w, qs) }))
	must(binErr)
	must(writeFile(filepath.Join(dir, "queries.txt"), func(w *bufio.Writer) { writeQueriesText(w, qs) }))
	must(writeFile(filepath.Join(dir, "networks.txt"), writeNetworks))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gen/geo:", err)
	os.Exit(1)
}

func must(err error) {
	if err != nil {
		fail(err)
	}
}

func writeFile(path string, fill func(*bufio.Writer)) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fill(w)
	if err := w.Flush(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// writeMMDB writes a GeoIP2-City database of the client networks, in the
// layout MaxMind's City databases use (IPv6 tree, IPv4 in ::/96).
func writeMMDB(path string) error {
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		DatabaseType:            "GeoIP2-City",
		Description:             map[string]string{"en": "gslbd benchmark client networks (test/bench/gen/geo)"},
		IPVersion:               6,
		RecordSize:              28,
		IncludeReservedNetworks: true,       // 198.18.0.0/15 is reserved (RFC 2544)
		BuildEpoch:              1717200000, // fixed (2024-06-01), so the file is reproducible
	})
	if err != nil {
		return err
	}
	for _, c := range clients {
		_, n, err := net.ParseCIDR(c.cidr)
		if err != nil {
			return err
		}
		rec := mmdbtype.Map{
			"continent": mmdbtype.Map{"code": mmdbtype.String(c.continent)},
			"country":   mmdbtype.Map{"iso_code": mmdbtype.String(c.country)},
			"subdivisions": mmdbtype.Slice{
				mmdbtype.Map{"iso_code": mmdbtype.String(c.sub)},
			},
			"city": mmdbtype.Map{"names": mmdbtype.Map{"en": mmdbtype.String(c.city)}},
			"location": mmdbtype.Map{
				"latitude":        mmdbtype.Float64(c.lat),
				"longitude":       mmdbtype.Float64(c.lon),
				"accuracy_radius": mmdbtype.Uint16(20),
			},
		}
		if err := tree.Insert(n, rec); err != nil {
			return fmt.Errorf("insert %s: %w", c.cidr, err)
		}
	}
	var buf bytes.Buffer
	if _, err := tree.WriteTo(&buf); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// The geo map, identical on both servers: GB -> lon, fra; the rest of
// Europe -> fra, lon; North America -> nyc, lon; elsewhere lon, fra, nyc.
func writeGSLBYAML(w *bufio.Writer, origin string) {
	fmt.Fprintf(w, "# generated by test/bench/gen/geo; do not edit\n")
	fmt.Fprintf(w, "sites:\n")
	for _, s := range sites {
		fmt.Fprintf(w, "  %s: {lat: %.2f, lon: %.2f, country: %s, continent: %s}\n", s.name, s.lat, s.lon, s.country, s.continent)
	}
	fmt.Fprintf(w, "pools:\n  bench:\n    monitor: none          # unmonitored: always up, no probes\n    endpoints:\n")
	for _, s := range sites {
		for _, a := range s.addrs {
			fmt.Fprintf(w, "      - {address: %s, site: %s}\n", a, s.name)
		}
	}
	fmt.Fprintf(w, "records:\n")
	fmt.Fprintf(w, "  - name: geo.%s\n    pool: bench\n    ttl: %d\n    chain:\n", origin, ttl)
	fmt.Fprintf(w, "      - up\n")
	fmt.Fprintf(w, "      - geo:\n")
	fmt.Fprintf(w, "          map: {\"country:GB\": [lon, fra], \"continent:EU\": [fra, lon], \"continent:NA\": [nyc, lon]}\n")
	fmt.Fprintf(w, "          default: [lon, fra, nyc]\n")
	fmt.Fprintf(w, "      - priority: {}\n")
	fmt.Fprintf(w, "      - first_n: 2\n")
	fmt.Fprintf(w, "  - name: wrr.%s\n    pool: bench\n    ttl: %d\n    chain:\n", origin, ttl)
	fmt.Fprintf(w, "      - up\n")
	fmt.Fprintf(w, "      - weighted: {mode: random}\n")
	fmt.Fprintf(w, "      - first_n: 2\n")
}

// writeGdnsdInc writes gdnsd's side: a geoip map with the same choices
// (gdnsd answers all up addresses of the first datacenter of the list, so
// both addresses of one site, like gslbd's priority + first_n: 2), and a
// grouped-multi weighted resource: two equal groups of one endpoint per
// site, so every answer has exactly two addresses, one drawn at random from
// each group (gslbd draws two of six).
func writeGdnsdInc(w *bufio.Writer, mmdb string) {
	fmt.Fprintf(w, "# generated by test/bench/gen/geo; appended to the gdnsd config by run.sh\n")
	fmt.Fprintf(w, "plugins => {\n")
	fmt.Fprintf(w, "  geoip => {\n")
	fmt.Fprintf(w, "    maps => {\n")
	fmt.Fprintf(w, "      bench => {\n")
	fmt.Fprintf(w, "        geoip2_db => %q\n", mmdb)
	fmt.Fprintf(w, "        datacenters => [lon, fra, nyc]\n")
	fmt.Fprintf(w, "        map => {\n")
	fmt.Fprintf(w, "          default => [lon, fra, nyc]\n")
	fmt.Fprintf(w, "          EU => { default => [fra, lon], GB => [lon, fra] }\n")
	fmt.Fprintf(w, "          NA => [nyc, lon]\n")
	fmt.Fprintf(w, "        }\n")
	fmt.Fprintf(w, "      }\n")
	fmt.Fprintf(w, "    }\n")
	fmt.Fprintf(w, "    resources => {\n")
	fmt.Fprintf(w, "      geo => {\n")
	fmt.Fprintf(w, "        map => bench\n")
	fmt.Fprintf(w, "        service_types => up\n")
	fmt.Fprintf(w, "        dcmap => {\n")
	for _, s := range sites {
		fmt.Fprintf(w, "          %s => { %s1 => %s, %s2 => %s }\n", s.name, s.name, s.addrs[0], s.name, s.addrs[1])
	}
	fmt.Fprintf(w, "        }\n")
	fmt.Fprintf(w, "      }\n")
	fmt.Fprintf(w, "    }\n")
	fmt.Fprintf(w, "  }\n")
	fmt.Fprintf(w, "  weighted => {\n")
	fmt.Fprintf(w, "    wrr => {\n")
	fmt.Fprintf(w, "      service_types => up\n")
	fmt.Fprintf(w, "      multi => true\n")
	for g := range 2 {
		fmt.Fprintf(w, "      g%d => {", g+1)
		for _, s := range sites {
			fmt.Fprintf(w, " %s%d => [ %s, 100 ]", s.name, g+1, s.addrs[g])
		}
		fmt.Fprintf(w, " }\n")
	}
	fmt.Fprintf(w, "    }\n")
	fmt.Fprintf(w, "  }\n")
	fmt.Fprintf(w, "}\n")
}

// query is one line of the mix: a name and the client network in its ECS.
type query struct {
	name string
	net  netip.Prefix
}

// mixQueries is the query mix: every client network sends the same share,
// geoShare% of it for geo.<origin> A and the rest for wrr.<origin> A;
// shuffled.
func mixQueries(origin string, count int, rng *rand.Rand) []query {
	qs := make([]query, 0, count)
	for i := range count {
		c := clients[i%len(clients)]
		name := "geo." + origin
		if (i/len(clients))%100 >= geoShare {
			name = "wrr." + origin
		}
		qs = append(qs, query{name, netip.MustParsePrefix(c.cidr)})
	}
	rng.Shuffle(len(qs), func(i, j int) { qs[i], qs[j] = qs[j], qs[i] })
	return qs
}

// writeQueriesBin writes the queries in dnsperf's -B format (RFC 1035
// 4.2.2 framing: a 2-byte length, then the message; dnsperf overwrites the
// ID): what dnsperf itself sends for "NAME A" with -E 8:<ECS>, i.e. RD set,
// EDNS0 with a 4096-byte payload and the ECS option, so every query can
// carry its own client network.
func writeQueriesBin(w *bufio.Writer, qs []query) error {
	for _, q := range qs {
		m := new(dns.Msg)
		m.SetQuestion(q.name, dns.TypeA)
		m.RecursionDesired = true
		m.Id = 0
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(4096)
		opt.Option = append(opt.Option, &dns.EDNS0_SUBNET{
			Code:          dns.EDNS0SUBNET,
			Family:        1,
			SourceNetmask: uint8(q.net.Bits()),
			Address:       net.IP(q.net.Masked().Addr().AsSlice()),
		})
		m.Extra = append(m.Extra, opt)
		b, err := m.Pack()
		if err != nil {
			return fmt.Errorf("pack %s from %s: %w", q.name, q.net, err)
		}
		w.WriteByte(byte(len(b) >> 8))
		w.WriteByte(byte(len(b)))
		w.Write(b)
	}
	return nil
}

// writeQueriesText writes the same queries for people: name, type and the
// ECS network (not a dnsperf input: dnsperf sends one fixed -E per run).
func writeQueriesText(w *bufio.Writer, qs []query) {
	fmt.Fprintf(w, "# name type ecs; the dnsperf input is queries.bin (dnsperf -B)\n")
	for _, q := range qs {
		fmt.Fprintf(w, "%s A %s\n", q.name, q.net)
	}
}

// ecsOption is the dnsperf -E argument for an ECS option (RFC 7871, option
// code 8) with the network as SOURCE and SCOPE 0: FAMILY(2) SOURCE(1)
// SCOPE(1) and the address truncated to whole bytes of SOURCE.
func ecsOption(p netip.Prefix) string {
	p = p.Masked()
	family, addr := 1, p.Addr().AsSlice()
	if p.Addr().Is6() {
		family = 2
	}
	nbytes := (p.Bits() + 7) / 8
	return fmt.Sprintf("8:%04x%02x00%x", family, p.Bits(), addr[:nbytes])
}

func writeNetworks(w *bufio.Writer) {
	fmt.Fprintf(w, "# cidr ecs(dnsperf -E) country continent site site-addresses\n")
	for _, c := range clients {
		p := netip.MustParsePrefix(c.cidr)
		var addrs []string
		for _, s := range sites {
			if s.name == c.site {
				addrs = append(addrs, s.addrs[:]...)
			}
		}
		slices.Sort(addrs)
		fmt.Fprintf(w, "%s %s %s %s %s %s\n", c.cidr, ecsOption(p), c.country, c.continent, c.site, strings.Join(addrs, ","))
	}
}
