// Package etcdtest runs a real etcd cluster inside the test process, on
// loopback, for tests of code that talks to etcd (gslb/state's Etcd store,
// and the gslbd wiring that uses it).
//
// Members are go.etcd.io/etcd/server/v3/embed servers with fast raft ticks
// (10 ms heartbeat, 100 ms election), no fsync and no logging, each behind
// a loopback TCP proxy whose port stays fixed for the cluster's life: a
// member can be stopped and restarted without clients changing endpoints,
// and no port is ever picked by listening on :0 and closing it.
//
// The package is meant for tests only; it links the whole etcd server.
package etcdtest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Timing of the test members. The election timeout is ten heartbeats, as
// etcd recommends; both are short so that a leader lost to Stop is
// replaced within a few hundred milliseconds.
const (
	TickMs     = 10
	ElectionMs = 100

	// readyTimeout bounds how long a member may take to join its cluster.
	readyTimeout = 30 * time.Second
)

// Cluster is a running etcd cluster. Methods are safe for concurrent use.
type Cluster struct {
	token   string // initial-cluster-token, unique per cluster
	initial string // initial-cluster, "m0=http://127.0.0.1:p0,..."
	base    string // directory holding the members' data dirs
	ownBase bool   // base was created by Start and is removed by Close

	mu      sync.Mutex
	members []*member
	closed  bool
}

type member struct {
	name   string
	dir    string
	client *proxy      // what clients dial; Endpoints lists these
	peer   *proxy      // what other members dial; advertised peer URL
	etcd   *embed.Etcd // nil while stopped
}

// StartCluster starts a cluster of n members (1, 3 or 5 make sense) with
// data under tb.TempDir(), waits until it has a leader, and closes it when
// the test ends. It fails the test if the cluster does not come up.
func StartCluster(tb testing.TB, n int) *Cluster {
	tb.Helper()
	c, err := start(n, tb.TempDir(), false)
	if err != nil {
		tb.Fatalf("start etcd cluster: %v", err)
	}
	tb.Cleanup(c.Close)
	return c
}

// Start is StartCluster for callers without a testing.TB, such as a
// TestMain that shares one cluster between tests: data goes to a new
// temporary directory, and the caller must call Close.
func Start(n int) (*Cluster, error) {
	base, err := os.MkdirTemp("", "etcdtest-")
	if err != nil {
		return nil, fmt.Errorf("start etcd cluster: %w", err)
	}
	c, err := start(n, base, true)
	if err != nil {
		_ = os.RemoveAll(base)
		return nil, err
	}
	return c, nil
}

func start(n int, base string, ownBase bool) (*Cluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("members: want at least 1, got %d", n)
	}
	c := &Cluster{token: "etcdtest-" + rand.Text(), base: base, ownBase: ownBase}
	var initial []string
	for i := range n {
		m := &member{name: fmt.Sprintf("m%d", i), dir: filepath.Join(base, fmt.Sprintf("m%d", i))}
		c.members = append(c.members, m)
		var err error
		if m.client, err = newProxy(); err == nil {
			m.peer, err = newProxy()
		}
		if err != nil {
			c.Close()
			return nil, err
		}
		initial = append(initial, m.name+"=http://"+m.peer.addr())
	}
	c.initial = strings.Join(initial, ",")
	// Start every member before waiting on any: a member is ready only
	// once a quorum of them has elected a leader.
	for _, m := range c.members {
		if err := c.startMember(m, embed.ClusterStateFlagNew); err != nil {
			c.Close()
			return nil, err
		}
	}
	for _, m := range c.members {
		if err := waitReady(m); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// Endpoints returns the members' client addresses ("127.0.0.1:port"), in
// member order. They do not change when members stop or restart.
func (c *Cluster) Endpoints() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	eps := make([]string, len(c.members))
	for i, m := range c.members {
		eps[i] = m.client.addr()
	}
	return eps
}

// Leader returns the index of the member that believes it is the leader,
// or -1 if no running member does.
func (c *Cluster) Leader() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range c.members {
		if m.etcd != nil && m.etcd.Server.Leader() == m.etcd.Server.MemberID() {
			return i
		}
	}
	return -1
}

