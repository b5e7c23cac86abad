package dataplane

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Defaults and limits of the configuration.
const (
	DefaultPinPath         = "/sys/fs/bpf/lbd"
	DefaultStateFile       = "/var/lib/lbd/state.json"
	DefaultAPIListen       = "127.0.0.1:9300"
	DefaultConntrackSize   = 1 << 20
	DefaultFeedInterval    = 10 * time.Second
	DefaultFeedMaxPrefixes = 65536
	DefaultFeedMaxAge      = time.Hour
	DefaultFeedAlpha       = 0.1
	DefaultCheckInterval   = time.Second
	DefaultCheckRise       = 2
	DefaultCheckFall       = 2
	// MaxWeight bounds a backend's weight. Maglev honours any ratio, but
	// with M near 100 x N a backend at 1/1000 of another's weight would get
	// a handful of entries: such ratios are typos more often than intent.
	MaxWeight = 1000
	// MaxMaglevSize bounds maglev.size: the kernel keeps 4 x M bytes per
	// VIP (the largest prime below 2^24).
	MaxMaglevSize = 16777213
)

// Config is lbd's validated configuration (ParseConfig, LoadConfig). It is
// immutable once built; a reload builds a new one.
type Config struct {
	Site       string   // name of this site in the GSLB config ("lon"); required
	Interfaces []string // where XDP attaches; required
	Mode       Mode     // default for VIPs without a mode (ModeIPIP)
	PinPath    string   // bpffs directory for pinned maps and links
	Generic    bool     // force generic (skb) XDP instead of driver mode
	// TunnelSource4 and TunnelSource6 are the prefixes the outer source
	// address of IPIP packets is drawn from (per flow hash, for RSS on the
	// proxies). Required when an IPIP VIP of that family exists.
	TunnelSource4, TunnelSource6 netip.Prefix
	ConntrackSize                int    // connection-table entries
	StateFile                    string // operator state and backend slots; "" keeps them in memory only
	MaglevSize                   uint32 // Maglev table size M, prime
	MaglevSeed                   uint64 // same on every LB of a site
	APIListen                    string // local HTTP API and /metrics, host:port (port 0: any free port, logged)
	Feed                         FeedSettings
	LogLevel                     slog.Level
	LogFormat                    string // "text" or "json"
	VIPs                         []VIPConfig
}

// FeedSettings configures the RTT/load feed (see Feed).
type FeedSettings struct {
	Interval    time.Duration // how often the data path is read (10s)
	MaxPrefixes int           // client prefixes kept, most recently seen first (65536)
	MaxAge      time.Duration // a prefix not seen for this long is dropped (1h)
	Alpha       float64       // EWMA weight of one flow's RTT, (0, 1] (0.1)
}

// VIPConfig is one virtual service.
type VIPConfig struct {
	VIP      VIP
	Mode     Mode
	Backends []BackendConfig
}

// BackendConfig is one proxy behind a VIP.
type BackendConfig struct {
	Addr   netip.Addr
	Weight uint32           // 0 = drained by configuration
	MAC    net.HardwareAddr // DSR only
	Check  Check
}

// The file format. Every field's default is in its comment.
type fileConfig struct {
	Site          string     `yaml:"site"`           // required
	Interfaces    []string   `yaml:"interfaces"`     // required
	Mode          string     `yaml:"mode"`           // ipip or dsr; ipip
	PinPath       string     `yaml:"pin_path"`       // /sys/fs/bpf/lbd
	Generic       bool       `yaml:"generic"`        // false
	TunnelSource4 string     `yaml:"tunnel_source4"` // prefix or address; required with IPv4 ipip VIPs
	TunnelSource6 string     `yaml:"tunnel_source6"` // prefix or address; required with IPv6 ipip VIPs
	ConntrackSize *int       `yaml:"conntrack_size"` // 1048576
	StateFile     *string    `yaml:"state_file"`     // /var/lib/lbd/state.json; "" = memory only
	Maglev        maglevFile `yaml:"maglev"`
	API           apiFile    `yaml:"api"`
	Feed          feedFile   `yaml:"feed"`
	Log           logFile    `yaml:"log"`
	VIPs          []vipFile  `yaml:"vips"`
}

type maglevFile struct {
	Size *int    `yaml:"size"` // 65537, prime, >= 100 x weighted backends of every VIP
	Seed *uint64 `yaml:"seed"` // 0; the same on every LB of the site
}

type apiFile struct {
	Listen string `yaml:"listen"` // 127.0.0.1:9300
}

