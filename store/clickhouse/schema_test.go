package clickhouse

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/whocould/whocould/internal/chtest"
)

// Golden files: go test ./store/clickhouse -run 'Golden' -update (or UPDATE_GOLDEN=1) rewrites
// them from the migrations.
var update = flag.Bool("update", false, "rewrite the golden schema files (testdata/schema, deploy/clickhouse/schema)")

func updating() bool { return *update || os.Getenv("UPDATE_GOLDEN") == "1" }

// golden compares got with the file, or writes it when updating.
func golden(t *testing.T, file, got string) {
	t.Helper()
	if updating() {
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (go test ./store/clickhouse -run Golden -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("%s is not what the migrations render (go test ./store/clickhouse -run Golden -update rewrites it); got:\n%s", file, got)
	}
}

// The checksums of the migrations as files, before they were templates: a database made then
// must open unchanged, so the default rendering is byte for byte those files.
var checksumsBeforeTemplates = map[string]string{
	"0001_events.sql":     "5216058695de096ed712494076fad7270098624a6eecd982e313217bbf27c50f",
	"0002_decisions.sql":  "648ba82536512a2ab36641065894b9a400e627895cc020dd8f264e0b8c6fd96e",
	"0003_approvals.sql":  "11303acd87686264ac7a8f79cec7ab96d25694679ef56f93598f5b8a88a76f59",
	"0004_checkpoint.sql": "b1604f251ae603497371668d2a99d3aa8b1d6dc37c41043db3241c3bd244b414",
}

func TestDefaultRenderingUnchanged(t *testing.T) {
	ms, err := loadMigrations(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if want, ok := checksumsBeforeTemplates[m.fileName]; ok && m.sum != want {
			t.Errorf("%s renders by default with checksum %s, was %s: databases made before would no longer open:\n%s",
				m.fileName, m.sum, want, m.text)
		}
	}
	// Through Config: its defaults are the same schema.
	o := Config{}.WithDefaults().schema()
	if o.Cluster != "" || o.Modern || o.Retention != (Retention{}) {
		t.Fatalf("default schema options: %+v", o)
	}
}

// The variants of the schema, rendered whole.
var variants = []struct {
	file string
	cfg  Config
}{
	{"single.sql", Config{}},
	{"modern.sql", Config{Modern: true, Retention: Retention{Decisions: 400 * 24 * time.Hour}}},
	{"cluster.sql", Config{Cluster: "whocould"}},
	{"cluster_modern.sql", Config{Cluster: "whocould", Modern: true,
		Retention: Retention{Decisions: 2557 * 24 * time.Hour}}},
}

func TestSchemaGolden(t *testing.T) {
	for _, v := range variants {
		got, err := SchemaSQL(v.cfg)
		if err != nil {
			t.Fatalf("%s: %v", v.file, err)
		}
		golden(t, filepath.Join("testdata", "schema", v.file), got)
	}
}

// loadStoreYAML reads deploy/clickhouse/store.yaml as the store's config, refusing unknown
// keys.
func loadStoreYAML(t *testing.T) Config {
	t.Helper()
	b, err := os.ReadFile("../../deploy/clickhouse/store.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("deploy/clickhouse/store.yaml: %v", err)
	}
	if err := cfg.WithDefaults().Validate(); err != nil {
		t.Fatalf("deploy/clickhouse/store.yaml: %v", err)
	}
	return cfg
}

// TestClusterSchemaGolden: deploy/clickhouse/schema holds the migrations table and each
// migration rendered for the sample configuration, deploy/clickhouse/store.yaml; -update
// rewrites them.
func TestClusterSchemaGolden(t *testing.T) {
	cfg := loadStoreYAML(t)
	if cfg.Cluster == "" || !cfg.Modern || cfg.Retention.Decisions == 0 {
		t.Fatalf("deploy/clickhouse/store.yaml is not the cluster, modern, with retention: %+v", cfg)
	}
	files, err := schemaFiles(cfg.WithDefaults().schema())
	if err != nil {
		t.Fatal(err)
	}
	dir := "../../deploy/clickhouse/schema"
	var names []string
	for _, f := range files {
		golden(t, filepath.Join(dir, f.name), f.text)
		names = append(names, f.name)
	}
	// No file left over from a migration that is gone.
	onDisk, _ := filepath.Glob(filepath.Join(dir, "*.sql"))
	for _, f := range onDisk {
		if !slices.Contains(names, filepath.Base(f)) {
			if updating() {
				os.Remove(f)
			} else {
				t.Errorf("%s is no migration's rendering", f)
			}
		}
	}
}

// The shape of each rendering, statement by statement.
func TestSchemaShape(t *testing.T) {
	createdName := regexp.MustCompile(`^CREATE (?:TABLE|MATERIALIZED VIEW|DATABASE) IF NOT EXISTS (\S+)`)
	for _, v := range variants {
		cfg := v.cfg.WithDefaults()
		o := cfg.schema()
		ms, err := loadMigrationsFor(migrationFiles, "migrations", o)
		if err != nil {
			t.Fatal(err)
		}
		mt, err := o.render("schema_migrations", createMigrationsTable)
		if err != nil {
			t.Fatal(err)
		}
		stmts := splitStatements(mt)
		for _, m := range ms {
			if strings.Contains(m.text, "{{") || strings.Contains(m.text, "}}") {
				t.Errorf("%s %s: a template action left in the rendering", v.file, m.fileName)
			}
			stmts = append(stmts, m.stmts...)
		}
		created := map[string]string{} // name → statement
		for _, st := range stmts {
			m := createdName.FindStringSubmatch(st)
			if m == nil {
				t.Errorf("%s: not a CREATE ... IF NOT EXISTS:\n%s", v.file, st)
				continue
			}
			created[m[1]] = st
			if got := strings.Contains(st, " ON CLUSTER "+cfg.Cluster); got != (cfg.Cluster != "") {
				t.Errorf("%s: ON CLUSTER %v in\n%s", v.file, got, st)
			}
			up := strings.ToUpper(st)
			for _, modern := range []string{"LOWCARDINALITY", "CODEC(", "\nTTL ", "TTL_ONLY_DROP_PARTS"} {
				if strings.Contains(up, modern) && !cfg.Modern {
					t.Errorf("%s: %s without modern:\n%s", v.file, modern, st)
				}
			}
			if replicated := strings.Contains(st, "ReplicatedMergeTree(") || strings.Contains(st, "ReplicatedReplacingMergeTree(") ||
				strings.Contains(st, "ReplicatedAggregatingMergeTree("); strings.Contains(st, "MergeTree") && replicated != (cfg.Cluster != "") {
				t.Errorf("%s: replicated engine %v in\n%s", v.file, replicated, st)
			}
		}
		if cfg.Modern {
			for _, want := range []string{"LowCardinality(String)", "CODEC(Delta, ZSTD)", "String CODEC(ZSTD)"} {
				if !strings.Contains(strings.Join(stmts, "\n"), want) {
					t.Errorf("%s: modern without %s", v.file, want)
				}
			}
			if d := cfg.Retention.Decisions; d > 0 {
				want := fmt.Sprintf("TTL date + INTERVAL %d DAY", d/(24*time.Hour))
				if !strings.Contains(created[qualified(cfg, "decisions", true)], want) {
					t.Errorf("%s: decisions without %s", v.file, want)
				}
			}
			if strings.Contains(created[qualified(cfg, "events", true)], "TTL") {
				t.Errorf("%s: the archive has a TTL: the permission map is rebuilt from it", v.file)
			}
		}
		// Every table the store reads and writes exists under its plain name: on a cluster a
		// Distributed table over the local one, or a table every server holds in full.
		for _, table := range []string{"events", "decisions", "approvals", "usage", "tenants"} {
			st, ok := created[qualified(cfg, table, false)]
			if !ok {
				t.Errorf("%s: no table %s", v.file, table)
				continue
			}
			if cfg.Cluster == "" {
				continue
			}
			if !strings.Contains(st, "ENGINE = Distributed("+cfg.Cluster+", "+cfg.Database+", "+table+"_local") {
				t.Errorf("%s: %s is not Distributed over %s_local:\n%s", v.file, table, table, st)
			}
			local := created[qualified(cfg, table, true)]
			if !strings.Contains(local, "('/clickhouse/tables/{shard}/"+cfg.Database+"/"+table+"_local', '{replica}'") {
				t.Errorf("%s: %s_local is not replicated within its shard:\n%s", v.file, table, local)
			}
		}
		for _, table := range []string{"projector_checkpoint", "schema_migrations", "findings"} {
			st, ok := created[qualified(cfg, table, false)]
			if !ok {
				t.Errorf("%s: no table %s", v.file, table)
			} else if cfg.Cluster != "" && !strings.Contains(st, "('/clickhouse/tables/all/"+cfg.Database+"/"+table+"', '{replica}'") {
				t.Errorf("%s: %s is not replicated to every server:\n%s", v.file, table, st)
			}
		}
		// The materialized views read and fill the local tables.
		for _, mv := range []string{"tenants_mv", "usage_mv", "tenants_decisions_mv"} {
			st, ok := created[qualified(cfg, mv, false)]
			if !ok {
				t.Errorf("%s: no materialized view %s", v.file, mv)
			} else if cfg.Cluster != "" && !regexp.MustCompile(`TO \S+_local AS\n(?s:.*)FROM \S+_local\b`).MatchString(st) {
				t.Errorf("%s: %s is not over the local tables:\n%s", v.file, mv, st)
			}
		}
	}
}

// qualified is the name a rendering for cfg gives table: its local part when local.
func qualified(cfg Config, table string, local bool) string {
	if cfg.Cluster == "" {
		return table
	}
	if local {
		table += "_local"
	}
	return cfg.Database + "." + table
}

func TestSchemaConfig(t *testing.T) {
	for _, c := range []struct {
		cfg   Config
		field string // "" for valid
	}{
		{Config{Cluster: "whocould"}, ""},
		{Config{Cluster: "bad-name"}, "cluster"},
		{Config{Cluster: "x y"}, "cluster"},
		{Config{Modern: true}, ""},
		{Config{Modern: true, Retention: Retention{Decisions: 24 * time.Hour}}, ""},
		{Config{Retention: Retention{Decisions: 24 * time.Hour}}, "retention.decisions"},
		{Config{Modern: true, Retention: Retention{Decisions: 36 * time.Hour}}, "retention.decisions"},
		{Config{Modern: true, Retention: Retention{Decisions: -24 * time.Hour}}, "retention.decisions"},
	} {
		err := c.cfg.WithDefaults().Validate()
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%+v: %v", c.cfg, err)
		case c.field != "" && (err == nil || !strings.Contains(err.Error(), "clickhouse config: "+c.field+":")):
			t.Errorf("%+v: %v, want an error naming %s", c.cfg, err, c.field)
		}
	}
	if _, err := SchemaSQL(Config{Retention: Retention{Decisions: 24 * time.Hour}}); err == nil {
		t.Error("SchemaSQL rendered a retention without modern")
	}
}

