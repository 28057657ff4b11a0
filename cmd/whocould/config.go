package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/whocould/whocould/analyzer"
	"github.com/whocould/whocould/api"
	"github.com/whocould/whocould/schedule"
)

// Targets: the parts of whocould one process runs.
const (
	targetIngest    = "ingest"
	targetProjector = "projector"
	targetAPI       = "api"
	targetAnalyzer  = "analyzer"
)

var allTargets = []string{targetIngest, targetProjector, targetAPI, targetAnalyzer}

// serveConfig is `whocould serve`'s configuration (YAML, every key optional). No file at all is
// the embedded all-in-one: every target in one process, the embedded NATS server holding the
// event log and the producers' inbox, the embedded store, the API on 127.0.0.1:8080. The demo
// runs the same service with the same configuration.
type serveConfig struct {
	// DataDir holds the embedded NATS server's files, the log's index, the embedded store and
	// the dead letters (default ./whocould-data).
	DataDir string `yaml:"data_dir"`
	// Targets to run (default all): ingest, projector, api, analyzer.
	Targets  []string     `yaml:"targets"`
	LogLevel string       `yaml:"log_level"`
	NATS     natsConfig   `yaml:"nats"`
	Kafka    *kafkaConfig `yaml:"kafka"`
	// Store is where the projection lives (default: the embedded store in DATA/store);
	// --store overrides it.
	Store    storeConfig   `yaml:"store"`
	API      apiConfig     `yaml:"api"`
	Shutdown time.Duration `yaml:"shutdown_timeout"`
	// Analyzer is when the analyzers run and what they judge by (the analyzer target, and
	// `whocould analyze --config`); its baseline path is relative to the config file.
	Analyzer analyzer.Config `yaml:"analyzer"`
	// dir is the config file's directory ("" without a file).
	dir string
}

type natsConfig struct {
	// URL of an external NATS cluster with JetStream; empty runs the embedded server.
	URL string `yaml:"url"`
	// CredentialsFile (a .creds file) or NKeyFile (a seed file) authenticate to the cluster.
	CredentialsFile string     `yaml:"credentials_file"`
	NKeyFile        string     `yaml:"nkey_file"`
	TLS             *tlsConfig `yaml:"tls"`
	// Listen is where the embedded server takes producers' connections (default
	// 127.0.0.1:4222; "off": in-process only).
	Listen string `yaml:"listen"`
	// Inbox is the stream producers publish to.
	Inbox inboxConfig `yaml:"inbox"`
}

type inboxConfig struct {
	// Stream (default WHOCOULD_IN) holding Subjects (default whocould.in.>); permission
	// changes go to whocould.in.changes.> and decisions to whocould.in.decisions.> (keyed by
	// principal), each read by a consumer of its own so that decisions never hold changes back.
	Stream   string   `yaml:"stream"`
	Subjects []string `yaml:"subjects"`
	// Create the stream when serve starts (default true; false when it is managed elsewhere).
	Create *bool `yaml:"create"`
	// Batch is the most messages one ingest step takes (default 500).
	Batch int `yaml:"batch"`
}

type kafkaConfig struct {
	Brokers []string `yaml:"brokers"`
	// Topics to read (default whocould-changes and whocould-decisions).
	Topics  []string   `yaml:"topics"`
	GroupID string     `yaml:"group_id"`
	SASL    *saslConf  `yaml:"sasl"`
	TLS     *tlsConfig `yaml:"tls"`
}

type saslConf struct {
	Mechanism string `yaml:"mechanism"` // plain, scram-sha-256, scram-sha-512
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
}

type tlsConfig struct {
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

type apiConfig struct {
	// Listen address (default 127.0.0.1:8080).
	Listen string     `yaml:"listen"`
	TLS    *tlsConfig `yaml:"tls"` // cert_file and key_file: serve HTTPS
	// Tokens, stored hashed (printf %s "$SECRET" | sha256sum). WHOCOULD_ADMIN_TOKEN adds an admin token;
	// with none at all, serve makes one and writes it to DATA/admin-token.
	Tokens       []api.Token   `yaml:"tokens"`
	MaxBodyBytes int64         `yaml:"max_body_bytes"`
	MaxWait      time.Duration `yaml:"max_wait"`
}

// loadServeConfig reads path ("" for none) and applies the defaults.
func loadServeConfig(path string) (serveConfig, error) {
	var c serveConfig
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return c, usageError{fmt.Errorf("config: %w", err)}
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
			return c, usagef("config %s: %v", path, strings.TrimPrefix(err.Error(), "yaml: "))
		}
	}
	if path != "" {
		c.dir = filepath.Dir(path)
	}
	c.defaults()
	return c, nil
}

