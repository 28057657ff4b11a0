// Package clickhouse is the store for production: the projection in ClickHouse, through
// clickhouse-go/v2 over the native protocol. Its schema is a set of versioned migrations
// (migrations/*.sql) applied at Open. It runs on ClickHouse 18.16 and on current releases.
// The same migrations make the schema for a cluster (Config.Cluster) and with what only
// current releases have (Config.Modern, Config.Retention): see schema.go and deploy/clickhouse.
//
// Tables (see the migrations for their keys):
//   - events: the raw event archive, with each event's log position;
//   - decisions, and usage: allowed use per (principal, action, resource), kept by a
//     materialized view over decisions;
//   - approvals: requests and their answers, one row per event;
//   - tenants: kept by a materialized view over events;
//   - access_map: the permission map, bitemporal (mapwrite.go), which WhoCould, WhatCould,
//     Explain and History read (mapread.go);
//   - projector_checkpoint: the position applied and the position possibly written;
//   - findings: the analyzers' findings, in the catalog database (analysis.go);
//   - schema_migrations: the migrations applied.
package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/whocould/whocould/store"
)

var _ store.Store = (*Store)(nil)

// projectorName names the projector's row in projector_checkpoint.
const projectorName = "projector"

// Store is the ClickHouse store. Reads are safe for concurrent use with each other and with
// Apply; Apply and Checkpoint are for one projector at a time.
type Store struct {
	cfg Config
	// catalog is the pool on cfg.Database, which says which generation is live
	// (generation.go); conn the pool on db, the generation this store writes into.
	catalog, conn driver.Conn
	db            string
	log           *slog.Logger
	// generation: this store is a generation being rebuilt (NewGeneration), its own catalog;
	// genVersion its version.
	generation bool
	genVersion uint64
	poolsMu    sync.Mutex
	pools      map[string]driver.Conn // by database, every pool opened (the catalog's too)
	// findingsDB is the database of the findings (analysis.go): the catalog's, also for a
	// generation being rebuilt.
	findingsDB string
	// finalInKeyOrder: a FINAL read of one table comes in key order (one server, of a release
	// that merges the parts into one stream): see Usage.
	finalInKeyOrder bool
	findingsMu      sync.Mutex // guards findingsVersion
	// findingsVersion is the version of the last finding written.
	findingsVersion uint64

	// applied is the position up to which this store has applied every record.
	applied atomic.Uint64

	mu sync.Mutex // Apply and Checkpoint; guards what follows
	// durable is the position last checkpointed.
	durable uint64
	// written is the highest position recorded as possibly written (the checkpoint row's
	// written). Records in (applied, dirty] may already be in some tables: a crash or a failed
	// Apply left them there. Apply checks that stretch before writing it.
	written, dirty uint64
	version        uint64   // of the last checkpoint row written
	batch          rowBatch // reused by each Apply
	// m is the permission map's graphs (mapwrite.go): nil until an Apply needs them, and after
	// an Apply failed. mapDirty says the map may hold rows past the position applied.
	m        *mapState
	mapDirty bool
	inserts  atomic.Uint64
}

// Open connects to the server, creates the database when it is missing, applies the
// migrations not yet applied and reads the checkpoint.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	schema := cfg.schema()
	ms, err := loadMigrationsFor(migrationFiles, "migrations", schema)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	conn, err := connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	version, err := checkServer(ctx, conn, cfg)
	if err != nil {
		conn.Close()
		return nil, err
	}
	s := &Store{cfg: cfg, catalog: conn, conn: conn, db: cfg.Database, log: cfg.Logger, generation: cfg.generation,
		pools: map[string]driver.Conn{cfg.Database: conn}, findingsDB: cfg.Database,
		finalInKeyOrder: cfg.Cluster == "" && !versionAtLeast(version, finalOrderedBefore)}
	if err := migrate(ctx, conn, s.log, schema, ms); err != nil {
		conn.Close()
		return nil, fmt.Errorf("clickhouse %s/%s: %w", cfg.Addr, cfg.Database, err)
	}
	if err := s.openLive(ctx); err != nil {
		s.Close()
		return nil, err
	}
	ck, err := s.readCheckpoint(ctx)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.durable, s.written, s.version = ck.position, max(ck.written, ck.position), ck.version
	s.dirty = s.written
	s.mapDirty = s.written > ck.position
	s.applied.Store(ck.position)
	s.log.Info("clickhouse store open", "addr", cfg.Addr, "database", s.db, "position", ck.position,
		"possibly_written", s.written)
	return s, nil
}

