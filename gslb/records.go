package gslb

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// compileRecord builds a record and its chain; path is "records[i]".
func (c *Config) compileRecord(path string, rc RecordConfig) (*Record, error) {
	name, err := canonicalName(rc.Name)
	if err != nil {
		return nil, errAt(path+".name", "%v", err)
	}
	r := &Record{Name: name, TTL: rc.TTL, TTLMin: rc.TTLMin, TTLMax: rc.TTLMax}
	if r.TTL == 0 {
		r.TTL = 30
	}
	if r.TTLMin == 0 {
		r.TTLMin = min(5, r.TTL)
	}
	if r.TTLMax == 0 {
		r.TTLMax = 3600
	}
	if r.TTLMin > r.TTL || r.TTL > r.TTLMax || r.TTLMax > 1<<31-1 {
		return nil, errAt(path+".ttl", "need ttl_min <= ttl <= ttl_max (got %d <= %d <= %d)", r.TTLMin, r.TTL, r.TTLMax)
	}
	if r.Pool = c.Pools[rc.Pool]; r.Pool == nil {
		if _, declared := c.Pools[rc.Pool]; !declared {
			return nil, errAt(path+".pool", "unknown pool %q", rc.Pool)
		}
		return nil, nil // the pool is invalid; reported there
	}
	switch rc.AllDown {
	case "", "all":
		r.AllDown = AllDownAll
	case "nodata":
		r.AllDown = AllDownNoData
	case "servfail":
		r.AllDown = AllDownServFail
	case "fallback":
		r.AllDown = AllDownFallback
		if r.Fallback = c.Pools[rc.Fallback]; r.Fallback == nil {
			return nil, errAt(path+".fallback", "unknown pool %q (all_down: fallback needs one)", rc.Fallback)
		}
	default:
		return nil, errAt(path+".all_down", "%q is not one of all, fallback, nodata, servfail", rc.AllDown)
	}
	if rc.Fallback != "" && r.AllDown != AllDownFallback {
		return nil, errAt(path+".fallback", "set only with all_down: fallback")
	}
	if len(rc.Chain) == 0 {
		r.Chain = []Filter{upFilter{}}
	}
	for i := range rc.Chain {
		f, err := c.compileFilter(fmt.Sprintf("%s.chain[%d]", path, i), &rc.Chain[i])
		if err != nil {
			return nil, err
		}
		r.Chain = append(r.Chain, f)
	}
	return r, nil
}

