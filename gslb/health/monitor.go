package health

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Kind is the protocol of a probe.
type Kind string

// Probe kinds.
const (
	KindHTTP  Kind = "http"
	KindHTTPS Kind = "https"
	KindTCP   Kind = "tcp"
	KindDNS   Kind = "dns"
)

// Limits and defaults applied by Validate.
const (
	DefaultInterval   = 10 * time.Second
	MinInterval       = time.Second
	MaxDefaultTimeout = 5 * time.Second
	DefaultRise       = 2
	DefaultFall       = 3
	maxBody           = 64 << 10
)

// Monitor says how to probe. Zero fields take the defaults in the comments;
// Validate applies them. Fields of another kind must be left zero.
type Monitor struct {
	Kind     Kind
	Interval time.Duration // 10s; at least 1s
	Timeout  time.Duration // 0 => Interval/3, capped at 5s; must be < Interval
	Rise     int           // 2: consecutive successes to go up
	Fall     int           // 3: consecutive failures to go down
	Port     uint16        // default 80 http, 443 https, 53 dns; required for tcp

	// HTTP and HTTPS.
	Method        string            // GET
	Path          string            // "/"; may carry a query string
	Host          string            // Host header; default the target address ([v6] bracketed, port if not the scheme's)
	SNI           string            // https: TLS server name; default Host when it is a name, else the address
	TLSSkipVerify bool              // https: skip verifying the chain and name (default: verify)
	Expect        []StatusRange     // 200-399; redirects are not followed
	BodyContains  string            // optional; searched in the first 64 KiB of the body
	Headers       map[string]string // extra request headers (not Host: use Host)

	// DNS (over UDP, retried over TCP when the reply is truncated).
	Query            string   // name to ask, FQDN (required)
	QueryType        string   // "A" (A, AAAA, NS, CNAME, SOA, PTR, MX, TXT, SRV, CAA, ... or TYPEnnn)
	RecursionDesired bool     // set RD in the query (probing a resolver)
	ExpectRcode      string   // "NOERROR"
	ExpectAnswer     []string // each must appear in the answer section: addresses for A/AAAA, names for NS/CNAME/PTR/MX, text for TXT
}

// StatusRange is an inclusive range of HTTP status codes.
type StatusRange struct{ Lo, Hi int }