func options(cfg Config, database string) *ch.Options {
	o := &ch.Options{
		Addr:            []string{cfg.Addr},
		Auth:            ch.Auth{Database: database, Username: cfg.Username, Password: cfg.Password},
		DialTimeout:     cfg.DialTimeout,
		ReadTimeout:     cfg.ReadTimeout,
		MaxOpenConns:    cfg.MaxOpenConns,
		MaxIdleConns:    cfg.MaxIdleConns,
		ConnMaxLifetime: cfg.ConnMaxLifetime,
		ClientInfo:      ch.ClientInfo{Products: []struct{ Name, Version string }{{Name: "whocould", Version: "0"}}},
	}
	if cfg.Compression {
		o.Compression = &ch.Compression{Method: ch.CompressionLZ4}
	}
	if cfg.Cluster != "" {
		// An insert into a Distributed table returns once every shard has its rows (not once
		// they are queued on this server): Apply's reading back of what a failed insert left
		// depends on it.
		o.Settings = ch.Settings{"insert_distributed_sync": 1}
	}
	return o
}

// modernMinVersion is the oldest release Config.Modern is for.
const modernMinVersion = "20.3"

// finalOrderedBefore is the first release past the one FINAL's key order was measured on
// (18.16, which merges a table's parts into one sorted stream); later ones may read FINAL in
// parallel ranges, out of order.
const finalOrderedBefore = "19.1"

// checkServer refuses a configuration the server cannot serve: Modern on a release older than
// modernMinVersion, a Cluster the server does not know. It returns the server's version.
func checkServer(ctx context.Context, conn driver.Conn, cfg Config) (string, error) {
	where := fmt.Sprintf("clickhouse %s/%s", cfg.Addr, cfg.Database)
	sv, err := conn.ServerVersion() // from the handshake
	if err != nil {
		return "", fmt.Errorf("%s: the server's version: %w", where, err)
	}
	version := fmt.Sprintf("%d.%d.%d", sv.Version.Major, sv.Version.Minor, sv.Version.Patch)
	if cfg.Modern && !versionAtLeast(version, modernMinVersion) {
		return "", fmt.Errorf("clickhouse config: modern: the server at %s runs ClickHouse %s; LowCardinality, codecs and TTL "+
			"need %s or later: set modern: false (and no retention)", cfg.Addr, version, modernMinVersion)
	}
	if cfg.Cluster != "" {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.clusters WHERE cluster = ?", cfg.Cluster).Scan(&n); err != nil {
			return "", fmt.Errorf("%s: read the server's clusters: %w", where, err)
		}
		if n == 0 {
			return "", fmt.Errorf("clickhouse config: cluster: the server at %s has no cluster %q in its remote_servers", cfg.Addr, cfg.Cluster)
		}
		// A Distributed table writes each shard's rows to one of its replicas, and the others
		// fetch them a moment later. Reads must go where the writes went, or they miss rows
		// (and Apply, reading back what a failed insert left, would write them twice): the
		// first replica of each shard while it is up. ClickHouse 18.16 takes no string setting
		// from this client, so the user's profile must say so (deploy/clickhouse/users.d).
		var lb string
		var preferLocal uint64
		if err := conn.QueryRow(ctx, `SELECT
    (SELECT value FROM system.settings WHERE name = 'load_balancing'),
    (SELECT toUInt64(value) FROM system.settings WHERE name = 'prefer_localhost_replica')`).Scan(&lb, &preferLocal); err != nil {
			return "", fmt.Errorf("%s: read the user's settings: %w", where, err)
		}
		if lb != "in_order" && lb != "first_or_random" {
			return "", fmt.Errorf("clickhouse config: cluster: user %s on %s has load_balancing %s: reads could miss rows a replica has not "+
				"fetched yet; set load_balancing to in_order (and prefer_localhost_replica to 0) in the user's profile, as "+
				"deploy/clickhouse/users.d/whocould.xml does", cfg.Username, cfg.Addr, lb)
		}
		if preferLocal != 0 {
			cfg.Logger.Warn("prefer_localhost_replica is 1: each server reads and writes its own replica of its shard, so "+
				"processes on other servers of that shard see the projector's rows only once replicated; set it to 0 in the "+
				"user's profile", "addr", cfg.Addr, "user", cfg.Username)
		}
	}
	return version, nil
}

// versionAtLeast reports whether the release version (e.g. 18.16.1, 24.8.4.13) is min (major.minor)
// or later.
func versionAtLeast(version, min string) bool {
	parse := func(v string) (major, minor int, ok bool) {
		parts := strings.SplitN(v, ".", 3)
		if len(parts) < 2 {
			return 0, 0, false
		}
		var err1, err2 error
		major, err1 = strconv.Atoi(parts[0])
		minor, err2 = strconv.Atoi(parts[1])
		return major, minor, err1 == nil && err2 == nil
	}
	vMajor, vMinor, ok := parse(version)
	mMajor, mMinor, _ := parse(min)
	return ok && (vMajor > mMajor || vMajor == mMajor && vMinor >= mMinor)
}

