package dnsserver

import (
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/gslbd/gslbd/gslb"
	"github.com/gslbd/gslbd/zones"
)

// CheckGSLB reports GSLB records that these zones cannot serve: a name
// outside every zone, below a delegation, a wildcard, or one that also has
// static A, AAAA or CNAME records (a name is static or GSLB for addresses,
// never both; other types such as MX or TXT may sit beside a GSLB name).
func CheckGSLB(set *zones.Set, cfg *gslb.Config) []error {
	var errs []error
	names := make([]string, 0, len(cfg.Records))
	for n := range cfg.Records {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := checkGSLBName(set, name); err != nil {
			errs = append(errs, fmt.Errorf("gslb record %s: %w", name, err))
		}
	}
	return errs
}

func checkGSLBName(set *zones.Set, name string) error {
	if strings.HasPrefix(name, "*.") || strings.Contains(name, ".*.") {
		return fmt.Errorf("wildcard names cannot be GSLB records")
	}
	var zone *zones.Zone
	if set != nil {
		for origin, z := range set.Zones {
			if dns.IsSubDomain(origin, name) && (zone == nil || len(origin) > len(zone.Origin)) {
				zone = z
			}
		}
	}
	if zone == nil {
		return fmt.Errorf("not inside any served zone")
	}
	for _, rec := range zone.Records {
		h := rec.RR.Header()
		owner := strings.ToLower(h.Name)
		switch {
		case owner == name && (h.Rrtype == dns.TypeA || h.Rrtype == dns.TypeAAAA || h.Rrtype == dns.TypeCNAME):
			return fmt.Errorf("%s:%d has a static %s record for the same name", rec.File, rec.Line, dns.TypeToString[h.Rrtype])
		case h.Rrtype == dns.TypeNS && owner != zone.Origin && dns.IsSubDomain(owner, name):
			return fmt.Errorf("it is at or below the delegation at %s (%s:%d)", owner, rec.File, rec.Line)
		}
	}
	return nil
}
