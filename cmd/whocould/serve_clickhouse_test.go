package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	chgo "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/internal/chtest"
	"github.com/whocould/whocould/store/clickhouse"
)

// End-to-end tests of serve and the demo on ClickHouse (the server of internal/chtest: they
// skip without one, and fail under CI=true). Each test has a database of its own.

// waitMetric waits (30 s at most) until the metric name reaches at least want.
func waitMetric(t testing.TB, p *serveProc, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var v float64
	for time.Now().Before(deadline) {
		if v = metricValue(t, p, name); v >= want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s is %v, want at least %v\n%s", name, v, want, p.log())
}

// chCount counts rows of a query on the test's server.
func chCount(t testing.TB, addr, query string, args ...any) uint64 {
	t.Helper()
	conn, err := chgo.Open(&chgo.Options{Addr: []string{addr}, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n uint64
	if err := conn.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func chExec(t testing.TB, addr, stmt string) {
	t.Helper()
	conn, err := chgo.Open(&chgo.Options{Addr: []string{addr}, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.Exec(context.Background(), stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// TestServeClickHouse: serve --store clickhouse://ADDR/DB projects into ClickHouse (no embedded
// store in the data directory), is ready, resumes from ClickHouse's checkpoint after a restart,
// and answers who-could from ClickHouse (the permission map).
func TestServeClickHouse(t *testing.T) {
	addr, db := chtest.Addr(t), chtest.Database(t)
	dir := t.TempDir()
	storeURL := "clickhouse://" + addr + "/" + db
	p := startServeWith(t, dir, serveTestConfig, "--store", storeURL)
	if !strings.Contains(p.log(), `"store":"`+storeURL+`"`) {
		t.Errorf("serve does not say which store it runs on:\n%s", p.log())
	}
	if code, _ := p.get(t, "/readyz"); code != 200 {
		t.Fatalf("readyz = %d\n%s", code, p.log())
	}
	at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	grant := func(id, who string) []byte {
		return marshal(t, ev(id, event.GrantAdded, at, event.Data{Subject: who, Action: "db.table.drop", Resource: "db:prod/orders"}))
	}
	body := append(append(grant("c1", "user:ann"), '\n'), grant("c2", "user:bob")...)
	res := p.post(t, body)
	if res["accepted"] != 2.0 {
		t.Fatalf("POST: %v", res)
	}
	pos := res["position"].(float64)
	waitMetric(t, p, "whocould_projection_position", pos)
	if n := chCount(t, addr, "SELECT count() FROM "+db+".events WHERE id IN ('c1', 'c2')"); n != 2 {
		t.Fatalf("ClickHouse holds %d of the 2 events", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "store")); !os.IsNotExist(err) {
		t.Fatalf("serve on ClickHouse made an embedded store: %v", err)
	}
	p.stop(t)

	// Again on the same data directory and database: the projector resumes where it stopped.
	p = startServeWith(t, dir, serveTestConfig, "--store", storeURL)
	if v := metricValue(t, p, "whocould_projection_position"); v < pos {
		t.Fatalf("after a restart the projection is at %v, want %v", v, pos)
	}
	res = p.post(t, grant("c3", "user:cy"))
	pos = res["position"].(float64)
	waitMetric(t, p, "whocould_projection_position", pos)
	if n := chCount(t, addr, "SELECT count() FROM "+db+".events WHERE id IN ('c1', 'c2', 'c3')"); n != 3 {
		t.Fatalf("ClickHouse holds %d of the 3 events (one written twice, or lost)", n)
	}

	// The answer, from ClickHouse.
	code, ans := p.get(t, fmt.Sprintf("/v1/who-could?action=db.table.drop&resource=db:prod/orders&at=2026-01-06T02:14:00Z&min_position=%d", uint64(pos)))
	if got := principalsOf(ans); code != 200 || strings.Join(got, ",") != "user:ann,user:bob,user:cy" {
		t.Fatalf("who-could from ClickHouse = %d %v, want user:ann,user:bob,user:cy", code, ans)
	}
	p.stop(t)
}

// TestServeClickHouseStoreAheadOfLog: a database that has applied more of a log than the data
// directory's log holds (the data directory made afresh) is refused, instead of the projector
// skipping the new log's first events.
func TestServeClickHouseStoreAheadOfLog(t *testing.T) {
	addr, db := chtest.Addr(t), chtest.Database(t)
	storeURL := "clickhouse://" + addr + "/" + db
	p := startServeWith(t, t.TempDir(), serveTestConfig, "--store", storeURL)
	at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	res := p.post(t, marshal(t, ev("a1", event.GrantAdded, at, event.Data{Subject: "user:ann", Action: "db.table.drop", Resource: "db:prod/orders"})))
	waitMetric(t, p, "whocould_projection_position", res["position"].(float64))
	p.stop(t)

	cfg := writeFile(t, t.TempDir(), "c.yaml", []byte(serveTestConfig))
	r := runIn(t, t.TempDir(), nil, "serve", "--config", cfg, "--store", storeURL)
	if r.code != 1 || !strings.Contains(r.stderr, "the database was made from another log") {
		t.Fatalf("serve on a fresh data directory and a used database: %s", r)
	}
}

// TestServeClickHouseTargets: one process ingests and projects into ClickHouse, another (the
// api target alone, on the first one's NATS server) answers from the same database: its
// position follows the projector's checkpoints (min_position works across processes), events
// posted to it go to the shared log, and it has no store of its own.
func TestServeClickHouseTargets(t *testing.T) {
	addr, db := chtest.Addr(t), chtest.Database(t)
	tmp := t.TempDir()
	// The projector's process takes the store from its config file, the api's from --store.
	writer := startServe(t, filepath.Join(tmp, "writer"), fmt.Sprintf(
		"targets: [ingest, projector]\nnats:\n  listen: 127.0.0.1:0\napi:\n  listen: 127.0.0.1:0\nstore:\n  clickhouse:\n    addr: %s\n    database: %s\n", addr, db))
	reader := startServeWith(t, filepath.Join(tmp, "reader"), fmt.Sprintf("nats:\n  url: %s\napi:\n  listen: 127.0.0.1:0\n", writer.nats),
		"--target", "api", "--store", "clickhouse://"+addr+"/"+db)
	for _, d := range []string{"writer", "reader"} {
		if _, err := os.Stat(filepath.Join(tmp, d, "store")); !os.IsNotExist(err) {
			t.Fatalf("the %s process made an embedded store: %v", d, err)
		}
	}
	if code, _ := reader.get(t, "/readyz"); code != 200 {
		t.Fatalf("readyz on the api process = %d\n%s", code, reader.log())
	}
	at := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	grant := func(id, who string) []byte {
		return marshal(t, ev(id, event.GrantAdded, at, event.Data{Subject: who, Action: "db.table.drop", Resource: "db:prod/orders"}))
	}
	who := "/v1/who-could?action=db.table.drop&resource=db:prod/orders&at=2026-01-06T00:00:00Z"
	if code, _ := writer.get(t, who); code != 404 {
		t.Fatalf("who-could on the process without the api target = %d, want 404", code)
	}
	res := writer.post(t, grant("s1", "user:ann"))
	// The api process learns the projector's position from its checkpoints.
	waitMetric(t, reader, "whocould_projection_position", res["position"].(float64))
	// Events posted to the api process go to the shared log, and the projector takes them.
	res = reader.post(t, grant("s2", "user:bob"))
	pos := uint64(res["position"].(float64))
	waitMetric(t, writer, "whocould_projection_position", float64(pos))
	if n := chCount(t, addr, "SELECT count() FROM "+db+".events WHERE id IN ('s1', 's2')"); n != 2 {
		t.Fatalf("ClickHouse holds %d of the 2 events", n)
	}

	// What the projector wrote, answered by the other process (waiting for it with min_position).
	code, ans := reader.get(t, fmt.Sprintf("%s&min_position=%d", who, pos))
	if got := principalsOf(ans); code != 200 || strings.Join(got, ",") != "user:ann,user:bob" {
		t.Fatalf("who-could on the api process = %d %v, want user:ann,user:bob\n%s", code, ans, reader.log())
	}
	reader.stop(t)
	writer.stop(t)
}

// demoAnswersOf is the demo's questions and answers: its output from the first question up to
// the suggestions.
func demoAnswersOf(t *testing.T, out string) string {
	t.Helper()
	i := strings.Index(out, "\n1. ")
	j := strings.Index(out, "Ask your own questions")
	if i < 0 || j < i {
		t.Fatalf("no answers in the demo's output:\n%s", clip(out))
	}
	return out[i+1 : j]
}

// TestDemoClickHouse: the demo with --store clickhouse://... publishes, projects into ClickHouse
// and prints the same answers as on the embedded store; run again, it replaces its own
// database and answers the same.
func TestDemoClickHouse(t *testing.T) {
	addr, db := chtest.Addr(t), chtest.Database(t)
	tmp := t.TempDir()
	embedded := mustRun(t, 0, filepath.Join(tmp, "embedded"), nil, "demo", "--serve=false")
	storeURL := "clickhouse://" + addr + "/" + db
	dir := filepath.Join(tmp, "clickhouse")
	r := runIn(t, dir, nil, "demo", "--serve=false", "--store", storeURL)
	if r.code != 0 {
		t.Fatalf("demo on ClickHouse: %s", r)
	}
	if want := "Published over NATS into " + dir + " (the log) and " + storeURL + " (the store): "; !strings.Contains(r.stdout, want) {
		t.Errorf("demo output lacks %q:\n%s", want, clip(r.stdout))
	}
	if _, err := os.Stat(filepath.Join(dir, "store")); !os.IsNotExist(err) {
		t.Errorf("the demo on ClickHouse made an embedded store: %v", err)
	}
	if got, want := demoAnswersOf(t, r.stdout), demoAnswersOf(t, embedded.stdout); got != want {
		t.Errorf("the demo answers differently on ClickHouse than on the embedded store:\n%s", lineDiff(got, want))
	}
	events := chCount(t, addr, "SELECT count() FROM "+db+".events")

	// Again: the demo replaces the database it made (the log starts afresh), same answers.
	r2 := runIn(t, dir, nil, "demo", "--serve=false", "--store", storeURL)
	if r2.code != 0 {
		t.Fatalf("second demo on ClickHouse: %s", r2)
	}
	if demoAnswersOf(t, r2.stdout) != demoAnswersOf(t, r.stdout) {
		t.Errorf("the second demo on ClickHouse answers differently")
	}
	if n := chCount(t, addr, "SELECT count() FROM "+db+".events"); n != events {
		t.Errorf("after the second demo ClickHouse holds %d events, after the first %d", n, events)
	}
}

// TestDemoClickHouseForeignDatabase: the demo refuses a database holding tables it did not
// make (exit 2, the database and the data directory untouched), and takes an empty one.
func TestDemoClickHouseForeignDatabase(t *testing.T) {
	addr, db := chtest.Addr(t), chtest.Database(t)
	chExec(t, addr, "CREATE TABLE "+db+".precious (x UInt8) ENGINE = TinyLog")
	chExec(t, addr, "INSERT INTO "+db+".precious SELECT 7")
	dir := filepath.Join(t.TempDir(), "demo")
	r := runIn(t, dir, nil, "demo", "--serve=false", "--store", "clickhouse://"+addr+"/"+db)
	if r.code != 2 || !strings.Contains(r.stderr, "already holds tables the demo did not make") {
		t.Fatalf("demo into a foreign database: want exit 2, got %s", r)
	}
	if n := chCount(t, addr, "SELECT count() FROM system.tables WHERE database = ?", db); n != 1 {
		t.Errorf("the foreign database has %d tables now, want its 1", n)
	}
	if n := chCount(t, addr, "SELECT count() FROM "+db+".precious"); n != 1 {
		t.Errorf("the foreign table has %d rows now", n)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the demo made its data directory before refusing the database: %v", err)
	}
}

// lineDiff lists the lines where got and want differ, by line number (a line-by-line
// comparison: enough for outputs of the same shape).
func lineDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	var b strings.Builder
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			fmt.Fprintf(&b, "line %d:\n  got  %s\n  want %s\n", i+1, gl, wl)
		}
	}
	return b.String()
}

// TestRebuildClickHouse: rebuild replays the demo's log into a new database beside the live
// one, swaps it in and drops the old; the store answers as before.
func TestRebuildClickHouse(t *testing.T) {
	addr, db := chtest.Addr(t), chtest.Database(t)
	dir := filepath.Join(t.TempDir(), "demo")
	storeURL := "clickhouse://" + addr + "/" + db
	if r := runIn(t, dir, nil, "demo", "--serve=false", "--store", storeURL); r.code != 0 {
		t.Fatalf("demo on ClickHouse: %s", r)
	}
	ctx := context.Background()
	answers := func() string {
		st, err := clickhouse.Open(ctx, clickhouse.Config{Addr: addr, Database: db})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		var b strings.Builder
		for _, p := range []string{"user:lena.baker", "user:omar.haddad", "user:ivy.chen"} {
			h, err := st.History(ctx, access.Query{Principal: p, From: time.Unix(0, 0), To: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)})
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s: %d intervals %v\n", p, len(h.Intervals), h.Intervals)
		}
		return b.String()
	}
	before := answers()
	events := chCount(t, addr, "SELECT count() FROM "+db+".events")
	r := runIn(t, dir, nil, "rebuild", "--store", storeURL, "--grace", "0s")
	if r.code != 0 {
		t.Fatalf("rebuild: %s", r)
	}
	for _, want := range []string{"into " + db + "_g1 ", "it replaces " + db, "dropped the old store " + db} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("rebuild output lacks %q:\n%s", want, r.stdout)
		}
	}
	t.Cleanup(func() { chExec(t, addr, "DROP DATABASE IF EXISTS "+db+"_g1") })
	if n := chCount(t, addr, "SELECT count() FROM "+db+"_g1.events"); n != events {
		t.Errorf("the rebuilt store holds %d events, the old one %d", n, events)
	}
	if n := chCount(t, addr, "SELECT count() FROM system.tables WHERE database = ? AND name = 'events'", db); n != 0 {
		t.Errorf("the old store's tables are still there")
	}
	if after := answers(); after != before || !strings.Contains(before, "intervals [{") {
		t.Errorf("answers after the rebuild:\n%s\nbefore:\n%s", after, before)
	}
	// The demo run again replaces its database and the rebuild's.
	if r := runIn(t, dir, nil, "demo", "--serve=false", "--store", storeURL); r.code != 0 {
		t.Fatalf("demo again on ClickHouse: %s", r)
	}
	if n := chCount(t, addr, "SELECT count() FROM system.databases WHERE name = ?", db+"_g1"); n != 0 {
		t.Errorf("the demo left the rebuild's database %s_g1", db)
	}
	if after := answers(); after != before {
		t.Errorf("answers after the demo again:\n%s\nbefore:\n%s", after, before)
	}
}
