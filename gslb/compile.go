package gslb

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/gslbd/gslbd/gslb/health"
)

// Site is a compiled site.
type Site struct {
	Name      string
	Index     int
	Lat, Lon  float64
	HasCoords bool
	Country   string
	Continent string
	Capacity  float64
	Feeds     []string       // lbd feed URLs
	answers   *atomic.Uint64 // metrics, attached by the engine
}

// Endpoint is a compiled endpoint: an address that may be answered.
type Endpoint struct {
	Name   string
	Index  int // position in Config.Endpoints; indexes health vectors
	Addr   netip.Addr
	Site   *Site
	Weight int
	Tier   int
	Target *health.Target // nil when unmonitored (always up)
	Pool   string
}

// Pool is a compiled pool.
type Pool struct {
	Name      string
	Endpoints []*Endpoint
}

// AllDown says what a record answers when health leaves nothing.
type AllDown uint8

const (
	AllDownAll      AllDown = iota // answer every endpoint, as if all were up (gdnsd, Route 53)
	AllDownFallback                // answer from the fallback pool
	AllDownNoData                  // NOERROR with no address
	AllDownServFail                // SERVFAIL
)

// Record is a compiled GSLB record.
type Record struct {
	Name                string // canonical: lowercase FQDN
	Pool                *Pool
	TTL, TTLMin, TTLMax uint32
	Chain               []Filter
	AllDown             AllDown
	Fallback            *Pool
	stats               *recordStats // metrics, attached by the engine
}

// Config is a compiled, validated GSLB configuration. Immutable.
type Config struct {
	Sites     map[string]*Site
	SiteList  []*Site
	Endpoints []*Endpoint
	Pools     map[string]*Pool
	Records   map[string]*Record
	Trusted   []netip.Prefix // resolvers whose ECS is used; empty = all
	Targets   []health.Target
	Quorum    Quorum // how vantage points' views combine
}

var continents = []string{"AF", "AN", "AS", "EU", "NA", "OC", "SA"}

