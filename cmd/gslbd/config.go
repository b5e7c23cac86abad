package main

import (
	"fmt"
	"os"
	"time"

	"github.com/gslbd/gslbd/gslb"
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
	Anycast         anycastConfig  `yaml:"anycast"`
	State           stateConfig    `yaml:"state"`
	API             apiConfig      `yaml:"api"`
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

// loadConfigFile reads a YAML config strictly. Errors name file:line and key.
func loadConfigFile(path string) (*fileConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	var cfg fileConfig
	if err := gslb.DecodeYAML(path, data, &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}