func (c *serveConfig) defaults() {
	if c.DataDir == "" {
		c.DataDir = "./whocould-data"
	}
	if len(c.Targets) == 0 {
		c.Targets = slices.Clone(allTargets)
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.Shutdown <= 0 {
		c.Shutdown = 30 * time.Second
	}
	if c.NATS.URL == "" && c.NATS.Listen == "" {
		c.NATS.Listen = "127.0.0.1:4222"
	}
	in := &c.NATS.Inbox
	if in.Stream == "" {
		in.Stream = "WHOCOULD_IN"
	}
	if len(in.Subjects) == 0 {
		in.Subjects = []string{"whocould.in.>"}
	}
	if in.Create == nil {
		t := true
		in.Create = &t
	}
	if in.Batch <= 0 {
		in.Batch = 500
	}
	if k := c.Kafka; k != nil {
		if len(k.Topics) == 0 {
			k.Topics = []string{"whocould-changes", "whocould-decisions"}
		}
		if k.GroupID == "" {
			k.GroupID = "whocould-ingest"
		}
	}
	c.Store.defaults()
	c.Analyzer.Defaults()
	if c.Analyzer.Baseline != "" && c.dir != "" && !filepath.IsAbs(c.Analyzer.Baseline) {
		c.Analyzer.Baseline = filepath.Join(c.dir, c.Analyzer.Baseline)
	}
	if c.API.Listen == "" {
		c.API.Listen = "127.0.0.1:8080"
	}
	if c.API.MaxBodyBytes <= 0 {
		c.API.MaxBodyBytes = api.DefaultMaxBodyBytes
	}
	if c.API.MaxWait <= 0 {
		c.API.MaxWait = api.DefaultMaxWait
	}
}

func (c serveConfig) has(target string) bool { return slices.Contains(c.Targets, target) }

// Validate reports the first setting that cannot work, naming its key.
func (c *serveConfig) Validate() error {
	for i, t := range c.Targets {
		if !slices.Contains(allTargets, t) {
			return fmt.Errorf("targets[%d]: unknown target %q (want %s)", i, t, strings.Join(allTargets, ", "))
		}
	}
	if err := c.Store.Validate(); err != nil {
		return err
	}
	if c.has(targetAnalyzer) && !c.has(targetProjector) && !c.Store.isClickHouse() {
		return errors.New("targets: analyzer without projector needs a store shared between processes: set store.backend: clickhouse " +
			"(or --store clickhouse://host:port/database), or run analyzer and projector together")
	}
	if err := c.Analyzer.Validate(); err != nil {
		return fmt.Errorf("analyzer: %w", err)
	}
	if _, err := schedule.ParseSpec(c.Analyzer.Schedule); err != nil {
		return fmt.Errorf("analyzer: schedule: %w", err)
	}
	if c.has(targetAPI) && !c.has(targetProjector) && !c.Store.isClickHouse() {
		return errors.New("targets: api without projector needs a store shared between processes: set store.backend: clickhouse " +
			"(or --store clickhouse://host:port/database), or run api and projector together")
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	if c.NATS.URL == "" {
		if c.NATS.CredentialsFile != "" || c.NATS.NKeyFile != "" || c.NATS.TLS != nil {
			return errors.New("nats: credentials_file, nkey_file and tls are for an external cluster: set nats.url too")
		}
		if c.NATS.Listen != "off" {
			if _, _, err := net.SplitHostPort(c.NATS.Listen); err != nil {
				return fmt.Errorf("nats.listen %q: %w", c.NATS.Listen, err)
			}
		}
	} else if c.NATS.CredentialsFile != "" && c.NATS.NKeyFile != "" {
		return errors.New("nats: give credentials_file or nkey_file, not both")
	}
	for _, f := range []struct{ key, path string }{
		{"nats.credentials_file", c.NATS.CredentialsFile}, {"nats.nkey_file", c.NATS.NKeyFile},
	} {
		if err := readable(f.key, f.path); err != nil {
			return err
		}
	}
	if err := c.NATS.TLS.validate("nats.tls", false); err != nil {
		return err
	}
	for i, s := range c.NATS.Inbox.Subjects {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			return fmt.Errorf("nats.inbox.subjects[%d]: %q is not a subject", i, s)
		}
	}
	if c.NATS.Inbox.Batch > 10000 {
		return fmt.Errorf("nats.inbox.batch: %d is over 10000", c.NATS.Inbox.Batch)
	}
	if k := c.Kafka; k != nil {
		if len(k.Brokers) == 0 {
			return errors.New("kafka.brokers: none given (remove the kafka section to read no Kafka topics)")
		}
		for i, b := range k.Brokers {
			if _, _, err := net.SplitHostPort(b); err != nil {
				return fmt.Errorf("kafka.brokers[%d] %q: want host:port", i, b)
			}
		}
		if s := k.SASL; s != nil {
			if !slices.Contains([]string{"plain", "scram-sha-256", "scram-sha-512"}, s.Mechanism) {
				return fmt.Errorf("kafka.sasl.mechanism %q: want plain, scram-sha-256 or scram-sha-512", s.Mechanism)
			}
			if s.Username == "" {
				return errors.New("kafka.sasl.username: empty")
			}
		}
		if err := k.TLS.validate("kafka.tls", false); err != nil {
			return err
		}
	}
	if _, _, err := net.SplitHostPort(c.API.Listen); err != nil {
		return fmt.Errorf("api.listen %q: %w", c.API.Listen, err)
	}
	if err := c.API.TLS.validate("api.tls", true); err != nil {
		return err
	}
	for i, t := range c.API.Tokens {
		if err := t.Validate(); err != nil {
			return fmt.Errorf("api.tokens[%d]: %w", i, err)
		}
	}
	return nil
}

// validate checks a TLS section; server: a certificate and key are required.
func (t *tlsConfig) validate(key string, server bool) error {
	if t == nil {
		return nil
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return fmt.Errorf("%s: give cert_file and key_file together", key)
	}
	if server && t.CertFile == "" {
		return fmt.Errorf("%s: cert_file and key_file are required to serve HTTPS", key)
	}
	for _, f := range []struct{ k, p string }{{".ca_file", t.CAFile}, {".cert_file", t.CertFile}, {".key_file", t.KeyFile}} {
		if err := readable(key+f.k, f.p); err != nil {
			return err
		}
	}
	return nil
}

func readable(key, path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	return f.Close()
}