// Compile validates fc and builds a Config. Every error names its path;
// all of them are returned joined, not only the first.
func Compile(fc *FileConfig) (*Config, error) {
	c := &Config{Sites: map[string]*Site{}, Pools: map[string]*Pool{}, Records: map[string]*Record{}}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, name := range sortedKeys(fc.Sites) {
		s, err := compileSite(name, fc.Sites[name], len(c.SiteList))
		add(err)
		if s != nil {
			c.Sites[name] = s
			c.SiteList = append(c.SiteList, s)
		}
	}
	monitors := map[string]*health.Monitor{}
	for _, name := range sortedKeys(fc.Monitors) {
		m, err := compileMonitor(name, fc.Monitors[name])
		add(err)
		monitors[name] = m
	}
	targets := map[health.TargetKey]health.Target{}
	for _, name := range sortedKeys(fc.Pools) {
		p, err := c.compilePool(name, fc.Pools[name], monitors, targets)
		add(err)
		c.Pools[name] = p
	}
	for _, k := range sortedKeys(targets) {
		c.Targets = append(c.Targets, targets[k])
	}
	q, err := ParseQuorum(fc.Health.Quorum)
	if err != nil {
		add(errAt("health.quorum", "%v", err))
	}
	c.Quorum = q
	for i, rc := range fc.Records {
		r, err := c.compileRecord(fmt.Sprintf("records[%d]", i), rc)
		add(err)
		if r == nil {
			continue
		}
		if _, dup := c.Records[r.Name]; dup {
			add(errAt(fmt.Sprintf("records[%d].name", i), "%s is defined twice", r.Name))
			continue
		}
		c.Records[r.Name] = r
	}
	for i, t := range fc.ECS.Trusted {
		p, err := ParsePrefix(t)
		if err != nil {
			add(errAt(fmt.Sprintf("ecs.trusted[%d]", i), "%v", err))
			continue
		}
		c.Trusted = append(c.Trusted, p)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

func sortedKeys[V any, K ~string](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func compileSite(name string, sc SiteConfig, idx int) (*Site, error) {
	path := "sites." + name
	s := &Site{Name: name, Index: idx, Country: strings.ToUpper(sc.Country), Continent: strings.ToUpper(sc.Continent), Capacity: sc.Capacity}
	if (sc.Lat == nil) != (sc.Lon == nil) {
		return nil, errAt(path, "lat and lon go together")
	}
	if sc.Lat != nil {
		if *sc.Lat < -90 || *sc.Lat > 90 || *sc.Lon < -180 || *sc.Lon > 180 || math.IsNaN(*sc.Lat) || math.IsNaN(*sc.Lon) {
			return nil, errAt(path, "lat %v lon %v out of range", *sc.Lat, *sc.Lon)
		}
		s.Lat, s.Lon, s.HasCoords = *sc.Lat, *sc.Lon, true
	}
	if s.Country != "" && len(s.Country) != 2 {
		return nil, errAt(path+".country", "%q is not an ISO 3166-1 alpha-2 code", sc.Country)
	}
	if s.Continent != "" && !slices.Contains(continents, s.Continent) {
		return nil, errAt(path+".continent", "%q is not one of %s", sc.Continent, strings.Join(continents, " "))
	}
	if sc.Capacity < 0 {
		return nil, errAt(path+".capacity", "must not be negative")
	}
	for i, f := range sc.Feeds {
		u, err := url.Parse(f)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, errAt(fmt.Sprintf("%s.feeds[%d]", path, i), "%q is not an http(s) URL like http://lbd:9300/v1/feed", f)
		}
		s.Feeds = append(s.Feeds, f)
	}
	return s, nil
}

func compileMonitor(name string, mc MonitorConfig) (*health.Monitor, error) {
	m := &health.Monitor{
		Kind: health.Kind(mc.Kind), Interval: mc.Interval, Timeout: mc.Timeout, Rise: mc.Rise, Fall: mc.Fall, Port: mc.Port,
		Method: mc.Method, Path: mc.Path, Host: mc.Host, SNI: mc.SNI, TLSSkipVerify: mc.TLSSkipVerify,
		BodyContains: mc.BodyContains, Headers: mc.Headers, Query: mc.Query, QueryType: mc.QueryType,
		ExpectRcode: mc.ExpectRcode, ExpectAnswer: mc.ExpectAnswer,
	}
	if len(mc.Expect) > 0 {
		r, err := health.ParseStatusRanges(mc.Expect)
		if err != nil {
			return nil, errAt("monitors."+name+".expect", "%v", err)
		}
		m.Expect = r
	}
	if err := m.Validate(); err != nil {
		return nil, errAt("monitors."+name, "%v", err)
	}
	return m, nil
}

func (c *Config) compilePool(name string, pc PoolConfig, monitors map[string]*health.Monitor, targets map[health.TargetKey]health.Target) (*Pool, error) {
	path := "pools." + name
	p := &Pool{Name: name}
	var errs []error
	if _, declared := monitors[pc.Monitor]; pc.Monitor != "" && pc.Monitor != "none" && !declared {
		errs = append(errs, errAt(path+".monitor", "unknown monitor %q", pc.Monitor))
	}
	if len(pc.Endpoints) == 0 {
		errs = append(errs, errAt(path+".endpoints", "a pool needs at least one endpoint"))
	}
	seen := map[netip.Addr]bool{}
	for i, ec := range pc.Endpoints {
		ep, err := c.compileEndpoint(fmt.Sprintf("%s.endpoints[%d]", path, i), ec, pc.Monitor, monitors)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[ep.Addr] {
			errs = append(errs, errAt(fmt.Sprintf("%s.endpoints[%d].address", path, i), "%s is listed twice", ep.Addr))
			continue
		}
		seen[ep.Addr] = true
		ep.Index, ep.Pool = len(c.Endpoints), name
		c.Endpoints = append(c.Endpoints, ep)
		p.Endpoints = append(p.Endpoints, ep)
		if ep.Target != nil {
			targets[ep.Target.Key()] = *ep.Target
		}
	}
	return p, errors.Join(errs...)
}

func (c *Config) compileEndpoint(path string, ec EndpointConfig, poolMonitor string, monitors map[string]*health.Monitor) (*Endpoint, error) {
	addr, err := netip.ParseAddr(ec.Address)
	if err != nil || addr.Zone() != "" {
		return nil, errAt(path+".address", "%q is not an IPv4 or IPv6 address", ec.Address)
	}
	ep := &Endpoint{Name: cmp.Or(ec.Name, addr.String()), Addr: addr.Unmap(), Weight: 100, Tier: ec.Tier}
	if ec.Weight != nil {
		if *ec.Weight < 0 || *ec.Weight > 1_000_000 {
			return nil, errAt(path+".weight", "%d is not between 0 and 1000000", *ec.Weight)
		}
		ep.Weight = *ec.Weight
	}
	if ep.Site = c.Sites[ec.Site]; ep.Site == nil {
		return nil, errAt(path+".site", "unknown site %q", ec.Site)
	}
	monName := cmp.Or(ec.Monitor, poolMonitor)
	if monName == "" || monName == "none" {
		return ep, nil
	}
	m := monitors[monName]
	if m == nil {
		if _, declared := monitors[monName]; declared || ec.Monitor == "" {
			return ep, nil // the monitor is invalid, or the pool's is unknown; reported there
		}
		return nil, errAt(path+".monitor", "unknown monitor %q", monName)
	}
	probe := ep.Addr
	if ec.Probe != "" {
		if probe, err = netip.ParseAddr(ec.Probe); err != nil {
			return nil, errAt(path+".probe", "%q is not an IPv4 or IPv6 address", ec.Probe)
		}
	}
	ep.Target = &health.Target{Addr: probe.Unmap(), Monitor: *m}
	return ep, nil
}

// canonicalName lowercases and qualifies a DNS name and checks its syntax.
func canonicalName(name string) (string, error) {
	n := strings.ToLower(strings.TrimSpace(name))
	if n == "" {
		return "", errors.New("empty name")
	}
	if !strings.HasSuffix(n, ".") {
		n += "."
	}
	if len(n) > 254 {
		return "", fmt.Errorf("%q is longer than 253 characters", name)
	}
	for _, l := range strings.Split(strings.TrimSuffix(n, "."), ".") {
		if l == "" || len(l) > 63 {
			return "", fmt.Errorf("%q has an empty or over-long label", name)
		}
	}
	return n, nil
}

// ParsePrefix accepts "198.51.100.0/24" or a bare address (a host prefix)
// and refuses host bits set past the prefix length.
func ParsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or prefix", s)
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a prefix", s)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set (did you mean %s?)", s, p.Masked())
	}
	return p, nil
}

// sortPrefixesLongestFirst orders prefixes for longest-match scans.
func sortPrefixesLongestFirst(ps []netip.Prefix) {
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].Bits() > ps[j].Bits() })
}

// String returns the policy as written in the configuration.
func (a AllDown) String() string {
	switch a {
	case AllDownFallback:
		return "fallback"
	case AllDownNoData:
		return "nodata"
	case AllDownServFail:
		return "servfail"
	}
	return "all"
}
