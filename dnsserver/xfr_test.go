package dnsserver

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/gslbd/gslbd/zones"
)

const (
	xfrKey    = "xfr-key."
	xfrSecret = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // base64 of 32 bytes
	badSecret = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
)

var (
	outsideSrc = netip.MustParseAddrPort("203.0.113.9:40000")
	loopSrc    = netip.MustParseAddrPort("127.0.0.1:40000")
)

// bigZone builds a zone that needs several transfer messages.
func bigZone(t testing.TB, records int) *zones.Zone {
	t.Helper()
	z := &zones.Zone{Origin: "big.test.", File: "big.test.zone"}
	add := func(s string) {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		if soa, ok := rr.(*dns.SOA); ok {
			z.SOA, z.Serial = soa, soa.Serial
		}
		z.Records = append(z.Records, zones.Record{RR: rr, File: z.File})
	}
	add("big.test. 3600 IN SOA ns1.big.test. hostmaster.big.test. 5 7200 3600 1209600 300")
	add("big.test. 3600 IN NS ns1.big.test.")
	add("ns1.big.test. 3600 IN A 192.0.2.1")
	for i := range records {
		add(fmt.Sprintf("r%d.big.test. 300 IN TXT %q", i, strings.Repeat(fmt.Sprint(i%10), 200)))
		if i == records/2 { // one record over the message budget on its own
			add("huge.big.test. 300 IN TXT" + strings.Repeat(` "`+strings.Repeat("h", 250)+`"`, 80))
		}
	}
	return z
}

