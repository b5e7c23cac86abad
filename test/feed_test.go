package test

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/gslbd/gslbd/dataplane"
	"github.com/gslbd/gslbd/gslb"
)

// feedSource is a data path reporting fixed RTT samples and a growing
// new-flow counter.
type feedSource struct{ flows uint64 }

func (s *feedSource) Counters() (dataplane.Counters, error) {
	s.flows += 500
	vip := dataplane.VIP{Addr: netip.MustParseAddr("192.0.2.10"), Proto: dataplane.ProtoTCP, Port: 443}
	return dataplane.Counters{VIPs: map[dataplane.VIP]dataplane.VIPCounters{vip: {NewFlows: s.flows}}, ActiveFlows: 42}, nil
}

func (s *feedSource) RTT() ([]dataplane.RTTSample, error) {
	return []dataplane.RTTSample{{Prefix: netip.MustParsePrefix("198.18.7.0/24"), Count: 3, Mean: 12 * time.Millisecond, Min: 10 * time.Millisecond}}, nil
}

// What lbd publishes at /v1/feed is what gslbd's feed poller reads.
func TestLbdFeedReadableByGslbd(t *testing.T) {
	f, err := dataplane.NewFeed(dataplane.FeedConfig{Site: "lon", Source: &feedSource{}})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the load is a rate: it needs two readings
		if err := f.Poll(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	doc, err := gslb.ParseFeed(bytes.NewReader(f.JSON()))
	if err != nil {
		t.Fatalf("gslb.ParseFeed of lbd's feed: %v\n%s", err, f.JSON())
	}
	if doc.Site != "lon" || len(doc.RTT) != 1 || doc.RTT[0].Client.String() != "198.18.7.0/24" || doc.RTT[0].RTTMs != 12 || doc.RTT[0].Samples != 6 { // 3 flows per reading, two readings
		t.Errorf("rtt as gslbd reads it: %+v\n%s", doc, f.JSON())
	}
	if doc.Load.NewFlowsPerSecond <= 0 || doc.Load.ActiveFlows != 42 {
		t.Errorf("load as gslbd reads it: %+v", doc.Load)
	}
}
