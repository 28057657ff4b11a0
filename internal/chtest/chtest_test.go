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
		if n := count(t, addr, name); n != 1 {
			t.Fatalf("database %s: %d, want it created", name, n)
		}
	})
	if n := count(t, addr, name); n != 0 {
		t.Fatalf("database %s still exists after its test", name)
	}
}

func count(t *testing.T, addr, name string) uint64 {
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n uint64
	if err := conn.QueryRow(context.Background(), "SELECT count() FROM system.databases WHERE name = ?", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if n, err := answer(ctx, addr, "SELECT count() FROM system.tables WHERE database = '"+name+"'"); err != nil || n != 0 {
		t.Fatalf("made afresh for another tag: %d tables (%v), want none", n, err)
	}
}