// xfrTestConfig: example.org. by prefix or by key, big.test. by key from
// loopback, child.example.org. not listed.
func xfrTestConfig() TransferConfig {
	return TransferConfig{
		Keys: []TSIGKey{{Name: "xfr-key", Secret: xfrSecret}, {Name: "other-key.", Algorithm: "hmac-sha512", Secret: xfrSecret}},
		Zones: map[string]ZoneTransfer{
			"example.org.": {Allow: []ACLRule{
				{Prefixes: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")}},
				{Key: "xfr-key"},
			}},
			"big.test.": {Allow: []ACLRule{{Prefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Key: "xfr-key."}}},
		},
	}
}

// newXfrResponder serves the testdata zones and big.test. with tc.
func newXfrResponder(t testing.TB, tc TransferConfig) (*Responder, map[string]*zones.Zone) {
	t.Helper()
	r := newTestResponder(t, Config{Transfers: tc})
	set := &zones.Set{Zones: map[string]*zones.Zone{}}
	for _, f := range []string{"example.org.zone", "child.example.org.zone"} {
		z := loadTestZone(t, f)
		set.Zones[z.Origin] = z
	}
	big := bigZone(t, 400)
	set.Zones[big.Origin] = big
	if err := r.SetZones(set); err != nil {
		t.Fatal(err)
	}
	return r, set.Zones
}

// signMsg signs m with key/secret at time ts and returns the wire form and
// the request MAC.
func signMsg(t testing.TB, m *dns.Msg, key, alg, secret string, ts time.Time) ([]byte, string) {
	t.Helper()
	m.SetTsig(key, alg, 300, ts.Unix())
	b, mac, err := dns.TsigGenerate(m, secret, "", false)
	if err != nil {
		t.Fatal(err)
	}
	return b, mac
}

// streamXfr drives ServeStream and returns every message sent.
func streamXfr(t testing.TB, r *Responder, req []byte, src netip.AddrPort) ([][]byte, bool) {
	t.Helper()
	var msgs [][]byte
	handled := r.ServeStream(req, src, func(b []byte) error {
		msgs = append(msgs, slices.Clone(b))
		return nil
	})
	return msgs, handled
}

// zoneStrings is every record of z but the SOA, normalised and sorted.
func zoneStrings(z *zones.Zone) []string {
	var rrs []dns.RR
	for _, rec := range z.Records {
		if rec.RR.Header().Rrtype != dns.TypeSOA {
			rrs = append(rrs, rec.RR)
		}
	}
	s := rrStrings(rrs)
	slices.Sort(s)
	return s
}

// checkFullTransfer checks an AXFR-style answer: SOA first and last, the
// zone's other records in between, the question in the first message only,
// AA on all, each message within the size budget.
func checkFullTransfer(t *testing.T, msgs []*dns.Msg, raw [][]byte, z *zones.Zone, id uint16) {
	t.Helper()
	var all []dns.RR
	for i, m := range msgs {
		if m.Id != id || !m.Response || !m.Authoritative || m.Rcode != dns.RcodeSuccess {
			t.Errorf("message %d: id %d qr %v aa %v rcode %d", i, m.Id, m.Response, m.Authoritative, m.Rcode)
		}
		if (i == 0) != (len(m.Question) == 1) || len(m.Question) > 1 {
			t.Errorf("message %d has %d questions", i, len(m.Question))
		}
		if len(raw[i]) > xfrMsgBudget+1024 && len(m.Answer) > 1 || len(m.Answer) == 0 {
			t.Errorf("message %d is %d bytes with %d records: over the budget, or empty", i, len(raw[i]), len(m.Answer))
		}
		all = append(all, m.Answer...)
	}
	if len(all) < 2 {
		t.Fatalf("transfer has %d records", len(all))
	}
	first, okFirst := all[0].(*dns.SOA)
	last, okLast := all[len(all)-1].(*dns.SOA)
	if !okFirst || !okLast || first.Serial != z.Serial || last.Serial != z.Serial {
		t.Fatalf("transfer does not start and end with the SOA of serial %d: %v ... %v", z.Serial, all[0], all[len(all)-1])
	}
	got := rrStrings(all[1 : len(all)-1])
	slices.Sort(got)
	if want := zoneStrings(z); !slices.Equal(got, want) {
		t.Errorf("transferred records differ:\n got %d %q\nwant %d %q", len(got), got, len(want), want)
	}
}

// verifyChain checks the TSIG of every message: the first against the
// request MAC, each next one against the previous MAC with timers only.
func verifyChain(t *testing.T, raw [][]byte, secret, reqMAC string) {
	t.Helper()
	mac := reqMAC
	for i, b := range raw {
		if err := dns.TsigVerify(slices.Clone(b), secret, mac, i > 0); err != nil {
			t.Fatalf("message %d of %d: tsig: %v", i, len(raw), err)
		}
		m := new(dns.Msg)
		if err := m.Unpack(b); err != nil || m.IsTsig() == nil {
			t.Fatalf("message %d: unpack %v, tsig %v", i, err, m.IsTsig())
		}
		mac = m.IsTsig().MAC
	}
}

type xfrCase struct {
	name    string
	zone    string
	qtype   uint16
	ixfr    uint32 // client serial for IXFR
	noSOA   bool   // IXFR without the SOA in authority
	src     netip.AddrPort
	key     string // sign with this key name ("" = unsigned)
	alg     string
	secret  string
	skew    time.Duration
	rcode   int
	tsigErr uint16
	want    string // "full", "soa" or "" (an error reply)
	multi   bool   // more than one message expected
}

func TestTransfers(t *testing.T) {
	r, zs := newXfrResponder(t, xfrTestConfig())
	cases := []xfrCase{
		{name: "axfr allowed by prefix", zone: "example.org.", src: testSrc, want: "full"},
		{name: "axfr refused outside prefix", zone: "example.org.", src: outsideSrc, rcode: dns.RcodeRefused},
		{name: "axfr refused without acl", zone: "child.example.org.", src: testSrc, rcode: dns.RcodeRefused},
		{name: "axfr of a zone not served", zone: "example.com.", src: testSrc, rcode: dns.RcodeRefused},
		{name: "axfr of a name below the apex", zone: "www.example.org.", src: testSrc, rcode: dns.RcodeRefused},
		{name: "axfr allowed by key from anywhere", zone: "example.org.", src: outsideSrc, key: xfrKey, secret: xfrSecret, want: "full"},
		{name: "axfr unknown key", zone: "example.org.", src: testSrc, key: "nokey.", secret: xfrSecret,
			rcode: dns.RcodeNotAuth, tsigErr: dns.RcodeBadKey},
		{name: "axfr key with the wrong algorithm", zone: "example.org.", src: testSrc, key: "other-key.", secret: xfrSecret,
			rcode: dns.RcodeNotAuth, tsigErr: dns.RcodeBadKey},
		{name: "axfr wrong secret", zone: "example.org.", src: testSrc, key: xfrKey, secret: badSecret,
			rcode: dns.RcodeNotAuth, tsigErr: dns.RcodeBadSig},
		{name: "axfr stale signature", zone: "example.org.", src: testSrc, key: xfrKey, secret: xfrSecret, skew: -time.Hour,
			rcode: dns.RcodeNotAuth, tsigErr: dns.RcodeBadTime},
		{name: "axfr big zone signed", zone: "big.test.", src: loopSrc, key: xfrKey, secret: xfrSecret, want: "full", multi: true},
		{name: "axfr big zone unsigned", zone: "big.test.", src: loopSrc, want: "", rcode: dns.RcodeRefused},
		{name: "axfr big zone signed from outside", zone: "big.test.", src: outsideSrc, key: xfrKey, secret: xfrSecret, rcode: dns.RcodeRefused},
		{name: "ixfr up to date", zone: "example.org.", qtype: dns.TypeIXFR, ixfr: 2024010101, src: testSrc, want: "soa"},
		{name: "ixfr client ahead", zone: "example.org.", qtype: dns.TypeIXFR, ixfr: 2024010200, src: testSrc, want: "soa"},
		{name: "ixfr client older", zone: "example.org.", qtype: dns.TypeIXFR, ixfr: 2024010100, src: testSrc, want: "full"},
		{name: "ixfr older signed", zone: "big.test.", qtype: dns.TypeIXFR, ixfr: 4, src: loopSrc, key: xfrKey, secret: xfrSecret, want: "full", multi: true},
		{name: "ixfr up to date signed", zone: "big.test.", qtype: dns.TypeIXFR, ixfr: 5, src: loopSrc, key: xfrKey, secret: xfrSecret, want: "soa"},
		{name: "ixfr without soa", zone: "example.org.", qtype: dns.TypeIXFR, noSOA: true, src: testSrc, rcode: dns.RcodeFormatError},
		{name: "ixfr refused", zone: "example.org.", qtype: dns.TypeIXFR, ixfr: 1, src: outsideSrc, rcode: dns.RcodeRefused},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { runXfrCase(t, r, zs, tc) })
	}
}