func (r StatusRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(r.Lo)
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

func (r StatusRange) contains(code int) bool { return code >= r.Lo && code <= r.Hi }

// ParseStatusRanges parses "200", "200-299" and "2xx" forms.
func ParseStatusRanges(s []string) ([]StatusRange, error) {
	out := make([]StatusRange, 0, len(s))
	for i, v := range s {
		r, err := parseStatusRange(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("parse status range [%d] %q: %w", i, v, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func parseStatusRange(v string) (StatusRange, error) {
	if len(v) == 3 && strings.HasSuffix(strings.ToLower(v), "xx") && v[0] >= '1' && v[0] <= '5' {
		lo := int(v[0]-'0') * 100
		return StatusRange{lo, lo + 99}, nil
	}
	lo, hi, isRange := strings.Cut(v, "-")
	a, err := strconv.Atoi(strings.TrimSpace(lo))
	if err != nil {
		return StatusRange{}, errors.New("not a status code, a range a-b or Nxx")
	}
	b := a
	if isRange {
		if b, err = strconv.Atoi(strings.TrimSpace(hi)); err != nil {
			return StatusRange{}, errors.New("not a status code, a range a-b or Nxx")
		}
	}
	r := StatusRange{a, b}
	return r, r.validate()
}

func (r StatusRange) validate() error {
	if r.Lo < 100 || r.Hi > 599 || r.Lo > r.Hi {
		return fmt.Errorf("range %d-%d is not within 100-599 with low <= high", r.Lo, r.Hi)
	}
	return nil
}

// normalize applies the defaults without checking anything.
func (m *Monitor) normalize() {
	if m.Interval == 0 {
		m.Interval = DefaultInterval
	}
	if m.Timeout == 0 {
		m.Timeout = min(m.Interval/3, MaxDefaultTimeout)
	}
	if m.Rise == 0 {
		m.Rise = DefaultRise
	}
	if m.Fall == 0 {
		m.Fall = DefaultFall
	}
	switch m.Kind {
	case KindHTTP, KindHTTPS:
		if m.Port == 0 {
			m.Port = 80
			if m.Kind == KindHTTPS {
				m.Port = 443
			}
		}
		if m.Method == "" {
			m.Method = "GET"
		}
		if m.Path == "" {
			m.Path = "/"
		}
		if len(m.Expect) == 0 {
			m.Expect = []StatusRange{{200, 399}}
		}
	case KindDNS:
		if m.Port == 0 {
			m.Port = 53
		}
		if m.QueryType == "" {
			m.QueryType = "A"
		}
		m.QueryType = strings.ToUpper(m.QueryType)
		if m.ExpectRcode == "" {
			m.ExpectRcode = "NOERROR"
		}
		m.ExpectRcode = strings.ToUpper(m.ExpectRcode)
		if m.Query != "" && !strings.HasSuffix(m.Query, ".") {
			m.Query += "."
		}
	}
}

// Validate applies the defaults and checks the settings. Errors name the
// field ("timeout 5s must be shorter than interval 5s").
func (m *Monitor) Validate() error {
	m.normalize()
	if err := m.validateCommon(); err != nil {
		return err
	}
	switch m.Kind {
	case KindHTTP, KindHTTPS:
		return m.validateHTTP()
	case KindDNS:
		return m.validateDNS()
	}
	return nil
}

func (m *Monitor) validateCommon() error {
	switch m.Kind {
	case KindHTTP, KindHTTPS, KindTCP, KindDNS:
	case "":
		return errors.New("kind is required (http, https, tcp or dns)")
	default:
		return fmt.Errorf("kind %q is not one of http, https, tcp, dns", m.Kind)
	}
	switch {
	case m.Interval < MinInterval:
		return fmt.Errorf("interval %v is shorter than the minimum %v", m.Interval, MinInterval)
	case m.Timeout < 0:
		return fmt.Errorf("timeout %v is negative", m.Timeout)
	case m.Timeout >= m.Interval:
		return fmt.Errorf("timeout %v must be shorter than interval %v", m.Timeout, m.Interval)
	case m.Rise < 1:
		return fmt.Errorf("rise %d must be at least 1", m.Rise)
	case m.Fall < 1:
		return fmt.Errorf("fall %d must be at least 1", m.Fall)
	case m.Kind == KindTCP && m.Port == 0:
		return errors.New("port is required for tcp monitors")
	}
	web := m.Kind == KindHTTP || m.Kind == KindHTTPS
	if !web && (m.Method != "" || m.Path != "" || m.Host != "" || len(m.Expect) > 0 ||
		m.BodyContains != "" || len(m.Headers) > 0) {
		return fmt.Errorf("method, path, host, expect, body_contains and headers are only for http(s) monitors, not %s", m.Kind)
	}
	if m.Kind != KindHTTPS && (m.SNI != "" || m.TLSSkipVerify) {
		return fmt.Errorf("sni and tls_skip_verify are only for https monitors, not %s", m.Kind)
	}
	if m.Kind != KindDNS && (m.Query != "" || m.QueryType != "" || m.ExpectRcode != "" ||
		len(m.ExpectAnswer) > 0 || m.RecursionDesired) {
		return fmt.Errorf("query, query_type, recursion_desired, expect_rcode and expect_answer are only for dns monitors, not %s", m.Kind)
	}
	return nil
}

func (m *Monitor) validateHTTP() error {
	if !isToken(m.Method) || strings.ToUpper(m.Method) != m.Method {
		return fmt.Errorf("method %q is not an uppercase HTTP method", m.Method)
	}
	if !strings.HasPrefix(m.Path, "/") {
		return fmt.Errorf("path %q must start with /", m.Path)
	}
	if _, err := url.ParseRequestURI(m.Path); err != nil {
		return fmt.Errorf("path %q: %w", m.Path, err)
	}
	if strings.ContainsAny(m.Host, " /\r\n\t@") {
		return fmt.Errorf("host %q is not a host[:port]", m.Host)
	}
	if strings.ContainsAny(m.SNI, " /:\r\n\t") {
		return fmt.Errorf("sni %q is not a server name", m.SNI)
	}
	for i, r := range m.Expect {
		if err := r.validate(); err != nil {
			return fmt.Errorf("expect[%d]: %w", i, err)
		}
	}
	for k, v := range m.Headers {
		if !isToken(k) {
			return fmt.Errorf("headers: %q is not a header name", k)
		}
		if strings.EqualFold(k, "Host") {
			return errors.New("headers: set the Host header with host")
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return fmt.Errorf("headers[%s]: value contains a line break", k)
		}
	}
	return nil
}

func (m *Monitor) validateDNS() error {
	if m.Query == "" {
		return errors.New("query is required for dns monitors")
	}
	if _, err := appendName(nil, m.Query); err != nil {
		return fmt.Errorf("query %q: %w", m.Query, err)
	}
	qt, ok := parseQType(m.QueryType)
	if !ok {
		return fmt.Errorf("query_type %q is not a known type or TYPEnnn", m.QueryType)
	}
	if _, ok := rcodeByName[m.ExpectRcode]; !ok {
		return fmt.Errorf("expect_rcode %q is not a known rcode", m.ExpectRcode)
	}
	for i, a := range m.ExpectAnswer {
		if err := checkExpectAnswer(qt, a); err != nil {
			return fmt.Errorf("expect_answer[%d] %q: %w", i, a, err)
		}
	}
	return nil
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// Key is a stable identity of the probe settings, the defaults applied: two
// monitors with the same Key probe the same way.
func (m Monitor) Key() string {
	m.normalize()
	var b strings.Builder
	fmt.Fprintf(&b, "%s port=%d interval=%v timeout=%v rise=%d fall=%d", m.Kind, m.Port, m.Interval, m.Timeout, m.Rise, m.Fall)
	b.WriteString(m.probeKey())
	return b.String()
}

// probeKey identifies what a probe does, without its timing and thresholds:
// a target whose key changes only in those inherits its state on reconcile.
func (m Monitor) probeKey() string {
	var b strings.Builder
	switch m.Kind {
	case KindHTTP, KindHTTPS:
		fmt.Fprintf(&b, " method=%s path=%q host=%q", m.Method, m.Path, m.Host)
		if m.Kind == KindHTTPS {
			fmt.Fprintf(&b, " sni=%q skip_verify=%t", m.SNI, m.TLSSkipVerify)
		}
		exp := make([]string, len(m.Expect))
		for i, r := range m.Expect {
			exp[i] = r.String()
		}
		fmt.Fprintf(&b, " expect=%s body=%q", strings.Join(exp, ","), m.BodyContains)
		keys := slices.Sorted(maps.Keys(m.Headers))
		for _, k := range keys {
			fmt.Fprintf(&b, " header[%q]=%q", k, m.Headers[k])
		}
	case KindDNS:
		ans := slices.Sorted(slices.Values(m.ExpectAnswer))
		fmt.Fprintf(&b, " query=%q type=%s rd=%t rcode=%s answer=%q", strings.ToLower(m.Query), m.QueryType,
			m.RecursionDesired, m.ExpectRcode, ans)
	}
	return b.String()
}

// Target is one thing to probe: an address with a monitor. Probes are
// deduplicated by TargetKey: one probe per (monitor settings, address),
// however many GSLB records use it. IPv4 and IPv6 addresses of one endpoint
// are separate targets with their own state.
type Target struct {
	Addr    netip.Addr
	Monitor Monitor
}

// TargetKey identifies a Target: its address and its Monitor's Key.
type TargetKey string

// Key returns the target's identity; an IPv4-mapped IPv6 address counts as
// the IPv4 address.
func (t Target) Key() TargetKey {
	return TargetKey(t.Addr.Unmap().String() + " " + t.Monitor.Key())
}

func (t Target) addrPort() netip.AddrPort {
	return netip.AddrPortFrom(t.Addr.Unmap(), t.Monitor.Port)
}
