package health

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

const userAgent = "gslbd-health/1"

// hostHeader is the Host header of a probe: the monitor's Host, else the
// target address (IPv6 bracketed, zone dropped) with the port unless it is
// the scheme's default.
func hostHeader(t Target) string {
	m := t.Monitor
	if m.Host != "" {
		return m.Host
	}
	a := t.Addr.Unmap().WithZone("")
	h := a.String()
	if a.Is6() {
		h = "[" + h + "]"
	}
	if (m.Kind == KindHTTP && m.Port != 80) || (m.Kind == KindHTTPS && m.Port != 443) {
		h += ":" + strconv.Itoa(int(m.Port))
	}
	return h
}

// serverName is the TLS server name: SNI, else Host when it is a name, else
// the address (no SNI is sent for an address; the certificate must carry it
// as an IP SAN).
func serverName(t Target) string {
	m := t.Monitor
	if m.SNI != "" {
		return m.SNI
	}
	if m.Host != "" {
		h := m.Host
		if host, _, err := net.SplitHostPort(h); err == nil {
			h = host
		}
		h = strings.Trim(h, "[]")
		if _, err := netip.ParseAddr(h); err != nil {
			return h
		}
	}
	return t.Addr.Unmap().WithZone("").String()
}

// transport builds a one-shot transport that dials the target's address
// whatever the URL says, uses no proxy and keeps no connections.
func (p *prober) transport(t Target) *http.Transport {
	ap := t.addrPort().String()
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return p.dialer.DialContext(ctx, "tcp", ap)
		},
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 64 << 10,
	}
	if t.Monitor.Kind == KindHTTPS {
		tr.TLSClientConfig = &tls.Config{
			ServerName:         serverName(t),
			InsecureSkipVerify: t.Monitor.TLSSkipVerify, //nolint:gosec // the operator's explicit choice
			RootCAs:            p.rootCAs,
			MinVersion:         tls.VersionTLS12,
		}
	}
	return tr
}

// probeHTTP sends one request and checks the status and, if asked, the body.
func (p *prober) probeHTTP(ctx context.Context, t Target) (time.Duration, error) {
	m := t.Monitor
	host := hostHeader(t)
	req, err := http.NewRequestWithContext(ctx, m.Method, string(m.Kind)+"://"+urlHost(host)+m.Path, nil)
	if err != nil {
		return 0, fmt.Errorf("build request: %w", err)
	}
	req.Host = host
	req.Header.Set("User-Agent", userAgent)
	for k, v := range m.Headers {
		req.Header.Set(k, v)
	}
	tr := p.transport(t)
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var body []byte
	if m.BodyContains != "" {
		body, err = io.ReadAll(io.LimitReader(resp.Body, maxBody))
		if err != nil {
			return 0, fmt.Errorf("read body: %w", err)
		}
	}
	rtt := time.Since(start)
	if !statusOK(m.Expect, resp.StatusCode) {
		return rtt, failf(classStatus, "status %d", resp.StatusCode)
	}
	if m.BodyContains != "" && !bytes.Contains(body, []byte(m.BodyContains)) {
		return rtt, failf(classBody, "body mismatch")
	}
	return rtt, nil
}

// urlHost makes a Host header usable in a URL (the dial ignores it anyway):
// an IPv6 zone would need escaping, and the port is irrelevant.
func urlHost(h string) string {
	if i := strings.IndexByte(h, '%'); i >= 0 {
		return "probe.invalid"
	}
	return h
}

func statusOK(exp []StatusRange, code int) bool {
	for _, r := range exp {
		if r.contains(code) {
			return true
		}
	}
	return false
}
