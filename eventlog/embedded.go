package eventlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// EmbeddedConfig configures the in-process NATS server.
type EmbeddedConfig struct {
	// Dir is the JetStream store directory (e.g. DATA/nats). Required.
	Dir string
	// Listen is an optional "host:port" for clients in other processes; empty (the default) opens
	// no network listener, and clients connect in-process (Embedded.Connect).
	Listen string
	// SyncAlways makes the server fsync every write before acknowledging it: an acknowledged
	// append then survives power loss. Without it (the default) a write reaches the operating
	// system (page cache) before it is acknowledged, so it survives a crash or SIGKILL of the
	// process, but only data older than SyncInterval is certain to survive power loss or a kernel
	// crash.
	SyncAlways bool
	// SyncInterval is how often the server fsyncs in the background when SyncAlways is false;
	// 0 means the server's default (2 minutes).
	SyncInterval time.Duration
	// ServerName names the server (default "whocould").
	ServerName string
	// StartTimeout bounds the wait for the server to be ready (default 10s).
	StartTimeout time.Duration
	// Logger receives the server's log; nil (the default) keeps it quiet.
	Logger *slog.Logger
	// Debug forwards the server's debug and trace lines to Logger at debug level.
	Debug bool
}

// Embedded is a NATS server with JetStream running in this process.
type Embedded struct {
	srv *server.Server
}

// StartEmbedded starts the NATS server and waits until it is ready for connections.
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.Dir == "" {
		return nil, errors.New("start embedded nats: Dir is required")
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "whocould"
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	opts := &server.Options{
		ServerName:         cfg.ServerName,
		JetStream:          true,
		StoreDir:           cfg.Dir,
		JetStreamMaxMemory: -1,
		JetStreamMaxStore:  -1,
		SyncAlways:         cfg.SyncAlways,
		SyncInterval:       cfg.SyncInterval,
		NoSigs:             true,
		NoLog:              cfg.Logger == nil,
		DontListen:         cfg.Listen == "",
	}
	if cfg.Listen != "" {
		host, port, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("start embedded nats: listen address %q: %w", cfg.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return nil, fmt.Errorf("start embedded nats: listen port %q: %w", port, err)
		}
		opts.Host, opts.Port = host, p
		if p == 0 {
			opts.Port = server.RANDOM_PORT
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start embedded nats in %s: %w", cfg.Dir, err)
	}
	if cfg.Logger != nil {
		srv.SetLoggerV2(slogAdapter{cfg.Logger}, cfg.Debug, cfg.Debug, false)
	}
	srv.Start()
	if !srv.ReadyForConnections(cfg.StartTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("start embedded nats in %s: not ready after %s", cfg.Dir, cfg.StartTimeout)
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("start embedded nats in %s: jetstream not enabled", cfg.Dir)
	}
	return &Embedded{srv: srv}, nil
}

// Connect opens an in-process client connection (no network). The connection belongs to the
// caller; close it before Shutdown.
func (e *Embedded) Connect(opts ...nats.Option) (*nats.Conn, error) {
	opts = append([]nats.Option{nats.InProcessServer(e.srv), nats.Name("whocould")}, opts...)
	nc, err := nats.Connect("", opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to embedded nats: %w", err)
	}
	return nc, nil
}

// ClientURL is the URL for clients in other processes, "" when there is no listener.
func (e *Embedded) ClientURL() string {
	if e.srv.Addr() == nil {
		return ""
	}
	return e.srv.ClientURL()
}

// Server is the underlying server, for wiring that needs more than this package offers.
func (e *Embedded) Server() *server.Server { return e.srv }

// Shutdown stops the server and waits until it has stopped and flushed its stores. It is
// idempotent.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// slogAdapter adapts nats-server's logger interface to slog, with a static message and the
// server's line as an attribute.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) log(level slog.Level, format string, v []any) {
	if !a.l.Enabled(context.Background(), level) {
		return
	}
	a.l.Log(context.Background(), level, "nats-server", slog.String("line", fmt.Sprintf(format, v...)))
}

func (a slogAdapter) Noticef(format string, v ...any) { a.log(slog.LevelDebug, format, v) }
func (a slogAdapter) Warnf(format string, v ...any)   { a.log(slog.LevelWarn, format, v) }
func (a slogAdapter) Fatalf(format string, v ...any)  { a.log(slog.LevelError, format, v) }
func (a slogAdapter) Errorf(format string, v ...any)  { a.log(slog.LevelError, format, v) }
func (a slogAdapter) Debugf(format string, v ...any)  { a.log(slog.LevelDebug, format, v) }
func (a slogAdapter) Tracef(format string, v ...any)  { a.log(slog.LevelDebug-4, format, v) }
