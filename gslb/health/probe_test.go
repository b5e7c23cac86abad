package health

import (
	"context"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
	tests := []struct {
		err           error
		class, reason string
	}{
		{nil, classOK, "ok"},
		{context.DeadlineExceeded, classTimeout, "timeout"},
		{&url.Error{Op: "Get", URL: "http://x/", Err: context.DeadlineExceeded}, classTimeout, "timeout"},
		{&net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, classTimeout, "timeout"},
		{refused, classRefused, "connection refused"},
		{failf(classStatus, "status %d", 503), classStatus, "status 503"},
		{fmt.Errorf("wrapped: %w", failf(classBody, "body mismatch")), classBody, "body mismatch"},
		{&url.Error{Op: "Get", URL: "https://x/", Err: x509.UnknownAuthorityError{}}, classTLS, "tls: x509: certificate signed by unknown authority"},
		{errors.New("tls: handshake failure"), classTLS, "tls: handshake failure"},
		{&net.OpError{Op: "dial", Err: &os.SyscallError{Syscall: "connect", Err: syscall.ENETUNREACH}}, classOther, "network is unreachable"},
		{errors.New(strings.Repeat("x", 300)), classOther, strings.Repeat("x", maxReasonBytes) + "..."},
	}
	for _, tt := range tests {
		class, reason := classify(tt.err)
		if class != tt.class || reason != tt.reason {
			t.Errorf("classify(%v) = %q, %q; want %q, %q", tt.err, class, reason, tt.class, tt.reason)
		}
	}
}

func TestSafeProbeRecoversPanics(t *testing.T) {
	o := safeProbe(context.Background(), func(context.Context, Target) (time.Duration, error) { panic("boom") }, Target{})
	if o.ok || o.class != classOther || o.reason != "panic: boom" {
		t.Fatalf("panic outcome = %+v", o)
	}
}

// dnsAnswer is one answer record for the test responder.
type dnsAnswer struct {
	typ   uint16
	rdata []byte
}

// dnsReplyTo builds a reply to q echoing its question, with compressed
// owner names.
func dnsReplyTo(q []byte, rcode int, tc bool, answers []dnsAnswer) []byte {
	off, err := skipName(q, dnsHeaderLen)
	if err != nil {
		return nil
	}
	flags := uint16(flagQR|1<<10) | uint16(rcode)
	if tc {
		flags |= flagTC
	}
	b := append([]byte(nil), q[:2]...)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = append(b, 0, 1, 0, byte(len(answers)), 0, 0, 0, 0)
	b = append(b, q[dnsHeaderLen:off+4]...)
	for _, a := range answers {
		b = append(b, 0xc0, dnsHeaderLen)
		b = binary.BigEndian.AppendUint16(b, a.typ)
		b = append(b, 0, 1, 0, 0, 0, 60)
		b = binary.BigEndian.AppendUint16(b, uint16(len(a.rdata)))
		b = append(b, a.rdata...)
	}
	return b
}

func TestDNSWire(t *testing.T) {
	m := Monitor{Kind: KindDNS, Query: "Www.Example.com", QueryType: "A", RecursionDesired: true}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	q, err := buildQuery(0xbeef, m)
	if err != nil {
		t.Fatal(err)
	}
	wantQ := []byte{0xbe, 0xef, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0,
		3, 'W', 'w', 'w', 7, 'E', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1}
	if !slices.Equal(q, wantQ) {
		t.Fatalf("query = % x\nwant    % x", q, wantQ)
	}
	name, _ := appendName(nil, "cname.example.net.")
	txt := []byte{5, 'h', 'e', 'l', 'l', 'o', 6, ' ', 'w', 'o', 'r', 'l', 'd'}
	mx := append([]byte{0, 10}, 0xc0, dnsHeaderLen) // pointer to the question name
	tests := []struct {
		qt      uint16
		answers []dnsAnswer
		want    []string
	}{
		{typeA, []dnsAnswer{{typeCNAME, name}, {typeA, []byte{192, 0, 2, 1}}, {typeA, []byte{192, 0, 2, 2}}}, []string{"192.0.2.1", "192.0.2.2"}},
		{typeAAAA, []dnsAnswer{{typeAAAA, netip.MustParseAddr("2001:db8::1").AsSlice()}}, []string{"2001:db8::1"}},
		{typeCNAME, []dnsAnswer{{typeCNAME, name}}, []string{"cname.example.net."}},
		{typeTXT, []dnsAnswer{{typeTXT, txt}}, []string{"hello world"}},
		{typeMX, []dnsAnswer{{typeMX, mx}}, []string{"www.example.com."}},
	}
	for _, tt := range tests {
		r, err := parseReply(dnsReplyTo(q, 0, false, tt.answers), tt.qt)
		if err != nil {
			t.Errorf("type %d: %v", tt.qt, err)
			continue
		}
		if r.id != 0xbeef || r.rcode != 0 || r.tc || !slices.Equal(r.answers, tt.want) {
			t.Errorf("type %d: reply %+v, want answers %q", tt.qt, r, tt.want)
		}
	}
	// Malformed: truncated record, query instead of reply, pointer loop.
	good := dnsReplyTo(q, 0, false, []dnsAnswer{{typeA, []byte{192, 0, 2, 1}}})
	loop := dnsReplyTo(q, 0, false, []dnsAnswer{{typeCNAME, []byte{0xc0, byte(len(q) + 12)}}})
	for i, msg := range [][]byte{good[:len(good)-2], q, good[:5], loop} {
		if _, err := parseReply(msg, typeA); i != 3 && err == nil {
			t.Errorf("malformed %d parsed", i)
		}
		if _, err := parseReply(msg, typeCNAME); i == 3 && err == nil {
			t.Errorf("pointer loop parsed")
		}
	}
}

func TestAnswerMatches(t *testing.T) {
	tests := []struct {
		qt        uint16
		want, got []string
		ok        bool
	}{
		{typeA, nil, nil, true},
		{typeA, []string{"192.0.2.1"}, []string{"192.0.2.2", "192.0.2.1"}, true},
		{typeA, []string{"192.0.2.1", "192.0.2.3"}, []string{"192.0.2.1"}, false},
		{typeAAAA, []string{"2001:DB8:0::1"}, []string{"2001:db8::1"}, true},
		{typeCNAME, []string{"Target.Example."}, []string{"target.example."}, true},
		{typeNS, []string{"ns1.example"}, []string{"ns1.example."}, true},
		{typeTXT, []string{"v=1"}, []string{"v=2"}, false},
	}
	for _, tt := range tests {
		if got := answerMatches(tt.qt, tt.want, tt.got); got != tt.ok {
			t.Errorf("answerMatches(%d, %q, %q) = %t", tt.qt, tt.want, tt.got, got)
		}
	}
}
