package chtest

import (
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
)

func TestDBName(t *testing.T) {
	ident := regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)
	a, b := dbName("TestX/sub test#1"), dbName("TestX/sub test#1")
	if !ident.MatchString(a) || a == b {
		t.Fatalf("names %q, %q: want distinct identifiers", a, b)
	}
	if long := dbName(string(make([]byte, 500))); len(long) > 60 {
		t.Fatalf("name %q is too long", long)
	}
}

func TestDatabaseIsFreshAndDropped(t *testing.T) {
	addr := Addr(t)
	var name string
	t.Run("inner", func(t *testing.T) {
		name = Database(t)
		if n := databases(t, addr, name); n != 1 {
			t.Fatalf("database %s: %d, want it created", name, n)
		}
	})
	if n := databases(t, addr, name); n != 0 {
		t.Fatalf("database %s still exists after its test", name)
	}
}

// answer is the number query (with args) answers on the server at addr.
func answer(t *testing.T, addr, query string, args ...any) uint64 {
	t.Helper()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n uint64
	if err := conn.QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// databases is how many databases are called name (0 or 1).
func databases(t *testing.T, addr, name string) uint64 {
	return answer(t, addr, "SELECT count() FROM system.databases WHERE name = ?", name)
}

// tables is how many tables database name has.
func tables(t *testing.T, addr, name string) uint64 {
	return answer(t, addr, "SELECT count() FROM system.tables WHERE database = ?", name)
}

// Without a server, Addr skips, except under CI=true, where it fails: run in a child process
// with the environment set each way.
func TestAddrWithoutAServer(t *testing.T) {
	if os.Getenv("CHTEST_CHILD") == "1" {
		Addr(t)
		t.Log("Addr returned")
		return
	}
	for _, c := range []struct{ ci, want string }{{"true", "--- FAIL"}, {"", "--- SKIP"}} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestAddrWithoutAServer$", "-test.v")
		cmd.Env = append(os.Environ(), "CHTEST_CHILD=1", Env+"=", "CI="+c.ci)
		out, _ := cmd.CombinedOutput()
		if !strings.Contains(string(out), c.want) || !strings.Contains(string(out), Missing) {
			t.Errorf("CI=%q: want %s with %q, got:\n%s", c.ci, c.want, Missing, out)
		}
	}
}

// TestLoaded: a kept database is made once, reused under its tag, and made afresh for another.
func TestLoaded(t *testing.T) {
	addr := Addr(t)
	name := dbName("kept")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = run(ctx, addr, "DROP DATABASE IF EXISTS "+name)
	})
	if Loaded(t, name, "scale 0.1") {
		t.Fatal("a database never made: loaded")
	}
	if Loaded(t, name, "scale 0.1") {
		t.Fatal("a database made but never marked: loaded")
	}
	Exec(t, "CREATE TABLE "+name+".data (x UInt8) ENGINE = TinyLog")
	MarkLoaded(t, name, "scale 0.1")
	if !Loaded(t, name, "scale 0.1") {
		t.Fatal("marked with its tag: not loaded")
	}
	if Loaded(t, name, "scale 1") {
		t.Fatal("marked with another tag: loaded")
	}
	if n := tables(t, addr, name); n != 0 {
		t.Fatalf("made afresh for another tag: %d tables, want none", n)
	}
	// A database that is not the benchmark's is refused, and kept.
	Exec(t, "CREATE TABLE "+name+".precious (x UInt8) ENGINE = TinyLog")
	if _, err := loaded(addr, name, "scale 1"); err == nil || !strings.Contains(err.Error(), "not dropping it") {
		t.Fatalf("a database with tables and no mark: %v, want it refused", err)
	}
	if n := tables(t, addr, name); n != 1 {
		t.Fatalf("a refused database has %d tables, want its one", n)
	}
}
