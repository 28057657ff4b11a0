package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/whocould/whocould/analyzer"
	"github.com/whocould/whocould/api"
	"github.com/whocould/whocould/ingest"
	"github.com/whocould/whocould/ingest/kafkasource"
	"github.com/whocould/whocould/ingest/natssource"
	"github.com/whocould/whocould/internal/backoff"
	"github.com/whocould/whocould/schedule"
)

func newServe(g *globals) *cobra.Command {
	var (
		configPath string
		targets    string
		listen     string
		storeFlag  string
	)
	cmd := &cobra.Command{
		Use:   "serve [--config FILE] [--target ingest,projector,api,analyzer] [--listen ADDR] [--store embedded|clickhouse://...]",
		Short: "Run whocould as a service: ingest from NATS (and Kafka), project, serve the HTTP API",
		Long: `Serve runs whocould as a service. With no configuration it is the embedded all-in-one: the NATS
server (JetStream) holding the event log and the producers' inbox, listening on 127.0.0.1:4222;
the projector keeping the embedded store; the HTTP API on 127.0.0.1:8080. Producers publish
CloudEvents to whocould.in.changes.<producer> and whocould.in.decisions.<principal>, or POST
them to /v1/events. See deploy/ for configuration examples.

--store clickhouse://[user[:password]@]host:port/database keeps the projection in ClickHouse
instead of the embedded store (the password may come from WHOCOULD_CLICKHOUSE_PASSWORD); the api
target may then run without the projector, in as many processes as you like.

Every API call needs a bearer token. WHOCOULD_ADMIN_TOKEN sets an admin token; with no token
configured at all, serve makes one and writes it to DATA/admin-token (mode 0600).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadServeConfig(configPath)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("data-dir") || cfg.DataDir == "" {
				cfg.DataDir = g.dataDir
			}
			if targets != "" {
				cfg.Targets = strings.Split(targets, ",")
			}
			if listen != "" {
				cfg.API.Listen = listen
			}
			if cmd.Flags().Changed("log-level") {
				cfg.LogLevel = g.logLevel
			}
			if err := cfg.setStore(storeFlag, cmd.Flags().Changed("store"), os.Getenv); err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return usagef("config: %v", err)
			}
			var lvl slog.Level
			_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
			logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
			return runServe(cmd.Context(), cfg, logger, serveHooks{})
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "YAML configuration file (none: the embedded all-in-one)")
	cmd.Flags().StringVar(&targets, "target", "", "targets to run, comma-separated: ingest, projector, api, analyzer (default all)")
	cmd.Flags().StringVar(&listen, "listen", "", "API listen address (default 127.0.0.1:8080)")
	addStoreFlag(cmd, &storeFlag)
	return cmd
}

// served is what a running service tells whoever started it (the demo, tests).
type served struct {
	APIURL  string
	NATSURL string // "" when the embedded server does not listen
	Token   string // the admin token serve made or was given, "" when configured hashed
	stack   *stack
}

// serveHooks let another command (the demo) run the service.
type serveHooks struct {
	// ready, when set, is called once the service answers.
	ready func(served)
	// lock is the data directory's lock, already taken (see stackOptions.lock).
	lock *os.File
}

// runServe runs the service until ctx ends, then shuts down: the API stops taking calls and
// finishes the ones in hand; then, together, the sources finish their batch, the audit appends
// what it holds and the projector applies what it read and checkpoints (what lands in the log
// after it stopped is projected at the next start).
func runServe(ctx context.Context, cfg serveConfig, logger *slog.Logger, hooks serveHooks) error {
	// The store is opened by the processes that project or answer; only the projector writes it.
	opts := stackOptions{lock: hooks.lock, store: cfg.Store, progress: func(done, last uint64) {
		logger.Info("catching up with the log", "position", done, "last", last)
	}}
	opts.noStore = !cfg.has(targetProjector) && !cfg.has(targetAPI) && !cfg.has(targetAnalyzer)
	opts.noProjector = !cfg.has(targetProjector)
	if cfg.NATS.URL != "" {
		opts.natsConnect = func() (*nats.Conn, error) { return connectNATS(cfg.NATS, logger) }
	} else if cfg.NATS.Listen != "off" {
		opts.natsListen = cfg.NATS.Listen
	}
	s, err := openStack(ctx, cfg.DataDir, logger, opts)
	if err != nil {
		return err
	}
	defer s.close()
	tokens, adminSecret, err := serveTokens(cfg, logger) // after the lock: one process writes the token
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	im, err := ingest.NewMetrics(reg)
	if err != nil {
		return err
	}
	s.ingest.WithMetrics(im)
	registerPipelineMetrics(reg, s)

	var wg sync.WaitGroup
	failed := make(chan error, 8)
	// Each part runs until its context ends; one that fails for good stops the service.
	run := func(ctx context.Context, name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				logger.Error("part stopped", "part", name, "error", err)
				failed <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	projCtx, stopProjector := context.WithCancel(context.Background())
	defer stopProjector()
	health := &serviceHealth{stack: s}
	if cfg.has(targetProjector) {
		run(projCtx, "projector", func(ctx context.Context) error {
			return s.proj.RunRetrying(ctx, func(err error) { health.projector.Store(&err) })
		})
	} else if s.store != nil {
		// Answering from a store another process projects into: its position, for min_position,
		// is the one it checkpointed.
		run(projCtx, "store position", func(ctx context.Context) error {
			return s.followStore(ctx, 200*time.Millisecond, func(err error) {
				if err == nil {
					health.store.Store(nil)
				} else if health.store.Swap(&err) == nil {
					logger.Warn("the store cannot be read", "store", cfg.Store.String(), "error", err)
				}
			})
		})
	}
	srcCtx, stopSources := context.WithCancel(context.Background())
	defer stopSources()
	if cfg.has(targetIngest) {
		srcs, err := serveSources(cfg, s, logger)
		if err != nil {
			return err
		}
		for _, src := range srcs {
			run(srcCtx, "source "+src.Name(), func(ctx context.Context) error { return keepRunning(ctx, src, s.ingest.Handle, logger) })
		}
	}
	// The analyzers: on their schedule with the analyzer target; on demand (POST /v1/analyze)
	// and for the findings' lifecycle wherever the store is open.
	var findings *analyzer.Service
	var sched *schedule.Scheduler
	if s.store != nil {
		findings = &analyzer.Service{Analyzer: &analyzer.Analyzer{Store: s.store, Config: &cfg.Analyzer, Log: logger}}
	}
	if cfg.has(targetAnalyzer) {
		if sched, err = analyzerSchedule(cfg, findings, logger, reg); err != nil {
			return err
		}
		if err := sched.Start(ctx); err != nil {
			return err
		}
	}
	auditCtx, stopAudit := context.WithCancel(context.Background())
	defer stopAudit()
	var httpSrv *http.Server
	info := served{Token: adminSecret, stack: s}
	if s.nats != nil {
		info.NATSURL = s.nats.ClientURL()
	}
	// Every process answers on api.listen: the queries with the api target, and always the
	// health checks, the metrics and (with ingest) POST /v1/events.
	{
		audit := api.NewAudit(s.ingest, 0, logger)
		run(auditCtx, "audit", audit.Run)
		acfg := api.Config{
			Projected: s.projected, Ingest: s.ingest, DeadLetters: s.dead, Tokens: tokens, Ready: health.ready,
			Audit: audit, Registry: reg, MaxBodyBytes: cfg.API.MaxBodyBytes, MaxWait: cfg.API.MaxWait, Logger: logger,
		}
		if cfg.has(targetAPI) {
			acfg.Querier = s.store
			acfg.Findings = findings
		}
		if !cfg.has(targetIngest) && !cfg.has(targetAPI) {
			acfg.Ingest = nil
		}
		h, err := api.New(acfg)
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", cfg.API.Listen)
		if err != nil {
			return fmt.Errorf("api.listen: %w", err)
		}
		httpSrv = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
		scheme := "http"
		if t := cfg.API.TLS; t != nil {
			scheme = "https"
			httpSrv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			go func() { serveDone(httpSrv.ServeTLS(ln, t.CertFile, t.KeyFile), failed) }()
		} else {
			go func() { serveDone(httpSrv.Serve(ln), failed) }()
		}
		info.APIURL = scheme + "://" + ln.Addr().String()
	}
	storeName := "none"
	if s.store != nil {
		storeName = cfg.Store.String()
	}
	logger.Info("whocould serving", "targets", strings.Join(cfg.Targets, ","), "api", info.APIURL, "nats", info.NATSURL,
		"data_dir", cfg.DataDir, "store", storeName, "position", s.projected())
	if hooks.ready != nil {
		hooks.ready(info)
	}

	var runErr error
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case runErr = <-failed:
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown)
	defer cancel()
	if httpSrv != nil {
		if err := httpSrv.Shutdown(sctx); err != nil {
			logger.Warn("api shutdown", "error", err)
		}
	}
	if sched != nil {
		if err := sched.Stop(sctx); err != nil {
			logger.Warn("analyzer shutdown", "error", err)
		}
	}
	stopSources()
	stopAudit()
	stopProjector()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-sctx.Done():
		return errors.Join(runErr, fmt.Errorf("shutdown: parts still running after %s", cfg.Shutdown))
	}
	logger.Info("stopped", "position", s.projected())
	return runErr
}

// analyzerSchedule is the analyzer target's scheduler: one job, "analyze", running the rules
// (analyzer.rules, default every rule) over every tenant at cfg.Analyzer.Schedule, one run at a time, each bounded by its timeout.
func analyzerSchedule(cfg serveConfig, svc *analyzer.Service, logger *slog.Logger, reg prometheus.Registerer) (*schedule.Scheduler, error) {
	sched, err := schedule.New(schedule.Config{Logger: logger, Registry: reg})
	if err != nil {
		return nil, err
	}
	err = sched.Add(schedule.Job{Name: "analyze", Spec: cfg.Analyzer.Schedule, Timeout: cfg.Analyzer.Timeout.D(),
		Run: func(ctx context.Context) (schedule.Result, error) {
			res, err := svc.Analyze(ctx, analyzer.Options{})
			if res == nil {
				return schedule.Result{}, err
			}
			c := res.Counts()
			counts := map[string]int64{"findings": int64(len(res.Findings))}
			for status, n := range c {
				counts[status] = int64(n)
			}
			return schedule.Result{Counts: counts, Summary: fmt.Sprintf("%d findings: %d open, %d acknowledged, %d resolved, %d suppressed",
				len(res.Findings), c["open"], c["acknowledged"], c["resolved"], c["suppressed"])}, err
		}})
	if err != nil {
		return nil, err
	}
	return sched, nil
}

func serveDone(err error, failed chan<- error) {
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		failed <- fmt.Errorf("api: %w", err)
	}
}

// keepRunning runs src until ctx ends, starting it again (with back-off) after a failure: a
// failed batch was not acknowledged and comes again.
func keepRunning(ctx context.Context, src ingest.Source, h ingest.Handler, logger *slog.Logger) error {
	return backoff.Forever(ctx, backoff.Backoff{Min: 100 * time.Millisecond, Max: 10 * time.Second},
		func(ctx context.Context) error { return src.Run(ctx, h) },
		func(err error, wait time.Duration) {
			logger.Warn("source stopped, starting it again", "source", src.Name(), "error", err, "in", wait)
		})
}

// serviceHealth is what /readyz reports: not ready while the projector keeps failing (it is
// ready again once it has caught up with the log after a failure), nor, in a process that
// answers without projecting, while the store cannot be read.
type serviceHealth struct {
	projector atomic.Pointer[error]
	store     atomic.Pointer[error]
	stack     *stack
}

func (h *serviceHealth) ready(ctx context.Context) error {
	if e := h.store.Load(); e != nil {
		return fmt.Errorf("the store cannot be read: %w", *e)
	}
	p := h.projector.Load()
	if p == nil {
		return nil
	}
	last, err := h.stack.log.Last(ctx)
	if err != nil {
		return fmt.Errorf("the log cannot be read: %w", err)
	}
	if h.stack.proj.Position() >= last {
		h.projector.CompareAndSwap(p, nil)
		return nil
	}
	return fmt.Errorf("the projector failed (%v) and has not caught up yet (position %d of %d)", *p, h.stack.proj.Position(), last)
}

// inboxParts are the parts of the NATS inbox, each read by a consumer of its own (inboxConsumer):
// changes and decisions travel apart.
var inboxParts = []string{"changes", "decisions"}

func inboxConsumer(part string) string { return "whocould-ingest-" + part }

// serveSources are the sources the ingest target reads: the NATS inbox (changes and decisions
// with a consumer each) and the Kafka topics, when configured.
func serveSources(cfg serveConfig, s *stack, logger *slog.Logger) ([]ingest.Source, error) {
	in := cfg.NATS.Inbox
	var out []ingest.Source
	for _, part := range inboxParts {
		src, err := natssource.New(s.nc, natssource.Config{
			Stream: in.Stream, Subjects: in.Subjects, CreateStream: *in.Create, Batch: in.Batch,
			FilterSubject: "whocould.in." + part + ".>", Consumer: inboxConsumer(part), Logger: logger,
		})
		if err != nil {
			return nil, fmt.Errorf("nats.inbox: %w", err)
		}
		out = append(out, src)
	}
	if k := cfg.Kafka; k != nil {
		// One consumer group per topic, so that decisions never hold changes back.
		for _, topic := range k.Topics {
			kc := kafkasource.Config{Brokers: k.Brokers, Topics: []string{topic}, GroupID: k.GroupID + "-" + topic, Logger: logger}
			if k.SASL != nil {
				kc.SASL = kafkasource.SASL{Mechanism: k.SASL.Mechanism, Username: k.SASL.Username, Password: k.SASL.Password}
			}
			if t := k.TLS; t != nil {
				kc.TLS = kafkasource.TLS{Enabled: true, CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile, InsecureSkipVerify: t.InsecureSkipVerify}
			}
			src, err := kafkasource.New(kc)
			if err != nil {
				return nil, fmt.Errorf("kafka: %w", err)
			}
			out = append(out, src)
		}
	}
	return out, nil
}

// serveTokens are the API's tokens: the configured ones, WHOCOULD_ADMIN_TOKEN, or, with none at
// all, a new admin token written to DATA/admin-token. The secret returned is the admin token's
// when serve knows it.
func serveTokens(cfg serveConfig, logger *slog.Logger) ([]api.Token, string, error) {
	tokens := cfg.API.Tokens
	secret := os.Getenv("WHOCOULD_ADMIN_TOKEN")
	if secret != "" {
		tokens = append(tokens, api.Token{Name: "admin", SHA256: api.HashToken(secret), Scopes: []string{api.ScopeAdmin}})
		return tokens, secret, nil
	}
	if len(tokens) > 0 {
		return tokens, "", nil
	}
	path := filepath.Join(cfg.DataDir, "admin-token")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		secret = strings.TrimSpace(string(b))
	} else {
		secret = api.NewSecret()
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return nil, "", fmt.Errorf("data directory: %w", err)
		}
		if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
			return nil, "", fmt.Errorf("write the admin token: %w", err)
		}
		logger.Warn("no API token configured: made an admin token", "file", path)
	}
	return append(tokens, api.Token{Name: "admin", SHA256: api.HashToken(secret), Scopes: []string{api.ScopeAdmin}}), secret, nil
}

// connectNATS connects to an external cluster with the configured credentials and TLS,
// reconnecting for ever.
func connectNATS(c natsConfig, logger *slog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("whocould"), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { logger.Warn("nats disconnected", "error", err) }),
		nats.ReconnectHandler(func(nc *nats.Conn) { logger.Info("nats reconnected", "url", nc.ConnectedUrl()) }),
	}
	if c.CredentialsFile != "" {
		opts = append(opts, nats.UserCredentials(c.CredentialsFile))
	}
	if c.NKeyFile != "" {
		o, err := nats.NkeyOptionFromSeed(c.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats.nkey_file: %w", err)
		}
		opts = append(opts, o)
	}
	if t := c.TLS; t != nil {
		if t.CAFile != "" {
			opts = append(opts, nats.RootCAs(t.CAFile))
		}
		if t.CertFile != "" {
			opts = append(opts, nats.ClientCert(t.CertFile, t.KeyFile))
		}
		if t.InsecureSkipVerify {
			opts = append(opts, nats.Secure(&tls.Config{InsecureSkipVerify: true})) //nolint:gosec // asked for in the config
		}
	}
	return nats.Connect(c.URL, opts...)
}

// registerPipelineMetrics exposes the log's and the projection's positions and the lag.
func registerPipelineMetrics(reg *prometheus.Registry, s *stack) {
	reg.MustRegister(pipelineCollector{s})
}

// pipelineCollector reads the log's last position once per scrape (it asks the NATS server)
// and derives every gauge that needs it from that one reading.
type pipelineCollector struct{ s *stack }

var (
	descLogPosition = prometheus.NewDesc("whocould_log_position",
		"Position of the last event in the log (-1: the log cannot be read).", nil, nil)
	descDeadLetters = prometheus.NewDesc("whocould_deadletters", "Dead letters kept so far.", nil, nil)
	descProjected   = prometheus.NewDesc("whocould_projection_position",
		"Log position the projection has applied (without the projector in the process: as the store last said).", nil, nil)
	descLagEvents  = prometheus.NewDesc("whocould_projector_lag_events", "Events in the log not yet applied by the projector.", nil, nil)
	descLagSeconds = prometheus.NewDesc("whocould_projector_lag_seconds",
		"How long ago the log recorded the last event the projector applied, while it lags (0 when caught up).", nil, nil)
	descRejected = prometheus.NewDesc("whocould_projector_rejected",
		"Log messages the projector could not decode (dead-lettered).", nil, nil)
)

func (c pipelineCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descLogPosition
	ch <- descDeadLetters
	if c.s.store != nil {
		ch <- descProjected
	}
	if c.s.proj != nil {
		ch <- descLagEvents
		ch <- descLagSeconds
		ch <- descRejected
	}
}

func (c pipelineCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	last := -1.0
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if n, err := s.log.Last(ctx); err == nil {
		last = float64(n)
	}
	cancel()
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	gauge(descLogPosition, last)
	gauge(descDeadLetters, float64(s.dead.Count()))
	if s.store != nil {
		gauge(descProjected, float64(s.projected()))
	}
	if s.proj == nil {
		return
	}
	pos := float64(s.proj.Position())
	lagSeconds := 0.0
	if r := s.proj.Recorded(); last > pos && !r.IsZero() {
		lagSeconds = time.Since(r).Seconds()
	}
	gauge(descLagEvents, max(0, last-pos))
	gauge(descLagSeconds, lagSeconds)
	gauge(descRejected, float64(s.proj.Rejected()))
}