// connect opens the pool on cfg.Database, creating the database first when the server says it
// does not exist.
func connect(ctx context.Context, cfg Config) (driver.Conn, error) {
	const unknownDatabase = 81
	where := fmt.Sprintf("clickhouse %s/%s", cfg.Addr, cfg.Database)
	conn, err := ch.Open(options(cfg, cfg.Database))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	err = conn.Ping(ctx)
	if ex, ok := errors.AsType[*ch.Exception](err); ok && ex.Code == unknownDatabase {
		conn.Close()
		if err := createDatabase(ctx, cfg); err != nil {
			return nil, fmt.Errorf("%s: create database: %w", where, err)
		}
		if conn, err = ch.Open(options(cfg, cfg.Database)); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		err = conn.Ping(ctx)
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return conn, nil
}

func createDatabase(ctx context.Context, cfg Config) error {
	conn, err := ch.Open(options(cfg, ""))
	if err != nil {
		return err
	}
	defer conn.Close()
	// The name is an identifier (Validate), so it needs no quoting.
	return conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+cfg.Database)
}

// openLive points the store at the live generation, migrating it, when a rebuild swapped one in.
func (s *Store) openLive(ctx context.Context) error {
	live, _, err := s.liveDatabase(ctx)
	if err != nil || live == s.db {
		return err
	}
	conn, err := s.pool(ctx, live)
	if err != nil {
		return err
	}
	cfg := s.cfg
	cfg.Database = live
	ms, err := loadMigrationsFor(migrationFiles, "migrations", cfg.schema())
	if err != nil {
		return fmt.Errorf("clickhouse: %w", err)
	}
	if err := migrate(ctx, conn, s.log, cfg.schema(), ms); err != nil {
		return fmt.Errorf("clickhouse %s/%s: %w", cfg.Addr, live, err)
	}
	s.conn, s.db = conn, live
	return nil
}

// Close closes the connections. It does not checkpoint: call Checkpoint first.
func (s *Store) Close() error {
	s.poolsMu.Lock()
	defer s.poolsMu.Unlock()
	var errs []error
	for _, c := range s.pools {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

type checkpoint struct{ version, position, written uint64 }

func (s *Store) readCheckpoint(ctx context.Context) (checkpoint, error) {
	return readCheckpoint(ctx, s.conn)
}

func readCheckpoint(ctx context.Context, conn driver.Conn) (checkpoint, error) {
	var ck checkpoint
	err := conn.QueryRow(ctx, qCheckpoint, projectorName).Scan(&ck.version, &ck.position, &ck.written)
	if err != nil {
		return ck, fmt.Errorf("clickhouse: read checkpoint: %w", err)
	}
	return ck, nil
}

// writeCheckpoint records position and written as the newest checkpoint row. Called with s.mu
// held.
func (s *Store) writeCheckpoint(ctx context.Context, position, written uint64) error {
	v := max(s.version+1, uint64(time.Now().UnixNano()))
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO projector_checkpoint (name, version, position, written, updated)")
	if err != nil {
		return err
	}
	defer b.Close()
	if err := b.Append(projectorName, v, position, written, time.Now().UTC()); err != nil {
		return err
	}
	if err := b.Send(); err != nil {
		return err
	}
	s.version = v
	return nil
}

// Checkpoint implements store.Writer. Every row Apply wrote is durable when Apply returns (an
// insert returns once its parts are written); Checkpoint records the position, so that a
// projector restarted on this database replays from there. Unlike the embedded store, a store
// reopened after a crash does not go back to its checkpoint: readers may see rows of records
// after it until the projector has replayed them, which then writes only what is missing
// (Apply).
func (s *Store) Checkpoint(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pos := s.applied.Load()
	if pos == s.durable {
		return nil
	}
	if err := s.writeCheckpoint(ctx, pos, max(s.written, pos)); err != nil {
		return fmt.Errorf("clickhouse: checkpoint %d: %w", pos, err)
	}
	s.durable, s.written = pos, max(s.written, pos)
	return nil
}

// Position implements store.Reader: the position this store has applied, or the checkpointed
// one when that is further (another process is the projector).
func (s *Store) Position(ctx context.Context) (uint64, error) {
	conn, err := s.reader(ctx)
	if err != nil {
		return 0, err
	}
	return s.positionOn(ctx, conn)
}

// positionOn is Position on conn, the pool of the generation a question reads.
func (s *Store) positionOn(ctx context.Context, conn driver.Conn) (uint64, error) {
	ck, err := readCheckpoint(ctx, conn)
	if err != nil {
		return 0, err
	}
	if conn != s.conn { // a rebuild swapped another generation in: its checkpoint
		return ck.position, nil
	}
	return max(s.applied.Load(), ck.position), nil
}
