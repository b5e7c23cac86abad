package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/gslbd/gslbd/gslb/state"
)

// openEtcd connects to the etcd cluster of the state: section.
func openEtcd(ctx context.Context, ec etcdConfig, d *daemon) (state.Store, error) {
	if len(ec.Endpoints) == 0 {
		return nil, errors.New("state.etcd.endpoints: required with backend etcd")
	}
	cfg := state.EtcdConfig{Endpoints: ec.Endpoints, Prefix: ec.Prefix, Username: ec.Username, Password: ec.Password,
		DialTimeout: ec.DialTimeout, RequestTimeout: ec.RequestTimeout, Logger: d.log}
	if ec.PasswordFile != "" {
		data, err := os.ReadFile(ec.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("state.etcd.password_file: %w", err)
		}
		cfg.Password = strings.TrimSpace(string(data))
	}
	if ec.TLS != (tlsFiles{}) {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if ec.TLS.CA != "" {
			pem, err := os.ReadFile(ec.TLS.CA)
			if err != nil {
				return nil, fmt.Errorf("state.etcd.tls.ca: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("state.etcd.tls.ca: %s holds no PEM certificate", ec.TLS.CA)
			}
		}
		if (ec.TLS.Cert == "") != (ec.TLS.Key == "") {
			return nil, errors.New("state.etcd.tls: give both cert and key, or neither")
		}
		if ec.TLS.Cert != "" {
			c, err := tls.LoadX509KeyPair(ec.TLS.Cert, ec.TLS.Key)
			if err != nil {
				return nil, fmt.Errorf("state.etcd.tls: %w", err)
			}
			tc.Certificates = []tls.Certificate{c}
		}
		cfg.TLS = tc
	}
	st, err := state.OpenEtcd(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("state.etcd: %w", err)
	}
	return st, nil
}
