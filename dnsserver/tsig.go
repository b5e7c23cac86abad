package dnsserver

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// tsigFudge is the time window we put in the TSIGs we generate (RFC 8945
// section 10 recommends 300 seconds).
const tsigFudge = 300

// tsigKey is a validated TSIG key.
type tsigKey struct {
	name   string // canonical: lowercase FQDN
	alg    string // canonical algorithm name ("hmac-sha256.")
	secret string // base64, as miekg/dns takes it
}

// tsigAlgorithm canonicalises an algorithm name; "" is hmac-sha256.
func tsigAlgorithm(s string) (string, bool) {
	if strings.TrimSpace(s) == "" {
		return dns.HmacSHA256, true
	}
	switch a := dns.CanonicalName(strings.TrimSpace(s)); a {
	case dns.HmacSHA1, dns.HmacSHA224, dns.HmacSHA256, dns.HmacSHA384, dns.HmacSHA512:
		return a, true
	}
	return "", false
}

// compileKey validates one key. Errors start with the field name, for the
// caller to prefix with the key's path.
func compileKey(k TSIGKey) (*tsigKey, error) {
	name := strings.TrimSpace(k.Name)
	if name == "" {
		return nil, fmt.Errorf("name: missing")
	}
	key := &tsigKey{name: dns.CanonicalName(name)}
	if _, ok := dns.IsDomainName(key.name); !ok || key.name == "." {
		return nil, fmt.Errorf("name: %q is not a domain name", k.Name)
	}
	var ok bool
	if key.alg, ok = tsigAlgorithm(k.Algorithm); !ok {
		return nil, fmt.Errorf("algorithm: unknown algorithm %q (want hmac-sha256, hmac-sha384, hmac-sha512, hmac-sha224 or hmac-sha1)", k.Algorithm)
	}
	raw, err := base64.StdEncoding.DecodeString(k.Secret)
	if err != nil {
		return nil, fmt.Errorf("secret: not base64: %w", err)
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("secret: empty")
	}
	key.secret = k.Secret
	return key, nil
}

// tsigState is what checking a request's TSIG found.
type tsigState struct {
	rr  *dns.TSIG // the request's TSIG; nil when the request is unsigned
	key *tsigKey  // the key that signed it (set when ok and for BADTIME)
	err uint16    // 0, or the TSIG error to answer with: BADKEY, BADSIG, BADTIME
}

// failed reports whether the request carried a TSIG that did not verify.
func (s tsigState) failed() bool { return s.rr != nil && s.err != 0 }

// verifyTSIG checks the TSIG of req (m is req unpacked) in the order of
// RFC 8945 section 5.2: key, then MAC, then time.
func (p *transferPolicy) verifyTSIG(req []byte, m *dns.Msg) tsigState {
	rr := m.IsTsig()
	if rr == nil {
		return tsigState{}
	}
	st := tsigState{rr: rr}
	key := p.keys[dns.CanonicalName(rr.Hdr.Name)]
	if key == nil || dns.CanonicalName(rr.Algorithm) != key.alg {
		st.err = dns.RcodeBadKey
		return st
	}
	// TsigVerify rewrites the header of the buffer it is given.
	switch err := dns.TsigVerify(slices.Clone(req), key.secret, "", false); err {
	case nil:
		st.key = key
	case dns.ErrTime:
		st.key, st.err = key, dns.RcodeBadTime
	default:
		st.err = dns.RcodeBadSig
	}
	return st
}

// tsigSigner signs the replies of one exchange: the first with the
// request's MAC and all TSIG variables, each later one (the further
// messages of a transfer) with the previous MAC and the timers only (RFC
// 8945 section 5.3.1).
type tsigSigner struct {
	key *tsigKey
	mac string // hex MAC to chain from: the request's, then our last
	n   int    // messages signed so far
}

// newSigner returns a signer for a verified request, or nil (unsigned).
func newSigner(st tsigState) *tsigSigner {
	if st.rr == nil || st.err != 0 || st.key == nil {
		return nil
	}
	return &tsigSigner{key: st.key, mac: st.rr.MAC}
}

// pack packs m with name compression and, with a signer, a TSIG last.
// A nil signer packs unsigned.
func (s *tsigSigner) pack(m *dns.Msg) ([]byte, error) {
	m.Compress = true
	if s == nil {
		return m.Pack()
	}
	m.Extra = append(m.Extra, &dns.TSIG{
		Hdr:       dns.RR_Header{Name: s.key.name, Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
		Algorithm: s.key.alg, Fudge: tsigFudge, TimeSigned: uint64(time.Now().Unix()), OrigId: m.Id,
	})
	out, mac, err := dns.TsigGenerate(m, s.key.secret, s.mac, s.n > 0)
	if err != nil {
		return nil, fmt.Errorf("sign message: %w", err)
	}
	s.mac, s.n = mac, s.n+1
	return out, nil
}

// tsigErrorReply answers a request whose TSIG failed (RFC 8945 section
// 5.3.2): NOTAUTH with a TSIG that carries the error. BADKEY and BADSIG
// replies are unsigned; BADTIME is signed and gives our time in Other Data.
func tsigErrorReply(req *dns.Msg, st tsigState) ([]byte, error) {
	m := new(dns.Msg)
	m.SetRcode(req, dns.RcodeNotAuth)
	t := &dns.TSIG{
		Hdr:       dns.RR_Header{Name: st.rr.Hdr.Name, Rrtype: dns.TypeTSIG, Class: dns.ClassANY},
		Algorithm: st.rr.Algorithm, TimeSigned: st.rr.TimeSigned, Fudge: st.rr.Fudge,
		OrigId: req.Id, Error: st.err,
	}
	if st.err != dns.RcodeBadTime || st.key == nil {
		m.Extra = append(m.Extra, t)
		out, err := m.Pack()
		if err != nil {
			return nil, fmt.Errorf("pack tsig error reply: %w", err)
		}
		return out, nil
	}
	var now [8]byte
	binary.BigEndian.PutUint64(now[:], uint64(time.Now().Unix()))
	t.OtherLen, t.OtherData = 6, hex.EncodeToString(now[2:])
	m.Extra = append(m.Extra, t)
	out, _, err := dns.TsigGenerate(m, st.key.secret, st.rr.MAC, false)
	if err != nil {
		return nil, fmt.Errorf("sign tsig error reply: %w", err)
	}
	return out, nil
}

// withoutTSIG returns a copy of req without its TSIG, which the parser
// checked is the last record. q is req parsed.
func withoutTSIG(req []byte, q *query) ([]byte, bool) {
	if len(req) < headerLen {
		return nil, false
	}
	ar := int(binary.BigEndian.Uint16(req[10:]))
	off, ok := q.qend, true
	for i := 0; i < int(q.nscount)+ar-1 && ok; i++ {
		off, ok = skipRR(req, off)
	}
	if !ok || ar == 0 {
		return nil, false
	}
	out := slices.Clone(req[:off])
	binary.BigEndian.PutUint16(out[10:], uint16(ar-1))
	return out, true
}
