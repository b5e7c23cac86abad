package gslb

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gslbd/gslbd/gslb/state"
)

// Quorum is how many vantage points must see an endpoint up for it to be
// up. The zero value is QuorumMajority.
type Quorum struct {
	Rule    QuorumRule
	Percent float64 // QuorumPercent only: at least this share, in (0, 100]
}

// QuorumRule names a quorum rule.
type QuorumRule uint8

// The quorum rules.
const (
	QuorumMajority QuorumRule = iota // more than half
	QuorumAny                        // at least one
	QuorumAll                        // every one
	QuorumPercent                    // at least Percent% (Route 53 uses 18%)
)

// ParseQuorum parses "any", "majority", "all" or "N%" ("" = majority).
func ParseQuorum(s string) (Quorum, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "majority":
		return Quorum{Rule: QuorumMajority}, nil
	case "any":
		return Quorum{Rule: QuorumAny}, nil
	case "all":
		return Quorum{Rule: QuorumAll}, nil
	}
	num, ok := strings.CutSuffix(strings.TrimSpace(s), "%")
	if !ok {
		return Quorum{}, fmt.Errorf("unknown quorum %q (want any, majority, all or a percentage like 18%%)", s)
	}
	p, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || p <= 0 || p > 100 {
		return Quorum{}, fmt.Errorf("quorum %q: the percentage must be a number in (0, 100]", s)
	}
	return Quorum{Rule: QuorumPercent, Percent: p}, nil
}

// String returns the rule as written in the configuration.
func (q Quorum) String() string {
	switch q.Rule {
	case QuorumAny:
		return "any"
	case QuorumAll:
		return "all"
	case QuorumPercent:
		return strconv.FormatFloat(q.Percent, 'f', -1, 64) + "%"
	}
	return "majority"
}

// Met reports whether up of total vantage points seeing an endpoint up
// satisfy the rule. No vantage point at all is not a quorum.
func (q Quorum) Met(up, total int) bool {
	if total <= 0 {
		return false
	}
	switch q.Rule {
	case QuorumAny:
		return up >= 1
	case QuorumAll:
		return up == total
	case QuorumPercent:
		return float64(up)*100 >= q.Percent*float64(total)-1e-9
	}
	return 2*up > total
}

// View is one vantage point's view of an endpoint.
type View struct {
	Vantage string    `json:"vantage"`
	Up      bool      `json:"up"`
	Reason  string    `json:"reason"`
	Since   time.Time `json:"since,omitzero"`
	Self    bool      `json:"self,omitempty"` // this gslbd's own probes
}

// SetVantages swaps in the other vantage points' probe results (from the
// state store). self is this gslbd's vantage name: its own report in
// reports is ignored in favour of its live probe results. A monitored
// endpoint is then up when the configured quorum of the vantage points
// that report it see it up.
func (e *Engine) SetVantages(self string, reports []state.VantageReport) {
	e.rebuild(func(s *snapshot) { s.self, s.vantages = self, reports })
}

// remoteViews collects, per endpoint name, the views of vantage points
// other than self.
func remoteViews(self string, reports []state.VantageReport) map[string][]View {
	if len(reports) == 0 {
		return nil
	}
	out := map[string][]View{}
	for _, r := range reports {
		if r.Vantage == self {
			continue
		}
		for name, v := range r.Endpoints {
			out[name] = append(out[name], View{Vantage: r.Vantage, Up: v.Up, Reason: v.Reason, Since: v.Since})
		}
	}
	for _, vs := range out {
		slices.SortFunc(vs, func(a, b View) int { return strings.Compare(a.Vantage, b.Vantage) })
	}
	return out
}

// verdict combines the vantage points' views (this gslbd's own first,
// when it has probed) under q. One view is taken as it is; with several,
// the reason names the vote and the dissenters. split reports
// disagreement.
func verdict(q Quorum, views []View) (up bool, reason string, split bool) {
	if len(views) == 1 {
		v := views[0]
		if v.Self {
			return v.Up, v.Reason, false
		}
		return v.Up, v.Vantage + ": " + v.Reason, false
	}
	n := 0
	for _, v := range views {
		if v.Up {
			n++
		}
	}
	up = q.Met(n, len(views))
	reason = fmt.Sprintf("quorum %s: %d/%d vantage points see it up", q, n, len(views))
	var dissent []string
	for _, v := range views {
		if v.Up != up {
			name := v.Vantage
			if v.Self {
				name = "here"
			}
			dissent = append(dissent, name+" "+upWord(v.Up)+": "+v.Reason)
		}
	}
	if len(dissent) > 0 {
		reason += " (" + strings.Join(dissent, "; ") + ")"
	}
	return up, reason, n != 0 && n != len(views)
}

func upWord(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

// Vantages returns the vantage reports the engine is using (self's
// included, as published), for the last-site guard and the API.
func (e *Engine) Vantages() (self string, reports []state.VantageReport) {
	s := e.snap.Load()
	return s.self, s.vantages
}

// Overrides returns the overrides the engine applies now (as set).
func (e *Engine) Overrides() []state.Override { return e.snap.Load().overrides }