func runXfrCase(t *testing.T, r *Responder, zs map[string]*zones.Zone, tc xfrCase) {
	m := new(dns.Msg)
	qtype := cmp.Or(tc.qtype, dns.TypeAXFR)
	m.SetQuestion(tc.zone, qtype)
	if qtype == dns.TypeIXFR && !tc.noSOA {
		m.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: tc.zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET},
			Ns: "ns.", Mbox: "h.", Serial: tc.ixfr}}
	}
	var req []byte
	var reqMAC string
	if tc.key != "" {
		req, reqMAC = signMsg(t, m, tc.key, cmp.Or(tc.alg, dns.HmacSHA256), tc.secret, time.Now().Add(tc.skew))
	} else {
		var err error
		if req, err = m.Pack(); err != nil {
			t.Fatal(err)
		}
	}
	raw, handled := streamXfr(t, r, req, tc.src)
	if !handled || len(raw) == 0 {
		t.Fatalf("handled %v with %d messages", handled, len(raw))
	}
	msgs := make([]*dns.Msg, len(raw))
	for i, b := range raw {
		msgs[i] = new(dns.Msg)
		if err := msgs[i].Unpack(b); err != nil {
			t.Fatalf("message %d does not unpack: %v", i, err)
		}
	}
	if msgs[0].Rcode != tc.rcode {
		t.Fatalf("rcode %s, want %s", dns.RcodeToString[msgs[0].Rcode], dns.RcodeToString[tc.rcode])
	}
	checkTSIG(t, raw, msgs, tc, reqMAC)
	switch tc.want {
	case "full":
		checkFullTransfer(t, msgs, raw, zs[tc.zone], m.Id)
		if tc.multi != (len(msgs) > 1) {
			t.Errorf("%d messages, want several: %v", len(msgs), tc.multi)
		}
	case "soa":
		if len(msgs) != 1 || len(msgs[0].Answer) != 1 || msgs[0].Answer[0].(*dns.SOA).Serial != zs[tc.zone].Serial {
			t.Errorf("want a single SOA of serial %d, got %d messages: %v", zs[tc.zone].Serial, len(msgs), msgs[0].Answer)
		}
	default:
		if len(msgs) != 1 || len(msgs[0].Answer) != 0 {
			t.Errorf("error reply: %d messages, answer %v", len(msgs), msgs[0].Answer)
		}
	}
}

