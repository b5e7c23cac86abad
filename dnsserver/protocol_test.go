package dnsserver

import (
	"encoding/binary"
	"net"
	"testing"

	"github.com/miekg/dns"
)

func newQuery(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return m
}

func withECS(m *dns.Msg, family uint16, source, scope uint8, addr net.IP) *dns.Msg {
	m.SetEdns0(1232, false)
	m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_SUBNET{
		Code: dns.EDNS0SUBNET, Family: family, SourceNetmask: source, SourceScope: scope, Address: addr})
	return m
}

func TestCaseEcho(t *testing.T) {
	r := newTestResponder(t, Config{})
	for _, name := range []string{"WwW.ExAmPlE.oRg.", "FOO.Wild.example.ORG.", "NOTHERE.example.org.", "Alias.Example.Org."} {
		reply := exchange(t, r, newQuery(name, dns.TypeA), UDP)
		if reply.Question[0].Name != name {
			t.Errorf("question %q, want %q", reply.Question[0].Name, name)
		}
		if len(reply.Answer) > 0 && reply.Answer[0].Header().Name != name {
			t.Errorf("owner %q, want the query's case %q", reply.Answer[0].Header().Name, name)
		}
	}
}

func TestHeaderFlags(t *testing.T) {
	r := newTestResponder(t, Config{})
	m := newQuery("www.example.org.", dns.TypeA)
	m.RecursionDesired = true
	m.CheckingDisabled = true
	reply := exchange(t, r, m, UDP)
	if !reply.RecursionDesired || reply.RecursionAvailable || !reply.CheckingDisabled || reply.AuthenticatedData {
		t.Errorf("rd %v ra %v cd %v ad %v; want RD and CD copied, RA and AD off",
			reply.RecursionDesired, reply.RecursionAvailable, reply.CheckingDisabled, reply.AuthenticatedData)
	}
	m.RecursionDesired = false
	if reply = exchange(t, r, m, UDP); reply.RecursionDesired {
		t.Error("RD set in reply to a query without RD")
	}
}

