package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// Listener serves a handler on one address, over TLS when a certificate
// and key are given. The pair is re-read when either file changes (checked
// at most once a second, on handshakes), so a renewed certificate needs no
// restart; a broken pair keeps the previous one and logs why.
type Listener struct {
	srv  *http.Server
	ln   net.Listener
	cert *certReloader
	log  *slog.Logger
}

// Listen binds addr. certFile and keyFile are both set (TLS) or both
// empty (plain HTTP).
func Listen(addr, certFile, keyFile string, h http.Handler, log *slog.Logger) (*Listener, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("api.tls: give both cert and key, or neither")
	}
	l := &Listener{log: log, srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}
	if certFile != "" {
		l.cert = &certReloader{certFile: certFile, keyFile: keyFile, log: log}
		if err := l.cert.load(); err != nil {
			return nil, err
		}
		l.srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: l.cert.get}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("api: listen %s: %w", addr, err)
	}
	l.ln = ln
	return l, nil
}

// Addr is the bound address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Serve serves until ctx is done, then shuts down gracefully (5 s).
func (l *Listener) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() {
		var err error
		if l.cert != nil {
			err = l.srv.ServeTLS(l.ln, "", "")
		} else {
			err = l.srv.Serve(l.ln)
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("api: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := l.srv.Shutdown(sctx)
	<-errc
	return err
}

type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	mu                sync.Mutex
	cert              *tls.Certificate
	stamp             [2]time.Time
	checked           time.Time
}

func modTime(path string) time.Time {
	fi, err := os.Stat(path)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

func (c *certReloader) load() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("api.tls: load %s / %s: %w", c.certFile, c.keyFile, err)
	}
	c.cert = &cert
	c.stamp = [2]time.Time{modTime(c.certFile), modTime(c.keyFile)}
	return nil
}

func (c *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checked) >= time.Second {
		c.checked = now
		if [2]time.Time{modTime(c.certFile), modTime(c.keyFile)} != c.stamp {
			old := c.cert
			if err := c.load(); err != nil {
				c.cert = old
				c.log.Error("api TLS certificate not reloaded, previous one kept", "err", err)
				c.stamp = [2]time.Time{modTime(c.certFile), modTime(c.keyFile)} // do not retry every handshake
			} else {
				c.log.Info("api TLS certificate reloaded", "cert", c.certFile)
			}
		}
	}
	return c.cert, nil
}
