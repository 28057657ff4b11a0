// Package chtest points tests at a ClickHouse server: the one scripts/test starts, or any other
// named by WHOCOULD_CLICKHOUSE=host:port. Each test gets its own database, dropped when it ends.
//
// Without a server the tests skip, except under CI=true, where they fail: a CI run must never
// read green because the ClickHouse tests did not run.
package chtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// Env names the variable that holds the server's native-protocol address, host:port.
const Env = "WHOCOULD_CLICKHOUSE"

// Missing is what a test says when there is no server.
const Missing = "ClickHouse tests need a server: run ./scripts/test, or set " + Env

// Addr is the server's address. Without one the test fails under CI=true and skips otherwise.
func Addr(t testing.TB) string {
	t.Helper()
	addr := os.Getenv(Env)
	if addr == "" {
		unavailable(t, Missing)
	}
	return addr
}

// unavailable ends a test that cannot run for want of why: it fails under CI=true, where a run
// must never read green because the test did not run, and skips otherwise.
func unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

// Database creates a fresh database for the test on the server of Addr and returns its name;
// it is dropped when the test and its subtests end.
func Database(t testing.TB) string {
	t.Helper()
	addr := Addr(t)
	name := dbName(t.Name())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := run(ctx, addr, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database %s on %s: %v", name, addr, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := run(ctx, addr, "DROP DATABASE IF EXISTS "+name); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	return name
}

// dbName is a database name for a test: its name made an identifier, and a random suffix so
// that reruns and parallel tests never meet.
func dbName(test string) string {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	return "t_" + ident(test, 38) + "_" + hex.EncodeToString(rnd[:])
}

// ident is s lower-cased, with every character but a-z and 0-9 made '_', at most n long.
func ident(s string, n int) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if b.Len() >= n {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func run(ctx context.Context, addr, stmt string) error {
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, DialTimeout: 10 * time.Second, MaxOpenConns: 1})
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("%s: %w", stmt, err)
	}
	return nil
}

// Loaded reports whether database name holds what MarkLoaded marked with tag (say, the data's
// scale), for a benchmark that keeps its data between runs. When it does not, the database is
// made afresh (and not dropped when the test ends) — unless it holds tables without such a
// mark: a database that is not the benchmark's is never dropped.
func Loaded(t testing.TB, name, tag string) bool {
	t.Helper()
	ok, err := loaded(Addr(t), name, tag)
	if err != nil {
		t.Fatalf("kept database %s: %v", name, err)
	}
	return ok
}

func loaded(addr, name, tag string) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, DialTimeout: 10 * time.Second, MaxOpenConns: 1})
	if err != nil {
		return false, err
	}
	defer conn.Close()
	var tables, marks, mine uint64
	if err := conn.QueryRow(ctx, `SELECT count(), countIf(substring(name, 1, 7) = 'loaded_'), countIf(name = ?)
FROM system.tables WHERE database = ?`, markerTable(tag), name).Scan(&tables, &marks, &mine); err != nil {
		return false, err
	}
	switch {
	case mine == 1:
		return true, nil
	case tables > 0 && marks == 0:
		return false, fmt.Errorf("it has tables but no benchmark's mark: not dropping it; name another")
	}
	for _, stmt := range []string{"DROP DATABASE IF EXISTS " + name, "CREATE DATABASE " + name} {
		if err := conn.Exec(ctx, stmt); err != nil {
			return false, err
		}
	}
	return false, nil
}

// MarkLoaded marks database name as loaded, with tag, for Loaded.
func MarkLoaded(t testing.TB, name, tag string) {
	t.Helper()
	Exec(t, "CREATE TABLE "+name+"."+markerTable(tag)+" (x UInt8) ENGINE = TinyLog")
}

// markerTable is the name of the table that marks a database loaded with tag.
func markerTable(tag string) string { return "loaded_" + ident(tag, 40) }

// Exec runs stmt on the server of Addr.
func Exec(t testing.TB, stmt string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := run(ctx, Addr(t), stmt); err != nil {
		t.Fatal(err)
	}
}
