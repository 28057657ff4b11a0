package clickhouse

import (
	"fmt"
	"strings"
	"text/template"
	"time"
)

// The migrations are text/template files: the single source of the schema for one server and
// for a cluster, for ClickHouse 18.16 and for current releases. Their actions write the parts
// that differ between deployments; with no cluster and not modern every action writes nothing
// or its plain argument, and the rendering is byte for byte the SQL the files held before they
// were templates (so databases made then keep their checksums: TestDefaultRenderingUnchanged).
//
//	{{create_database}}                    cluster: CREATE DATABASE IF NOT EXISTS DB ON CLUSTER C;
//	                                       (before the migrations table: migrate.go)
//	{{local "events"}}                     the table holding a sharded table's rows:
//	                                       events; cluster: DB.events_local
//	{{name "tenants_mv"}}                  an object each server has under its own name (a
//	                                       materialized view, a table every server holds in full):
//	                                       tenants_mv; cluster: DB.tenants_mv
//	{{on_cluster}}                         cluster: " ON CLUSTER C"
//	{{engine "events" "MergeTree" args…}}  a sharded table's engine: MergeTree[(args)]; cluster:
//	                                       ReplicatedMergeTree('/clickhouse/tables/{shard}/DB/events_local', '{replica}'[, args])
//	{{engine_all "t" "ReplacingMergeTree" args…}}
//	                                       a table every server holds in full: cluster:
//	                                       Replicated…('/clickhouse/tables/all/DB/t', '{replica}'[, args])
//	{{distributed "events" "KEY"}}         cluster: after the statement, the Distributed table
//	                                       "events" in front of events_local, rows spread by KEY
//	                                       (no KEY: fed only by materialized views on the shards)
//	{{lc "String"}}                        modern: LowCardinality(String)
//	{{codec "Delta, ZSTD"}}                modern: " CODEC(Delta, ZSTD)"
//	{{ttl "date" .Retention.Decisions}}    modern with a retention: TTL date + INTERVAL n DAY,
//	                                       dropping whole parts once all their rows expired
//
// Readers and the projector use the same table names everywhere: on a cluster those are the
// Distributed tables (events, decisions, approvals, usage, tenants) and the tables every
// server holds in full (projector_checkpoint, schema_migrations).

// schemaOptions are the parts of Config the schema depends on.
type schemaOptions struct {
	Database  string
	Cluster   string
	Modern    bool
	Retention Retention
}

func (c Config) schema() schemaOptions {
	return schemaOptions{Database: c.Database, Cluster: c.Cluster, Modern: c.Modern, Retention: c.Retention}
}

// Paths of the replicated tables in ClickHouse Keeper (or ZooKeeper). {shard} and {replica}
// are the servers' macros; every server's {replica} must be unique in the whole cluster, since
// the tables every server holds in full replicate across shards.
const (
	shardedPath = "/clickhouse/tables/{shard}/%s/%s"
	allPath     = "/clickhouse/tables/all/%s/%s"
)

