package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Generations: how a rebuild swaps a fresh store in while the old one serves.
//
// The configured database (Config.Database) is the catalog: its table store_generation says
// which database holds the store's tables — the catalog itself (generation 0) until a rebuild
// replays the whole log into a fresh database (DB_gN, NewGeneration) and records it there
// (Promote). That one insert is the swap: every question reads the live generation once, at its
// start, and asks all its queries there, so it sees the old store or the new one, never a mix,
// never neither. The old generation is dropped (DropGeneration) once the questions that started
// before the swap are done.
//
// The catalog also keeps the findings: they are not rebuilt from the log, so they belong to no
// generation, and no rebuild drops them (analysis.go).
//
// A projector writing into the old generation sees the swap at its next Apply, which fails with
// ErrReplaced after moving the store to the new generation: the projector, started again, goes
// on from the new generation's checkpoint.

// ErrReplaced is returned by Apply when a rebuild swapped another generation in.
var ErrReplaced = errors.New("clickhouse: the store was replaced by a rebuild")

const qLiveGeneration = `SELECT argMax(database, version), max(version) FROM store_generation`

// liveDatabase is the database of the live generation, and the generation's version (0: the
// catalog itself).
func (s *Store) liveDatabase(ctx context.Context) (string, uint64, error) {
	if s.generation {
		return s.cfg.Database, 0, nil
	}
	var (
		db string
		v  uint64
	)
	if err := s.catalog.QueryRow(ctx, qLiveGeneration).Scan(&db, &v); err != nil {
		return "", 0, fmt.Errorf("clickhouse: read the live generation: %w", err)
	}
	if db == "" {
		db = s.cfg.Database
	}
	return db, v, nil
}

// pool is the connection pool on database db (the catalog's, or one opened for it).
func (s *Store) pool(ctx context.Context, db string) (driver.Conn, error) {
	s.poolsMu.Lock()
	defer s.poolsMu.Unlock()
	if c, ok := s.pools[db]; ok {
		return c, nil
	}
	cfg := s.cfg
	cfg.Database = db
	c, err := connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s.pools[db] = c
	return c, nil
}

// reader is the pool a question asks on: the live generation's.
func (s *Store) reader(ctx context.Context) (driver.Conn, error) {
	db, _, err := s.liveDatabase(ctx)
	if err != nil {
		return nil, err
	}
	if db == s.db {
		return s.conn, nil
	}
	return s.pool(ctx, db)
}

// follow moves the writer to the live generation when a rebuild swapped one in, and then
// returns ErrReplaced. Called with s.mu held.
func (s *Store) follow(ctx context.Context) error {
	db, _, err := s.liveDatabase(ctx)
	if err != nil || db == s.db {
		return err
	}
	conn, err := s.pool(ctx, db)
	if err != nil {
		return err
	}
	s.conn, s.db = conn, db
	ck, err := s.readCheckpoint(ctx)
	if err != nil {
		return err
	}
	s.durable, s.written, s.version = ck.position, max(ck.written, ck.position), ck.version
	s.dirty, s.mapDirty = s.written, s.written > ck.position
	s.applied.Store(ck.position)
	s.m = nil
	s.log.Warn("store replaced by a rebuild: the projector goes on from the new generation's checkpoint", "database", db,
		"position", ck.position)
	return fmt.Errorf("%w: now on database %s at position %d", ErrReplaced, db, ck.position)
}

// Rebuilds lists the databases rebuilds made for the store whose catalog is database catalog
// (DB_g1, DB_g2, ...: live or not yet dropped), asking on conn; none when the catalog has no
// store_generation table.
func Rebuilds(ctx context.Context, conn driver.Conn, catalog string) ([]string, error) {
	var have uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name = 'store_generation'", catalog).
		Scan(&have); err != nil || have == 0 {
		return nil, err
	}
	rows, err := conn.Query(ctx, "SELECT DISTINCT database FROM "+catalog+".store_generation")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var dbs []string
	for rows.Next() {
		var db string
		if err := rows.Scan(&db); err != nil {
			return nil, err
		}
		dbs = append(dbs, db)
	}
	return dbs, rows.Err()
}

// Database is the database this store writes into: the live generation's when it was opened.
func (s *Store) Database() string { return s.db }

