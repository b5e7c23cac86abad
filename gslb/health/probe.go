package health

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"syscall"
	"time"
)

// Reason classes: the bounded label values of the metrics.
const (
	classOK        = "ok"
	classTimeout   = "timeout"
	classRefused   = "refused"
	classTLS       = "tls"
	classStatus    = "status"
	classBody      = "body"
	classRcode     = "dns_rcode"
	classAnswer    = "dns_answer"
	classOther     = "other"
	maxReasonBytes = 200
)

// ProbeFunc runs one probe of t, honouring ctx (which carries the monitor's
// timeout), and returns the round-trip time. A nil error is a success. The
// error becomes Status.Reason: context.DeadlineExceeded reads "timeout",
// ECONNREFUSED "connection refused", TLS errors "tls: ...", others their text.
type ProbeFunc func(ctx context.Context, t Target) (rtt time.Duration, err error)

// probeError is a failure of the check itself (the server answered).
type probeError struct{ class, reason string }

func (e *probeError) Error() string { return e.reason }

func failf(class, format string, args ...any) error {
	return &probeError{class: class, reason: fmt.Sprintf(format, args...)}
}

// outcome is a classified probe result.
type outcome struct {
	rtt    time.Duration
	ok     bool
	class  string
	reason string
}

// safeProbe runs f, turning a panic into a failure and measuring the RTT
// when f does not.
func safeProbe(ctx context.Context, f ProbeFunc, t Target) (o outcome) {
	start := time.Now()
	defer func() {
		if r := recover(); r != nil {
			o = outcome{rtt: time.Since(start), class: classOther, reason: truncate(fmt.Sprintf("panic: %v", r))}
		}
	}()
	rtt, err := f(ctx, t)
	if rtt <= 0 {
		rtt = time.Since(start)
	}
	class, reason := classify(err)
	return outcome{rtt: rtt, ok: err == nil, class: class, reason: reason}
}

// classify maps a probe error to a metrics class and a readable reason.
func classify(err error) (class, reason string) {
	if err == nil {
		return classOK, "ok"
	}
	var pe *probeError
	if errors.As(err, &pe) {
		return pe.class, truncate(pe.reason)
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return classTimeout, "timeout"
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return classRefused, "connection refused"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // drop the method and URL
	}
	if isTLSError(err) {
		msg := err.Error()
		if len(msg) < 5 || msg[:5] != "tls: " {
			msg = "tls: " + msg
		}
		return classTLS, truncate(msg)
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return classOther, errno.Error()
	}
	return classOther, truncate(err.Error())
}

func isTLSError(err error) bool {
	var (
		cv  *tls.CertificateVerificationError
		rh  tls.RecordHeaderError
		al  tls.AlertError
		he  x509.HostnameError
		ua  x509.UnknownAuthorityError
		ci  x509.CertificateInvalidError
		ech *tls.ECHRejectionError
	)
	if errors.As(err, &cv) || errors.As(err, &rh) || errors.As(err, &al) || errors.As(err, &he) ||
		errors.As(err, &ua) || errors.As(err, &ci) || errors.As(err, &ech) {
		return true
	}
	msg := err.Error()
	return len(msg) >= 5 && msg[:5] == "tls: "
}

func truncate(s string) string {
	if len(s) > maxReasonBytes {
		return s[:maxReasonBytes] + "..."
	}
	return s
}

// prober runs the built-in probes.
type prober struct {
	rootCAs *x509.CertPool
	dialer  net.Dialer
}

// probe dispatches on the monitor's kind.
func (p *prober) probe(ctx context.Context, t Target) (time.Duration, error) {
	switch t.Monitor.Kind {
	case KindHTTP, KindHTTPS:
		return p.probeHTTP(ctx, t)
	case KindTCP:
		return p.probeTCP(ctx, t)
	case KindDNS:
		return p.probeDNS(ctx, t)
	}
	return 0, fmt.Errorf("probe %s: unknown kind %q", t.Addr, t.Monitor.Kind)
}

// probeTCP succeeds when a connection is established.
func (p *prober) probeTCP(ctx context.Context, t Target) (time.Duration, error) {
	start := time.Now()
	conn, err := p.dialer.DialContext(ctx, "tcp", t.addrPort().String())
	if err != nil {
		return 0, err
	}
	rtt := time.Since(start)
	conn.Close()
	return rtt, nil
}