func TestEDNS(t *testing.T) {
	r := newTestResponder(t, Config{})
	m := newQuery("www.example.org.", dns.TypeA)
	m.SetEdns0(4096, true)
	reply := exchange(t, r, m, UDP)
	opt := reply.IsEdns0()
	if opt == nil || opt.UDPSize() != 1232 || !opt.Do() || opt.Version() != 0 {
		t.Fatalf("OPT %v: want payload 1232, DO copied, version 0", opt)
	}
	if len(reply.Answer) != 2 {
		t.Errorf("answer %v", reply.Answer)
	}
	// No OPT in the query, none in the reply.
	if reply = exchange(t, r, newQuery("www.example.org.", dns.TypeA), UDP); reply.IsEdns0() != nil {
		t.Error("OPT in reply to a query without EDNS")
	}
	// BADVERS for version 1, with OPT at version 0 and no answer.
	m = newQuery("www.example.org.", dns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().SetVersion(1)
	reply = exchange(t, r, m, UDP)
	if reply.Rcode != dns.RcodeBadVers || reply.IsEdns0() == nil || reply.IsEdns0().Version() != 0 || len(reply.Answer) != 0 {
		t.Errorf("version 1: rcode %s opt %v answer %v", dns.RcodeToString[reply.Rcode], reply.IsEdns0(), reply.Answer)
	}
}

func TestTruncation(t *testing.T) {
	r := newTestResponder(t, Config{})
	// Three ~210-byte TXT records: more than 512, less than 1232.
	reply := exchange(t, r, newQuery("big.example.org.", dns.TypeTXT), UDP)
	if !reply.Truncated || len(reply.Answer) != 0 {
		t.Errorf("no EDNS: tc %v answer %d, want TC and no partial RRset", reply.Truncated, len(reply.Answer))
	}
	m := newQuery("big.example.org.", dns.TypeTXT)
	m.SetEdns0(4096, false)
	if reply = exchange(t, r, m, UDP); reply.Truncated || len(reply.Answer) != 3 {
		t.Errorf("EDNS 4096: tc %v answer %d, want 3 records", reply.Truncated, len(reply.Answer))
	}
	m = newQuery("big.example.org.", dns.TypeTXT)
	m.SetEdns0(600, false) // larger than 512 but too small
	if reply = exchange(t, r, m, UDP); !reply.Truncated || reply.IsEdns0() == nil {
		t.Errorf("EDNS 600: tc %v opt %v, want TC with OPT", reply.Truncated, reply.IsEdns0())
	}
	if reply = exchange(t, r, newQuery("big.example.org.", dns.TypeTXT), TCP); reply.Truncated || len(reply.Answer) != 3 {
		t.Errorf("TCP: tc %v answer %d", reply.Truncated, len(reply.Answer))
	}
	// Client buffers below 512 are treated as 512.
	m = newQuery("www.example.org.", dns.TypeA)
	m.SetEdns0(100, false)
	if reply = exchange(t, r, m, UDP); reply.Truncated || len(reply.Answer) != 2 {
		t.Error("small answer truncated")
	}
}

func TestChaos(t *testing.T) {
	q := func(name string) *dns.Msg {
		m := newQuery(name, dns.TypeTXT)
		m.Question[0].Qclass = dns.ClassCHAOS
		return m
	}
	r := newTestResponder(t, Config{})
	for _, name := range []string{"version.bind.", "hostname.bind.", "id.server.", "version.server."} {
		if reply := exchange(t, r, q(name), UDP); reply.Rcode != dns.RcodeRefused {
			t.Errorf("%s unconfigured: %s, want REFUSED", name, dns.RcodeToString[reply.Rcode])
		}
	}
	r = newTestResponder(t, Config{Identity: Identity{Version: "gslbd 1", Hostname: "ns1", ID: "fra-1"}})
	reply := exchange(t, r, q("VERSION.bind."), UDP)
	if reply.Rcode != dns.RcodeSuccess || !reply.Authoritative || len(reply.Answer) != 1 ||
		reply.Answer[0].(*dns.TXT).Txt[0] != "gslbd 1" || reply.Answer[0].Header().Class != dns.ClassCHAOS {
		t.Errorf("version.bind configured: %v", reply)
	}
	if reply = exchange(t, r, q("other.bind."), UDP); reply.Rcode != dns.RcodeRefused {
		t.Errorf("other.bind: %s", dns.RcodeToString[reply.Rcode])
	}
}

func TestRefusedClasses(t *testing.T) {
	r := newTestResponder(t, Config{})
	for _, class := range []uint16{dns.ClassANY, dns.ClassHESIOD, dns.ClassNONE, 42} {
		m := newQuery("www.example.org.", dns.TypeA)
		m.Question[0].Qclass = class
		if reply := exchange(t, r, m, UDP); reply.Rcode != dns.RcodeRefused || len(reply.Answer) != 0 {
			t.Errorf("class %d: %s", class, dns.RcodeToString[reply.Rcode])
		}
	}
}

func TestOpcodes(t *testing.T) {
	r := newTestResponder(t, Config{})
	for _, op := range []int{dns.OpcodeIQuery, dns.OpcodeStatus, dns.OpcodeUpdate, 3, 15} {
		m := newQuery("www.example.org.", dns.TypeA)
		m.Opcode = op
		reply := exchange(t, r, m, UDP)
		if reply.Rcode != dns.RcodeNotImplemented || reply.Opcode != op {
			t.Errorf("opcode %d: rcode %s opcode %d", op, dns.RcodeToString[reply.Rcode], reply.Opcode)
		}
	}
}

// raw builds a query by hand so malformed variants can be made.
func raw(qd, an, ns, ar uint16, body ...[]byte) []byte {
	b := []byte{0x12, 0x34, 0x01, 0x00}
	b = binary.BigEndian.AppendUint16(b, qd)
	b = binary.BigEndian.AppendUint16(b, an)
	b = binary.BigEndian.AppendUint16(b, ns)
	b = binary.BigEndian.AppendUint16(b, ar)
	for _, p := range body {
		b = append(b, p...)
	}
	return b
}

var wwwQ = []byte("\x03www\x07example\x03org\x00\x00\x01\x00\x01")

func opt(options ...byte) []byte {
	b := []byte{0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0}
	b = binary.BigEndian.AppendUint16(b, uint16(len(options)))
	return append(b, options...)
}

func TestMalformed(t *testing.T) {
	r := newTestResponder(t, Config{})
	formerr := []struct {
		name string
		req  []byte
	}{
		{"qdcount 0", raw(0, 0, 0, 0)},
		{"qdcount 2", raw(2, 0, 0, 0, wwwQ, wwwQ)},
		{"truncated name", raw(1, 0, 0, 0, []byte("\x03www\x07exam"))},
		{"truncated type", raw(1, 0, 0, 0, wwwQ[:len(wwwQ)-3])},
		{"pointer in question", raw(1, 0, 0, 0, []byte("\x03www\xc0\x0c\x00\x01\x00\x01"))},
		{"label type 0x40", raw(1, 0, 0, 0, []byte("\x43www\x00\x00\x01\x00\x01"))},
		{"answer in query", raw(1, 1, 0, 0, wwwQ, []byte("\x00\x00\x01\x00\x01\x00\x00\x00\x00\x00\x04\x01\x02\x03\x04"))},
		{"arcount past end", raw(1, 0, 0, 1, wwwQ)},
		{"two OPT", raw(1, 0, 0, 2, wwwQ, opt(), opt())},
		{"OPT not at root", raw(1, 0, 0, 1, wwwQ, []byte("\x01a"), opt()[1:])},
		{"OPT rdata past end", raw(1, 0, 0, 1, wwwQ, opt(0, 8, 0, 8, 0, 1, 24))},
		{"option truncated", raw(1, 0, 0, 1, wwwQ, opt(0, 8, 0))},
		{"qtype OPT", raw(1, 0, 0, 0, []byte("\x03www\x07example\x03org\x00\x00\x29\x00\x01"))},
	}
	for _, tc := range formerr {
		reply := exchangeRaw(t, r, tc.req, UDP)
		if reply == nil || reply.Rcode != dns.RcodeFormatError || reply.Id != 0x1234 || !reply.Response {
			t.Errorf("%s: %v, want FORMERR", tc.name, reply)
		}
	}
	for _, tc := range []struct {
		name string
		req  []byte
	}{{"short header", []byte{1, 2, 3}}, {"a response", append([]byte{0x12, 0x34, 0x81, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}, wwwQ...)}} {
		if out := r.ServeDNS(nil, tc.req, testSrc, UDP); out != nil {
			t.Errorf("%s: replied %x, want drop", tc.name, out)
		}
	}
}

func TestECS(t *testing.T) {
	r := newTestResponder(t, Config{})
	valid := []struct {
		family uint16
		source uint8
		addr   net.IP
	}{
		{1, 24, net.IP{198, 51, 100, 0}},
		{1, 0, net.IPv4zero},
		{1, 32, net.IP{198, 51, 100, 7}},
		{1, 22, net.IP{198, 51, 100, 0}},
		{2, 56, net.ParseIP("2001:db8:1:200::")},
		{2, 0, net.IPv6zero},
	}
	for _, v := range valid {
		m := withECS(newQuery("www.example.org.", dns.TypeA), v.family, v.source, 0, v.addr)
		reply := exchange(t, r, m, UDP)
		if reply.Rcode != dns.RcodeSuccess || len(reply.Answer) != 2 {
			t.Fatalf("ECS %d/%d: %v", v.family, v.source, reply)
		}
		var echo *dns.EDNS0_SUBNET
		for _, o := range reply.IsEdns0().Option {
			if e, ok := o.(*dns.EDNS0_SUBNET); ok {
				echo = e
			}
		}
		if echo == nil || echo.Family != v.family || echo.SourceNetmask != v.source || echo.SourceScope != 0 {
			t.Errorf("ECS %d/%d: echo %v, want family/source copied and scope 0", v.family, v.source, echo)
		}
	}
	ecs := func(b ...byte) []byte {
		return raw(1, 0, 0, 1, wwwQ, opt(append([]byte{0, 8, 0, byte(len(b))}, b...)...))
	}
	for _, tc := range []struct {
		name string
		req  []byte
	}{
		{"unknown family", ecs(0, 3, 8, 0, 10)},
		{"scope in query", ecs(0, 1, 24, 8, 198, 51, 100)},
		{"address too long", ecs(0, 1, 16, 0, 198, 51, 100)},
		{"address too short", ecs(0, 1, 24, 0, 198, 51)},
		{"bits past source", ecs(0, 1, 23, 0, 198, 51, 101)},
		{"source > 32", ecs(0, 1, 33, 0, 198, 51, 100, 1, 0)},
		{"source > 128", ecs(0, 2, 129, 0, 0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)},
		{"no header", ecs(0, 1)},
		{"two ECS", raw(1, 0, 0, 1, wwwQ, opt(0, 8, 0, 4, 0, 1, 0, 0, 0, 8, 0, 4, 0, 1, 0, 0))},
	} {
		if reply := exchangeRaw(t, r, tc.req, UDP); reply == nil || reply.Rcode != dns.RcodeFormatError {
			t.Errorf("%s: %v, want FORMERR", tc.name, reply)
		}
	}
	// ECS on a negative answer: echoed, scope 0.
	m := withECS(newQuery("nothere.example.org.", dns.TypeA), 1, 24, 0, net.IP{198, 51, 100, 0})
	reply := exchange(t, r, m, UDP)
	if reply.Rcode != dns.RcodeNameError || len(reply.IsEdns0().Option) != 1 {
		t.Errorf("negative with ECS: %v", reply)
	}
}

func TestCompressionBoundary(t *testing.T) {
	// A large answer over TCP: owners past 16383 bytes cannot be pointed to.
	r := newTestResponder(t, Config{})
	reply := exchange(t, r, newQuery("big.example.org.", dns.TypeTXT), TCP)
	for _, rr := range reply.Answer {
		if rr.Header().Name != "big.example.org." {
			t.Errorf("owner %q", rr.Header().Name)
		}
	}
}

// RFC 6891 section 7: a reply to a query with a sound OPT carries OPT, also
// when the rcode is an error.
func TestErrorRepliesCarryOPT(t *testing.T) {
	r := newTestResponder(t, Config{})
	m := newQuery("www.example.org.", dns.TypeA)
	m.Opcode = dns.OpcodeUpdate
	m.SetEdns0(1232, false)
	reply := exchange(t, r, m, UDP)
	if reply.Rcode != dns.RcodeNotImplemented || reply.IsEdns0() == nil || len(reply.Question) != 1 {
		t.Errorf("NOTIMP with EDNS: rcode %s opt %v question %v", dns.RcodeToString[reply.Rcode], reply.IsEdns0(), reply.Question)
	}
	bad := raw(1, 0, 0, 1, wwwQ, opt(0, 8, 0, 7, 0, 1, 24, 8, 198, 51, 100)) // ECS scope != 0
	reply = exchangeRaw(t, r, bad, UDP)
	if reply.Rcode != dns.RcodeFormatError || reply.IsEdns0() == nil || len(reply.IsEdns0().Option) != 0 {
		t.Errorf("FORMERR for bad ECS: rcode %s opt %v; want OPT without the ECS", dns.RcodeToString[reply.Rcode], reply.IsEdns0())
	}
	if reply = exchange(t, r, newQuery("www.example.net.", dns.TypeA).SetEdns0(1232, false), UDP); reply.Rcode != dns.RcodeRefused || reply.IsEdns0() == nil {
		t.Errorf("REFUSED with EDNS: %v", reply)
	}
}

// Additional addresses go in when they fit; when they do not, they are
// left out without TC (RFC 2181 section 9): the answer itself is complete.
func TestAdditionalWhenItFits(t *testing.T) {
	r := newTestResponder(t, Config{})
	reply := exchange(t, r, newQuery("mxmany.example.org.", dns.TypeMX), UDP)
	if reply.Truncated || len(reply.Answer) != 1 || len(reply.Extra) != 0 {
		t.Errorf("512-byte buffer: tc %v answer %d extra %d, want the MX alone without TC", reply.Truncated, len(reply.Answer), len(reply.Extra))
	}
	m := newQuery("mxmany.example.org.", dns.TypeMX)
	m.SetEdns0(1232, false)
	reply = exchange(t, r, m, UDP)
	if reply.Truncated || len(reply.Answer) != 1 || len(reply.Extra) != 31 { // 30 A + OPT
		t.Errorf("1232-byte buffer: tc %v answer %d extra %d, want the MX and its 30 addresses", reply.Truncated, len(reply.Answer), len(reply.Extra))
	}
}