type feedFile struct {
	Interval    time.Duration `yaml:"interval"`     // 10s
	MaxPrefixes *int          `yaml:"max_prefixes"` // 65536
	MaxAge      time.Duration `yaml:"max_age"`      // 1h
	EWMAAlpha   *float64      `yaml:"ewma_alpha"`   // 0.1
}

type logFile struct {
	Level  string `yaml:"level"`  // debug, info, warn, error; info
	Format string `yaml:"format"` // text or json; text
}

type vipFile struct {
	Address  string        `yaml:"address"`  // required
	Protocol string        `yaml:"protocol"` // tcp or udp; tcp
	Port     *int          `yaml:"port"`     // 0 or omitted = every port
	Mode     string        `yaml:"mode"`     // the top-level mode
	Backends []backendFile `yaml:"backends"` // at least one
}

type backendFile struct {
	Address string    `yaml:"address"` // required
	Weight  *int      `yaml:"weight"`  // 1; 0 = drained
	MAC     string    `yaml:"mac"`     // required in dsr mode, not allowed in ipip
	Check   checkFile `yaml:"check"`
}

type checkFile struct {
	Type         string        `yaml:"type"`          // tcp, http or none; tcp
	Address      string        `yaml:"address"`       // probe this address instead of the backend's
	Port         *int          `yaml:"port"`          // the VIP's port (required when the VIP has every port)
	Path         string        `yaml:"path"`          // http: "/"
	Host         string        `yaml:"host"`          // http: Host header; the address
	ExpectStatus int           `yaml:"expect_status"` // http: 200
	Interval     time.Duration `yaml:"interval"`      // 1s
	Timeout      time.Duration `yaml:"timeout"`       // half the interval
	Rise         int           `yaml:"rise"`          // 2
	Fall         int           `yaml:"fall"`          // 2
}

// ConfigError lists every problem found in a configuration file, each
// naming the field ("vips[0].backends[2].weight: ...") or the line.
type ConfigError struct {
	File     string
	Problems []string
}

func (e *ConfigError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = e.File + ": " + p
	}
	return strings.Join(lines, "\n")
}

// LoadConfig reads and validates the configuration file at path.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return ParseConfig(path, data)
}

var (
	yamlLine  = regexp.MustCompile(`^line (\d+): `)
	yamlField = regexp.MustCompile(`field (\S+) not found in type .*`)
)

// ParseConfig decodes data strictly (an unknown key is an error) and
// validates it. name is the file name used in errors. All problems are
// reported at once, in a *ConfigError.
func ParseConfig(name string, data []byte) (*Config, error) {
	var fc fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
		return nil, &ConfigError{File: name, Problems: yamlProblems(err)}
	}
	v := &validator{}
	cfg := v.config(&fc)
	if len(v.problems) > 0 {
		return nil, &ConfigError{File: name, Problems: v.problems}
	}
	return cfg, nil
}

// yamlProblems words yaml.v3's errors as "line 3: unknown key "x"".
func yamlProblems(err error) []string {
	msgs := []string{err.Error()}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	out := make([]string, 0, len(msgs))
	for _, m := range msgs {
		m = strings.TrimPrefix(m, "yaml: ")
		m = yamlField.ReplaceAllString(m, `unknown key "$1"`)
		if loc := yamlLine.FindStringSubmatch(m); loc != nil {
			m = "line " + loc[1] + ": " + strings.TrimPrefix(m, loc[0])
		}
		out = append(out, m)
	}
	return out
}

// RestartRequired lists the settings that differ between old and c and
// that a reload cannot apply (the XDP attachment, the maps, the API
// listener): the caller keeps the old values until a restart and says so.
func (c *Config) RestartRequired(old *Config) []string {
	var out []string
	for _, f := range []struct {
		name    string
		changed bool
	}{
		{"interfaces", strings.Join(c.Interfaces, ",") != strings.Join(old.Interfaces, ",")},
		{"pin_path", c.PinPath != old.PinPath},
		{"generic", c.Generic != old.Generic},
		{"tunnel_source4", c.TunnelSource4 != old.TunnelSource4},
		{"tunnel_source6", c.TunnelSource6 != old.TunnelSource6},
		{"conntrack_size", c.ConntrackSize != old.ConntrackSize},
		{"state_file", c.StateFile != old.StateFile},
		{"api.listen", c.APIListen != old.APIListen},
		{"log.format", c.LogFormat != old.LogFormat},
		{"site", c.Site != old.Site},
		{"feed", c.Feed != old.Feed},
	} {
		if f.changed {
			out = append(out, f.name)
		}
	}
	return out
}

// ModeString is the configuration's name of m ("ipip", "dsr").
func ModeString(m Mode) string {
	if m == ModeDSR {
		return "dsr"
	}
	return "ipip"
}
