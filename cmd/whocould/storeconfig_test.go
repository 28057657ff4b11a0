package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/whocould/whocould/store/clickhouse"
)

// TestParseStoreFlag: --store takes embedded or a clickhouse:// URL into clickhouse.Config,
// and refuses anything else with a usage error that names the part and never shows the password.
func TestParseStoreFlag(t *testing.T) {
	for _, c := range []struct {
		flag string
		want clickhouse.Config // zero Addr: the embedded store
	}{
		{"embedded", clickhouse.Config{}},
		{"clickhouse://127.0.0.1:9000/whocould_demo", clickhouse.Config{Addr: "127.0.0.1:9000", Database: "whocould_demo"}},
		{"clickhouse://ch-1", clickhouse.Config{Addr: "ch-1:9000"}},
		{"clickhouse://ch-1:9440/", clickhouse.Config{Addr: "ch-1:9440"}},
		{"clickhouse://[::1]:9000/x", clickhouse.Config{Addr: "[::1]:9000", Database: "x"}},
		{"clickhouse://reader@ch:9000/db", clickhouse.Config{Addr: "ch:9000", Database: "db", Username: "reader"}},
		{"clickhouse://who:p%40ss%3Aword@ch:9000/db", clickhouse.Config{Addr: "ch:9000", Database: "db", Username: "who", Password: "p@ss:word"}},
		{"clickhouse://ch:9000/db?cluster=whocould&modern=true&compression=1&block_rows=1000&read_timeout=5m&dial_timeout=3s&max_open_conns=3",
			clickhouse.Config{Addr: "ch:9000", Database: "db", Cluster: "whocould", Modern: true, Compression: true, BlockRows: 1000,
				ReadTimeout: 5 * time.Minute, DialTimeout: 3 * time.Second, MaxOpenConns: 3}},
		{"clickhouse://ch:9000/db?modern=false", clickhouse.Config{Addr: "ch:9000", Database: "db"}},
	} {
		got, err := parseStoreFlag(c.flag)
		if err != nil {
			t.Errorf("%s: %v", c.flag, err)
			continue
		}
		if !got.flag {
			t.Errorf("%s: not marked as the flag's", c.flag)
		}
		if c.want.Addr == "" {
			if got.Backend != backendEmbedded || got.ClickHouse != nil {
				t.Errorf("%s: %+v, want the embedded store", c.flag, got)
			}
			continue
		}
		if got.Backend != backendClickHouse || got.ClickHouse == nil || *got.ClickHouse != c.want {
			t.Errorf("%s:\n got %s %+v\nwant %+v", c.flag, got.Backend, got.ClickHouse, c.want)
		}
	}
}

func TestParseStoreFlagErrors(t *testing.T) {
	for _, c := range []struct{ flag, want string }{
		{"", `--store: "": want embedded or clickhouse://`},
		{"Embedded", `want embedded or clickhouse://`},
		{"postgres://u:secret@h/db", `--store: "postgres://...": want embedded or clickhouse://`},
		{"127.0.0.1:9000", `want embedded or clickhouse://`},
		{"clickhouse:///db", "clickhouse:///db: no host"},
		{"clickhouse://h:/db", "empty port"},
		{"clickhouse://h:9000/a/b", `the path is the database, one name: "a/b"`},
		{"clickhouse://:secret@h:9000/db", "empty user name"},
		{"clickhouse://h:9000/db?frob=1", `clickhouse://h:9000/db: unknown parameter "frob" (it takes cluster, modern, compression`},
		{"clickhouse://u:secret@h:9000/db?database=x", `unknown parameter "database"`},
		{"clickhouse://h:9000/db?modern=yes", `parameter modern="yes": not a boolean (true or false)`},
		{"clickhouse://h:9000/db?compression=", `parameter compression="": not a boolean`},
		{"clickhouse://h:9000/db?block_rows=0", `parameter block_rows="0": want at least 1`},
		{"clickhouse://h:9000/db?block_rows=many", `parameter block_rows="many": not a number`},
		{"clickhouse://h:9000/db?max_open_conns=-2", `parameter max_open_conns="-2": want at least 1`},
		{"clickhouse://h:9000/db?read_timeout=5", `parameter read_timeout="5": time: missing unit`},
		{"clickhouse://h:9000/db?read_timeout=-1s", `parameter read_timeout="-1s": want a positive duration`},
		{"clickhouse://h:9000/db?dial_timeout=0s", `parameter dial_timeout="0s": want a positive duration`},
		{"clickhouse://h:9000/db?cluster=", `parameter cluster="": empty`},
		{"clickhouse://h:9000/db?modern=true&modern=false", "parameter modern given 2 times"},
		{"clickhouse://h:9000/db?a=%zz", "clickhouse://h:9000/db: query:"},
		{"clickhouse://u:sec ret@h:9000/db", "not a URL"},
		{"clickhouse://h:9000/db#frag", "want clickhouse://"},
	} {
		_, err := parseStoreFlag(c.flag)
		if err == nil {
			t.Errorf("%q: no error, want %q", c.flag, c.want)
			continue
		}
		if _, ok := err.(usageError); !ok {
			t.Errorf("%q: %T, want a usage error (exit 2)", c.flag, err)
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %q lacks %q", c.flag, err, c.want)
		}
		if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "sec ret") {
			t.Errorf("%q: error %q shows the password", c.flag, err)
		}
	}
}