// checkTSIG checks the signatures of a transfer's replies: an unsigned
// request gets unsigned replies; a TSIG failure a TSIG with the error (a MAC
// only for BADTIME); a good request a chain of MACs.
func checkTSIG(t *testing.T, raw [][]byte, msgs []*dns.Msg, tc xfrCase, reqMAC string) {
	t.Helper()
	ts := msgs[0].IsTsig()
	switch {
	case tc.key == "":
		for i, m := range msgs {
			if m.IsTsig() != nil {
				t.Errorf("message %d signed in reply to an unsigned request", i)
			}
		}
	case tc.tsigErr != 0:
		if ts == nil || ts.Error != tc.tsigErr {
			t.Fatalf("tsig %v, want error %s", ts, dns.RcodeToString[int(tc.tsigErr)])
		}
		if tc.tsigErr == dns.RcodeBadTime {
			checkBadTimeMAC(t, msgs[0], tc.secret, reqMAC)
		} else if ts.MACSize != 0 {
			t.Errorf("%s reply carries a MAC", dns.RcodeToString[int(tc.tsigErr)])
		}
	default:
		verifyChain(t, raw, tc.secret, reqMAC)
	}
}

// checkBadTimeMAC checks that a BADTIME reply is signed (RFC 8945 5.2.3)
// and gives our time in Other Data. miekg's TsigVerify refuses NOTAUTH
// messages, so the MAC is recomputed with TsigGenerate.
func checkBadTimeMAC(t *testing.T, m *dns.Msg, secret, reqMAC string) {
	t.Helper()
	ts := m.IsTsig()
	if ts.OtherLen != 6 || ts.MACSize == 0 {
		t.Fatalf("BADTIME reply: other len %d, mac size %d; want our time and a MAC", ts.OtherLen, ts.MACSize)
	}
	stub := *ts
	stub.MAC, stub.MACSize = "", 0
	m.Extra[len(m.Extra)-1] = &stub
	if _, mac, err := dns.TsigGenerate(m, secret, reqMAC, false); err != nil || mac != ts.MAC {
		t.Errorf("BADTIME reply MAC %s, want %s (%v)", ts.MAC, mac, err)
	}
}

func TestServeStreamPassesOtherMessages(t *testing.T) {
	r, _ := newXfrResponder(t, xfrTestConfig())
	soaQuery, _ := newQuery("example.org.", dns.TypeSOA).Pack()
	notify := new(dns.Msg)
	notify.SetNotify("example.org.")
	notifyWire, _ := notify.Pack()
	response := newQuery("example.org.", dns.TypeAXFR)
	response.Response = true
	responseWire, _ := response.Pack()
	for _, tc := range []struct {
		name string
		req  []byte
	}{
		{"soa query", soaQuery},
		{"notify", notifyWire},
		{"axfr response", responseWire},
		{"short", []byte{1, 2, 3}},
		{"truncated question", soaQuery[:15]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if raw, handled := streamXfr(t, r, tc.req, testSrc); handled || len(raw) != 0 {
				t.Errorf("handled %v, sent %d", handled, len(raw))
			}
		})
	}
}

