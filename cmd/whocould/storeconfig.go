package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/whocould/whocould/store"
	"github.com/whocould/whocould/store/clickhouse"
	"github.com/whocould/whocould/store/embedded"
)

// The store backends serve and the demo can run on.
const (
	backendEmbedded   = "embedded"
	backendClickHouse = "clickhouse"
)

var backends = []string{backendEmbedded, backendClickHouse}

// envClickHousePassword names the variable that holds the ClickHouse password when neither the
// config nor --store gives one (a secret: better not in a file or on a command line).
const envClickHousePassword = "WHOCOULD_CLICKHOUSE_PASSWORD"

// storeConfig is the store section of serve's configuration: where the projection lives. The
// zero value (no section) is the embedded store in DATA/store. openStore is the one place that
// turns it into a store.
type storeConfig struct {
	// Backend is embedded (default) or clickhouse (the default when the clickhouse section is
	// present).
	Backend string `yaml:"backend"`
	// ClickHouse configures the clickhouse backend (store/clickhouse.Config, every key
	// optional: 127.0.0.1:9000, database whocould).
	ClickHouse *clickhouse.Config `yaml:"clickhouse"`

	// flag is set when --store gave this configuration: errors then name the flag and the URL's
	// parts instead of the config's keys.
	flag bool
}

func (c *storeConfig) defaults() {
	if c.Backend == "" {
		c.Backend = backendEmbedded
		if c.ClickHouse != nil {
			c.Backend = backendClickHouse
		}
	}
	if c.Backend == backendClickHouse {
		if c.ClickHouse == nil {
			c.ClickHouse = &clickhouse.Config{}
		}
		*c.ClickHouse = c.ClickHouse.WithDefaults()
	}
}

// isClickHouse reports whether the store is ClickHouse: shared between processes, so that the
// api target may run without the projector.
func (c storeConfig) isClickHouse() bool { return c.Backend == backendClickHouse }

// Validate reports what cannot work, naming the key (store.clickhouse.addr: ...) or, for
// --store, the flag and the URL's part.
func (c storeConfig) Validate() error {
	if c.Backend == "" && c.ClickHouse == nil {
		return nil // the zero value: the embedded store
	}
	if !slices.Contains(backends, c.Backend) {
		return fmt.Errorf("store.backend: unknown backend %q (want %s)", c.Backend, strings.Join(backends, " or "))
	}
	if c.Backend != backendClickHouse {
		if c.ClickHouse != nil {
			return fmt.Errorf("store.clickhouse: set, but store.backend is %s: remove the section or set backend: clickhouse", c.Backend)
		}
		return nil
	}
	err := c.ClickHouse.Validate()
	if err == nil {
		return nil
	}
	// clickhouse.Config.Validate says "clickhouse config: FIELD: what" for each field.
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	msgs := make([]string, len(errs))
	for i, e := range errs {
		m := strings.TrimPrefix(e.Error(), "clickhouse config: ")
		if c.flag {
			msgs[i] = "--store " + c.String() + ": " + m
		} else {
			msgs[i] = "store.clickhouse." + m
		}
	}
	return errors.New(strings.Join(msgs, "\n"))
}

// String names the store for logs and messages, without the password.
func (c storeConfig) String() string {
	if c.Backend != backendClickHouse || c.ClickHouse == nil {
		return backendEmbedded
	}
	ch := c.ClickHouse
	u := url.URL{Scheme: "clickhouse", Host: ch.Addr, Path: "/" + ch.Database}
	if ch.Username != "" && ch.Username != clickhouse.DefaultUsername {
		u.User = url.User(ch.Username)
	}
	return u.String()
}

// applyEnv takes the ClickHouse password from WHOCOULD_CLICKHOUSE_PASSWORD when the config and
// --store give none.
func (c *storeConfig) applyEnv(getenv func(string) string) {
	if c.ClickHouse != nil && c.ClickHouse.Password == "" {
		c.ClickHouse.Password = getenv(envClickHousePassword)
	}
}

// checkpointInterval is how often the projector checkpoints while following the log (0: its
// default). ClickHouse makes rows visible as they are applied and a checkpoint is one row, so it
// checkpoints every second: processes that only answer (the api target) read their position,
// for min_position, from the checkpoint.
func (c storeConfig) checkpointInterval() time.Duration {
	if c.isClickHouse() {
		return time.Second
	}
	return 0
}

// openStore opens the store c selects: the embedded store in DATA/store or ClickHouse. It is the
// one place a backend is chosen; the zero storeConfig is the embedded store.
func openStore(ctx context.Context, c storeConfig, dataDir string, logger *slog.Logger) (store.Store, error) {
	switch c.Backend {
	case "", backendEmbedded:
		st, err := embedded.Open(embedded.Config{Dir: filepath.Join(dataDir, "store"), Logger: logger})
		if err != nil {
			return nil, err
		}
		return st, nil
	case backendClickHouse:
		cfg := clickhouse.Config{}
		if c.ClickHouse != nil {
			cfg = *c.ClickHouse
		}
		cfg.Logger = logger
		st, err := clickhouse.Open(ctx, cfg)
		if err != nil {
			return nil, err
		}
		return st, nil
	default:
		return nil, fmt.Errorf("store.backend: unknown backend %q", c.Backend)
	}
}

