package etcdtest

import (
	"context"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

// Close must leave nothing running: tests that use the package check
// for leaks too.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// put writes key=val, retrying attempts of 500 ms for up to 5 s: the
// first write after losing the leader can be forwarded to the dead
// leader and never answered.
func put(t *testing.T, cli *clientv3.Client, key, val string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
		_, err := cli.Put(ctx, key, val)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("put %s=%s: %v", key, val, err)
		}
	}
}

func TestStopRestart(t *testing.T) {
	c := StartCluster(t, 3)
	eps := c.Endpoints()
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	put(t, cli, "k", "1")

	lead := c.Leader()
	if lead < 0 {
		t.Fatal("no leader after StartCluster")
	}
	if err := c.Stop(lead); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(lead); err == nil {
		t.Error("second Stop of a member succeeded")
	}
	put(t, cli, "k", "2") // two of three: still a quorum

	if err := c.Restart(lead); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(lead); err == nil {
		t.Error("Restart of a running member succeeded")
	}
	// The restarted member is needed for a quorum now: it caught up.
	if err := c.Stop((lead + 1) % 3); err != nil {
		t.Fatal(err)
	}
	put(t, cli, "k", "3")
	resp, err := cli.Get(t.Context(), "k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "3" {
		t.Fatalf("get k = %v, %v; want 3", resp, err)
	}
	if !slices.Equal(c.Endpoints(), eps) {
		t.Errorf("endpoints changed across stop and restart: %v, then %v", eps, c.Endpoints())
	}
	if err := c.Stop(7); err == nil {
		t.Error("Stop of member 7 of 3 succeeded")
	}
}