func (o schemaOptions) funcs() template.FuncMap {
	cluster := o.Cluster != ""
	replicated := func(path, engine string, args []string) string {
		if !cluster {
			if len(args) == 0 {
				return engine
			}
			return engine + "(" + strings.Join(args, ", ") + ")"
		}
		return "Replicated" + engine + "(" + strings.Join(append([]string{quote(path), quote("{replica}")}, args...), ", ") + ")"
	}
	return template.FuncMap{
		"create_database": func() string {
			if !cluster {
				return ""
			}
			return "CREATE DATABASE IF NOT EXISTS " + o.Database + " ON CLUSTER " + o.Cluster + ";\n\n"
		},
		"local": func(table string) string {
			if !cluster {
				return table
			}
			return o.Database + "." + table + "_local"
		},
		"name": func(name string) string {
			if !cluster {
				return name
			}
			return o.Database + "." + name
		},
		"on_cluster": func() string {
			if !cluster {
				return ""
			}
			return " ON CLUSTER " + o.Cluster
		},
		"engine": func(table, engine string, args ...string) string {
			return replicated(fmt.Sprintf(shardedPath, o.Database, table+"_local"), engine, args)
		},
		"engine_all": func(table, engine string, args ...string) string {
			return replicated(fmt.Sprintf(allPath, o.Database, table), engine, args)
		},
		"distributed": func(table, key string) string {
			if !cluster {
				return ""
			}
			var b strings.Builder
			b.WriteString("\n\n")
			if key == "" {
				fmt.Fprintf(&b, "-- %s: what readers use, over %s_local of every shard (fed by the materialized views there).\n", table, table)
			} else {
				fmt.Fprintf(&b, "-- %s: what readers and the projector use; it spreads rows over the shards by %s.\n", table, key)
			}
			fmt.Fprintf(&b, "CREATE TABLE IF NOT EXISTS %s.%s ON CLUSTER %s AS %s.%s_local\nENGINE = Distributed(%s, %s, %s_local",
				o.Database, table, o.Cluster, o.Database, table, o.Cluster, o.Database, table)
			if key != "" {
				b.WriteString(", " + key)
			}
			b.WriteString(");")
			return b.String()
		},
		"lc": func(typ string) string {
			if !o.Modern {
				return typ
			}
			return "LowCardinality(" + typ + ")"
		},
		"codec": func(spec string) string {
			if !o.Modern {
				return ""
			}
			return " CODEC(" + spec + ")"
		},
		"ttl": func(column string, d time.Duration) (string, error) {
			if d == 0 {
				return "", nil
			}
			if !o.Modern || d < 0 || d%(24*time.Hour) != 0 {
				return "", fmt.Errorf("retention %v of %s: want whole days, with modern", d, column)
			}
			return fmt.Sprintf("\nTTL %s + INTERVAL %d DAY\nSETTINGS ttl_only_drop_parts = 1", column, d/(24*time.Hour)), nil
		},
	}
}

// quote is s as a ClickHouse string literal. The strings quoted here are paths made of
// identifiers (Validate) and macros.

// render executes a migration's template.
func (o schemaOptions) render(name, text string) (string, error) {
	t, err := template.New(name).Option("missingkey=error").Funcs(o.funcs()).Parse(text)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := t.Execute(&b, o); err != nil {
		return "", err
	}
	return b.String(), nil
}

// schemaFile is one file of a rendered schema.
type schemaFile struct{ name, text string }

// schemaFiles is the schema Open applies for o, file by file: the migrations table (with, on a
// cluster, the database), as 0000_schema_migrations.sql, then each migration.
func schemaFiles(o schemaOptions) ([]schemaFile, error) {
	mt, err := o.render("schema_migrations", createMigrationsTable)
	if err != nil {
		return nil, err
	}
	ms, err := loadMigrationsFor(migrationFiles, "migrations", o)
	if err != nil {
		return nil, err
	}
	files := []schemaFile{{"0000_schema_migrations.sql",
		"-- The migrations applied, made by Open before the migrations (migrate.go).\n" + mt + ";\n"}}
	for _, m := range ms {
		files = append(files, schemaFile{m.fileName, m.text})
	}
	return files, nil
}

// SchemaSQL is the schema Open applies for cfg (with defaults), as SQL: the migrations table,
// then each migration, each headed by its file name. It is what deploy/clickhouse/schema holds
// for the cluster there, and what a DBA can read or diff before letting whocould apply it.
func SchemaSQL(cfg Config) (string, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return "", err
	}
	files, err := schemaFiles(cfg.schema())
	if err != nil {
		return "", fmt.Errorf("clickhouse: %w", err)
	}
	var b strings.Builder
	for i, f := range files {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "-- %s\n%s", f.name, f.text)
		if !strings.HasSuffix(f.text, "\n") {
			b.WriteString("\n")
		}
	}
	return b.String(), nil
}
