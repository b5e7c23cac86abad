package dnsserver

import (
	"net"
	"testing"

	"github.com/miekg/dns"
)

// BenchmarkServeDNS measures the answer path alone (no sockets): parse,
// lookup, write. allocs/op must stay 0.
func BenchmarkServeDNS(b *testing.B) {
	r := newTestResponder(b, Config{})
	edns := func(m *dns.Msg) *dns.Msg { m.SetEdns0(1232, false); return m }
	cases := []struct {
		name string
		m    *dns.Msg
	}{
		{"A", newQuery("www.example.org.", dns.TypeA)},
		{"A_EDNS", edns(newQuery("www.example.org.", dns.TypeA))},
		{"A_ECS", withECS(newQuery("www.example.org.", dns.TypeA), 1, 24, 0, net.IP{198, 51, 100, 0})},
		{"NXDOMAIN", edns(newQuery("nothere.example.org.", dns.TypeA))},
		{"NODATA", edns(newQuery("www.example.org.", dns.TypeMX))},
		{"MX_additional", edns(newQuery("example.org.", dns.TypeMX))},
		{"wildcard", edns(newQuery("foo.wild.example.org.", dns.TypeA))},
		{"CNAME_chain", edns(newQuery("chain1.example.org.", dns.TypeA))},
		{"referral", edns(newQuery("host.sub.example.org.", dns.TypeA))},
	}
	out := make([]byte, 0, 65535)
	for _, c := range cases {
		req, err := c.m.Pack()
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if r.ServeDNS(out, req, testSrc, UDP) == nil {
					b.Fatal("no reply")
				}
			}
		})
	}
}

func TestServeDNSAllocs(t *testing.T) {
	r := newTestResponder(t, Config{})
	out := make([]byte, 0, 65535)
	for _, m := range []*dns.Msg{
		newQuery("www.example.org.", dns.TypeA),
		withECS(newQuery("nothere.example.org.", dns.TypeA), 1, 24, 0, net.IP{198, 51, 100, 0}),
		newQuery("foo.wild.example.org.", dns.TypeA),
		newQuery("chain1.example.org.", dns.TypeA),
	} {
		req, _ := m.Pack()
		r.ServeDNS(out, req, testSrc, UDP) // warm the pool
		if n := testing.AllocsPerRun(100, func() { r.ServeDNS(out, req, testSrc, UDP) }); n != 0 {
			t.Errorf("%s: %v allocs per query, want 0", m.Question[0].Name, n)
		}
	}
}
