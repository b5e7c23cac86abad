package dnsserver

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestQuerySampleLog(t *testing.T) {
	for _, tc := range []struct {
		sample float64
		want   int
	}{{0, 0}, {1, 10}, {0.5, 5}, {0.1, 1}} {
		var buf bytes.Buffer
		r := newTestResponder(t, Config{QuerySample: tc.sample, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
		for range 10 {
			exchange(t, r, newQuery("WWW.example.org.", dns.TypeAAAA), UDP)
		}
		if got := strings.Count(buf.String(), "msg=query"); got != tc.want {
			t.Errorf("sample %v: %d lines logged for 10 queries, want %d", tc.sample, got, tc.want)
		}
		if tc.want > 0 && !strings.Contains(buf.String(), "qname=WWW.example.org. qtype=AAAA rcode=NOERROR") {
			t.Errorf("log line lacks the query: %s", buf.String())
		}
	}
	if _, err := NewResponder(Config{QuerySample: 2}); err == nil {
		t.Error("query_sample 2 accepted")
	}
}
