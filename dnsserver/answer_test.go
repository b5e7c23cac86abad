package dnsserver

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/gslbd/gslbd/zones"
)

// loadTestZone parses a zone file of testdata without the zones package's
// validation, so dnsserver tests stand on their own.
func loadTestZone(t testing.TB, file string) *zones.Zone {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	origin := dns.Fqdn(strings.TrimSuffix(file, ".zone"))
	zp := dns.NewZoneParser(f, origin, file)
	z := &zones.Zone{Origin: origin, File: file}
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rr.Header().Name = strings.ToLower(rr.Header().Name)
		if soa, isSOA := rr.(*dns.SOA); isSOA {
			z.SOA, z.Serial = soa, soa.Serial
		}
		z.Records = append(z.Records, zones.Record{RR: rr, File: file})
	}
	if err := zp.Err(); err != nil {
		t.Fatal(err)
	}
	return z
}

func newTestResponder(t testing.TB, cfg Config) *Responder {
	t.Helper()
	r, err := NewResponder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	set := &zones.Set{Zones: map[string]*zones.Zone{}}
	for _, f := range []string{"example.org.zone", "child.example.org.zone"} {
		z := loadTestZone(t, f)
		set.Zones[z.Origin] = z
	}
	if err := r.SetZones(set); err != nil {
		t.Fatal(err)
	}
	return r
}

var testSrc = netip.MustParseAddrPort("198.18.0.1:5353")

// exchange packs m, runs it through the responder and unpacks the reply.
func exchange(t testing.TB, r *Responder, m *dns.Msg, tr Transport) *dns.Msg {
	t.Helper()
	req, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return exchangeRaw(t, r, req, tr)
}

func exchangeRaw(t testing.TB, r *Responder, req []byte, tr Transport) *dns.Msg {
	t.Helper()
	out := r.ServeDNS(make([]byte, 0, 65535), req, testSrc, tr)
	if out == nil {
		return nil
	}
	reply := new(dns.Msg)
	if err := reply.Unpack(out); err != nil {
		t.Fatalf("reply does not unpack: %v (%x)", err, out)
	}
	return reply
}

func rrStrings(rrs []dns.RR) []string {
	var s []string
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		s = append(s, strings.Join(strings.Fields(rr.String()), " "))
	}
	return s
}

type answerCase struct {
	name   string
	qtype  uint16
	rcode  int
	aa     bool
	answer []string
	ns     []string
	extra  []string
}

