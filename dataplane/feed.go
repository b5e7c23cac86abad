package dataplane

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// FeedSource is what the feed reads: the data path (a Programmer).
type FeedSource interface {
	RTT() ([]RTTSample, error)
	Counters() (Counters, error)
}

// FeedConfig configures a Feed.
type FeedConfig struct {
	Site     string       // required: the site's name in the GSLB configuration
	Source   FeedSource   // required
	Settings FeedSettings // zero fields take the defaults (Default*)
	Clock    Clock        // RealClock()
	Logger   *slog.Logger // discards when nil
}

// Feed is the RTT and load feed for DNS steering, which gslbd polls from
// GET /v1/feed. Every interval (feed.interval, 10s) it drains the data
// path's handshake RTT samples and reads its counters, and keeps:
//
//   - per client prefix (/24 for IPv4, /48 for IPv6), an exponentially
//     weighted moving average of the handshake RTT and the number of flows
//     it was computed from. Each sampled flow moves the average by alpha
//     (feed.ewma_alpha, 0.1): a batch of n flows with mean m moves it by
//     1-(1-alpha)^n towards m. The table holds the feed.max_prefixes
//     (65536) most recently seen prefixes; one not seen for feed.max_age
//     (1h) is dropped;
//   - the site's load: new flows per second (the growth of the data path's
//     NewFlows counters, summed over VIPs, divided by the time between two
//     readings) and the active flows (connection-table entries that saw a
//     packet in the last minute).
//
// The document, rebuilt at every reading (so serving it costs nothing):
//
//	{
//	  "site": "lon",                    // this site's name in the GSLB config
//	  "time": "2025-01-02T03:04:05Z",   // RFC 3339, UTC: when it was read
//	  "interval_s": 10,                 // seconds between readings
//	  "rtt": [                          // sorted by client prefix
//	    {"client": "198.18.0.0/24",     // the client prefix, /24 or /48
//	     "rtt_ms": 12.5,                // EWMA of the handshake RTT, ms (3 decimals)
//	     "samples": 42}                 // flows measured since the prefix entered the table
//	  ],
//	  "load": {
//	    "new_flows_per_second": 123.4,  // over the last interval; 0 until the second reading
//	    "active_flows": 5678
//	  }
//	}
//
// gslbd turns each rtt entry into an RTTSample{Client, Site, RTT} and uses
// new_flows_per_second as the site's load, in the unit of its capacity
// (new flows per second). "rtt" is [] (never null) when empty.
type Feed struct {
	site     string
	src      FeedSource
	set      FeedSettings
	clock    Clock
	log      *slog.Logger
	snapshot atomic.Pointer[feedDoc]

	mu       sync.Mutex
	prefixes map[netip.Prefix]*list.Element // of *feedEntry
	lru      *list.List                     // most recently seen first
	prevNew  map[VIP]uint64                 // NewFlows at the previous reading
	prevAt   time.Time                      // time of the previous counter reading, zero before
	load     FeedLoad
}

type feedEntry struct {
	prefix   netip.Prefix
	ewma     float64 // nanoseconds
	samples  uint64
	lastSeen time.Time
}

// FeedSnapshot is the feed document (see Feed).
type FeedSnapshot struct {
	Site      string    `json:"site"`
	Time      string    `json:"time"`
	IntervalS float64   `json:"interval_s"`
	RTT       []FeedRTT `json:"rtt"`
	Load      FeedLoad  `json:"load"`
}

// FeedRTT is one client prefix of the feed.
type FeedRTT struct {
	Client  netip.Prefix `json:"client"`
	RTTMs   float64      `json:"rtt_ms"`
	Samples uint64       `json:"samples"`
}

// FeedLoad is the site's load in the feed.
type FeedLoad struct {
	NewFlowsPerSecond float64 `json:"new_flows_per_second"`
	ActiveFlows       uint64  `json:"active_flows"`
}

// feedDoc is a snapshot and its encoding.
type feedDoc struct {
	snap FeedSnapshot
	json []byte
}

// NewFeed returns a feed with no data; Run reads the source.
func NewFeed(cfg FeedConfig) (*Feed, error) {
	if cfg.Site == "" || cfg.Source == nil {
		return nil, errors.New("new feed: site and source are required")
	}
	s := cfg.Settings
	s.Interval = cmpOrDuration(s.Interval, DefaultFeedInterval)
	s.MaxAge = cmpOrDuration(s.MaxAge, DefaultFeedMaxAge)
	if s.MaxPrefixes <= 0 {
		s.MaxPrefixes = DefaultFeedMaxPrefixes
	}
	if !(s.Alpha > 0 && s.Alpha <= 1) {
		s.Alpha = DefaultFeedAlpha
	}
	f := &Feed{
		site: cfg.Site, src: cfg.Source, set: s, clock: cfg.Clock, log: cfg.Logger,
		prefixes: make(map[netip.Prefix]*list.Element), lru: list.New(),
	}
	if f.clock == nil {
		f.clock = RealClock()
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	f.publish(f.clock.Now())
	return f, nil
}

func cmpOrDuration(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Run reads the source at once, then every interval, until ctx is done.
func (f *Feed) Run(ctx context.Context) error {
	tick := make(chan struct{}, 1)
	for {
		if err := f.Poll(); err != nil {
			f.log.Warn("feed reading failed", "err", err)
		}
		t := f.clock.AfterFunc(f.set.Interval, func() {
			select {
			case tick <- struct{}{}:
			default:
			}
		})
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-tick:
		}
	}
}

// Poll reads the source once and publishes a new snapshot. A failed read
// of the RTT samples or of the counters leaves that part as it was.
func (f *Feed) Poll() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.clock.Now()
	var errs []error
	if samples, err := f.src.RTT(); err != nil {
		errs = append(errs, fmt.Errorf("read rtt samples: %w", err))
	} else {
		for _, s := range samples {
			f.add(s, now)
		}
	}
	f.expire(now)
	if c, err := f.src.Counters(); err != nil {
		errs = append(errs, fmt.Errorf("read counters: %w", err))
	} else {
		f.updateLoad(c, now)
	}
	f.publish(now)
	return errors.Join(errs...)
}