// compileFilter reads one chain entry: a bare name ("up") or a map with
// one key, the filter's name, holding its settings.
func (c *Config) compileFilter(path string, n *yaml.Node) (Filter, error) {
	var name string
	var args *yaml.Node
	switch n.Kind {
	case yaml.ScalarNode:
		name = n.Value
	case yaml.MappingNode:
		if len(n.Content) != 2 {
			return nil, errAt(path, "a filter is one name, or a map with one key (the name)")
		}
		name, args = n.Content[0].Value, n.Content[1]
	default:
		return nil, errAt(path, "a filter is one name, or a map with one key (the name)")
	}
	path += "." + name
	decode := func(v any) error {
		if args == nil {
			return nil
		}
		if err := decodeStrict(args, v); err != nil {
			return errAt(path, "%v", err)
		}
		return nil
	}
	switch name {
	case "up":
		if args != nil && args.Kind != yaml.ScalarNode {
			return nil, errAt(path, "takes no settings")
		}
		return upFilter{}, nil
	case "first_n":
		var v int
		if args == nil || args.Decode(&v) != nil || v < 1 {
			return nil, errAt(path, "needs a count of at least 1 (first_n: 2)")
		}
		return firstN{n: v}, nil
	case "geo", "geofence":
		var gc geoConfig
		if err := decode(&gc); err != nil {
			return nil, err
		}
		f, err := c.compileGeo(path, gc)
		return f, err
	case "proximity":
		var pc struct {
			Bias map[string]float64 `yaml:"bias"`
			Tie  float64            `yaml:"tie_percent"`
		}
		if err := decode(&pc); err != nil {
			return nil, err
		}
		f := &proximity{bias: make([]float64, len(c.SiteList)), tie: pc.Tie}
		if pc.Tie < 0 || pc.Tie > 100 {
			return nil, errAt(path+".tie_percent", "%v is not between 0 and 100", pc.Tie)
		}
		for site, b := range pc.Bias {
			s := c.Sites[site]
			if s == nil {
				return nil, errAt(path+".bias", "unknown site %q", site)
			}
			if b < -99 || b > 99 {
				return nil, errAt(path+".bias."+site, "%v is not between -99 and 99", b)
			}
			f.bias[s.Index] = b
		}
		return f, nil
	case "weighted":
		var wc struct {
			Mode  string `yaml:"mode"`
			Bits4 int    `yaml:"prefix_v4"`
			Bits6 int    `yaml:"prefix_v6"`
		}
		if err := decode(&wc); err != nil {
			return nil, err
		}
		f := &weighted{bits4: cmp.Or(wc.Bits4, 24), bits6: cmp.Or(wc.Bits6, 56)}
		switch wc.Mode {
		case "", "random":
		case "hash":
			f.hash = true
		default:
			return nil, errAt(path+".mode", "%q is not random or hash", wc.Mode)
		}
		if f.bits4 < 1 || f.bits4 > 32 || f.bits6 < 1 || f.bits6 > 128 {
			return nil, errAt(path, "prefix_v4 must be 1..32 and prefix_v6 1..128")
		}
		return f, nil
	case "latency":
		var lc struct {
			RTT      map[string]map[string]time.Duration `yaml:"rtt"`
			Tie      float64                             `yaml:"tie_percent"`
			Fallback string                              `yaml:"fallback"`
		}
		if err := decode(&lc); err != nil {
			return nil, err
		}
		if lc.Tie < 0 || lc.Tie > 100 {
			return nil, errAt(path+".tie_percent", "%v is not between 0 and 100", lc.Tie)
		}
		table, err := c.compileRTTTable(path, lc.RTT)
		if err != nil {
			return nil, err
		}
		f := &latency{table: table, tie: lc.Tie}
		switch lc.Fallback {
		case "", "proximity":
			f.fallback = &proximity{bias: make([]float64, len(c.SiteList))}
		case "none":
		default:
			return nil, errAt(path+".fallback", "%q is not proximity or none", lc.Fallback)
		}
		return f, nil
	case "capacity":
		if args != nil && args.Kind == yaml.MappingNode && len(args.Content) > 0 {
			return nil, errAt(path, "takes no settings (capacity comes from sites.*.capacity)")
		}
		return capacity{}, nil
	case "priority":
		var pc struct {
			By         string `yaml:"by"`
			MinHealthy string `yaml:"min_healthy"`
		}
		if err := decode(&pc); err != nil {
			return nil, err
		}
		f := &priority{minCount: 1}
		switch pc.By {
		case "", "site":
		case "tier":
			f.byTier = true
		default:
			return nil, errAt(path+".by", "%q is not site or tier", pc.By)
		}
		if pc.MinHealthy != "" {
			var err error
			if f.minCount, f.minPercent, err = ParseThreshold(pc.MinHealthy); err != nil {
				return nil, errAt(path+".min_healthy", "%v", err)
			}
		}
		return f, nil
	}
	return nil, errAt(path, "unknown filter (have up, geo, proximity, latency, weighted, priority, capacity, first_n)")
}

func decodeStrict(n *yaml.Node, v any) error {
	// Re-encode the node and decode it with KnownFields so typos are errors.
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		// One line per problem; the line numbers are the re-encoded
		// snippet's, meaningless to the user: the caller names the path.
		msgs := []string{err.Error()}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			msgs = te.Errors
		}
		for i, m := range msgs {
			m = yamlLine.ReplaceAllString(strings.TrimPrefix(m, "yaml: "), "")
			msgs[i] = yamlField.ReplaceAllString(m, `unknown key "$1"`)
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	return nil
}