// Stop stops member i abruptly, like a crash or a cut cable: its client
// connections are cut at once, it does not hand over leadership, and its
// data directory is kept for Restart.
func (c *Cluster) Stop(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, err := c.member(i)
	if err != nil {
		return err
	}
	if m.etcd == nil {
		return fmt.Errorf("stop member %d: already stopped", i)
	}
	stopMember(m)
	return nil
}

// Restart starts a stopped member i again on its data and waits until it
// has rejoined, which needs a quorum of members running.
func (c *Cluster) Restart(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, err := c.member(i)
	if err != nil {
		return err
	}
	if m.etcd != nil {
		return fmt.Errorf("restart member %d: running", i)
	}
	if err := c.startMember(m, embed.ClusterStateFlagExisting); err != nil {
		return fmt.Errorf("restart member %d: %w", i, err)
	}
	if err := waitReady(m); err != nil {
		stopMember(m)
		return fmt.Errorf("restart member %d: %w", i, err)
	}
	return nil
}

// Close stops every member and proxy and, for a cluster from Start,
// removes its data. It is safe to call more than once.
func (c *Cluster) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	var wg sync.WaitGroup
	for _, m := range c.members {
		if m.etcd != nil {
			wg.Go(func() { stopMember(m) })
		}
	}
	wg.Wait()
	for _, m := range c.members {
		for _, p := range []*proxy{m.client, m.peer} {
			if p != nil {
				p.close()
			}
		}
	}
	if c.ownBase {
		_ = os.RemoveAll(c.base)
	}
}

func (c *Cluster) member(i int) (*member, error) {
	if c.closed {
		return nil, errors.New("cluster closed")
	}
	if i < 0 || i >= len(c.members) {
		return nil, fmt.Errorf("no member %d (cluster of %d)", i, len(c.members))
	}
	return c.members[i], nil
}

func (c *Cluster) startMember(m *member, state string) error {
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = m.name, m.dir
	// The member listens on a port of its own choosing; its proxies
	// forward to it, and it advertises the proxies' fixed addresses.
	auto := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenPeerUrls = []url.URL{auto}
	cfg.ListenClientUrls = []url.URL{auto}
	cfg.AdvertisePeerUrls = []url.URL{{Scheme: "http", Host: m.peer.addr()}}
	cfg.AdvertiseClientUrls = []url.URL{{Scheme: "http", Host: m.client.addr()}}
	cfg.InitialCluster, cfg.InitialClusterToken, cfg.ClusterState = c.initial, c.token, state
	cfg.TickMs, cfg.ElectionMs = TickMs, ElectionMs
	// Stop is a crash in the test's model, but the process survives it:
	// the page cache keeps what the member wrote, so fsync buys nothing
	// here and costs a lot on slow disks.
	cfg.UnsafeNoFsync = true
	cfg.Logger, cfg.LogLevel = "zap", "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start member %s: %w", m.name, err)
	}
	m.etcd = e
	m.peer.setTarget(e.Peers[0].Addr().String())
	m.client.setTarget(e.Clients[0].Addr().String())
	return nil
}

func waitReady(m *member) error {
	select {
	case <-m.etcd.Server.ReadyNotify():
		return nil
	case err := <-m.etcd.Err():
		return fmt.Errorf("member %s failed: %w", m.name, err)
	case <-time.After(readyTimeout):
		return fmt.Errorf("member %s not ready after %s (no quorum?)", m.name, readyTimeout)
	}
}

// stopMember stops m's server. Client connections are cut first: etcd's
// graceful shutdown otherwise waits its full request timeout for open
// watch streams. The raft server is then hard-stopped (no leadership
// transfer, which could wait seconds for a peer that is itself stopping).
func stopMember(m *member) {
	m.client.setTarget("")
	m.etcd.Server.HardStop()
	// With raft stopped, cut the peers' streams too: the peer server's
	// shutdown in Close would otherwise wait a second for them.
	m.peer.setTarget("")
	m.etcd.Close()
	m.etcd = nil
}
