package main

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

// fileConfig is the YAML configuration (-config FILE). Unknown keys are
// errors. Every field has its default in the comment; flags override.
type fileConfig struct {
	Listen          []string       `yaml:"listen"`           // ["127.0.0.1:5353"]
	Zones           string         `yaml:"zones"`            // zones directory; "" = the embedded example
	Workers         int            `yaml:"workers"`          // UDP sockets per address; 0 = one per CPU
	MaxUDPSize      uint16         `yaml:"max_udp_size"`     // 1232
	Metrics         *string        `yaml:"metrics"`          // "127.0.0.1:9153"; "" disables
	ShutdownTimeout time.Duration  `yaml:"shutdown_timeout"` // 5s
	Identity        identityConfig `yaml:"identity"`
	TCP             tcpConfig      `yaml:"tcp"`
	Reload          reloadConfig   `yaml:"reload"`
	Log             logConfig      `yaml:"log"`
	Transfers       transferConfig `yaml:"transfers"`
	GSLB            gslbConfig     `yaml:"gslb"`
}

type identityConfig struct {
	Version  string `yaml:"version"`  // answers version.bind/version.server in CHAOS; "" = REFUSED
	Hostname string `yaml:"hostname"` // hostname.bind
	ID       string `yaml:"id"`       // id.server
}

type tcpConfig struct {
	MaxConnections int           `yaml:"max_connections"` // 1024
	IdleTimeout    time.Duration `yaml:"idle_timeout"`    // 10s
	ReadTimeout    time.Duration `yaml:"read_timeout"`    // 3s
	WriteTimeout   time.Duration `yaml:"write_timeout"`   // 5s
	MaxQueries     int           `yaml:"max_queries"`     // 0 = unlimited
}

type reloadConfig struct {
	Debounce time.Duration `yaml:"debounce"` // 200ms
	Poll     time.Duration `yaml:"poll"`     // 0 = inotify only
}

type logConfig struct {
	Level       string  `yaml:"level"`        // debug, info, warn, error; info
	Format      string  `yaml:"format"`       // text or json; text
	QuerySample float64 `yaml:"query_sample"` // share of queries logged at info, 0..1; 0
}

type transferConfig struct {
	Keys  []tsigKeyConfig               `yaml:"keys"`
	Zones map[string]zoneTransferConfig `yaml:"zones"`
}

type tsigKeyConfig struct {
	Name      string `yaml:"name"`
	Algorithm string `yaml:"algorithm"` // hmac-sha256
	Secret    string `yaml:"secret"`    // base64
}

type zoneTransferConfig struct {
	Allow     []aclRuleConfig `yaml:"allow"`      // who may AXFR/IXFR; empty = nobody
	Notify    []string        `yaml:"notify"`     // secondaries to NOTIFY on serial change, "addr:port"
	NotifyKey string          `yaml:"notify_key"` // TSIG key to sign NOTIFY with; "" = unsigned
}

type aclRuleConfig struct {
	Prefixes []string `yaml:"prefixes"` // client prefixes; empty = any address (then key is required)
	Key      string   `yaml:"key"`      // TSIG key name; empty = unsigned allowed
}

var yamlLine = regexp.MustCompile(`^line (\d+): `)
var yamlField = regexp.MustCompile(`field (\S+) not found in type \S+`)

// loadConfigFile reads a YAML config strictly. Errors name file:line and key.
func loadConfigFile(path string) (*fileConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	var cfg fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s", configError(path, err))
	}
	return &cfg, nil
}

// configError rewrites yaml.v3's messages as "file:line: ..." lines, and
// "field x not found in type y" as `unknown key "x"`.
func configError(path string, err error) string {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	var out []string
	for _, m := range msgs {
		m = strings.TrimPrefix(m, "yaml: ")
		m = yamlField.ReplaceAllString(m, `unknown key "$1"`)
		if loc := yamlLine.FindStringSubmatch(m); loc != nil {
			m = path + ":" + loc[1] + ": " + strings.TrimPrefix(m, loc[0])
		} else {
			m = path + ": " + m
		}
		out = append(out, m)
	}
	return strings.Join(out, "\n")
}