// NewGeneration makes a fresh, empty generation to rebuild the store into: a Store on a new
// database beside the live one, with the schema, that questions do not see until Promote. A
// database left by a rebuild cut short is dropped first.
func (s *Store) NewGeneration(ctx context.Context) (*Store, error) {
	_, v, err := s.liveDatabase(ctx)
	if err != nil {
		return nil, err
	}
	cfg := s.cfg
	cfg.Database = fmt.Sprintf("%s_g%d", s.cfg.Database, v+1)
	if err := s.dropDatabase(ctx, cfg.Database); err != nil {
		return nil, err
	}
	cfg.generation = true
	g, err := Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	g.genVersion, g.findingsDB = v+1, s.findingsDB
	return g, nil
}

// Promote swaps generation g in: from now on questions are asked there. It returns the
// database of the generation it replaced, to drop once the questions asked there are done.
func (s *Store) Promote(ctx context.Context, g *Store) (old string, err error) {
	old, v, err := s.liveDatabase(ctx)
	if err != nil {
		return "", err
	}
	if g.genVersion != v+1 {
		return "", fmt.Errorf("clickhouse: promote %s: generation %d was swapped in meanwhile", g.cfg.Database, v+1)
	}
	b, err := s.catalog.PrepareBatch(ctx, "INSERT INTO store_generation (version, database, switched)")
	if err != nil {
		return "", fmt.Errorf("clickhouse: promote %s: %w", g.cfg.Database, err)
	}
	defer b.Close()
	if err := b.Append(g.genVersion, g.cfg.Database, time.Now().UTC()); err != nil {
		return "", fmt.Errorf("clickhouse: promote %s: %w", g.cfg.Database, err)
	}
	if err := b.Send(); err != nil {
		return "", fmt.Errorf("clickhouse: promote %s: %w", g.cfg.Database, err)
	}
	s.log.Info("rebuilt generation swapped in", "database", g.cfg.Database, "replaces", old)
	return old, nil
}

// DropGeneration drops an old generation's tables: its database, or, for the catalog itself,
// every table but the catalog's own (catalogTables).
func (s *Store) DropGeneration(ctx context.Context, db string) error {
	live, _, err := s.liveDatabase(ctx)
	if err != nil {
		return err
	}
	if db == live {
		return fmt.Errorf("clickhouse: drop generation %s: it is the live one", db)
	}
	if db != s.cfg.Database {
		return s.dropDatabase(ctx, db)
	}
	// The catalog itself: the tables and views its migrations made, but the catalog's own.
	ms, err := loadMigrationsFor(migrationFiles, "migrations", s.cfg.schema())
	if err != nil {
		return fmt.Errorf("clickhouse: %w", err)
	}
	var views, tables []string
	for _, m := range ms {
		for _, stmt := range m.stmts {
			x := createdObject.FindStringSubmatch(stmt)
			switch {
			case x == nil || slices.Contains(catalogTables, x[2][strings.LastIndex(x[2], ".")+1:]):
			case x[1] == "MATERIALIZED VIEW":
				views = append(views, x[2])
			default:
				tables = append(tables, x[2])
			}
		}
	}
	for _, n := range append(views, tables...) { // a view before the tables it reads
		if !strings.Contains(n, ".") {
			n = db + "." + n
		}
		if err := s.catalog.Exec(ctx, "DROP TABLE IF EXISTS "+n+s.onCluster()); err != nil {
			return fmt.Errorf("clickhouse: drop generation %s: %w", db, err)
		}
	}
	return nil
}

// catalogTables are the catalog's own tables, which no rebuild drops: which generation is live,
// and the findings (not rebuilt from the log: analysis.go).
var catalogTables = []string{"store_generation", "findings"}

// createdObject finds what a migration's statement creates.
var createdObject = regexp.MustCompile(`CREATE (TABLE|MATERIALIZED VIEW) IF NOT EXISTS (\S+)`)

func (s *Store) onCluster() string {
	if s.cfg.Cluster == "" {
		return ""
	}
	return " ON CLUSTER " + s.cfg.Cluster
}

func (s *Store) dropDatabase(ctx context.Context, db string) error {
	s.poolsMu.Lock()
	if c, ok := s.pools[db]; ok && c != s.catalog && c != s.conn {
		c.Close()
		delete(s.pools, db)
	}
	s.poolsMu.Unlock()
	if err := s.catalog.Exec(ctx, "DROP DATABASE IF EXISTS "+db+s.onCluster()); err != nil {
		return fmt.Errorf("clickhouse: drop database %s: %w", db, err)
	}
	return nil
}
