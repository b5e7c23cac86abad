package main

import (
	"bytes"
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// fileSettings is ~/.config/gslbctl/config.yaml.
type fileSettings struct {
	API      string `yaml:"api"`
	Token    string `yaml:"token"`
	CA       string `yaml:"ca"`
	Insecure bool   `yaml:"insecure"`
}

// client talks to gslbd's API.
type client struct {
	base  string
	token string
	http  *http.Client
}

// newClient resolves address and token: flags, then the environment, then
// the config file, then http://127.0.0.1:9080 without a token.
func (g *globals) client() (*client, error) {
	var fs fileSettings
	path := g.configFile
	if path == "" {
		if dir, err := os.UserConfigDir(); err == nil {
			path = filepath.Join(dir, "gslbctl", "config.yaml")
			if _, err := os.Stat(path); err != nil {
				path = ""
			}
		}
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&fs); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	c := &client{
		base:  strings.TrimSuffix(cmp.Or(g.api, os.Getenv("GSLB_API"), fs.API, "http://127.0.0.1:9080"), "/"),
		token: cmp.Or(g.token, os.Getenv("GSLB_TOKEN"), fs.Token),
	}
	if !strings.Contains(c.base, "://") {
		c.base = "http://" + c.base
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: g.insecure || fs.Insecure} //nolint:gosec // operator's explicit choice
	if ca := cmp.Or(g.ca, fs.CA); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca: %s holds no PEM certificate", ca)
		}
	}
	c.http = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment}}
	return c, nil
}

// problem is the API's error document (RFC 9457).
type problem struct {
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Field  string `json:"field"`
}

// do sends a request and decodes a JSON answer into out (when not nil).
// API errors come back as "<status> <title>: <detail>".
func (c *client) do(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("--api %s: %w", c.base, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach gslbd at %s (set --api or GSLB_API): %w", c.base, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var p problem
		if json.Unmarshal(data, &p) == nil && p.Title != "" {
			msg := fmt.Sprintf("%d %s", resp.StatusCode, p.Title)
			if p.Detail != "" {
				msg += ": " + p.Detail
			}
			if resp.StatusCode == http.StatusUnauthorized && c.token == "" {
				msg += " (set --token or GSLB_TOKEN)"
			}
			return errors.New(msg)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

// printJSON writes v indented.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