func TestServeStreamBadTransferRequests(t *testing.T) {
	r, _ := newXfrResponder(t, xfrTestConfig())
	for _, tc := range []struct {
		name  string
		req   func() []byte
		rcode int
	}{
		{"rdata past the end", func() []byte {
			req, _ := newQuery("example.org.", dns.TypeAXFR).Pack()
			req[11] = 1
			return append(req, 0, 0, byte(dns.TypeA), 0, 1, 0, 0, 0, 0, 0, 16, 1, 2)
		}, dns.RcodeFormatError},
		{"tsig not last", func() []byte {
			req, _ := signMsg(t, newQuery("example.org.", dns.TypeAXFR), xfrKey, dns.HmacSHA256, xfrSecret, time.Now())
			req[11]++
			return append(req, 0, 0, byte(dns.TypeOPT), 4, 0, 0, 0, 0, 0, 0, 0) // an OPT after the TSIG
		}, dns.RcodeFormatError},
		{"edns version 1", func() []byte {
			m := newQuery("example.org.", dns.TypeAXFR)
			m.SetEdns0(1232, false)
			m.IsEdns0().SetVersion(1)
			req, _ := m.Pack()
			return req
		}, dns.RcodeBadVers},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.req()
			raw, handled := streamXfr(t, r, req, testSrc)
			if !handled || len(raw) != 1 {
				t.Fatalf("handled %v with %d messages", handled, len(raw))
			}
			m := new(dns.Msg)
			if err := m.Unpack(raw[0]); err != nil {
				t.Fatal(err)
			}
			if m.Rcode != tc.rcode || m.Id != uint16(req[0])<<8|uint16(req[1]) || len(m.Answer) != 0 {
				t.Errorf("reply %v, want %s", m, dns.RcodeToString[tc.rcode])
			}
			if o := m.IsEdns0(); tc.rcode == dns.RcodeBadVers && (o == nil || o.Version() != 0) {
				t.Errorf("BADVERS reply OPT %v, want version 0", o)
			}
		})
	}
}