// add folds one sample into its prefix's average. Called with f.mu held.
func (f *Feed) add(s RTTSample, now time.Time) {
	p, ok := clientPrefix(s.Prefix)
	if !ok || s.Count == 0 || s.Mean <= 0 {
		return
	}
	if el, ok := f.prefixes[p]; ok {
		e := el.Value.(*feedEntry)
		a := 1 - math.Pow(1-f.set.Alpha, float64(s.Count))
		e.ewma += a * (float64(s.Mean) - e.ewma)
		e.samples += s.Count
		e.lastSeen = now
		f.lru.MoveToFront(el)
		return
	}
	f.prefixes[p] = f.lru.PushFront(&feedEntry{prefix: p, ewma: float64(s.Mean), samples: s.Count, lastSeen: now})
	for f.lru.Len() > f.set.MaxPrefixes {
		f.remove(f.lru.Back())
	}
}

// expire drops the prefixes not seen for MaxAge. Called with f.mu held.
func (f *Feed) expire(now time.Time) {
	for el := f.lru.Back(); el != nil && now.Sub(el.Value.(*feedEntry).lastSeen) > f.set.MaxAge; el = f.lru.Back() {
		f.remove(el)
	}
}

func (f *Feed) remove(el *list.Element) {
	delete(f.prefixes, el.Value.(*feedEntry).prefix)
	f.lru.Remove(el)
}

// clientPrefix is the /24 or /48 a sample is about: the data path should
// report exactly that, but a longer prefix is truncated, an IPv4-mapped one
// unmapped, and a shorter one kept as is.
func clientPrefix(p netip.Prefix) (netip.Prefix, bool) {
	if !p.IsValid() {
		return netip.Prefix{}, false
	}
	addr, bits := p.Addr(), p.Bits()
	if addr.Is4In6() {
		addr, bits = addr.Unmap(), bits-96
		if bits < 0 {
			return netip.Prefix{}, false
		}
	}
	want := 48
	if addr.Is4() {
		want = 24
	}
	return netip.PrefixFrom(addr.WithZone(""), min(bits, want)).Masked(), true
}

// updateLoad computes new flows per second since the previous reading.
// A VIP's counter that went down was reset (the data path restarted or the
// VIP was re-created): its whole value is new. A VIP seen for the first
// time counts from the next reading, not with its whole history (the
// pinned maps of a previous run). Called with f.mu held.
func (f *Feed) updateLoad(c Counters, now time.Time) {
	var delta uint64
	cur := make(map[VIP]uint64, len(c.VIPs))
	for v, vc := range c.VIPs {
		cur[v] = vc.NewFlows
		prev, seen := f.prevNew[v]
		switch {
		case !seen:
		case vc.NewFlows >= prev:
			delta += vc.NewFlows - prev
		default:
			delta += vc.NewFlows
		}
	}
	if !f.prevAt.IsZero() {
		if secs := now.Sub(f.prevAt).Seconds(); secs > 0 {
			f.load.NewFlowsPerSecond = math.Round(float64(delta)/secs*10) / 10
		}
	}
	f.load.ActiveFlows = c.ActiveFlows
	f.prevNew, f.prevAt = cur, now
}

// publish builds and encodes the snapshot. Called with f.mu held (or
// before the feed is shared).
func (f *Feed) publish(now time.Time) {
	snap := FeedSnapshot{
		Site: f.site, Time: now.UTC().Format(time.RFC3339), IntervalS: f.set.Interval.Seconds(),
		RTT: make([]FeedRTT, 0, f.lru.Len()), Load: f.load,
	}
	for el := f.lru.Front(); el != nil; el = el.Next() {
		e := el.Value.(*feedEntry)
		snap.RTT = append(snap.RTT, FeedRTT{Client: e.prefix, RTTMs: math.Round(e.ewma/1e3) / 1e3, Samples: e.samples})
	}
	slices.SortFunc(snap.RTT, func(a, b FeedRTT) int {
		if c := a.Client.Addr().Compare(b.Client.Addr()); c != 0 {
			return c
		}
		return a.Client.Bits() - b.Client.Bits()
	})
	data, err := json.Marshal(snap)
	if err != nil { // only floats can fail, and ours are finite
		f.log.Error("feed not encoded", "err", err)
		return
	}
	f.snapshot.Store(&feedDoc{snap: snap, json: append(data, '\n')})
}

// Snapshot returns the latest document; its slice is shared, read only.
func (f *Feed) Snapshot() FeedSnapshot { return f.snapshot.Load().snap }

// JSON returns the latest document, encoded.
func (f *Feed) JSON() []byte { return f.snapshot.Load().json }

// Len is the number of client prefixes in the latest document.
func (f *Feed) Len() int { return len(f.snapshot.Load().snap.RTT) }