// storeURLParams are the query parameters a clickhouse:// URL of --store takes, each the
// clickhouse section's key of the same name.
var storeURLParams = []string{"cluster", "modern", "compression", "block_rows", "read_timeout", "dial_timeout", "max_open_conns"}

// parseStoreFlag parses --store: "embedded", or
// clickhouse://[user[:password]@]host[:port][/database][?cluster=NAME&modern=true&compression=true&block_rows=N&read_timeout=5m&dial_timeout=10s&max_open_conns=N]
// (port 9000 and database whocould by default). Errors are usage errors, never showing the
// password.
func parseStoreFlag(s string) (storeConfig, error) {
	bad := func(format string, a ...any) (storeConfig, error) {
		return storeConfig{}, usagef("--store: "+format, a...)
	}
	if s == backendEmbedded {
		return storeConfig{Backend: backendEmbedded, flag: true}, nil
	}
	if !strings.HasPrefix(s, "clickhouse://") {
		shown := s
		if i := strings.Index(s, "://"); i >= 0 {
			shown = s[:i+3] + "..."
		}
		return bad("%q: want embedded or clickhouse://[user[:password]@]host:port/database", shown)
	}
	u, err := url.Parse(s)
	if err != nil {
		// url's errors quote the whole URL, password included: say what, not where.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return bad("not a URL: %v (want clickhouse://[user[:password]@]host:port/database)", err)
	}
	shown := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
	if u.Fragment != "" || u.Opaque != "" {
		return bad("%s: want clickhouse://[user[:password]@]host:port/database", shown)
	}
	cfg := clickhouse.Config{}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		return bad("%s: no host (want clickhouse://host:port/database)", shown)
	}
	if port == "" {
		if strings.HasSuffix(u.Host, ":") {
			return bad("%s: empty port", shown)
		}
		port = "9000"
	}
	cfg.Addr = net.JoinHostPort(host, port)
	db := strings.TrimPrefix(u.Path, "/")
	if strings.Contains(db, "/") {
		return bad("%s: the path is the database, one name: %q", shown, db)
	}
	cfg.Database = db
	if u.User != nil {
		cfg.Username = u.User.Username()
		if cfg.Username == "" {
			return bad("%s: empty user name before @", shown)
		}
		cfg.Password, _ = u.User.Password()
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return bad("%s: query: %v", shown, err)
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		vs := q[k]
		if !slices.Contains(storeURLParams, k) {
			return bad("%s: unknown parameter %q (it takes %s)", shown, k, strings.Join(storeURLParams, ", "))
		}
		if len(vs) != 1 {
			return bad("%s: parameter %s given %d times", shown, k, len(vs))
		}
		v := vs[0]
		var perr error
		switch k {
		case "cluster":
			if v == "" {
				perr = errors.New("empty")
			}
			cfg.Cluster = v
		case "modern":
			cfg.Modern, perr = strconv.ParseBool(v)
		case "compression":
			cfg.Compression, perr = strconv.ParseBool(v)
		case "block_rows":
			cfg.BlockRows, perr = positiveInt(v)
		case "max_open_conns":
			cfg.MaxOpenConns, perr = positiveInt(v)
		case "read_timeout":
			cfg.ReadTimeout, perr = positiveDuration(v)
		case "dial_timeout":
			cfg.DialTimeout, perr = positiveDuration(v)
		}
		if perr != nil {
			return bad("%s: parameter %s=%q: %v", shown, k, v, unwrapNum(perr))
		}
	}
	return storeConfig{Backend: backendClickHouse, ClickHouse: &cfg, flag: true}, nil
}

func positiveInt(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err == nil && n < 1 {
		err = errors.New("want at least 1")
	}
	return n, err
}

func positiveDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err == nil && d <= 0 {
		err = errors.New("want a positive duration such as 30s or 5m")
	}
	return d, err
}

// unwrapNum drops strconv's repetition of the function and the input.
func unwrapNum(err error) error {
	var ne *strconv.NumError
	if errors.As(err, &ne) {
		if errors.Is(ne.Err, strconv.ErrSyntax) {
			return fmt.Errorf("not a %s", map[string]string{"ParseBool": "boolean (true or false)", "Atoi": "number"}[ne.Func])
		}
		return ne.Err
	}
	return err
}

// setStore applies --store (flag, when given: it replaces the config's store section), the
// defaults and the password from the environment.
func (c *serveConfig) setStore(flag string, given bool, getenv func(string) string) error {
	if given {
		sc, err := parseStoreFlag(flag)
		if err != nil {
			return err
		}
		c.Store = sc
	}
	c.Store.defaults()
	c.Store.applyEnv(getenv)
	return nil
}

// addStoreFlag adds --store to serve and the demo.
func addStoreFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "store", "", "where the projection lives: embedded (DATA/store) or "+
		"clickhouse://[user[:password]@]host:port/database[?cluster=NAME&modern=true&compression=true&block_rows=N&read_timeout=5m] "+
		"(password also from $"+envClickHousePassword+"); overrides the config's store section")
}
