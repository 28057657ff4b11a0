package clickhouse_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/internal/chtest"
	"github.com/whocould/whocould/store"
	"github.com/whocould/whocould/store/clickhouse"
)

// clusterEnv names the cluster of the server of WHOCOULD_CLICKHOUSE to run the cluster tests on
// (a cluster needs Keeper or ZooKeeper: deploy/clickhouse/local-cluster.sh starts one of
// 2 shards × 2 replicas on loopback).
const clusterEnv = "WHOCOULD_CLICKHOUSE_CLUSTER"

// needCluster skips a cluster test when no cluster is named. Under CI=true that is an error,
// unless the run says (WHOCOULD_CLUSTER_TESTS=separate, as scripts/test does) that the cluster
// tests run on their own, on the local cluster deploy/clickhouse/local-cluster.sh builds.
func needCluster(t *testing.T) string {
	t.Helper()
	cluster := os.Getenv(clusterEnv)
	if cluster == "" {
		if os.Getenv("CI") == "true" && os.Getenv("WHOCOULD_CLUSTER_TESTS") != "separate" {
			t.Fatalf("the cluster tests need a cluster: set %s, or run deploy/clickhouse/local-cluster.sh", clusterEnv)
		}
		t.Skipf("the cluster tests run on a cluster: set %s (see deploy/clickhouse/README.md); scripts/test runs them on their own", clusterEnv)
	}
	return cluster
}

// clusterDatabase is a fresh database for the test, dropped on every server of the cluster
// when it ends (a store on a cluster makes its database ON CLUSTER).
func clusterDatabase(t *testing.T) (cluster, db string) {
	t.Helper()
	cluster = needCluster(t)
	db = chtest.Database(t)
	t.Cleanup(func() { exec(t, "", "DROP DATABASE IF EXISTS "+db+" ON CLUSTER "+cluster) })
	return cluster, db
}

func openCluster(t *testing.T, cluster, db string) *clickhouse.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s, err := clickhouse.Open(ctx, clickhouse.Config{Addr: chtest.Addr(t), Database: db, Cluster: cluster})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The conformance suite, on the cluster rendering of the schema: readers and the projector
// keep the table names, now Distributed tables.
func TestClusterConformance(t *testing.T) {
	needCluster(t)
	cluster := needCluster(t)
	conformance(t, func(t *testing.T) string { _, db := clusterDatabase(t); return db },
		func(t *testing.T, db string) store.Store { return openCluster(t, cluster, db) })
}

// On the cluster: the rows spread over the shards and reach every replica, the answers are
// those of one server, and a replay after a crash before the checkpoint doubles nothing.
func TestClusterSpreadAndReplay(t *testing.T) {
	cluster, db := clusterDatabase(t)
	ctx := context.Background()
	recs := history(3000)

	refDB := chtest.Database(t)
	ref := open(t, clickhouse.Config{Database: refDB})
	defer ref.Close()
	if err := ref.Apply(ctx, recs); err != nil {
		t.Fatal(err)
	}
	want := stateOf(t, ref, refDB, recs)

	s := openCluster(t, cluster, db)
	if err := s.Apply(ctx, recs[:1000]); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, recs[1000:2000]); err != nil {
		t.Fatal(err)
	}
	s.Close() // killed: 1001-2000 written, not checkpointed

	s = openCluster(t, cluster, db)
	defer s.Close()
	if p, err := s.Position(ctx); err != nil || p != 1000 {
		t.Fatalf("position after the crash: %d, %v; want the checkpoint, 1000", p, err)
	}
	for _, part := range [][]event.Record{recs[1000:1500], recs[1500:2500], recs[2500:]} {
		if err := s.Apply(ctx, part); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	sameState(t, "on the cluster, after the crash and the replay", stateOf(t, s, db, recs), want)

	// Every replica has its shard's rows (replication is asynchronous: wait for it), and every
	// shard some of the decisions: this server only its shard's.
	if err := syncReplicas(t, db); err != nil {
		t.Error(err)
	}
	all := sqlOf(t, db, "SELECT count() FROM decisions")
	local := sqlOf(t, db, "SELECT count() FROM decisions_local")
	if shards := sqlOf(t, db, "SELECT uniqExact(shard_num) FROM system.clusters WHERE cluster = ?", cluster); shards == "1" {
		t.Logf("cluster %s has one shard: nothing to spread", cluster)
	} else if local == "0" || local == all {
		t.Errorf("decisions: %s on this server's shard of %s: not spread over the shards", local, all)
	}
}

// syncReplicas waits until no replica of db's tables on this server has a queue, then checks
// that each replicated table's replicas all answer (system.replicas of this server).
func syncReplicas(t *testing.T, db string) error {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		q := sqlOf(t, db, "SELECT count() FROM system.replicas WHERE database = ? AND (queue_size > 0 OR active_replicas < total_replicas)", db)
		if q == "0" {
			break
		}
		if time.Now().After(deadline) {
			return &replicaError{sqlOf(t, db, "SELECT table, queue_size, active_replicas, total_replicas FROM system.replicas WHERE database = ?", db)}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

type replicaError struct{ state string }

func (e *replicaError) Error() string {
	return "replicas not in step after a minute:\n" + strings.TrimSpace(e.state)
}

// The permission map on the cluster: a crash before the checkpoint and a replay in other
// stretches, then a rebuild into a new generation; the map is the embedded store's throughout.
func TestClusterMap(t *testing.T) {
	cluster, db := clusterDatabase(t)
	ctx := context.Background()
	recs := mapHistory(9)
	want := mapDigest(t, reference(t, recs), recs, true)
	s := openCluster(t, cluster, db)
	n := len(recs)
	if err := s.Apply(ctx, recs[:n/3]); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, recs[n/3:2*n/3]); err != nil {
		t.Fatal(err)
	}
	s.Close() // killed
	s = openCluster(t, cluster, db)
	defer s.Close()
	for _, part := range [][]event.Record{recs[n/3 : n/2], recs[n/2:]} {
		if err := s.Apply(ctx, part); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	if got := mapDigest(t, s, recs, true); got != want {
		t.Fatal("the map on the cluster after a crash and the replay differs from the embedded store's")
	}

	g, err := s.NewGeneration(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec(t, "", "DROP DATABASE IF EXISTS "+db+"_g1 ON CLUSTER "+cluster) })
	if err := g.Apply(ctx, recs); err != nil {
		t.Fatal(err)
	}
	if err := g.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	old, err := s.Promote(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	if err := s.DropGeneration(ctx, old); err != nil {
		t.Fatal(err)
	}
	if got := mapDigest(t, s, recs, true); got != want {
		t.Fatal("the map on the cluster after a rebuild differs from the embedded store's")
	}
}
