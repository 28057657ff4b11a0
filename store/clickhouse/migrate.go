package clickhouse

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// The schema: versioned migrations, NNNN_name.sql, applied in order at Open. Each is a
// template (schema.go) rendered for the configured deployment into a list of statements, each
// ending with ";" at the end of a line, written to run again harmlessly (IF NOT EXISTS), so a
// migration cut short by a crash is simply applied again. Rendered for one server and not
// modern, the SQL is the subset ClickHouse 18.16 runs (../shared/DEPENDENCIES.md).
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

type migration struct {
	version  uint32
	name     string
	sum      string // SHA-256 of the rendering, hex
	text     string // the rendering
	stmts    []string
	fileName string
}

var migrationName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.sql$`)

// loadMigrations reads the embedded migrations rendered for one server, not modern, in version
// order: versions 1, 2, 3, ... each once.
func loadMigrations(fsys fs.FS, dir string) ([]migration, error) {
	return loadMigrationsFor(fsys, dir, schemaOptions{})
}

// loadMigrationsFor reads the migrations rendered for o, in version order.
func loadMigrationsFor(fsys fs.FS, dir string, o schemaOptions) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration %s: name is not NNNN_name.sql", e.Name())
		}
		v, _ := strconv.ParseUint(m[1], 10, 32)
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		text, err := o.render(e.Name(), string(b))
		if err != nil {
			return nil, fmt.Errorf("migration %s: %w", e.Name(), err)
		}
		sum := sha256.Sum256([]byte(text))
		stmts := splitStatements(text)
		if len(stmts) == 0 {
			return nil, fmt.Errorf("migration %s: no statement", e.Name())
		}
		ms = append(ms, migration{version: uint32(v), name: m[2], sum: hex.EncodeToString(sum[:]), text: text, stmts: stmts,
			fileName: e.Name()})
	}
	slices.SortFunc(ms, func(a, b migration) int { return int(a.version) - int(b.version) })
	for i, m := range ms {
		if m.version != uint32(i+1) {
			return nil, fmt.Errorf("migration %s: version %d, want %d (versions run 1, 2, 3, ... once each)", m.fileName, m.version, i+1)
		}
	}
	return ms, nil
}

// splitStatements splits SQL into statements: each ends with ";" at the end of a line. Lines
// that are only a comment are dropped.
func splitStatements(sql string) []string {
	var stmts []string
	var cur strings.Builder
	for line := range strings.Lines(sql) {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "--") {
			continue
		}
		cur.WriteString(line)
		if strings.HasSuffix(trimmed, ";") {
			stmt := strings.TrimSuffix(strings.TrimSpace(cur.String()), ";")
			if strings.TrimSpace(stmt) != "" {
				stmts = append(stmts, stmt)
			}
			cur.Reset()
		}
	}
	if rest := strings.TrimSpace(cur.String()); rest != "" {
		stmts = append(stmts, rest)
	}
	return stmts
}

// createMigrationsTable is a template, like the migrations. On a cluster it first makes the
// database on every server, and every server holds the whole table, so that a store opened on
// any server sees the migrations applied.
const createMigrationsTable = `{{create_database}}CREATE TABLE IF NOT EXISTS {{name "schema_migrations"}}{{on_cluster}} (
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime('UTC')
) ENGINE = {{engine_all "schema_migrations" "ReplacingMergeTree"}}
ORDER BY version`

// migrate creates schema_migrations when it is missing, then applies the migrations not yet
// recorded there, in order, recording each once all its statements ran. A recorded migration
// whose rendering changed since is an error: the schema would no longer be what the file and
// the configuration say. When every migration is recorded it runs no DDL at all (on a cluster,
// DDL waits for every server).
func migrate(ctx context.Context, conn driver.Conn, log *slog.Logger, o schemaOptions, ms []migration) error {
	var have uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'schema_migrations'").
		Scan(&have); err != nil {
		return fmt.Errorf("look for schema_migrations: %w", err)
	}
	if have == 0 {
		sql, err := o.render("schema_migrations", createMigrationsTable)
		if err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		for _, stmt := range splitStatements(sql) {
			if err := conn.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("create schema_migrations: %w", err)
			}
		}
	}
	applied := map[uint32]string{}
	rows, err := conn.Query(ctx, "SELECT version, any(checksum) FROM schema_migrations GROUP BY version")
	if err != nil {
		return fmt.Errorf("read schema_migrations: %w", err)
	}
	for rows.Next() {
		var v uint32
		var sum string
		if err := rows.Scan(&v, &sum); err != nil {
			rows.Close()
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		applied[v] = sum
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read schema_migrations: %w", err)
	}
	for _, m := range ms {
		if sum, ok := applied[m.version]; ok {
			if sum != m.sum {
				return fmt.Errorf("migration %s was applied with checksum %s and renders now as %s: either the file was edited "+
					"(never edit an applied migration, add one) or cluster, modern or retention differ from when the database "+
					"was made (a database keeps the schema it was made with: to change them, make a new database and rebuild into it)",
					m.fileName, sum, m.sum)
			}
			continue
		}
		start := time.Now()
		for i, stmt := range m.stmts {
			if err := conn.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("migration %s, statement %d: %w", m.fileName, i+1, err)
			}
		}
		if err := insertMigration(ctx, conn, m); err != nil {
			return fmt.Errorf("record migration %s: %w", m.fileName, err)
		}
		log.Info("migration applied", "version", m.version, "name", m.name, "took", time.Since(start))
	}
	return nil
}

func insertMigration(ctx context.Context, conn driver.Conn, m migration) error {
	b, err := conn.PrepareBatch(ctx, "INSERT INTO schema_migrations (version, name, checksum, applied_at)")
	if err != nil {
		return err
	}
	defer b.Close()
	if err := b.Append(m.version, m.name, m.sum, time.Now().UTC()); err != nil {
		return err
	}
	return b.Send()
}
