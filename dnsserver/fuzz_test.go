package dnsserver

import (
	"net"
	"testing"

	"github.com/miekg/dns"
)

// FuzzServeDNS feeds arbitrary wire bytes to the answer path. It must never
// panic, and whatever it answers must be a well-formed reply to that query.
func FuzzServeDNS(f *testing.F) {
	seeds := []*dns.Msg{
		newQuery("www.example.org.", dns.TypeA),
		newQuery("foo.wild.example.org.", dns.TypeTXT),
		newQuery("host.sub.example.org.", dns.TypeA),
		newQuery("chain1.example.org.", dns.TypeANY),
		withECS(newQuery("www.example.org.", dns.TypeAAAA), 2, 56, 0, net.ParseIP("2001:db8::")),
	}
	for _, m := range seeds {
		b, _ := m.Pack()
		f.Add(b)
	}
	f.Add(raw(1, 0, 0, 2, wwwQ, opt(), opt()))
	f.Add(raw(1, 0, 0, 1, wwwQ, opt(0, 8, 0, 7, 0, 1, 24, 0, 198, 51, 100)))
	r := newTestResponder(f, Config{})
	out := make([]byte, 0, 65535)
	f.Fuzz(func(t *testing.T, req []byte) {
		for _, tr := range []Transport{UDP, TCP} {
			reply := r.ServeDNS(out, req, testSrc, tr)
			if reply == nil {
				continue
			}
			if len(req) < headerLen {
				t.Fatalf("replied to a %d-byte message", len(req))
			}
			m := new(dns.Msg)
			if err := m.Unpack(reply); err != nil {
				t.Fatalf("reply does not unpack: %v\nreq %x\nreply %x", err, req, reply)
			}
			if !m.Response || reply[0] != req[0] || reply[1] != req[1] {
				t.Fatalf("reply header wrong: %v", m.MsgHdr)
			}
			if tr == UDP && len(reply) > 1232 {
				t.Fatalf("UDP reply of %d bytes", len(reply))
			}
		}
	})
}