// TestStoreConfig: the store section of the config file and --store, merged, defaulted and
// validated; errors name the key (or the flag).
func TestStoreConfig(t *testing.T) {
	noEnv := func(string) string { return "" }
	for _, c := range []struct {
		name, config, flag string
		env                string // WHOCOULD_CLICKHOUSE_PASSWORD
		wantErr            string
		check              func(t *testing.T, s storeConfig)
	}{
		{name: "no section: embedded", check: func(t *testing.T, s storeConfig) {
			if s.Backend != backendEmbedded || s.ClickHouse != nil || s.isClickHouse() || s.String() != "embedded" {
				t.Errorf("%+v", s)
			}
		}},
		{name: "backend alone: defaults", config: "store:\n  backend: clickhouse\n", check: func(t *testing.T, s storeConfig) {
			want := clickhouse.Config{}.WithDefaults()
			if !s.isClickHouse() || s.ClickHouse.Addr != want.Addr || s.ClickHouse.Database != want.Database ||
				s.ClickHouse.BlockRows != want.BlockRows || s.String() != "clickhouse://127.0.0.1:9000/whocould" {
				t.Errorf("%+v %+v", s, s.ClickHouse)
			}
		}},
		{name: "section implies the backend", config: "store:\n  clickhouse:\n    addr: ch:9000\n    database: wc\n    username: wc\n    read_timeout: 1m\n    compression: true\n",
			check: func(t *testing.T, s storeConfig) {
				ch := s.ClickHouse
				if s.Backend != backendClickHouse || ch.Addr != "ch:9000" || ch.Database != "wc" || ch.ReadTimeout != time.Minute ||
					!ch.Compression || ch.DialTimeout != clickhouse.DefaultDialTimeout || s.String() != "clickhouse://wc@ch:9000/wc" {
					t.Errorf("%+v %+v", s, ch)
				}
			}},
		{name: "password from the environment", config: "store:\n  backend: clickhouse\n", env: "s3cret", check: func(t *testing.T, s storeConfig) {
			if s.ClickHouse.Password != "s3cret" || strings.Contains(s.String(), "s3cret") {
				t.Errorf("password %q, name %s", s.ClickHouse.Password, s)
			}
		}},
		{name: "the config's password wins", config: "store:\n  clickhouse:\n    password: fromfile\n", env: "fromenv", check: func(t *testing.T, s storeConfig) {
			if s.ClickHouse.Password != "fromfile" {
				t.Errorf("password %q", s.ClickHouse.Password)
			}
		}},
		{name: "the URL's password wins", flag: "clickhouse://u:fromurl@h:9000/d", env: "fromenv", check: func(t *testing.T, s storeConfig) {
			if s.ClickHouse.Password != "fromurl" || s.String() != "clickhouse://u@h:9000/d" {
				t.Errorf("password %q, name %s", s.ClickHouse.Password, s)
			}
		}},
		{name: "no password from the environment for the embedded store", env: "x", check: func(t *testing.T, s storeConfig) {
			if s.ClickHouse != nil {
				t.Errorf("%+v", s)
			}
		}},
		{name: "the flag replaces the section", config: "store:\n  clickhouse:\n    addr: ch:9000\n", flag: "embedded",
			check: func(t *testing.T, s storeConfig) {
				if s.isClickHouse() || s.ClickHouse != nil {
					t.Errorf("%+v", s)
				}
			}},
		{name: "the flag replaces the section, defaults and all", config: "store:\n  clickhouse:\n    addr: ch:9000\n    block_rows: 7\n",
			flag: "clickhouse://other:9000/x?compression=true", check: func(t *testing.T, s storeConfig) {
				if s.ClickHouse.Addr != "other:9000" || s.ClickHouse.BlockRows != clickhouse.DefaultBlockRows || !s.ClickHouse.Compression {
					t.Errorf("%+v", s.ClickHouse)
				}
			}},
		{name: "api alone on ClickHouse", config: "targets: [api]\nstore:\n  backend: clickhouse\n"},
		{name: "api alone by --store", config: "targets: [api]\n", flag: "clickhouse://h:9000/db"},
		{name: "ingest alone, embedded", config: "targets: [ingest]\n"},

		{name: "api alone, embedded", config: "targets: [api]\n", wantErr: "targets: api without projector needs a store shared between processes: set store.backend: clickhouse"},
		{name: "api alone, --store embedded", config: "targets: [api]\nstore:\n  backend: clickhouse\n", flag: "embedded", wantErr: "api without projector"},
		{name: "unknown backend", config: "store:\n  backend: postgres\n", wantErr: `store.backend: unknown backend "postgres" (want embedded or clickhouse)`},
		{name: "section with the embedded backend", config: "store:\n  backend: embedded\n  clickhouse:\n    addr: ch:9000\n",
			wantErr: "store.clickhouse: set, but store.backend is embedded"},
		{name: "bad addr", config: "store:\n  clickhouse:\n    addr: nowhere\n", wantErr: `store.clickhouse.addr: "nowhere" is not host:port`},
		{name: "bad port", config: "store:\n  clickhouse:\n    addr: ch:99999\n", wantErr: `store.clickhouse.addr: "ch:99999": port "99999" is not a port number`},
		{name: "bad database", config: "store:\n  clickhouse:\n    database: who-could\n", wantErr: `store.clickhouse.database: "who-could" is not a name`},
		{name: "two bad keys", config: "store:\n  clickhouse:\n    database: 1x\n    block_rows: -1\n",
			wantErr: "store.clickhouse.database: \"1x\" is not a name of letters, digits and _ (not starting with a digit)\nstore.clickhouse.block_rows: -1: want at least 1"},
		{name: "bad timeout", config: "store:\n  clickhouse:\n    read_timeout: -5s\n", wantErr: "store.clickhouse.read_timeout: -5s is not a positive duration"},
		{name: "retention without modern", config: "store:\n  clickhouse:\n    retention:\n      decisions: 24h\n",
			wantErr: "store.clickhouse.retention.decisions: retention is a TTL, which needs modern: true"},
		{name: "bad cluster", config: "store:\n  clickhouse:\n    cluster: a-b\n", wantErr: `store.clickhouse.cluster: "a-b" is not a name`},
		{name: "bad database by --store", flag: "clickhouse://u:secret@ch:9000/who-could",
			wantErr: `--store clickhouse://u@ch:9000/who-could: database: "who-could" is not a name`},
		{name: "bad flag", flag: "clickhouse://ch:9000/db?frob=1", wantErr: `--store: clickhouse://ch:9000/db: unknown parameter "frob"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := ""
			if c.config != "" {
				path = filepath.Join(t.TempDir(), "c.yaml")
				writeFile(t, filepath.Dir(path), "c.yaml", []byte(c.config))
			}
			cfg, err := loadServeConfig(path)
			if err != nil {
				t.Fatal(err)
			}
			env := noEnv
			if c.env != "" {
				env = func(k string) string {
					if k == envClickHousePassword {
						return c.env
					}
					return ""
				}
			}
			err = cfg.setStore(c.flag, c.flag != "", env)
			if err == nil {
				err = cfg.Validate()
			}
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want %q", err, c.wantErr)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Fatalf("error %q shows the password", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.check != nil {
				c.check(t, cfg.Store)
			}
		})
	}
}

// TestStoreConfigUnknownKey: the store section is as strict as the rest: an unknown key is
// refused with its line.
func TestStoreConfigUnknownKey(t *testing.T) {
	path := writeFile(t, t.TempDir(), "c.yaml", []byte("store:\n  clickhouse:\n    adr: ch:9000\n"))
	_, err := loadServeConfig(path)
	if err == nil || !strings.Contains(err.Error(), "line 3: field adr not found") {
		t.Fatalf("error %v", err)
	}
}

// TestStoreFlagUsage: a bad --store or store section exits 2 with its message, before anything
// starts (no data directory is made); --target api alone needs ClickHouse.
func TestStoreFlagUsage(t *testing.T) {
	tmp := t.TempDir()
	cfg := writeFile(t, tmp, "c.yaml", []byte("store:\n  clickhouse:\n    database: who-could\n"))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--store", "clickhouse://127.0.0.1:9000/db?frob=1"}, `--store: clickhouse://127.0.0.1:9000/db: unknown parameter "frob"`},
		{[]string{"serve", "--store", "mysql://127.0.0.1/db"}, "want embedded or clickhouse://"},
		{[]string{"serve", "--config", cfg}, `store.clickhouse.database: "who-could" is not a name`},
		{[]string{"serve", "--target", "api"}, "api without projector needs a store shared between processes"},
		{[]string{"serve", "--target", "api", "--config", cfg, "--store", "embedded"}, "api without projector"},
		{[]string{"demo", "--serve=false", "--store", "clickhouse://127.0.0.1:9000/db?modern=maybe"}, `parameter modern="maybe": not a boolean`},
		{[]string{"demo", "--serve=false", "--store", "clickhouse://127.0.0.1:9000/who-could"}, `--store clickhouse://127.0.0.1:9000/who-could: database:`},
		{[]string{"demo", "--serve=false", "--store", "clickhouse://127.0.0.1:9000/db?cluster=c"}, "the demo replaces its database, on one server: drop cluster=c"},
	} {
		data := filepath.Join(tmp, "data")
		r := runIn(t, data, nil, c.args...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: want exit 2 with %q, got %s", c.args, c.want, r)
		}
		if _, err := filepath.Glob(filepath.Join(data, "*")); err != nil {
			t.Fatal(err)
		}
		if m, _ := filepath.Glob(filepath.Join(data, "*")); len(m) > 0 {
			t.Errorf("%v: made %v", c.args, m)
		}
	}
}

// TestDeployStoreSection: the commented clickhouse section of deploy/whocould.yaml, uncommented,
// is a valid store section that spells out exactly the defaults.
func TestDeployStoreSection(t *testing.T) {
	b, err := os.ReadFile("../../deploy/whocould.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var section []string
	in := false
	for _, l := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(l, "  # clickhouse:"):
			in = true
		case in && !strings.HasPrefix(l, "  #   "):
			in = false
		}
		if in && !strings.HasPrefix(l, "  #   #") {
			section = append(section, "  "+strings.TrimPrefix(l, "  # "))
		}
	}
	if len(section) < 10 {
		t.Fatalf("deploy/whocould.yaml: the commented clickhouse section has %d lines", len(section))
	}
	path := writeFile(t, t.TempDir(), "c.yaml", []byte("store:\n"+strings.Join(section, "\n")+"\n"))
	cfg, err := loadServeConfig(path)
	if err != nil {
		t.Fatalf("%v\n%s", err, strings.Join(section, "\n"))
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	got, want := *cfg.Store.ClickHouse, clickhouse.Config{}.WithDefaults()
	got.Logger, want.Logger = nil, nil
	if !cfg.Store.isClickHouse() || got != want {
		t.Fatalf("deploy/whocould.yaml's clickhouse section:\n got %+v\nwant the defaults %+v", got, want)
	}
}