func TestSerialLess(t *testing.T) {
	for _, tc := range []struct {
		a, b uint32
		want bool
	}{
		{1, 2, true}, {2, 1, false}, {5, 5, false},
		{0xFFFFFFFF, 0, true}, {0, 0xFFFFFFFF, false}, // wraps (RFC 1982)
		{1, 1 + 1<<31 - 1, true}, {1, 1 + 1<<31, false},
	} {
		if got := serialLess(tc.a, tc.b); got != tc.want {
			t.Errorf("serialLess(%d, %d) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// startXfrServer serves r on 127.0.0.1:0 until the test ends.
func startXfrServer(t *testing.T, r *Responder) string {
	t.Helper()
	s, err := NewServer(TransportConfig{Addrs: []string{"127.0.0.1:0"}, Workers: 1}, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background()) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return s.Addrs()[0].String()
}

// TestTransfersOverServer runs transfers through the real transport with
// miekg's client, which checks the TSIG of every message itself.
func TestTransfersOverServer(t *testing.T) {
	r, zs := newXfrResponder(t, xfrTestConfig())
	addr := startXfrServer(t, r)
	for _, tc := range []struct {
		name    string
		zone    string
		qtype   uint16
		secret  string // "" unsigned
		wantErr bool
	}{
		{name: "big zone signed", zone: "big.test.", secret: xfrSecret},
		{name: "big zone ixfr signed", zone: "big.test.", qtype: dns.TypeIXFR, secret: xfrSecret},
		{name: "big zone wrong secret", zone: "big.test.", secret: badSecret, wantErr: true},
		{name: "big zone unsigned", zone: "big.test.", wantErr: true},
		{name: "example.org signed", zone: "example.org.", secret: xfrSecret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := new(dns.Msg)
			if tc.qtype == dns.TypeIXFR {
				m.SetIxfr(tc.zone, 1, "ns.", "h.")
			} else {
				m.SetAxfr(tc.zone)
			}
			tr := &dns.Transfer{DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second}
			if tc.secret != "" {
				m.SetTsig(xfrKey, dns.HmacSHA256, 300, time.Now().Unix())
				tr.TsigSecret = map[string]string{xfrKey: tc.secret}
			}
			env, err := tr.In(m, addr)
			if err != nil {
				t.Fatal(err)
			}
			var rrs []dns.RR
			var xerr error
			for e := range env {
				if e.Error != nil && xerr == nil {
					xerr = e.Error
				}
				rrs = append(rrs, e.RR...)
			}
			if tc.wantErr {
				if xerr == nil {
					t.Fatalf("transfer succeeded with %d records, want an error", len(rrs))
				}
				return
			}
			if xerr != nil {
				t.Fatalf("transfer: %v", xerr)
			}
			if want := len(zs[tc.zone].Records) + 1; len(rrs) != want {
				t.Errorf("%d records, want %d", len(rrs), want)
			}
		})
	}
}

// TestTransfersOverUDP covers what reaches serveSlow on UDP.
func TestTransfersOverUDP(t *testing.T) {
	tc := xfrTestConfig()
	zt := tc.Zones["example.org."]
	zt.Allow = append(zt.Allow, ACLRule{Key: "other-key"})
	tc.Zones["example.org."] = zt
	r, _ := newXfrResponder(t, tc)
	ixfr := func(serial uint32) *dns.Msg {
		m := new(dns.Msg)
		m.SetIxfr("example.org.", serial, "ns.", "h.")
		return m
	}
	for _, c := range []struct {
		name   string
		m      *dns.Msg
		key    string
		alg    string
		src    netip.AddrPort
		rcode  int
		answer int
	}{
		{name: "axfr", m: newQuery("example.org.", dns.TypeAXFR), rcode: dns.RcodeNotImplemented},
		{name: "axfr signed", m: newQuery("example.org.", dns.TypeAXFR), key: xfrKey, rcode: dns.RcodeNotImplemented},
		{name: "ixfr signed older", m: ixfr(1), key: xfrKey, answer: 1},
		{name: "ixfr signed up to date", m: ixfr(2024010101), key: xfrKey, answer: 1},
		{name: "ixfr signed sha512", m: ixfr(1), key: "other-key.", alg: dns.HmacSHA512, answer: 1},
		// testSrc (198.18.0.1) is inside the prefix rule of example.org.
		{name: "ixfr unsigned from an allowed prefix", m: ixfr(1), answer: 1},
		{name: "ixfr unsigned from elsewhere", m: ixfr(1), src: netip.MustParseAddrPort("203.0.113.9:5353"), rcode: dns.RcodeRefused},
		{name: "ixfr not served", m: func() *dns.Msg { m := ixfr(1); m.Question[0].Name = "example.com."; return m }(), rcode: dns.RcodeRefused},
	} {
		t.Run(c.name, func(t *testing.T) {
			var req []byte
			var reqMAC string
			if c.key != "" {
				req, reqMAC = signMsg(t, c.m, c.key, cmp.Or(c.alg, dns.HmacSHA256), xfrSecret, time.Now())
			} else {
				req, _ = c.m.Pack()
			}
			out := r.ServeDNS(make([]byte, 0, 4096), req, cmp.Or(c.src, testSrc), UDP)
			reply := new(dns.Msg)
			if err := reply.Unpack(out); err != nil {
				t.Fatal(err)
			}
			if reply.Rcode != c.rcode || len(reply.Answer) != c.answer {
				t.Fatalf("rcode %s with %d answers, want %s with %d", dns.RcodeToString[reply.Rcode], len(reply.Answer),
					dns.RcodeToString[c.rcode], c.answer)
			}
			if c.answer == 1 {
				if soa, ok := reply.Answer[0].(*dns.SOA); !ok || soa.Serial != 2024010101 || !reply.Authoritative {
					t.Errorf("answer %v aa %v, want our SOA", reply.Answer, reply.Authoritative)
				}
			}
			if c.key != "" {
				if err := dns.TsigVerify(slices.Clone(out), xfrSecret, reqMAC, false); err != nil {
					t.Errorf("reply tsig: %v", err)
				}
			}
		})
	}
}

// FuzzServeStream feeds arbitrary wire bytes to the transfer and TSIG
// paths, with the transfer policy of the tests in force. They must never
// panic; a transfer request must get at least one message.
func FuzzServeStream(f *testing.F) {
	axfr, _ := newQuery("example.org.", dns.TypeAXFR).Pack()
	f.Add(axfr)
	ixfr := new(dns.Msg)
	ixfr.SetIxfr("example.org.", 1, "ns.", "h.")
	b, _ := ixfr.Pack()
	f.Add(b)
	for _, m := range []*dns.Msg{newQuery("big.test.", dns.TypeAXFR), ixfr, newQuery("www.example.org.", dns.TypeA)} {
		b, _ := signMsg(f, m.Copy(), xfrKey, dns.HmacSHA256, xfrSecret, time.Now())
		f.Add(b)
	}
	r, _ := newXfrResponder(f, xfrTestConfig())
	out := make([]byte, 0, 65535)
	f.Fuzz(func(t *testing.T, req []byte) {
		sent := 0
		handled := r.ServeStream(req, loopSrc, func([]byte) error { sent++; return nil })
		if handled && sent == 0 {
			t.Fatalf("handled a transfer request without replying: %x", req)
		}
		if !handled {
			r.ServeDNS(out, req, loopSrc, TCP)
		}
		r.ServeDNS(out, req, loopSrc, UDP)
	})
}
