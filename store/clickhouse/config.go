package clickhouse

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"time"
)

// Config configures the ClickHouse store. The zero value, with defaults, is a server on
// 127.0.0.1:9000 and the database "whocould".
type Config struct {
	// Addr is the server's native-protocol address, host:port. Default 127.0.0.1:9000.
	Addr string `yaml:"addr"`
	// Database holds the store's tables; Open creates it when it is missing. Default "whocould".
	Database string `yaml:"database"`
	// Username and Password log in. Default user "default", no password. The password is a
	// secret: take it from the environment, not from a config file.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// DialTimeout bounds connecting. Default 10s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
	// ReadTimeout bounds waiting for the server within one call. Default 5m.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// MaxOpenConns bounds the connections the store holds (Apply uses up to four at once, one
	// per table). Default 8.
	MaxOpenConns int `yaml:"max_open_conns"`
	// MaxIdleConns bounds the idle ones kept. Default 4.
	MaxIdleConns int `yaml:"max_idle_conns"`
	// ConnMaxLifetime closes connections older than this. Default 1h.
	ConnMaxLifetime time.Duration `yaml:"conn_max_lifetime"`
	// BlockRows is how many rows Apply sends per block of an insert: larger blocks make fewer,
	// larger parts; smaller ones bound the memory of one insert. Default 262144.
	BlockRows int `yaml:"block_rows"`
	// Compression compresses blocks with LZ4 on the wire. Default off: on loopback it costs more
	// CPU than it saves.
	Compression bool `yaml:"compression"`
	// Cluster, when set, names a cluster of the servers' remote_servers: the schema is made ON
	// CLUSTER, each table replicated within its shard (Replicated*MergeTree under
	// /clickhouse/tables/{shard}/DATABASE/TABLE_local, the servers' {shard} and {replica}
	// macros) with a Distributed table of the usual name in front of it, so that readers and
	// the projector use the same names as on one server; the checkpoint and the migrations
	// table are replicated to every server. Inserts wait until the shards have the rows
	// (insert_distributed_sync). Empty (the default): one server, plain MergeTree tables.
	Cluster string `yaml:"cluster"`
	// Modern uses what only current ClickHouse releases have: LowCardinality for the tenant,
	// source, type, action, policy and reason columns, CODEC(Delta, ZSTD) on the times and
	// positions that grow along a sort key, CODEC(ZSTD) on JSON and the high-entropy columns
	// of decisions, and TTL for Retention. Open refuses it on a server older than 20.3
	// (ClickHouse 18.16 has none of it). Default off.
	Modern bool `yaml:"modern"`
	// Retention is how long rows are kept (TTL, Modern only): whole days, zero for ever.
	Retention Retention `yaml:"retention"`
	// Logger receives the store's logs. Default: none.
	Logger *slog.Logger `yaml:"-"`

	generation bool // a generation being rebuilt (generation.go): no catalog of its own
}

// Retention is how long the tables keep their rows, by the time that partitions them. Rows go
// in whole parts (ttl_only_drop_parts), once every row of a part is older than the retention:
// a part covers at most a month, so a row stays at most about a month longer. Zero keeps rows
// for ever. The usage aggregates keep counting decisions that expired.
type Retention struct {
	// Decisions keeps decisions this long after their event time.
	Decisions time.Duration `yaml:"decisions"`
	// The archive has no retention: its change events are what the permission map is rebuilt
	// from (when the projector starts, and by a rebuild), and a grant made long ago may still
	// hold.
}

// Defaults.
const (
	DefaultAddr            = "127.0.0.1:9000"
	DefaultDatabase        = "whocould"
	DefaultUsername        = "default"
	DefaultDialTimeout     = 10 * time.Second
	DefaultReadTimeout     = 5 * time.Minute
	DefaultMaxOpenConns    = 8
	DefaultMaxIdleConns    = 4
	DefaultConnMaxLifetime = time.Hour
	DefaultBlockRows       = 1 << 18
)

// WithDefaults is c with every unset field set to its default.
func (c Config) WithDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Database == "" {
		c.Database = DefaultDatabase
	}
	if c.Username == "" {
		c.Username = DefaultUsername
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.MaxOpenConns == 0 {
		c.MaxOpenConns = DefaultMaxOpenConns
	}
	if c.MaxIdleConns == 0 {
		c.MaxIdleConns = min(DefaultMaxIdleConns, c.MaxOpenConns)
	}
	if c.ConnMaxLifetime == 0 {
		c.ConnMaxLifetime = DefaultConnMaxLifetime
	}
	if c.BlockRows == 0 {
		c.BlockRows = DefaultBlockRows
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate reports every field of c (with defaults applied) that cannot work, each by its YAML
// name.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("clickhouse config: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if host, port, err := net.SplitHostPort(c.Addr); err != nil || host == "" {
		bad("addr", "%q is not host:port", c.Addr)
	} else if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
		bad("addr", "%q: port %q is not a port number", c.Addr, port)
	}
	if !identifier.MatchString(c.Database) || len(c.Database) > 128 {
		bad("database", "%q is not a name of letters, digits and _ (not starting with a digit)", c.Database)
	}
	if c.Username == "" {
		bad("username", "is empty")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"dial_timeout", c.DialTimeout}, {"read_timeout", c.ReadTimeout}, {"conn_max_lifetime", c.ConnMaxLifetime}} {
		if d.v <= 0 {
			bad(d.name, "%v is not a positive duration", d.v)
		}
	}
	if c.MaxOpenConns < 1 {
		bad("max_open_conns", "%d: want at least 1", c.MaxOpenConns)
	}
	if c.MaxIdleConns < 0 || c.MaxIdleConns > c.MaxOpenConns {
		bad("max_idle_conns", "%d: want 0 to max_open_conns (%d)", c.MaxIdleConns, c.MaxOpenConns)
	}
	if c.BlockRows < 1 {
		bad("block_rows", "%d: want at least 1", c.BlockRows)
	}
	if c.Cluster != "" && (!identifier.MatchString(c.Cluster) || len(c.Cluster) > 128) {
		bad("cluster", "%q is not a name of letters, digits and _ (not starting with a digit)", c.Cluster)
	}
	for _, r := range []struct {
		name string
		v    time.Duration
	}{{"retention.decisions", c.Retention.Decisions}} {
		switch {
		case r.v == 0:
		case r.v < 0 || r.v%(24*time.Hour) != 0:
			bad(r.name, "%v is not a whole number of days (24h each)", r.v)
		case !c.Modern:
			bad(r.name, "retention is a TTL, which needs modern: true (ClickHouse %s or later)", modernMinVersion)
		}
	}
	return errors.Join(errs...)
}