func TestAnswers(t *testing.T) {
	r := newTestResponder(t, Config{})
	soa := "example.org. 300 IN SOA ns1.example.org. hostmaster.example.org. 2024010101 7200 3600 1209600 300"
	www := []string{"www.example.org. 3600 IN A 192.0.2.80", "www.example.org. 3600 IN A 192.0.2.81"}
	subNS := []string{"sub.example.org. 3600 IN NS ns.sub.example.org.", "sub.example.org. 3600 IN NS ns.other.example.net."}
	glue := []string{"ns.sub.example.org. 3600 IN A 192.0.2.53"}
	cases := []answerCase{
		{name: "www.example.org.", qtype: dns.TypeA, aa: true, answer: www},
		{name: "www.example.org.", qtype: dns.TypeMX, aa: true, ns: []string{soa}},
		{name: "nothere.example.org.", qtype: dns.TypeA, rcode: dns.RcodeNameError, aa: true, ns: []string{soa}},
		{name: "c.example.org.", qtype: dns.TypeA, aa: true, ns: []string{soa}},
		{name: "b.c.example.org.", qtype: dns.TypeTXT, aa: true, ns: []string{soa}},
		{name: "alias.example.org.", qtype: dns.TypeA, aa: true,
			answer: append([]string{"alias.example.org. 3600 IN CNAME www.example.org."}, www...)},
		{name: "alias.example.org.", qtype: dns.TypeCNAME, aa: true,
			answer: []string{"alias.example.org. 3600 IN CNAME www.example.org."}},
		{name: "chain1.example.org.", qtype: dns.TypeA, aa: true, answer: append([]string{
			"chain1.example.org. 3600 IN CNAME chain2.example.org.",
			"chain2.example.org. 3600 IN CNAME www.example.org."}, www...)},
		{name: "loop1.example.org.", qtype: dns.TypeA, aa: true, answer: []string{
			"loop1.example.org. 3600 IN CNAME loop2.example.org.",
			"loop2.example.org. 3600 IN CNAME loop1.example.org."}},
		{name: "ext.example.org.", qtype: dns.TypeA, aa: true,
			answer: []string{"ext.example.org. 3600 IN CNAME www.example.net."}},
		{name: "dangling.example.org.", qtype: dns.TypeA, rcode: dns.RcodeNameError, aa: true,
			answer: []string{"dangling.example.org. 3600 IN CNAME nothere.example.org."}, ns: []string{soa}},
		{name: "foo.wild.example.org.", qtype: dns.TypeA, aa: true,
			answer: []string{"foo.wild.example.org. 3600 IN A 192.0.2.99"}},
		{name: "foo.wild.example.org.", qtype: dns.TypeMX, aa: true, ns: []string{soa}},
		{name: "deep.foo.wild.example.org.", qtype: dns.TypeTXT, aa: true,
			answer: []string{`deep.foo.wild.example.org. 3600 IN TXT "wild"`}},
		{name: "x.wild.example.org.", qtype: dns.TypeA, aa: true,
			answer: []string{"x.wild.example.org. 3600 IN A 192.0.2.100"}},
		{name: "x.wild.example.org.", qtype: dns.TypeTXT, aa: true, ns: []string{soa}},
		{name: "y.x.wild.example.org.", qtype: dns.TypeA, rcode: dns.RcodeNameError, aa: true, ns: []string{soa}},
		{name: "*.wild.example.org.", qtype: dns.TypeA, aa: true,
			answer: []string{"*.wild.example.org. 3600 IN A 192.0.2.99"}},
		{name: "foo.wc.example.org.", qtype: dns.TypeA, aa: true,
			answer: append([]string{"foo.wc.example.org. 3600 IN CNAME www.example.org."}, www...)},
		{name: "sub.example.org.", qtype: dns.TypeA, ns: subNS, extra: glue},
		{name: "host.deep.sub.example.org.", qtype: dns.TypeAAAA, ns: subNS, extra: glue},
		{name: "ns.sub.example.org.", qtype: dns.TypeA, ns: subNS, extra: glue},
		{name: "sub.example.org.", qtype: dns.TypeNS, ns: subNS, extra: glue},
		{name: "sub.example.org.", qtype: dns.TypeDS, aa: true, answer: []string{
			"sub.example.org. 3600 IN DS 12345 8 2 49FD46E6C4B45C55D4AC69CBD3CD34AC1AFE51DE7A6DA68DAF4B2D26A5B8C0D2"}},
		{name: "nods.example.org.", qtype: dns.TypeDS, aa: true, ns: []string{soa}},
		{name: "x.nods.example.org.", qtype: dns.TypeDS, ns: []string{"nods.example.org. 3600 IN NS ns.sub.example.org."}, extra: glue},
		{name: "example.org.", qtype: dns.TypeMX, aa: true, answer: []string{"example.org. 3600 IN MX 10 mail.example.org."},
			extra: []string{"mail.example.org. 3600 IN A 192.0.2.25"}},
		{name: "_sip._tcp.example.org.", qtype: dns.TypeSRV, aa: true,
			answer: []string{"_sip._tcp.example.org. 3600 IN SRV 0 5 5060 sip.example.org."},
			extra:  []string{"sip.example.org. 3600 IN A 192.0.2.60"}},
		{name: "example.org.", qtype: dns.TypeNS, aa: true,
			answer: []string{"example.org. 3600 IN NS ns1.example.org.", "example.org. 3600 IN NS ns2.example.net."},
			extra:  []string{"ns1.example.org. 3600 IN A 192.0.2.1", "ns1.example.org. 3600 IN AAAA 2001:db8::1"}},
		{name: "example.org.", qtype: dns.TypeSOA, aa: true, answer: []string{strings.Replace(soa, " 300 IN", " 3600 IN", 1)}},
		{name: "www.example.org.", qtype: dns.TypeANY, aa: true, answer: []string{`www.example.org. 3600 IN HINFO "RFC8482" ""`}},
		{name: "nothere.example.org.", qtype: dns.TypeANY, rcode: dns.RcodeNameError, aa: true, ns: []string{soa}},
		{name: "c.example.org.", qtype: dns.TypeANY, aa: true, ns: []string{soa}},
		{name: "alias.example.org.", qtype: dns.TypeANY, aa: true, answer: []string{`alias.example.org. 3600 IN HINFO "RFC8482" ""`}},
		{name: "www.example.com.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
		{name: "org.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
		{name: "child.example.org.", qtype: dns.TypeA, aa: true, answer: []string{"child.example.org. 600 IN A 192.0.2.77"}},
		// DS for a child we also serve is answered from the parent (RFC 4035 3.1.4.1).
		{name: "child.example.org.", qtype: dns.TypeDS, aa: true, ns: []string{soa}},
		{name: "child.example.org.", qtype: dns.TypeSOA, aa: true, answer: []string{
			"child.example.org. 600 IN SOA ns1.example.org. hostmaster.example.org. 7 7200 3600 1209600 60"}},
	}
	for _, tc := range cases {
		t.Run(tc.name+"/"+dns.TypeToString[tc.qtype], func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion(tc.name, tc.qtype)
			reply := exchange(t, r, m, UDP)
			checkReply(t, reply, m, tc)
			// The same over TCP.
			checkReply(t, exchange(t, r, m, TCP), m, tc)
		})
	}
}

func checkReply(t *testing.T, reply, req *dns.Msg, tc answerCase) {
	t.Helper()
	if reply == nil {
		t.Fatal("no reply")
	}
	if reply.Id != req.Id || !reply.Response || reply.Opcode != dns.OpcodeQuery {
		t.Errorf("header: id %d want %d, qr %v", reply.Id, req.Id, reply.Response)
	}
	if reply.Rcode != tc.rcode {
		t.Errorf("rcode %s, want %s", dns.RcodeToString[reply.Rcode], dns.RcodeToString[tc.rcode])
	}
	if reply.Authoritative != tc.aa {
		t.Errorf("aa %v, want %v", reply.Authoritative, tc.aa)
	}
	if reply.RecursionAvailable || reply.Truncated {
		t.Errorf("ra %v tc %v, want both off", reply.RecursionAvailable, reply.Truncated)
	}
	if len(reply.Question) != 1 || reply.Question[0] != req.Question[0] {
		t.Errorf("question %v, want %v", reply.Question, req.Question)
	}
	for _, sec := range []struct {
		name      string
		got, want []string
	}{{"answer", rrStrings(reply.Answer), tc.answer}, {"authority", rrStrings(reply.Ns), tc.ns}, {"additional", rrStrings(reply.Extra), tc.extra}} {
		if !slices.Equal(sec.got, sec.want) {
			t.Errorf("%s:\n got %q\nwant %q", sec.name, sec.got, sec.want)
		}
	}
}
