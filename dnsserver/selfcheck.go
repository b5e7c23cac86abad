package dnsserver

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/miekg/dns"
)

// SelfCheck returns a check that sends a real query for name/qtype to a
// DNS server (this gslbd's own listen address, asked at each check since it
// is known only once the server listens) over UDP and passes when the
// answer is authoritative, NOERROR and not empty. The anycast announcer
// uses it: a site whose DNS does not answer must not announce.
func SelfCheck(server func() netip.AddrPort, name string, qtype string) (func(ctx context.Context) (bool, string), error) {
	t, ok := dns.StringToType[qtype]
	if !ok {
		return nil, fmt.Errorf("dns self-check: unknown query type %q", qtype)
	}
	if _, ok := dns.IsDomainName(name); !ok {
		return nil, fmt.Errorf("dns self-check: %q is not a domain name", name)
	}
	fqdn := dns.Fqdn(name)
	return func(ctx context.Context) (bool, string) {
		addr := server()
		if !addr.IsValid() {
			return false, "not listening yet"
		}
		m := new(dns.Msg)
		m.SetQuestion(fqdn, t)
		c := &dns.Client{Net: "udp", Dialer: &net.Dialer{}}
		r, _, err := c.ExchangeContext(ctx, m, addr.String())
		switch {
		case err != nil:
			return false, "query failed: " + err.Error()
		case r.Rcode != dns.RcodeSuccess:
			return false, "rcode " + dns.RcodeToString[r.Rcode]
		case !r.Authoritative:
			return false, "answer not authoritative"
		case len(r.Answer) == 0:
			return false, "empty answer"
		}
		return true, ""
	}, nil
}
