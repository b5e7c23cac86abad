package gslb

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Feed is the document an lbd serves at /v1/feed (dataplane.FeedSnapshot):
// the handshake RTT its clients see, per /24 or /48, and the site's load.
type Feed struct {
	Site      string    `json:"site"`
	Time      string    `json:"time"`
	IntervalS float64   `json:"interval_s"`
	RTT       []FeedRTT `json:"rtt"`
	Load      FeedLoad  `json:"load"`
}

// FeedRTT is one client network's RTT to the site.
type FeedRTT struct {
	Client  netip.Prefix `json:"client"`
	RTTMs   float64      `json:"rtt_ms"`
	Samples uint64       `json:"samples"`
}

// FeedLoad is the site's load.
type FeedLoad struct {
	NewFlowsPerSecond float64 `json:"new_flows_per_second"`
	ActiveFlows       uint64  `json:"active_flows"`
}

// maxFeedBytes bounds a feed document (65536 prefixes is ~5 MB of JSON).
const maxFeedBytes = 16 << 20

// ParseFeed decodes a feed document; errors say what is wrong with it.
func ParseFeed(r io.Reader) (Feed, error) {
	var f Feed
	dec := json.NewDecoder(io.LimitReader(r, maxFeedBytes))
	if err := dec.Decode(&f); err != nil {
		return Feed{}, fmt.Errorf("feed: %w", err)
	}
	for i, s := range f.RTT {
		if !s.Client.IsValid() || s.RTTMs <= 0 || s.RTTMs > 60_000 {
			return Feed{}, fmt.Errorf("feed: rtt[%d]: client %v rtt_ms %v is not a client prefix with an RTT in (0, 60000] ms", i, s.Client, s.RTTMs)
		}
	}
	if f.Load.NewFlowsPerSecond < 0 {
		return Feed{}, fmt.Errorf("feed: load.new_flows_per_second %v is negative", f.Load.NewFlowsPerSecond)
	}
	return f, nil
}

// FeedPoller polls every site's lbd feeds and hands the engine their RTTs
// (FeedRTT) and the sites' load (SetLoad: the sum of new flows per second
// over a site's feeds). A feed that fails keeps its last load for three
// intervals, then counts as no load reported by it.
type FeedPoller struct {
	Engine   *Engine
	Interval time.Duration // 10s
	Client   *http.Client  // default: 5 s timeout
	Logger   *slog.Logger

	mu    sync.Mutex
	loads map[string]feedLoad // by feed URL
	fails map[string]bool     // feeds failing now (logged once per failure run)
}

type feedLoad struct {
	site string
	load float64
	at   time.Time
}

// Run polls until ctx is done. The set of feeds follows the engine's
// configuration at each round.
func (p *FeedPoller) Run(ctx context.Context) error {
	interval := p.Interval
	if interval <= 0 {
		interval = 10 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		p.Poll(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Poll fetches every feed once, applies what came, and returns the errors
// (also logged).
func (p *FeedPoller) Poll(ctx context.Context) []error {
	cfg := p.Engine.Config()
	client := p.Client
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	log := p.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	interval := max(p.Interval, 10*time.Second)
	var errs []error
	var samples []RTTSample
	now := time.Now()
	p.mu.Lock()
	if p.loads == nil {
		p.loads, p.fails = map[string]feedLoad{}, map[string]bool{}
	}
	p.mu.Unlock()
	live := map[string]bool{}
	for _, site := range cfg.SiteList {
		for _, url := range site.Feeds {
			live[url] = true
			f, err := fetchFeed(ctx, client, url)
			p.mu.Lock()
			if err != nil {
				if !p.fails[url] {
					log.Warn("lbd feed failing; its load counts for 3 intervals, then none", "site", site.Name, "feed", url, "err", err)
				}
				p.fails[url] = true
				p.mu.Unlock()
				errs = append(errs, fmt.Errorf("site %s: %w", site.Name, err))
				continue
			}
			if p.fails[url] {
				log.Info("lbd feed working again", "site", site.Name, "feed", url)
				delete(p.fails, url)
			}
			p.loads[url] = feedLoad{site: site.Name, load: f.Load.NewFlowsPerSecond, at: now}
			p.mu.Unlock()
			for _, r := range f.RTT {
				samples = append(samples, RTTSample{Client: r.Client, Site: site.Name, RTT: time.Duration(r.RTTMs * float64(time.Millisecond))})
			}
		}
	}
	if len(samples) > 0 {
		if n := p.Engine.FeedRTT(samples); n > 0 {
			log.Debug("feed RTT samples ignored", "count", n)
		}
	}
	p.mu.Lock()
	load := map[string]float64{}
	reported := false
	for url, l := range p.loads {
		if !live[url] || now.Sub(l.at) > 3*interval {
			delete(p.loads, url)
			continue
		}
		load[l.site] += l.load
		reported = true
	}
	p.mu.Unlock()
	if reported {
		p.Engine.SetLoad(load)
	} else if len(live) > 0 {
		p.Engine.SetLoad(nil)
	}
	return errs
}

func fetchFeed(ctx context.Context, c *http.Client, url string) (Feed, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Feed{}, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return Feed{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Feed{}, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := ParseFeed(resp.Body)
	if err != nil {
		return Feed{}, fmt.Errorf("GET %s: %w", url, err)
	}
	return f, nil
}

// SiteLoads returns the load last reported per site (nil when none).
func (e *Engine) SiteLoads() map[string]float64 {
	s := e.snap.Load()
	if s.load == nil {
		return nil
	}
	out := map[string]float64{}
	for _, site := range s.cfg.SiteList {
		out[site.Name] = s.load[site.Index]
	}
	return out
}
