// Package kafkasource takes events from Kafka topics: producers write CloudEvents to the
// topics, and a consumer group hands them to ingest in batches, committing each batch's offsets
// only once its events are durable in the log (or the dead letters).
package kafkasource

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/whocould/whocould/ingest"
	"github.com/whocould/whocould/internal/backoff"
)

// Config configures a source. Brokers is the only field without a default.
type Config struct {
	// Brokers are the bootstrap addresses ("kafka-1:9092").
	Brokers []string
	// Topics the source reads (default "whocould-changes").
	Topics []string
	// GroupID is the consumer group (default "whocould-ingest"); every process with the same
	// group shares the topics' partitions, and the group's committed offsets are where a new
	// run resumes.
	GroupID string
	// Batch is the most messages handed over at once (default 500).
	Batch int
	// MaxWait is how long a batch waits to fill up before it is handed over with what it has
	// (default 50ms): the latency added when traffic is light.
	MaxWait time.Duration
	// StartOffset is where a group without committed offsets starts: "earliest" (default,
	// everything the topics still hold) or "latest" (only what is written from now on).
	StartOffset string
	// SASL authenticates to the brokers (default: no authentication).
	SASL SASL
	// TLS encrypts the connections (default: plaintext).
	TLS    TLS
	Logger *slog.Logger
}

// SASL is the authentication to the brokers.
type SASL struct {
	// Mechanism is "plain", "scram-sha-256" or "scram-sha-512" ("": none).
	Mechanism string
	Username  string
	Password  string
}

// TLS is how connections to the brokers are encrypted. It is used when Enabled or when any
// other field is set.
type TLS struct {
	Enabled bool
	// CAFile is a PEM file of the authorities that sign the brokers' certificates (default: the
	// system's).
	CAFile string
	// CertFile and KeyFile are a client certificate and its key (PEM), for brokers that require
	// one: both or neither.
	CertFile, KeyFile string
	// InsecureSkipVerify accepts any broker certificate: for tests only.
	InsecureSkipVerify bool
}

func (t TLS) enabled() bool {
	return t.Enabled || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.InsecureSkipVerify
}

