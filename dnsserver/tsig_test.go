package dnsserver

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestCompileTransfers(t *testing.T) {
	key := TSIGKey{Name: "xfr-key", Secret: xfrSecret}
	pfx := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	zone := func(zt ZoneTransfer) map[string]ZoneTransfer { return map[string]ZoneTransfer{"example.com.": zt} }
	for _, tc := range []struct {
		name string
		tc   TransferConfig
		err  string // substring; "" = valid
	}{
		{name: "zero config", tc: TransferConfig{}},
		{name: "full", tc: TransferConfig{Keys: []TSIGKey{key, {Name: "K2.Example.", Algorithm: "HMAC-SHA512.", Secret: xfrSecret}},
			Zones: zone(ZoneTransfer{Allow: []ACLRule{{Prefixes: pfx}, {Key: "xfr-key."}, {Prefixes: pfx, Key: "k2.example"}},
				Notify: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:5300")}, NotifyKey: "XFR-KEY"})}},
		{name: "unknown key", tc: TransferConfig{Keys: []TSIGKey{key}, Zones: zone(ZoneTransfer{Allow: []ACLRule{{Key: "x"}}})},
			err: `transfers.zones[example.com.].allow[0].key: unknown key "x"`},
		{name: "unknown notify key", tc: TransferConfig{Zones: zone(ZoneTransfer{NotifyKey: "x"})},
			err: `transfers.zones[example.com.].notify_key: unknown key "x"`},
		{name: "empty rule", tc: TransferConfig{Zones: zone(ZoneTransfer{Allow: []ACLRule{{Prefixes: pfx}, {}}})},
			err: "transfers.zones[example.com.].allow[1]: a rule needs prefixes, a key or both"},
		{name: "invalid prefix", tc: TransferConfig{Zones: zone(ZoneTransfer{Allow: []ACLRule{{Prefixes: []netip.Prefix{{}}}}})},
			err: "transfers.zones[example.com.].allow[0].prefixes[0]: invalid prefix"},
		{name: "notify port 0", tc: TransferConfig{Zones: zone(ZoneTransfer{Notify: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}})},
			err: "transfers.zones[example.com.].notify[0]"},
		{name: "missing key name", tc: TransferConfig{Keys: []TSIGKey{{Secret: xfrSecret}}}, err: "transfers.keys[0].name: missing"},
		{name: "duplicate key", tc: TransferConfig{Keys: []TSIGKey{key, {Name: "XFR-key.", Secret: xfrSecret}}},
			err: `transfers.keys[1].name: duplicate key "xfr-key."`},
		{name: "bad algorithm", tc: TransferConfig{Keys: []TSIGKey{{Name: "k", Algorithm: "hmac-md5", Secret: xfrSecret}}},
			err: `transfers.keys[0].algorithm: unknown algorithm "hmac-md5"`},
		{name: "secret not base64", tc: TransferConfig{Keys: []TSIGKey{{Name: "k", Secret: "not base64!"}}},
			err: "transfers.keys[0].secret: not base64"},
		{name: "empty secret", tc: TransferConfig{Keys: []TSIGKey{{Name: "k"}}}, err: "transfers.keys[0].secret: empty"},
		{name: "bad zone name", tc: TransferConfig{Zones: map[string]ZoneTransfer{"": {}}}, err: `transfers.zones[]: "" is not a domain name`},
		{name: "zone listed twice", tc: TransferConfig{Zones: map[string]ZoneTransfer{"Example.com": {}, "example.com.": {}}},
			err: "is listed twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := compileTransfers(tc.tc)
			if tc.err == "" {
				if err != nil || p == nil {
					t.Fatalf("compile: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want one containing %q", err, tc.err)
			}
			if _, nerr := NewResponder(Config{Transfers: tc.tc}); nerr == nil {
				t.Error("NewResponder accepted the config")
			}
		})
	}
}

func TestCompiledPolicy(t *testing.T) {
	p, err := compileTransfers(TransferConfig{
		Keys: []TSIGKey{{Name: "a", Secret: xfrSecret}, {Name: "b", Algorithm: "hmac-sha384", Secret: xfrSecret}},
		Zones: map[string]ZoneTransfer{"Example.COM": {Allow: []ACLRule{
			{Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}},
			{Prefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}, Key: "a"},
			{Key: "b."},
		}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	a, b := p.keys["a."], p.keys["b."]
	if a == nil || a.alg != dns.HmacSHA256 || b == nil || b.alg != dns.HmacSHA384 {
		t.Fatalf("keys %+v", p.keys)
	}
	for _, tc := range []struct {
		zone string
		src  string
		key  *tsigKey
		want bool
	}{
		{"example.com.", "192.0.2.7:1", nil, true},
		{"example.com.", "[::ffff:192.0.2.7]:1", nil, true},
		{"example.com.", "198.51.100.1:1", nil, false},
		{"example.com.", "[2001:db8::1]:1", nil, false},
		{"example.com.", "[2001:db8::1]:1", a, true},
		{"example.com.", "[2001:db9::1]:1", a, false},
		{"example.com.", "198.51.100.1:1", b, true},
		{"example.com.", "", b, true},
		{"example.com.", "", nil, false},
		{"example.com.", "192.0.2.7:1", a, true}, // a prefix-only rule does not mind a valid key
		{"example.net.", "192.0.2.7:1", b, false},
	} {
		var src netip.AddrPort
		if tc.src != "" {
			src = netip.MustParseAddrPort(tc.src)
		}
		if got := p.allowed(tc.zone, src, tc.key); got != tc.want {
			name := "none"
			if tc.key != nil {
				name = tc.key.name
			}
			t.Errorf("allowed(%s, %q, key %s) = %v, want %v", tc.zone, tc.src, name, got, tc.want)
		}
	}
}

func TestSignedQueries(t *testing.T) {
	r, _ := newXfrResponder(t, xfrTestConfig())
	for _, tc := range []struct {
		name    string
		q       *dns.Msg
		tr      Transport
		key     string
		secret  string
		skew    time.Duration
		rcode   int
		tsigErr uint16
		answers int
		tc      bool
	}{
		{name: "a over udp", q: newQuery("www.example.org.", dns.TypeA), tr: UDP, key: xfrKey, secret: xfrSecret, answers: 2},
		{name: "a over tcp", q: newQuery("www.example.org.", dns.TypeA), tr: TCP, key: xfrKey, secret: xfrSecret, answers: 2},
		{name: "nxdomain", q: newQuery("nothere.example.org.", dns.TypeA), tr: UDP, key: xfrKey, secret: xfrSecret, rcode: dns.RcodeNameError},
		{name: "edns and ecs", q: withECS(newQuery("www.example.org.", dns.TypeAAAA), 1, 24, 0, []byte{198, 51, 100, 0}),
			tr: UDP, key: xfrKey, secret: xfrSecret, answers: 1},
		{name: "too big for 512 bytes", q: newQuery("big.example.org.", dns.TypeTXT), tr: UDP, key: xfrKey, secret: xfrSecret, tc: true},
		{name: "big over tcp", q: newQuery("big.example.org.", dns.TypeTXT), tr: TCP, key: xfrKey, secret: xfrSecret, answers: 3},
		{name: "not our zone", q: newQuery("www.example.com.", dns.TypeA), tr: UDP, key: xfrKey, secret: xfrSecret, rcode: dns.RcodeRefused},
		{name: "unknown key", q: newQuery("www.example.org.", dns.TypeA), tr: UDP, key: "nokey.", secret: xfrSecret,
			rcode: dns.RcodeNotAuth, tsigErr: dns.RcodeBadKey},
		{name: "wrong secret", q: newQuery("www.example.org.", dns.TypeA), tr: UDP, key: xfrKey, secret: badSecret,
			rcode: dns.RcodeNotAuth, tsigErr: dns.RcodeBadSig},
		{name: "stale", q: newQuery("www.example.org.", dns.TypeA), tr: UDP, key: xfrKey, secret: xfrSecret, skew: 10 * time.Minute,
			rcode: dns.RcodeNotAuth, tsigErr: dns.RcodeBadTime},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, reqMAC := signMsg(t, tc.q, tc.key, dns.HmacSHA256, tc.secret, time.Now().Add(tc.skew))
			out := r.ServeDNS(make([]byte, 0, 65535), req, testSrc, tc.tr)
			reply := new(dns.Msg)
			if err := reply.Unpack(out); err != nil {
				t.Fatalf("reply does not unpack: %v", err)
			}
			if reply.Id != tc.q.Id || reply.Rcode != tc.rcode || len(reply.Answer) != tc.answers || reply.Truncated != tc.tc {
				t.Fatalf("id %d rcode %s answers %d tc %v; want id %d rcode %s answers %d tc %v", reply.Id,
					dns.RcodeToString[reply.Rcode], len(reply.Answer), reply.Truncated, tc.q.Id, dns.RcodeToString[tc.rcode], tc.answers, tc.tc)
			}
			limit := 512
			if tc.q.IsEdns0() != nil {
				limit = 1232
			}
			if tc.tr == UDP && len(out) > limit {
				t.Errorf("udp reply of %d bytes is over the client's limit", len(out))
			}
			ts := reply.IsTsig()
			if ts == nil || ts.Error != tc.tsigErr {
				t.Fatalf("tsig %v, want one with error %d", ts, tc.tsigErr)
			}
			switch err := dns.TsigVerify(slices.Clone(out), tc.secret, reqMAC, false); {
			case tc.tsigErr == 0 && err != nil:
				t.Errorf("reply tsig: %v", err)
			case (tc.tsigErr == dns.RcodeBadKey || tc.tsigErr == dns.RcodeBadSig) && ts.MACSize != 0:
				t.Errorf("%s reply is signed", dns.RcodeToString[int(tc.tsigErr)])
			}
		})
	}
}

// TestSignedMalformed feeds broken TSIG records; none may panic, each must
// get an error reply.
func TestSignedMalformed(t *testing.T) {
	r, _ := newXfrResponder(t, xfrTestConfig())
	m := newQuery("www.example.org.", dns.TypeA)
	good, _ := signMsg(t, m, xfrKey, dns.HmacSHA256, xfrSecret, time.Now())
	unsigned, err := m.Pack() // TsigGenerate took the TSIG out of m again
	if err != nil {
		t.Fatal(err)
	}
	tsigAt := len(unsigned) + len("xfr-key.") + 1 // the TSIG's TYPE field
	if good[tsigAt] != 0 || good[tsigAt+1] != byte(dns.TypeTSIG) {
		t.Fatalf("no TSIG type at %d", tsigAt)
	}
	for _, tc := range []struct {
		name string
		mod  func([]byte) []byte
	}{
		{"rdata cut", func(b []byte) []byte { return b[:len(b)-4] }},
		{"mac size too big", func(b []byte) []byte {
			// MAC size follows the algorithm name, time (6) and fudge (2).
			i := tsigAt + 10
			n, _ := skipName(b, i)
			b[n+8], b[n+9] = 0xFF, 0xFF
			return b
		}},
		{"mac flipped", func(b []byte) []byte { b[len(b)-8] ^= 0xFF; return b }},
		{"rdlength zero", func(b []byte) []byte { b[tsigAt+8], b[tsigAt+9] = 0, 0; return b[:tsigAt+10] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := tc.mod(slices.Clone(good))
			for _, tr := range []Transport{UDP, TCP} {
				out := r.ServeDNS(make([]byte, 0, 4096), req, testSrc, tr)
				if len(out) < headerLen {
					t.Fatalf("%v: no reply", tr)
				}
				if rc := out[3] & 0x0F; rc == dns.RcodeSuccess {
					t.Errorf("%v: NOERROR to a broken TSIG", tr)
				}
			}
		})
	}
}
