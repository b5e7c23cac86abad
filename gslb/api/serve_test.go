package api

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeCert writes a self-signed certificate for 127.0.0.1 named cn and
// returns it.
func writeCert(t *testing.T, certFile, keyFile, cn string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

// The API serves HTTPS from cert/key files and picks up a renewed
// certificate without a restart; a broken renewal keeps the old one.
func TestTLSReload(t *testing.T) {
	f := newFixture(t, nil)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "api.crt"), filepath.Join(dir, "api.key")
	first := writeCert(t, certFile, keyFile, "first")
	l, err := Listen("127.0.0.1:0", certFile, keyFile, f.srv, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Serve(t.Context()) }()
	t.Cleanup(func() { <-done }) // t.Context is cancelled before cleanups run
	served := func() string {
		t.Helper()
		conn, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // we read the certificate served
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	pool := x509.NewCertPool()
	pool.AddCert(first)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + l.Addr().String() + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /healthz over TLS: %v %v", resp, err)
	}
	resp.Body.Close()
	time.Sleep(1100 * time.Millisecond) // the reloader checks the files at most once a second
	later := time.Now().Add(2 * time.Second)
	writeCert(t, certFile, keyFile, "second")
	os.Chtimes(certFile, later, later)
	if got := served(); got != "second" {
		t.Errorf("after the renewal the API serves %q, want second", got)
	}
	time.Sleep(1100 * time.Millisecond)
	os.WriteFile(keyFile, []byte("not a key"), 0o600)
	os.Chtimes(keyFile, later.Add(time.Second), later.Add(time.Second))
	if got := served(); got != "second" {
		t.Errorf("after a broken renewal the API serves %q, want the previous (second)", got)
	}
	if _, err := Listen("127.0.0.1:0", certFile, "", f.srv, nil); err == nil {
		t.Error("cert without key accepted")
	}
	if _, err := Listen("127.0.0.1:0", certFile, keyFile, f.srv, nil); err == nil {
		t.Error("broken key accepted at start")
	}
}