func (c *Config) defaults() {
	if len(c.Topics) == 0 {
		c.Topics = []string{"whocould-changes"}
	}
	if c.GroupID == "" {
		c.GroupID = "whocould-ingest"
	}
	if c.Batch <= 0 {
		c.Batch = 500
	}
	if c.MaxWait <= 0 {
		c.MaxWait = 50 * time.Millisecond
	}
	if c.StartOffset == "" {
		c.StartOffset = "earliest"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports a configuration that cannot work, naming the field.
func (c Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka source: brokers: none given")
	}
	for _, b := range c.Brokers {
		if b == "" || strings.ContainsAny(b, " \t\r\n/") {
			return fmt.Errorf("kafka source: brokers: %q is not a host:port", b)
		}
	}
	for _, t := range c.Topics {
		if !validTopic(t) {
			return fmt.Errorf("kafka source: topics: %q is not a topic name (1 to 249 of a-z A-Z 0-9 . _ -)", t)
		}
	}
	if strings.ContainsAny(c.GroupID, "\r\n") {
		return fmt.Errorf("kafka source: group id: %q has a line break", c.GroupID)
	}
	if c.Batch > 10000 {
		return fmt.Errorf("kafka source: batch %d is over 10000", c.Batch)
	}
	switch c.StartOffset {
	case "", "earliest", "latest":
	default:
		return fmt.Errorf("kafka source: start offset: %q is neither \"earliest\" nor \"latest\"", c.StartOffset)
	}
	switch strings.ToLower(c.SASL.Mechanism) {
	case "":
		if c.SASL.Username != "" || c.SASL.Password != "" {
			return errors.New("kafka source: sasl mechanism: a username or password is set without a mechanism (plain, scram-sha-256, scram-sha-512)")
		}
	case "plain", "scram-sha-256", "scram-sha-512":
		if c.SASL.Username == "" {
			return fmt.Errorf("kafka source: sasl username: empty with mechanism %s", c.SASL.Mechanism)
		}
	default:
		return fmt.Errorf("kafka source: sasl mechanism: %q is not plain, scram-sha-256 or scram-sha-512", c.SASL.Mechanism)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("kafka source: tls cert file and key file: give both or neither")
	}
	return nil
}

func validTopic(t string) bool {
	if t == "" || len(t) > 249 || t == "." || t == ".." {
		return false
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// dialer is the kafka-go dialer with the configuration's TLS and SASL.
func (c Config) dialer() (*kafka.Dialer, error) {
	d := &kafka.Dialer{ClientID: "whocould", Timeout: 10 * time.Second, DualStack: true}
	if c.TLS.enabled() {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.TLS.InsecureSkipVerify} //nolint:gosec // asked for
		if c.TLS.CAFile != "" {
			pem, err := os.ReadFile(c.TLS.CAFile)
			if err != nil {
				return nil, fmt.Errorf("kafka source: tls ca file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("kafka source: tls ca file: no PEM certificate in %s", c.TLS.CAFile)
			}
		}
		if c.TLS.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("kafka source: tls cert file and key file: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		d.TLS = tc
	}
	var (
		mech sasl.Mechanism
		err  error
	)
	switch strings.ToLower(c.SASL.Mechanism) {
	case "plain":
		mech = plain.Mechanism{Username: c.SASL.Username, Password: c.SASL.Password}
	case "scram-sha-256":
		mech, err = scram.Mechanism(scram.SHA256, c.SASL.Username, c.SASL.Password)
	case "scram-sha-512":
		mech, err = scram.Mechanism(scram.SHA512, c.SASL.Username, c.SASL.Password)
	}
	if err != nil {
		return nil, fmt.Errorf("kafka source: sasl: %w", err)
	}
	d.SASLMechanism = mech
	return d, nil
}

// Source is a Kafka consumer-group reader.
type Source struct {
	cfg    Config
	dialer *kafka.Dialer
}

var _ ingest.Source = (*Source)(nil)

// New returns a source; it reads the TLS files now, and connects only when it runs.
func New(cfg Config) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.defaults()
	d, err := cfg.dialer()
	if err != nil {
		return nil, err
	}
	return &Source{cfg: cfg, dialer: d}, nil
}

// Name implements ingest.Source.
func (s *Source) Name() string { return "kafka" }

// commitTimeout bounds the commit of a handled batch, which goes on after ctx ended so that
// a stopping Run does not leave handled work to be delivered again.
const commitTimeout = 10 * time.Second

func (s *Source) reader() *kafka.Reader {
	start := kafka.FirstOffset
	if s.cfg.StartOffset == "latest" {
		start = kafka.LastOffset
	}
	log := s.cfg.Logger
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers:     s.cfg.Brokers,
		GroupID:     s.cfg.GroupID,
		GroupTopics: s.cfg.Topics,
		Dialer:      s.dialer,
		StartOffset: start,
		// Commits are synchronous (CommitInterval 0): CommitMessages returns once the broker
		// has the offsets.
		CommitInterval:        0,
		QueueCapacity:         max(100, s.cfg.Batch),
		MaxWait:               time.Second, // a fetch's long poll: how long an idle partition waits
		JoinGroupBackoff:      time.Second,
		WatchPartitionChanges: true,
		Logger:                kafkaLogger(log, slog.LevelDebug),
		ErrorLogger:           kafkaLogger(log, slog.LevelWarn),
	})
}

// kafkaLogger passes kafka-go's printf-style logs to log at level.
func kafkaLogger(log *slog.Logger, level slog.Level) kafka.Logger {
	return kafka.LoggerFunc(func(msg string, args ...any) {
		if log.Enabled(context.Background(), level) {
			log.Log(context.Background(), level, "kafka: "+strings.TrimSpace(fmt.Sprintf(msg, args...)))
		}
	})
}

// Run implements ingest.Source. Each Run joins the group with a reader of its own and leaves
// it on return, so a Run after a failed one resumes from the group's committed offsets.
func (s *Source) Run(ctx context.Context, handle ingest.Handler) error {
	r := s.reader()
	defer func() {
		if err := r.Close(); err != nil {
			s.cfg.Logger.Warn("kafka source: close reader", "error", err)
		}
	}()
	topics := strings.Join(s.cfg.Topics, ",")
	var backoff backoff.Backoff
	batch := make([]ingest.Message, 0, s.cfg.Batch)
	msgs := make([]kafka.Message, 0, s.cfg.Batch)
	for ctx.Err() == nil {
		// Wait as long as it takes for a first message, then at most MaxWait for the rest.
		m, err := r.FetchMessage(ctx)
		if err == nil {
			msgs = append(msgs[:0], m)
			wctx, cancel := context.WithTimeout(ctx, s.cfg.MaxWait)
			for len(msgs) < s.cfg.Batch {
				if m, err = r.FetchMessage(wctx); err != nil {
					break
				}
				msgs = append(msgs, m)
			}
			cancel()
			if wctx.Err() != nil && ctx.Err() == nil {
				err = nil // MaxWait is up: hand over what came
			}
		}
		if ctx.Err() != nil {
			// Abandon what was fetched and not handled: the group delivers it again.
			return nil
		}
		if len(msgs) > 0 {
			batch = batch[:0]
			for _, m := range msgs {
				batch = append(batch, ingest.Message{
					Data:   m.Value,
					Source: "kafka:" + m.Topic,
					Where:  fmt.Sprintf("partition %d offset %d", m.Partition, m.Offset),
				})
			}
			if herr := handle(ctx, batch); herr != nil {
				if ctx.Err() != nil && errors.Is(herr, ctx.Err()) {
					return nil // stopped while handling: abandoned, delivered again
				}
				return fmt.Errorf("kafka source %s: %w", topics, herr)
			}
			// The batch is durable: commit it even if ctx ended meanwhile. A lost commit means
			// a redelivery, which the log's deduplication absorbs.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
			if cerr := r.CommitMessages(cctx, msgs...); cerr != nil {
				s.cfg.Logger.Warn("kafka source: commit offsets", "topics", topics, "messages", len(msgs), "error", cerr)
			}
			cancel()
			msgs = msgs[:0]
			backoff.Reset()
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("kafka source %s: reader closed", topics)
			}
			// kafka-go reconnects by itself; what reaches here is its report of a failure it
			// keeps retrying (a broker away, a rebalance): wait and read on.
			s.cfg.Logger.Warn("kafka source: fetch failed, retrying", "topics", topics, "error", err)
			if !backoff.Wait(ctx) {
				return nil
			}
		}
	}
	return nil
}
