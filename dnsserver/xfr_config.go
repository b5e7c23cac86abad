package dnsserver

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// TSIGKey is a shared secret for TSIG (RFC 8945).
type TSIGKey struct {
	Name      string // key name, a domain name ("xfr-key.")
	Algorithm string // "hmac-sha256" (default), "hmac-sha384", "hmac-sha512"
	Secret    string // base64
}

// ACLRule lets a client transfer a zone when its address is in one of
// Prefixes (or Prefixes is empty) and, when Key is set, the request is
// signed with that TSIG key.
type ACLRule struct {
	Prefixes []netip.Prefix
	Key      string
}

// ZoneTransfer is the transfer policy of one zone.
type ZoneTransfer struct {
	Allow     []ACLRule        // any rule that matches allows AXFR/IXFR; none: REFUSED
	Notify    []netip.AddrPort // secondaries sent NOTIFY when the serial changes
	NotifyKey string           // TSIG key to sign NOTIFY with; "" = unsigned
}

// TransferConfig configures zone transfers. Zones not listed refuse them.
type TransferConfig struct {
	Keys  []TSIGKey
	Zones map[string]ZoneTransfer // by zone origin, lowercase FQDN
}

// transferPolicy is a validated TransferConfig. Immutable.
type transferPolicy struct {
	keys  map[string]*tsigKey    // by canonical key name
	zones map[string]*zonePolicy // by canonical origin
}

// zonePolicy is the compiled policy of one zone.
type zonePolicy struct {
	origin    string
	allow     []aclRule
	notify    []netip.AddrPort
	notifyKey *tsigKey // nil: NOTIFY unsigned
}

// aclRule is a compiled ACLRule.
type aclRule struct {
	prefixes []netip.Prefix // empty: any address
	key      *tsigKey       // nil: no signature required
}

// compileTransfers validates tc. Errors name the field path
// ("transfers.zones[example.com.].allow[0].key: ..."). The zero config
// gives a policy that refuses every transfer.
func compileTransfers(tc TransferConfig) (*transferPolicy, error) {
	p := &transferPolicy{keys: map[string]*tsigKey{}, zones: map[string]*zonePolicy{}}
	for i, k := range tc.Keys {
		key, err := compileKey(k)
		if err != nil {
			return nil, fmt.Errorf("transfers.keys[%d].%w", i, err)
		}
		if _, dup := p.keys[key.name]; dup {
			return nil, fmt.Errorf("transfers.keys[%d].name: duplicate key %q", i, key.name)
		}
		p.keys[key.name] = key
	}
	// Sorted, so that the first error reported does not depend on map order.
	for _, name := range slices.Sorted(maps.Keys(tc.Zones)) {
		zp, err := p.compileZone(name, tc.Zones[name])
		if err != nil {
			return nil, err
		}
		if _, dup := p.zones[zp.origin]; dup {
			return nil, fmt.Errorf("transfers.zones[%s]: zone %s is listed twice", name, zp.origin)
		}
		p.zones[zp.origin] = zp
	}
	return p, nil
}

// compileZone validates the transfer policy of one zone.
func (p *transferPolicy) compileZone(name string, zt ZoneTransfer) (*zonePolicy, error) {
	path := "transfers.zones[" + name + "]"
	origin := dns.CanonicalName(name)
	if _, ok := dns.IsDomainName(origin); !ok || strings.TrimSpace(name) == "" {
		return nil, fmt.Errorf("%s: %q is not a domain name", path, name)
	}
	zp := &zonePolicy{origin: origin}
	for i, rule := range zt.Allow {
		rpath := fmt.Sprintf("%s.allow[%d]", path, i)
		ar := aclRule{}
		for j, pfx := range rule.Prefixes {
			if !pfx.IsValid() {
				return nil, fmt.Errorf("%s.prefixes[%d]: invalid prefix", rpath, j)
			}
			ar.prefixes = append(ar.prefixes, pfx.Masked())
		}
		if rule.Key != "" {
			if ar.key = p.keys[dns.CanonicalName(rule.Key)]; ar.key == nil {
				return nil, fmt.Errorf("%s.key: unknown key %q", rpath, rule.Key)
			}
		}
		if len(ar.prefixes) == 0 && ar.key == nil {
			return nil, fmt.Errorf("%s: a rule needs prefixes, a key or both (an empty rule would let anyone transfer)", rpath)
		}
		zp.allow = append(zp.allow, ar)
	}
	for i, ap := range zt.Notify {
		if !ap.IsValid() || ap.Port() == 0 || ap.Addr().IsUnspecified() {
			return nil, fmt.Errorf("%s.notify[%d]: %q is not an address and port", path, i, ap.String())
		}
		zp.notify = append(zp.notify, ap)
	}
	if zt.NotifyKey != "" {
		if zp.notifyKey = p.keys[dns.CanonicalName(zt.NotifyKey)]; zp.notifyKey == nil {
			return nil, fmt.Errorf("%s.notify_key: unknown key %q", path, zt.NotifyKey)
		}
	}
	return zp, nil
}

// allowed reports whether a transfer of zone by src, signed with key (nil
// when unsigned, already verified otherwise), matches an allow rule. An
// invalid src (unknown) matches only rules without prefixes.
func (p *transferPolicy) allowed(zone string, src netip.AddrPort, key *tsigKey) bool {
	zp := p.zones[zone]
	if zp == nil {
		return false
	}
	addr := src.Addr().Unmap()
	for _, rule := range zp.allow {
		if rule.key != nil && rule.key != key {
			continue
		}
		if len(rule.prefixes) == 0 {
			return true
		}
		if !addr.IsValid() {
			continue
		}
		for _, pfx := range rule.prefixes {
			if pfx.Contains(addr) {
				return true
			}
		}
	}
	return false
}
