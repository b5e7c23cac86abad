package gslb

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/gslbd/gslbd/geo"
)

// Query is what the DNS side asks: a GSLB name for one address family, on
// behalf of a client.
type Query struct {
	Name     string     // canonical lowercase FQDN
	IPv6     bool       // AAAA (else A)
	Resolver netip.Addr // who sent the query
	// ECS is the EDNS Client Subnet source prefix when the query had one
	// (invalid Prefix when not).
	ECS netip.Prefix
}

// Outcome is how the DNS side must answer.
type Outcome uint8

const (
	Answered Outcome = iota // Addrs holds the answer (possibly empty: NODATA)
	NoData                  // NOERROR with no address
	ServFail                // SERVFAIL (all_down: servfail)
	NotGSLB                 // the name is not a GSLB record
)

// Answer is the decision. Addrs is appended to, so a caller can pass a
// reused buffer and decide without allocating.
type Answer struct {
	Outcome Outcome
	Addrs   []netip.Addr
	TTL     uint32
	// Scope is the ECS SCOPE PREFIX-LENGTH to return: the prefix length the
	// answer depended on, 0 when it did not depend on the client or when
	// the query's ECS was not used (untrusted resolver).
	Scope   uint8
	UsedECS bool
	// Trace explains each step (Explain only).
	Trace []Step
}

// Step is one line of an explanation.
type Step struct {
	Filter string
	In     []string // endpoint names before
	Out    []string // after
	Note   string
}

// cand is an endpoint being considered.
type cand struct {
	ep *Endpoint
	up bool
}

// epHealth is an endpoint's health in a snapshot.
type epHealth struct {
	up         bool
	nextChange time.Time
	reason     string
	views      []View // every vantage point's view (self first); nil when only this gslbd probes
	split      bool   // vantage points disagree
}

// decision is the working state of one Decide call.
type decision struct {
	snap           *snapshot
	rec            *Record
	client         netip.Prefix
	cands, all     []cand
	scope          int
	now            time.Time // the decision's clock reading (overrides, TTL)
	healthEmptied  bool
	allDownApplied bool
	locDone        bool
	loc            geo.Location
	locOK          bool
	ranks          []int
	floats         []float64
	order          []cand // priority's scratch
	draws          []drainDraw
	trace          *[]Step
}

func (d *decision) clientAddr() netip.Addr { return d.client.Addr() }

func (d *decision) raiseScope(bits int) {
	d.scope = max(d.scope, bits)
}

// location looks the client up once per decision; the scope covers the
// database network it matched.
func (d *decision) location() (geo.Location, bool) {
	if !d.locDone {
		d.locDone = true
		if d.snap.geo != nil {
			r := d.snap.geo.Lookup(d.clientAddr())
			d.loc, d.locOK = r.Location, r.Found
			if r.Network.IsValid() {
				d.raiseScope(r.Network.Bits())
			}
		}
	}
	return d.loc, d.locOK
}

func (d *decision) rankBuf(n int) []int {
	if cap(d.ranks) < n {
		d.ranks = make([]int, n)
	}
	return d.ranks[:n]
}

func (d *decision) floatBuf(n int) []float64 {
	if cap(d.floats) < n {
		d.floats = make([]float64, n)
	}
	return d.floats[:n]
}

// explaining reports whether the decision is traced. Callers check it
// before note so that Decide neither formats nor boxes its arguments.
func (d *decision) explaining() bool { return d.trace != nil }

// note records a step for Explain; call it only when explaining.
func (d *decision) note(format string, args ...any) {
	if d.trace == nil {
		return
	}
	(*d.trace)[len(*d.trace)-1].Note = fmt.Sprintf(format, args...)
}

func (d *decision) siteNames(idx []int) string {
	names := make([]string, len(idx))
	for i, s := range idx {
		names[i] = d.snap.cfg.SiteList[s].Name
	}
	return "[" + strings.Join(names, " ") + "]"
}

func candNames(cs []cand) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.ep.Name
		if !c.up {
			out[i] += "(down)"
		}
	}
	return out
}

// load fills the candidates: the pool's endpoints of the family, with health.
func (d *decision) load(p *Pool, ipv6 bool, ignoreHealth bool) {
	d.cands, d.all = d.cands[:0], d.all[:0]
	for _, ep := range p.Endpoints {
		if ep.Addr.Is6() != ipv6 {
			continue
		}
		up := ignoreHealth || d.snap.health[ep.Index].up
		if d.snap.epOverride != nil {
			up = d.applyOverride(d.snap.epOverride[ep.Index], up || ignoreHealth)
		}
		d.all = append(d.all, cand{ep: ep, up: up})
	}
	d.cands = append(d.cands, d.all...)
}

// run applies the chain to the loaded candidates.
func (d *decision) run() {
	for _, f := range d.rec.Chain {
		if d.trace != nil {
			*d.trace = append(*d.trace, Step{Filter: f.Name(), In: candNames(d.cands)})
		}
		f.apply(d)
		if d.trace != nil {
			(*d.trace)[len(*d.trace)-1].Out = candNames(d.cands)
		}
	}
}

// String names the outcome: "answered", "nodata", "servfail", "not-gslb".
func (o Outcome) String() string {
	switch o {
	case NoData:
		return "nodata"
	case ServFail:
		return "servfail"
	case NotGSLB:
		return "not-gslb"
	}
	return "answered"
}
