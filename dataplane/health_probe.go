package dataplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"syscall"
)

// builtinProbe probes t with a TCP connect or an HTTP GET.
func (h *HealthChecker) builtinProbe(ctx context.Context, t HealthTarget) error {
	switch t.Check.Type {
	case CheckTCP:
		return probeTCP(ctx, t)
	case CheckHTTP:
		return probeHTTP(ctx, h.client, t)
	case CheckNone:
		return nil
	}
	return fmt.Errorf("unknown check type %q", t.Check.Type)
}

func probeTCP(ctx context.Context, t HealthTarget) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(t.Addr, t.Check.Port).String())
	if err != nil {
		return err
	}
	return conn.Close()
}

// statusError is an HTTP answer with the wrong status.
type statusError int

func (e statusError) Error() string { return fmt.Sprintf("status %d", int(e)) }

func probeHTTP(ctx context.Context, client *http.Client, t HealthTarget) error {
	url := "http://" + netip.AddrPortFrom(t.Addr, t.Check.Port).String() + t.Check.Path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if t.Check.Host != "" {
		req.Host = t.Check.Host
	}
	req.Header.Set("User-Agent", "lbd-health-check")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	// Read a little of the body so the proxy does not log an aborted
	// request; the connection is not reused either way.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != t.Check.ExpectStatus {
		return statusError(resp.StatusCode)
	}
	return nil
}

// newProbeClient returns the HTTP client of the probes: no proxy from the
// environment (the backend is probed directly), no redirects (a 302 is
// the answer), no keep-alive (each probe tests a fresh connection, as a
// client would, and no idle connection outlives Close).
func newProbeClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:             nil,
			DisableKeepAlives: true,
			DialContext:       (&net.Dialer{}).DialContext,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// probeReason words a probe result for operators: "ok", "timeout",
// "connection refused", "status 503"...
func probeReason(err error) string {
	var se statusError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &se):
		return se.Error()
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host unreachable"
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return err.Error()
}