func TestVersionAtLeast(t *testing.T) {
	for v, want := range map[string]bool{"18.16.1": false, "19.17.4.11": false, "20.1.2.4": false, "20.3.1": true,
		"20.10.3.30": true, "24.8.4.13": true, "25.3": true, "": false, "x.y": false} {
		if got := versionAtLeast(v, modernMinVersion); got != want {
			t.Errorf("versionAtLeast(%q, %s) = %v", v, modernMinVersion, got)
		}
	}
}

// Modern and a cluster the server does not know are refused at Open, naming the key, before
// any DDL.
func TestOpenRefusesWhatTheServerCannotDo(t *testing.T) {
	addr := chtest.Addr(t)
	db := chtest.Database(t)
	ctx := context.Background()
	probe, err := Open(ctx, Config{Addr: addr, Database: db})
	if err != nil {
		t.Fatal(err)
	}
	var version, lb string
	if err := probe.conn.QueryRow(ctx, "SELECT version(), (SELECT value FROM system.settings WHERE name = 'load_balancing')").
		Scan(&version, &lb); err != nil {
		t.Fatal(err)
	}
	probe.Close()

	_, err = Open(ctx, Config{Addr: addr, Database: db, Modern: true})
	if versionAtLeast(version, modernMinVersion) {
		if err != nil {
			t.Errorf("modern on ClickHouse %s: %v", version, err)
		}
	} else if err == nil || !strings.Contains(err.Error(), "clickhouse config: modern:") || !strings.Contains(err.Error(), version) {
		t.Errorf("modern on ClickHouse %s: %v, want it refused naming the key and the version", version, err)
	}

	_, err = Open(ctx, Config{Addr: addr, Database: db, Cluster: "no_such_cluster"})
	if err == nil || !strings.Contains(err.Error(), "clickhouse config: cluster:") || !strings.Contains(err.Error(), "no_such_cluster") {
		t.Errorf("an unknown cluster: %v, want it refused naming the key", err)
	}

	// A cluster every server's default configuration has, with the default profile's
	// load_balancing (random): reads could go to a replica behind the one written.
	if lb != "random" {
		t.Logf("the server's default profile has load_balancing %s: not testing that random is refused", lb)
		return
	}
	_, err = Open(ctx, Config{Addr: addr, Database: db, Cluster: "test_shard_localhost"})
	if err == nil || !strings.Contains(err.Error(), "clickhouse config: cluster:") || !strings.Contains(err.Error(), "load_balancing random") {
		t.Errorf("a cluster read with load_balancing random: %v, want it refused", err)
	}
}

