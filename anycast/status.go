package anycast

import (
	"context"
	"net/netip"
	"slices"
	"time"
)

// Status is a snapshot of the announcer for the API and gslbctl.
type Status struct {
	// Phase is idle (before Run), running, draining or stopped.
	Phase string       `json:"phase"`
	Peers []PeerStatus `json:"peers"`
	VIPs  []VIPStatus  `json:"vips"`
}

// PeerStatus is one BGP session.
type PeerStatus struct {
	Address netip.Addr `json:"address"`
	ASN     uint32     `json:"asn"`
	// State is the BGP FSM state: idle, connect, active, opensent,
	// openconfirm or established.
	State string    `json:"state"`
	Up    bool      `json:"up"`
	Since time.Time `json:"since,omitzero"` // established since
	// Received counts the routes the peer sent (the import policy keeps
	// every one of them out of the announcer's table); Advertised the
	// routes offered to the peer.
	Received   uint64 `json:"received"`
	Advertised uint64 `json:"advertised"`
}

// VIPStatus is one VIP: its state, why, and since when.
type VIPStatus struct {
	Prefix netip.Prefix `json:"prefix"`
	State  State        `json:"state"`
	Reason string       `json:"reason"`
	Since  time.Time    `json:"since"`
	// Active: the route is in the speaker's table, offered to every
	// established peer (false before Run and after the speaker stopped).
	Active bool `json:"active"`
}

// statusTimeout bounds the speaker query behind Status.
const statusTimeout = 2 * time.Second

// Status reports the sessions and the VIPs.
func (a *Announcer) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := Status{Phase: phaseNames[a.phase], Peers: make([]PeerStatus, 0, len(a.cfg.Peers))}
	var live map[netip.Addr]PeerStatus
	if a.sp != nil {
		ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
		live, _ = a.sp.peers(ctx) // on error peers show as idle
		cancel()
	}
	for _, p := range a.cfg.Peers {
		ps, ok := live[p.Address]
		if !ok {
			ps = PeerStatus{Address: p.Address, ASN: p.ASN, State: "idle"}
		}
		st.Peers = append(st.Peers, ps)
	}
	for _, e := range a.sorted() {
		st.VIPs = append(st.VIPs, VIPStatus{Prefix: e.attrs.prefix, State: e.state, Reason: e.reason, Since: e.since, Active: e.inRIB != nil})
	}
	return st
}

// sortEntries orders VIPs by address family, address, then length.
func sortEntries(es []*vipEntry) {
	slices.SortFunc(es, func(x, y *vipEntry) int {
		return comparePrefix(x.attrs.prefix, y.attrs.prefix)
	})
}

func comparePrefix(x, y netip.Prefix) int {
	if c := x.Addr().Compare(y.Addr()); c != 0 {
		return c
	}
	return x.Bits() - y.Bits()
}
