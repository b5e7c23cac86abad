package gslb

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// FileConfig is the GSLB configuration as written (gslb.yaml beside the
// zone files). Parse it with ParseConfig, then Compile it.
type FileConfig struct {
	Sites    map[string]SiteConfig    `yaml:"sites"`
	Monitors map[string]MonitorConfig `yaml:"monitors"`
	Pools    map[string]PoolConfig    `yaml:"pools"`
	Records  []RecordConfig           `yaml:"records"`
	ECS      ECSConfig                `yaml:"ecs"`
	Health   HealthConfig             `yaml:"health"`
}

// HealthConfig says how several gslbd's probe results combine.
type HealthConfig struct {
	// Quorum is how many vantage points (gslbd instances publishing their
	// probe results) must see an endpoint up for it to count as up: "any",
	// "majority" (the default: more than half), "all", or a percentage
	// like "18%" (at least that share). One gslbd alone uses its own
	// probes whatever the rule.
	Quorum string `yaml:"quorum"`
}

// SiteConfig is a place that serves traffic.
type SiteConfig struct {
	Lat       *float64 `yaml:"lat"`
	Lon       *float64 `yaml:"lon"`
	Country   string   `yaml:"country"`   // ISO 3166-1 alpha-2
	Continent string   `yaml:"continent"` // AF AN AS EU NA OC SA
	Capacity  float64  `yaml:"capacity"`  // requests/s the site can take; 0 = unknown
	// Feeds are the site's lbd feed URLs (http://lbd:9300/v1/feed): the
	// handshake RTT per client /24 and /48 for latency filters, and new
	// flows per second as the load capacity filters compare with capacity.
	Feeds []string `yaml:"feeds"`
}

// MonitorConfig says how to probe endpoints; fields map to health.Monitor.
type MonitorConfig struct {
	Kind          string            `yaml:"kind"` // http, https, tcp, dns
	Interval      time.Duration     `yaml:"interval"`
	Timeout       time.Duration     `yaml:"timeout"`
	Rise          int               `yaml:"rise"`
	Fall          int               `yaml:"fall"`
	Port          uint16            `yaml:"port"`
	Method        string            `yaml:"method"`
	Path          string            `yaml:"path"`
	Host          string            `yaml:"host"`
	SNI           string            `yaml:"sni"`
	TLSSkipVerify bool              `yaml:"tls_skip_verify"`
	Expect        []string          `yaml:"expect"` // "200-399", "2xx"
	BodyContains  string            `yaml:"body_contains"`
	Headers       map[string]string `yaml:"headers"`
	Query         string            `yaml:"query"`
	QueryType     string            `yaml:"query_type"`
	ExpectRcode   string            `yaml:"expect_rcode"`
	ExpectAnswer  []string          `yaml:"expect_answer"`
}

// PoolConfig is a set of endpoints answered together.
type PoolConfig struct {
	Monitor   string           `yaml:"monitor"` // default monitor of its endpoints; "" = none (always up)
	Endpoints []EndpointConfig `yaml:"endpoints"`
}

// EndpointConfig is one address that may be answered.
type EndpointConfig struct {
	Name    string `yaml:"name"`    // for logs and the API; default the address
	Address string `yaml:"address"` // the IPv4 or IPv6 address answered
	Site    string `yaml:"site"`
	Weight  *int   `yaml:"weight"`  // default 100; 0 = never chosen by weight (drained)
	Tier    int    `yaml:"tier"`    // for priority {by: tier}: lower first
	Probe   string `yaml:"probe"`   // address probed instead of Address
	Monitor string `yaml:"monitor"` // overrides the pool's; "none" = not monitored
}

// RecordConfig binds an owner name in a served zone to a policy.
type RecordConfig struct {
	Name     string      `yaml:"name"`
	Pool     string      `yaml:"pool"`
	TTL      uint32      `yaml:"ttl"`      // 30
	TTLMin   uint32      `yaml:"ttl_min"`  // 5: the floor when the TTL shrinks
	TTLMax   uint32      `yaml:"ttl_max"`  // 3600
	Chain    []yaml.Node `yaml:"chain"`    // filters, in order
	AllDown  string      `yaml:"all_down"` // all (default), fallback, nodata, servfail
	Fallback string      `yaml:"fallback"` // pool used when all_down: fallback
}

// ECSConfig says whose EDNS Client Subnet to believe.
type ECSConfig struct {
	// Trusted lists resolver prefixes whose ECS is used; empty = trust
	// every resolver. ECS from others is echoed with scope 0 and ignored.
	Trusted []string `yaml:"trusted"`
}

var (
	yamlLine  = regexp.MustCompile(`^line (\d+): `)
	yamlField = regexp.MustCompile(`field (\S+) not found in type .*`)
)

// ParseConfig decodes YAML strictly: unknown keys are errors naming the
// file, line and key.
func ParseConfig(name string, data []byte) (*FileConfig, error) {
	var fc FileConfig
	if err := DecodeYAML(name, data, &fc); err != nil {
		return nil, err
	}
	return &fc, nil
}

// DecodeYAML decodes data into v strictly (unknown keys are errors) and
// words errors as "name:line: ...", an unknown key as `unknown key "x"`.
// gslbd's own configuration file uses it too.
func DecodeYAML(name string, data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return errors.New(yamlError(name, err))
	}
	return nil
}

func yamlError(name string, err error) string {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	out := make([]string, 0, len(msgs))
	for _, m := range msgs {
		m = strings.TrimPrefix(m, "yaml: ")
		m = yamlField.ReplaceAllString(m, `unknown key "$1"`)
		if loc := yamlLine.FindStringSubmatch(m); loc != nil {
			m = name + ":" + loc[1] + ": " + strings.TrimPrefix(m, loc[0])
		} else {
			m = name + ": " + m
		}
		out = append(out, m)
	}
	return strings.Join(out, "\n")
}

// pathErr is a config error that names where it is: "records[3].chain[1].sites".
type pathErr struct {
	path string
	msg  string
}

func (e *pathErr) Error() string { return e.path + ": " + e.msg }

func errAt(path, format string, args ...any) error {
	return &pathErr{path: path, msg: fmt.Sprintf(format, args...)}
}

// LoadFile reads, parses and compiles a GSLB configuration file.
func LoadFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read gslb config: %w", err)
	}
	return Load(path, data)
}

// Load parses and compiles a GSLB configuration; name is for messages.
func Load(path string, data []byte) (*Config, error) {
	fc, err := ParseConfig(path, data)
	if err != nil {
		return nil, err
	}
	cfg, err := Compile(fc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}
