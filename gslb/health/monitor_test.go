package health

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseStatusRanges(t *testing.T) {
	tests := []struct {
		in      []string
		want    []StatusRange
		wantErr bool
	}{
		{in: []string{"200"}, want: []StatusRange{{200, 200}}},
		{in: []string{"200-299", " 301 "}, want: []StatusRange{{200, 299}, {301, 301}}},
		{in: []string{"2xx", "4XX"}, want: []StatusRange{{200, 299}, {400, 499}}},
		{in: []string{"299-200"}, wantErr: true},
		{in: []string{"600"}, wantErr: true},
		{in: []string{"6xx"}, wantErr: true},
		{in: []string{"ok"}, wantErr: true},
		{in: []string{"200-"}, wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseStatusRanges(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseStatusRanges(%q) error = %v, want error %t", tt.in, err, tt.wantErr)
			continue
		}
		if !tt.wantErr && !slices.Equal(got, tt.want) {
			t.Errorf("ParseStatusRanges(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestMonitorValidateDefaults(t *testing.T) {
	tests := []struct {
		in   Monitor
		want Monitor
	}{
		{
			in: Monitor{Kind: KindHTTP},
			want: Monitor{Kind: KindHTTP, Interval: 10 * time.Second, Timeout: 10 * time.Second / 3, Rise: 2, Fall: 3,
				Port: 80, Method: "GET", Path: "/", Expect: []StatusRange{{200, 399}}},
		},
		{
			in: Monitor{Kind: KindHTTPS, Interval: time.Minute},
			want: Monitor{Kind: KindHTTPS, Interval: time.Minute, Timeout: 5 * time.Second, Rise: 2, Fall: 3,
				Port: 443, Method: "GET", Path: "/", Expect: []StatusRange{{200, 399}}},
		},
		{
			in:   Monitor{Kind: KindTCP, Port: 22, Interval: 3 * time.Second},
			want: Monitor{Kind: KindTCP, Port: 22, Interval: 3 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3},
		},
		{
			in: Monitor{Kind: KindDNS, Query: "example.com", QueryType: "aaaa"},
			want: Monitor{Kind: KindDNS, Interval: 10 * time.Second, Timeout: 10 * time.Second / 3, Rise: 2, Fall: 3,
				Port: 53, Query: "example.com.", QueryType: "AAAA", ExpectRcode: "NOERROR"},
		},
	}
	for _, tt := range tests {
		m := tt.in
		if err := m.Validate(); err != nil {
			t.Errorf("Validate(%+v): %v", tt.in, err)
			continue
		}
		if m.Key() != tt.want.Key() || !slices.Equal(m.Expect, tt.want.Expect) || m.Timeout != tt.want.Timeout ||
			m.Port != tt.want.Port || m.Query != tt.want.Query || m.QueryType != tt.want.QueryType {
			t.Errorf("Validate(%+v) = %+v, want %+v", tt.in, m, tt.want)
		}
	}
}

func TestMonitorValidateErrors(t *testing.T) {
	tests := []struct {
		m    Monitor
		want string
	}{
		{Monitor{}, "kind is required"},
		{Monitor{Kind: "icmp"}, `kind "icmp"`},
		{Monitor{Kind: KindTCP, Port: 1, Interval: 5 * time.Second, Timeout: 5 * time.Second}, "timeout 5s must be shorter than interval 5s"},
		{Monitor{Kind: KindTCP, Port: 1, Interval: 100 * time.Millisecond}, "interval 100ms is shorter than the minimum 1s"},
		{Monitor{Kind: KindTCP, Port: 1, Timeout: -time.Second}, "timeout -1s is negative"},
		{Monitor{Kind: KindTCP, Port: 1, Rise: -1}, "rise -1"},
		{Monitor{Kind: KindTCP, Port: 1, Fall: -2}, "fall -2"},
		{Monitor{Kind: KindTCP}, "port is required"},
		{Monitor{Kind: KindTCP, Port: 1, Path: "/x"}, "only for http(s)"},
		{Monitor{Kind: KindHTTP, SNI: "x"}, "only for https"},
		{Monitor{Kind: KindHTTP, Query: "x."}, "only for dns"},
		{Monitor{Kind: KindHTTP, Method: "get"}, "method"},
		{Monitor{Kind: KindHTTP, Path: "health"}, "path"},
		{Monitor{Kind: KindHTTP, Expect: []StatusRange{{0, 10}}}, "expect[0]"},
		{Monitor{Kind: KindHTTP, Headers: map[string]string{"Host": "x"}}, "with host"},
		{Monitor{Kind: KindHTTP, Headers: map[string]string{"Bad Name": "x"}}, "headers"},
		{Monitor{Kind: KindHTTP, Headers: map[string]string{"X-A": "a\r\nb"}}, "line break"},
		{Monitor{Kind: KindDNS}, "query is required"},
		{Monitor{Kind: KindDNS, Query: "a..b"}, "query"},
		{Monitor{Kind: KindDNS, Query: "a.", QueryType: "BOGUS"}, "query_type"},
		{Monitor{Kind: KindDNS, Query: "a.", ExpectRcode: "WHAT"}, "expect_rcode"},
		{Monitor{Kind: KindDNS, Query: "a.", ExpectAnswer: []string{"::1"}}, "expect_answer[0]"},
		{Monitor{Kind: KindDNS, Query: "a.", QueryType: "SOA", ExpectAnswer: []string{"x"}}, "expect_answer[0]"},
	}
	for _, tt := range tests {
		m := tt.m
		err := m.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%+v) = %v, want an error containing %q", tt.m, err, tt.want)
		}
	}
}

func TestKeys(t *testing.T) {
	a4 := netip.MustParseAddr("192.0.2.1")
	m := Monitor{Kind: KindHTTP, Headers: map[string]string{"X-B": "2", "X-A": "1"}}
	validated := m
	if err := validated.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		a, b Target
		same bool
	}{
		{"defaults applied or not", Target{a4, m}, Target{a4, validated}, true},
		{"explicit defaults", Target{a4, Monitor{Kind: KindHTTP}}, Target{a4, Monitor{Kind: KindHTTP, Port: 80, Path: "/", Rise: 2}}, true},
		{"mapped address", Target{a4, m}, Target{netip.MustParseAddr("::ffff:192.0.2.1"), m}, true},
		{"other address", Target{a4, m}, Target{netip.MustParseAddr("192.0.2.2"), m}, false},
		{"other family", Target{a4, m}, Target{netip.MustParseAddr("2001:db8::1"), m}, false},
		{"other path", Target{a4, m}, Target{a4, Monitor{Kind: KindHTTP, Path: "/x", Headers: m.Headers}}, false},
		{"other rise", Target{a4, Monitor{Kind: KindTCP, Port: 1}}, Target{a4, Monitor{Kind: KindTCP, Port: 1, Rise: 5}}, false},
		{"other header", Target{a4, m}, Target{a4, Monitor{Kind: KindHTTP, Headers: map[string]string{"X-B": "2"}}}, false},
		{"dns answer order", Target{a4, Monitor{Kind: KindDNS, Query: "a", ExpectAnswer: []string{"1.1.1.1", "2.2.2.2"}}},
			Target{a4, Monitor{Kind: KindDNS, Query: "a.", ExpectAnswer: []string{"2.2.2.2", "1.1.1.1"}}}, true},
	}
	for _, tt := range tests {
		if got := tt.a.Key() == tt.b.Key(); got != tt.same {
			t.Errorf("%s: keys equal = %t, want %t\n a: %s\n b: %s", tt.name, got, tt.same, tt.a.Key(), tt.b.Key())
		}
	}
	if k1, k2 := m.Key(), m.Key(); k1 != k2 {
		t.Error("Key is not stable")
	}
}
