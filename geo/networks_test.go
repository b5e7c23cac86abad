package geo

import (
	"testing"
)

func TestNetworksSampleOfACountry(t *testing.T) {
	db, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	nets, err := db.Networks(func(l Location) bool { return l.Country == "DE" }, 16)
	if err != nil {
		t.Fatal(err)
	}
	if len(nets) != 16 {
		t.Fatalf("got %d networks, want 16", len(nets))
	}
	seen := map[string]bool{}
	for _, p := range nets {
		if !p.Addr().Is4() || seen[p.String()] {
			t.Fatalf("network %s: not IPv4 or repeated", p)
		}
		seen[p.String()] = true
		if r := db.Lookup(p.Addr()); r.Location.Country != "DE" {
			t.Errorf("%s is in %q, want DE", p, r.Location.Country)
		}
	}
	if nets[0].Addr().As4()[0] == nets[15].Addr().As4()[0] {
		t.Errorf("sample %v is not spread over the address space", nets)
	}
}