// deployXML is the part of the ClickHouse configuration files under deploy/clickhouse that the
// schema depends on.
type deployXML struct {
	XMLName  xml.Name `xml:"clickhouse"`
	Clusters struct {
		List []struct {
			XMLName xml.Name
			Shards  []struct {
				InternalReplication bool `xml:"internal_replication"`
				Replicas            []struct {
					Host string `xml:"host"`
					Port int    `xml:"port"`
				} `xml:"replica"`
			} `xml:"shard"`
		} `xml:",any"`
	} `xml:"remote_servers"`
	Keeper []struct {
		Host string `xml:"host"`
	} `xml:"zookeeper>node"`
	Macros struct {
		Shard   string `xml:"shard"`
		Replica string `xml:"replica"`
	} `xml:"macros"`
}

// The cluster configuration agrees with the store's: the cluster of store.yaml, 2 shards of 2
// replicas, internal replication, Keeper, and each server's macros naming its own shard and a
// replica name unique in the cluster.
func TestDeployClusterXML(t *testing.T) {
	cfg := loadStoreYAML(t)
	read := func(path string) deployXML {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var x deployXML
		if err := xml.Unmarshal(b, &x); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return x
	}
	x := read("../../deploy/clickhouse/config.d/whocould-cluster.xml")
	if len(x.Clusters.List) != 1 || x.Clusters.List[0].XMLName.Local != cfg.Cluster {
		t.Fatalf("remote_servers: want the one cluster %q of store.yaml: %+v", cfg.Cluster, x.Clusters)
	}
	if len(x.Keeper) != 3 {
		t.Errorf("zookeeper: %d Keeper nodes, want 3", len(x.Keeper))
	}
	hosts := map[string]string{} // host → shard
	for i, sh := range x.Clusters.List[0].Shards {
		if !sh.InternalReplication {
			t.Errorf("shard %d: internal_replication is not true: a Distributed table would write every replica itself", i+1)
		}
		if len(sh.Replicas) != 2 {
			t.Errorf("shard %d: %d replicas, want 2", i+1, len(sh.Replicas))
		}
		for _, r := range sh.Replicas {
			hosts[r.Host] = fmt.Sprint(i + 1)
		}
	}
	if len(x.Clusters.List[0].Shards) != 2 || len(hosts) != 4 {
		t.Fatalf("want 2 shards × 2 replicas on 4 servers: %+v", x.Clusters.List[0].Shards)
	}
	if host, _, _ := strings.Cut(cfg.Addr, ":"); hosts[host] == "" {
		t.Errorf("store.yaml addr %s is no server of the cluster", cfg.Addr)
	}
	replicas := map[string]bool{}
	for host, shard := range hosts {
		m := read("../../deploy/clickhouse/macros/" + host + ".xml").Macros
		if m.Shard != shard {
			t.Errorf("macros of %s: shard %q, want %s", host, m.Shard, shard)
		}
		if m.Replica == "" || replicas[m.Replica] {
			t.Errorf("macros of %s: replica %q is not unique in the cluster", host, m.Replica)
		}
		replicas[m.Replica] = true
	}
	read("../../deploy/clickhouse/config.d/keeper.xml")
}

// A database keeps the schema it was made with: migrations rendered for other options (here
// modern) are refused on it, before any DDL, naming the options.
func TestChangedSchemaOptionsRefused(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, Config{})
	o := schemaOptions{Database: s.cfg.Database, Modern: true}
	ms, err := loadMigrationsFor(migrationFiles, "migrations", o)
	if err != nil {
		t.Fatal(err)
	}
	err = migrate(ctx, s.conn, s.log, o, ms)
	if err == nil || !strings.Contains(err.Error(), "0001_events.sql was applied with checksum") ||
		!strings.Contains(err.Error(), "cluster, modern or retention") {
		t.Fatalf("migrations rendered for modern on a database made without: %v", err)
	}
	var lowCardinality uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM system.columns WHERE database = ? AND type LIKE 'LowCardinality%'",
		s.cfg.Database).Scan(&lowCardinality); err != nil || lowCardinality != 0 {
		t.Fatalf("the refused migrations changed the schema: %d LowCardinality columns, %v", lowCardinality, err)
	}
}