type geoConfig struct {
	Map     map[string][]string `yaml:"map"`
	Default []string            `yaml:"default"`
	Mode    string              `yaml:"mode"` // fence (default) or prefer
}

// compileGeo reads a geo map. Keys: "continent:EU", "country:GB",
// "subdivision:GB-SCT", "asn:64500", or a CIDR.
func (c *Config) compileGeo(path string, gc geoConfig) (*geoFilter, error) {
	f := &geoFilter{cidrSites: map[netip.Prefix][]int{}, asn: map[uint32][]int{}, subdivision: map[string][]int{},
		country: map[string][]int{}, continent: map[string][]int{}}
	switch gc.Mode {
	case "", "fence":
	case "prefer":
		f.prefer = true
	default:
		return nil, errAt(path+".mode", "%q is not fence or prefer", gc.Mode)
	}
	sites := func(p string, names []string) ([]int, error) {
		if len(names) == 0 {
			return nil, errAt(p, "needs at least one site")
		}
		out := make([]int, 0, len(names))
		for j, n := range names {
			s := c.Sites[n]
			if s == nil {
				return nil, errAt(fmt.Sprintf("%s[%d]", p, j), "unknown site %q", n)
			}
			out = append(out, s.Index)
		}
		return out, nil
	}
	for _, key := range sortedKeys(gc.Map) {
		p := path + ".map." + key
		list, err := sites(p, gc.Map[key])
		if err != nil {
			return nil, err
		}
		kind, val, hasKind := strings.Cut(key, ":")
		if !hasKind {
			pfx, err := ParsePrefix(key)
			if err != nil {
				return nil, errAt(p, "a key is continent:XX, country:XX, subdivision:XX-YYY, asn:N or a CIDR; %v", err)
			}
			f.cidrs = append(f.cidrs, pfx)
			f.cidrSites[pfx] = list
			continue
		}
		val = strings.ToUpper(val)
		switch kind {
		case "continent":
			if !slicesContains(continents, val) {
				return nil, errAt(p, "%q is not one of %s", val, strings.Join(continents, " "))
			}
			f.continent[val] = list
		case "country":
			if len(val) != 2 {
				return nil, errAt(p, "%q is not an ISO 3166-1 alpha-2 code", val)
			}
			f.country[val] = list
		case "subdivision":
			if cc, sub, ok := strings.Cut(val, "-"); !ok || len(cc) != 2 || sub == "" {
				return nil, errAt(p, "%q is not an ISO 3166-2 code like GB-SCT", val)
			}
			f.subdivision[val] = list
		case "asn":
			n, err := strconv.ParseUint(strings.TrimPrefix(val, "AS"), 10, 32)
			if err != nil {
				return nil, errAt(p, "%q is not an AS number", val)
			}
			f.asn[uint32(n)] = list
		default:
			return nil, errAt(p, "unknown key kind %q (continent, country, subdivision, asn, or a CIDR)", kind)
		}
	}
	if len(gc.Map) == 0 && len(gc.Default) == 0 {
		return nil, errAt(path, "needs a map or a default (a geo filter without either answers nobody)")
	}
	sortPrefixesLongestFirst(f.cidrs)
	if len(gc.Default) > 0 {
		var err error
		if f.defaultSites, err = sites(path+".default", gc.Default); err != nil {
			return nil, err
		}
	}
	f.classOf = map[string]int{}
	for _, group := range []map[string][]int{f.subdivision, f.country, f.continent, {"": f.defaultSites}} {
		for _, k := range sortedKeys(group) {
			key := siteListKey(group[k])
			if _, dup := f.classOf[key]; !dup {
				f.classOf[key] = len(f.classes)
				f.classes = append(f.classes, group[k])
			}
		}
	}
	return f, nil
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
