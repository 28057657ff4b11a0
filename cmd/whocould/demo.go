package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	chgo "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/whocould/whocould/analyzer"
	"github.com/whocould/whocould/demo"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
	"github.com/whocould/whocould/store/clickhouse"
)

// demoMarker marks a data directory the demo made, so that it may replace it.
const demoMarker = ".whocould-demo"

func newDemo(g *globals) *cobra.Command {
	var (
		seed        uint64
		people      int
		export      string
		keepServing bool
		storeFlag   string
	)
	cmd := &cobra.Command{
		Use:   "demo [--seed N] [--people N] [--export FILE] [--store embedded|clickhouse://...]",
		Short: "Generate a realistic organisation with six months of history, import it and ask it questions",
		Long: `Demo generates an organisation (people with departments, titles and managers; nested groups and
teams; the roles of a code-security product and of production databases; a payments approval
workflow; service accounts and an AI agent) and six months of joiners, movers, leavers,
just-in-time and break-glass access, approvals and access decisions. It imports them into a
fresh data directory (default ./whocould-demo) and prints a few telling answers. Then it runs
every analyzer, judging the history at its end by a configuration and a signed-off baseline that
fit it (written into the data directory as analyzer.yaml and baseline.yaml, for whocould analyze
--config), and prints what each rule found, with the evidence of the findings that tell the
history's stories. The same seed gives the same data. --export FILE writes the events as CloudEvents JSON lines
instead, for whocould import.

--store clickhouse://host:port/database projects into ClickHouse instead of the embedded store,
and answers from there: the database must be empty or one the demo made (it replaces it).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			h := demo.Generate(seed, demo.Options{People: people})
			if export != "" {
				return exportEvents(export, h.Events, cmd.OutOrStdout())
			}
			if !cmd.Flags().Changed("data-dir") {
				g.dataDir = "./whocould-demo"
			}
			// The whole service, embedded, as `whocould serve` runs it.
			cfg, _ := loadServeConfig("")
			if err := cfg.setStore(storeFlag, cmd.Flags().Changed("store"), os.Getenv); err != nil {
				return err
			}
			return runDemo(cmd.Context(), g, cfg, h, keepServing, cmd.OutOrStdout())
		},
	}
	cmd.Flags().Uint64Var(&seed, "seed", 1, "random seed: the same seed gives the same organisation and history")
	cmd.Flags().IntVar(&people, "people", 300, "how many people the organisation has")
	cmd.Flags().StringVar(&export, "export", "", "write the events to FILE as CloudEvents JSON lines instead of importing them")
	cmd.Flags().BoolVar(&keepServing, "serve", true, "keep serving the API and NATS after the answers, until Ctrl-C (--serve=false: stop)")
	addStoreFlag(cmd, &storeFlag)
	return cmd
}

func exportEvents(path string, evs []event.Event, stdout io.Writer) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for i := range evs {
		b, err := event.Marshal(&evs[i])
		if err != nil {
			f.Close()
			return fmt.Errorf("demo event %s: %w", evs[i].ID, err)
		}
		w.Write(b)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d events to %s\n", len(evs), path)
	return nil
}

// freshDemoDir empties dir when the demo made it, and refuses to touch anything else. It
// returns the data directory's lock (lockDataDir), taken before anything is removed, so that the
// demo never empties a directory another whocould process is using.
func freshDemoDir(dir string) (*os.File, error) {
	// Refuse a foreign directory before creating anything in it (the lock file included).
	if err := checkDemoDir(dir); err != nil {
		return nil, err
	}
	lock, err := lockDataDir(dir)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*os.File, error) {
		lock.Close()
		return nil, err
	}
	if err := checkDemoDir(dir); err != nil { // it may have changed before the lock was taken
		return fail(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fail(err)
	}
	// Everything goes but the lock, which must stay the one file every process locks, and the
	// marker, so that a run cut short here still knows the directory for the demo's.
	for _, e := range entries {
		if e.Name() != lockFile && e.Name() != demoMarker {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return fail(err)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, demoMarker), []byte("made by whocould demo; it replaces this directory on its next run\n"), 0o640); err != nil {
		return fail(err)
	}
	return lock, nil
}

// checkDemoDir refuses a directory that holds anything (but a data directory's lock file) and
// lacks the demo's marker.
func checkDemoDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == demoMarker {
			return nil
		}
	}
	for _, e := range entries {
		if e.Name() != lockFile {
			return usagef("%s already holds data the demo did not make: give the demo another --data-dir", dir)
		}
	}
	return nil
}

// runDemo runs the service of cfg (serve's defaults and the store) on a fresh data directory
// (and a fresh ClickHouse database), publishes the history, prints the answers and, with
// keepServing, serves until ctx ends.
func runDemo(ctx context.Context, g *globals, cfg serveConfig, h *demo.History, keepServing bool, stdout io.Writer) error {
	cfg.DataDir = g.dataDir
	cfg.NATS.Listen = freeOr("127.0.0.1:4222")
	cfg.API.Listen = freeOr("127.0.0.1:8080")
	cfg.LogLevel = g.logLevel
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	ch := cfg.Store.ClickHouse
	if cfg.Store.isClickHouse() {
		if ch.Cluster != "" {
			return usagef("--store %s: the demo replaces its database, on one server: drop cluster=%s", cfg.Store, ch.Cluster)
		}
		// Refuse a foreign database or data directory before changing either.
		if err := checkDemoDir(g.dataDir); err != nil {
			return err
		}
		if err := freshDemoDatabase(ctx, *ch, false); err != nil {
			return err
		}
	}
	lock, err := freshDemoDir(g.dataDir)
	if err != nil {
		return err
	}
	if cfg.Store.isClickHouse() {
		if err := freshDemoDatabase(ctx, *ch, true); err != nil {
			lock.Close()
			return err
		}
	}
	// The analyzers judge by the configuration that fits the story, written next to the data
	// for `whocould analyze --config`; the service uses it too (findings over the API). The
	// history ended on h.End: the demo runs them itself, judging then (demoFindings), rather
	// than on the analyzer target's schedule, which would judge at the wall clock.
	acfg, err := writeDemoAnalyzerConfig(g.dataDir, h)
	if err != nil {
		lock.Close()
		return err
	}
	cfg.Analyzer = *acfg
	cfg.Targets = slices.DeleteFunc(slices.Clone(cfg.Targets), func(t string) bool { return t == targetAnalyzer })
	fmt.Fprintf(stdout, "Generated %d events from %s to %s (seed %d):\n%s\n",
		len(h.Events), h.Start.Format(time.DateOnly), h.End.Format(time.DateOnly), h.Seed, h.Summary())

	sctx, stop := context.WithCancel(ctx)
	defer stop()
	up := make(chan served, 1)
	done := make(chan error, 1)
	go func() {
		done <- runServe(sctx, cfg, g.logger, serveHooks{lock: lock, ready: func(s served) { up <- s }})
	}()
	var srv served
	select {
	case srv = <-up:
	case err := <-done:
		return err
	}
	stopService := func() error {
		stop()
		return <-done
	}

	prog := newProgress()
	prog.set("publishing over NATS")
	start := time.Now()
	if err := publishDemo(ctx, srv.NATSURL, h.Events, func(n int) { prog.update(int64(n), int64(len(h.Events)), "events") }); err != nil {
		prog.done()
		return errors.Join(err, stopService())
	}
	prog.set("ingesting and projecting")
	accepted, err := waitSettled(ctx, srv.stack, cfg.NATS.Inbox.Stream)
	prog.done()
	if err != nil {
		return errors.Join(err, stopService())
	}
	into := g.dataDir
	if cfg.Store.isClickHouse() {
		into += " (the log) and " + cfg.Store.String() + " (the store)"
	}
	fmt.Fprintf(stdout, "Published over NATS into %s: %d accepted, %d duplicates, in %s.\n\n",
		into, accepted, uint64(len(h.Events))-accepted, time.Since(start).Round(time.Millisecond))
	if err := demoAnswers(ctx, g, cfg.Store, h, srv, stdout); err != nil {
		return errors.Join(err, stopService())
	}
	if err := demoFindings(ctx, g, cfg, h, srv, stdout); err != nil {
		return errors.Join(err, stopService())
	}
	if !keepServing {
		return stopService()
	}
	fmt.Fprintf(stdout, "\nwhocould is serving (Ctrl-C to stop). Producers publish to %s (whocould.in.changes.<producer>);\n"+
		"the admin token is in %s/admin-token.\n", srv.NATSURL, g.dataDir)
	if cfg.Store.isClickHouse() {
		fmt.Fprintf(stdout, "The projector keeps the map in %s.\n", cfg.Store)
	}
	select {
	case <-ctx.Done():
		return stopService()
	case err := <-done:
		return err
	}
}

// freeOr is addr when nothing listens there yet, else a port the system picks.
func freeOr(addr string) string {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		host, _, _ := net.SplitHostPort(addr)
		return net.JoinHostPort(host, "0")
	}
	l.Close()
	return addr
}

// publishDemo publishes the history as producers would: change events to
// whocould.in.changes.<source>, decisions to whocould.in.decisions.<principal>, waiting for the
// inbox to acknowledge each.
func publishDemo(ctx context.Context, url string, evs []event.Event, progress func(int)) error {
	nc, err := nats.Connect(url)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(2000))
	if err != nil {
		return err
	}
	token := strings.NewReplacer(".", "_", "*", "_", ">", "_", " ", "_")
	for i := range evs {
		b, err := event.Marshal(&evs[i])
		if err != nil {
			return fmt.Errorf("demo event %s: %w", evs[i].ID, err)
		}
		subject := "whocould.in.changes." + token.Replace(evs[i].Source)
		if evs[i].Type == event.Decision {
			subject = "whocould.in.decisions." + token.Replace(evs[i].Data.Principal)
		}
		// With 2000 unacknowledged, wait for acks (a loaded machine acks slowly) rather than
		// fail after the default 200ms.
		if _, err := js.PublishAsync(subject, b, jetstream.WithStallWait(30*time.Second)); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
		if i%1000 == 999 {
			progress(i + 1)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Minute):
		return errors.New("publish: the inbox did not acknowledge within a minute")
	}
	progress(len(evs))
	return nil
}

// waitSettled waits until the service has taken everything from its inbox (the stream) and
// projected it, and returns how many events the log holds.
func waitSettled(ctx context.Context, s *stack, stream string) (uint64, error) {
	js, err := jetstream.New(s.nc)
	if err != nil {
		return 0, err
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		pending := uint64(0)
		for _, part := range inboxParts {
			c, err := js.Consumer(ctx, stream, inboxConsumer(part))
			if err != nil {
				return 0, err
			}
			info, err := c.Info(ctx)
			if err != nil {
				return 0, err
			}
			pending += info.NumPending + uint64(info.NumAckPending)
		}
		last, err := s.log.Last(ctx)
		if err != nil {
			return 0, err
		}
		if pending == 0 && s.proj.Position() >= last {
			return last, nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// demoAnswers prints the demo's questions with the service's answers, and how to ask more.
func demoAnswers(ctx context.Context, g *globals, sc storeConfig, h *demo.History, srv served, stdout io.Writer) error {
	s := srv.stack
	for i, q := range h.Questions {
		fmt.Fprintf(stdout, "%d. %s\n", i+1, q.Title)
		if q.Why != "" {
			fmt.Fprintf(stdout, "   (%s)\n", q.Why)
		}
		var err error
		switch q.Kind {
		case demo.WhoCould:
			err = answerWhoCould(ctx, q.Query, s.store, stdout, false)
		case demo.Explain:
			err = answerExplain(ctx, q.Query, s.store, stdout, false)
		case demo.WhatCould:
			err = answerWhatCould(ctx, q.Query, s.store, stdout, false)
		}
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout)
	}
	first := h.Questions[0].Query
	if sc.isClickHouse() {
		demoHintsClickHouse(g, sc, h, srv, stdout)
		return nil
	}
	fmt.Fprintf(stdout, "Ask your own questions, for example:\n")
	fmt.Fprintf(stdout, "  go run ./cmd/whocould query who-could --data-dir %s --action %s --resource %s --at %s\n",
		g.dataDir, first.Action, first.Resource, first.At.Format(time.RFC3339))
	fmt.Fprintf(stdout, "  go run ./cmd/whocould query explain --data-dir %s --principal %s --action %s --resource %s --at %s -o json\n",
		g.dataDir, h.Org.Cast["break-glass"], first.Action, first.Resource, first.At.Format(time.RFC3339))
	fmt.Fprintf(stdout, "  go run ./cmd/whocould query history --data-dir %s --resource %s --from %s --to %s\n",
		g.dataDir, first.Resource, first.At.Add(-6*time.Hour).Format(time.RFC3339), first.At.Add(6*time.Hour).Format(time.RFC3339))
	fmt.Fprintf(stdout, "(the query commands work once the demo has stopped; while it serves, ask the API:)\n")
	fmt.Fprintf(stdout, "  export WHOCOULD_TOKEN=$(cat %s/admin-token)\n", g.dataDir)
	fmt.Fprintf(stdout, "  curl -H \"Authorization: Bearer $WHOCOULD_TOKEN\" '%s/v1/who-could?action=%s&resource=%s&at=%s'\n",
		srv.APIURL, first.Action, url.QueryEscape(first.Resource), first.At.Format(time.RFC3339))
	fmt.Fprintf(stdout, "  curl -H \"Authorization: Bearer $WHOCOULD_TOKEN\" '%s/v1/explain?principal=%s&action=%s&resource=%s&at=%s'\n",
		srv.APIURL, url.QueryEscape(h.Org.Cast["break-glass"]), first.Action, url.QueryEscape(first.Resource), first.At.Format(time.RFC3339))
	fmt.Fprintf(stdout, "  curl -H \"Authorization: Bearer $WHOCOULD_TOKEN\" %s/metrics\n", srv.APIURL)
	return nil
}

// demoHintsClickHouse tells how to ask more when the map is in ClickHouse: through the API (the
// query commands on --data-dir would read the embedded store, not ClickHouse).
func demoHintsClickHouse(g *globals, sc storeConfig, h *demo.History, srv served, stdout io.Writer) {
	first := h.Questions[0].Query
	fmt.Fprintf(stdout, "Ask your own questions through the API while whocould serves (the demo does, unless --serve=false;\n"+
		"afterwards `go run ./cmd/whocould serve --data-dir %s --store %s`\n"+
		"serves this log and store again, on 127.0.0.1:8080), for example:\n", g.dataDir, sc)
	fmt.Fprintf(stdout, "  export WHOCOULD_TOKEN=$(cat %s/admin-token)\n", g.dataDir)
	fmt.Fprintf(stdout, "  go run ./cmd/whocould query who-could --server %s --action %s --resource %s --at %s\n",
		srv.APIURL, first.Action, first.Resource, first.At.Format(time.RFC3339))
	fmt.Fprintf(stdout, "  go run ./cmd/whocould query explain --server %s --principal %s --action %s --resource %s --at %s -o json\n",
		srv.APIURL, h.Org.Cast["break-glass"], first.Action, first.Resource, first.At.Format(time.RFC3339))
	fmt.Fprintf(stdout, "  curl -H \"Authorization: Bearer $WHOCOULD_TOKEN\" '%s/v1/who-could?action=%s&resource=%s&at=%s'\n",
		srv.APIURL, first.Action, url.QueryEscape(first.Resource), first.At.Format(time.RFC3339))
	fmt.Fprintf(stdout, "  curl -H \"Authorization: Bearer $WHOCOULD_TOKEN\" %s/metrics\n", srv.APIURL)
	host, port, _ := net.SplitHostPort(sc.ClickHouse.Addr)
	fmt.Fprintf(stdout, "The tables themselves: clickhouse-client --host %s --port %s -d %s -q 'SHOW TABLES'\n",
		host, port, sc.ClickHouse.Database)
}

// demoMarkerTable marks a ClickHouse database the demo made, so that it may replace it.
const demoMarkerTable = "whocould_demo"

// freshDemoDatabase refuses a ClickHouse database that holds tables but not the demo's marker.
// With reset, it then drops the database when the demo made it (the demo's log starts afresh,
// and a store ahead of its log would skip it), and creates it with the marker.
func freshDemoDatabase(ctx context.Context, c clickhouse.Config, reset bool) error {
	where := fmt.Sprintf("ClickHouse %s, database %s", c.Addr, c.Database)
	conn, err := chgo.Open(&chgo.Options{
		Addr: []string{c.Addr}, Auth: chgo.Auth{Username: c.Username, Password: c.Password},
		DialTimeout: c.DialTimeout, ReadTimeout: c.ReadTimeout, MaxOpenConns: 1,
	})
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	defer conn.Close()
	rows, err := conn.Query(ctx, "SELECT name FROM system.tables WHERE database = ?", c.Database)
	if err != nil {
		return fmt.Errorf("%s: list its tables: %w", where, err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return fmt.Errorf("%s: list its tables: %w", where, err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: list its tables: %w", where, err)
	}
	ours := slices.Contains(tables, demoMarkerTable)
	if len(tables) > 0 && !ours {
		return usagef("%s already holds tables the demo did not make: give the demo another database (--store clickhouse://%s/whocould_demo)",
			where, c.Addr)
	}
	if !reset {
		return nil
	}
	// The name is an identifier (clickhouse.Config.Validate): it needs no quoting.
	stmts := []string{
		"CREATE DATABASE IF NOT EXISTS " + c.Database,
		"CREATE TABLE IF NOT EXISTS " + c.Database + "." + demoMarkerTable + " (note String) ENGINE = TinyLog",
	}
	if ours {
		stmts = append([]string{"DROP DATABASE IF EXISTS " + c.Database}, stmts...)
		// The databases of its rebuilds (whocould rebuild) go with it.
		gens, err := clickhouse.Rebuilds(ctx, conn, c.Database)
		if err != nil {
			return fmt.Errorf("%s: list its rebuilds: %w", where, err)
		}
		for _, g := range gens {
			stmts = append([]string{"DROP DATABASE IF EXISTS " + g}, stmts...)
		}
	}
	for _, q := range stmts {
		if err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %s: %w", where, q, err)
		}
	}
	return nil
}

// Files the demo writes into its data directory for the analyzers.
const (
	demoAnalyzerFile = "analyzer.yaml"
	demoBaselineFile = demo.BaselineFile
)

// writeDemoAnalyzerConfig writes the analyzers' configuration that fits h (as a serve config
// holding only its analyzer section) and h's baseline into dir, and returns the configuration.
func writeDemoAnalyzerConfig(dir string, h *demo.History) (*analyzer.Config, error) {
	cfg, err := demo.AnalyzerConfig(h)
	if err != nil {
		return nil, err
	}
	baseline, err := demo.BaselineYAML(cfg.LoadedBaseline())
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# The analyzers' configuration for the demo's history (serve's config file, its analyzer\n"+
		"# section alone). The history ends on %s: judge it then, for example\n"+
		"#   whocould analyze --data-dir %s --config %s --at %s\n",
		h.End.Format(time.DateOnly), dir, filepath.Join(dir, demoAnalyzerFile), h.End.Format(time.RFC3339))
	b.WriteString("analyzer:\n")
	for _, l := range strings.SplitAfter(string(demo.AnalyzerConfigYAML()), "\n") {
		if strings.TrimSpace(l) != "" {
			b.WriteString("  ")
		}
		b.WriteString(l)
	}
	if err := os.WriteFile(filepath.Join(dir, demoAnalyzerFile), []byte(b.String()), 0o640); err != nil {
		return nil, fmt.Errorf("demo analyzer config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, demoBaselineFile), baseline, 0o640); err != nil {
		return nil, fmt.Errorf("demo baseline: %w", err)
	}
	cfg.Baseline = filepath.Join(dir, demoBaselineFile)
	return cfg, nil
}

// Bounds of what demoFindings prints.
const (
	demoFindingsPerRule = 3
	demoEvidencePerItem = 2
)

// demoFindings runs every analyzer over the demo's store, judging at the end of the history,
// and prints what each rule found: how many, of which kinds, and the findings that tell the
// history's stories, with their evidence; then how to look further.
func demoFindings(ctx context.Context, g *globals, cfg serveConfig, h *demo.History, srv served, stdout io.Writer) error {
	svc := &analyzer.Service{Analyzer: &analyzer.Analyzer{Store: srv.stack.store, Config: &cfg.Analyzer, Log: g.logger}}
	res, err := svc.Analyze(ctx, analyzer.Options{Now: h.End})
	if err != nil {
		return fmt.Errorf("demo analyzers: %w", err)
	}
	fmt.Fprintf(stdout, "\nWhat the analyzers found, judging the history at its end (%s) by %s\n"+
		"and the baseline signed off on %s (%s): %d findings.\n",
		h.End.Format(time.RFC3339), filepath.Join(g.dataDir, demoAnalyzerFile), h.SignedOff().Format(time.DateOnly),
		filepath.Join(g.dataDir, demoBaselineFile), len(res.Findings))
	byRule := map[string][]finding.Finding{}
	for _, f := range res.Findings {
		byRule[f.Rule] = append(byRule[f.Rule], f)
	}
	shown := map[string][]finding.Finding{}
	for _, f := range demo.Highlights(h, res.Findings, demoFindingsPerRule) {
		shown[f.Rule] = append(shown[f.Rule], f)
	}
	about := map[string]string{
		finding.UnusedGrant:               "grants not used, or used only in part, in the last " + cfg.Analyzer.UnusedGrant.Window.String(),
		finding.PrivilegeCreep:            "access that grew fast, outlived a move, or that almost no peer has",
		finding.AccessAfterDeprovisioning: "people disabled or deleted who kept access, or kept acting",
		finding.UnauthorisedChange:        "changes made by someone not allowed to make them",
		finding.SelfService:               "people who changed their own access, or approved their own requests",
		finding.MissingApproval:           "privileged changes without an approval granted before them",
		finding.SeparationOfDuties:        "people who could do two incompatible actions at once",
		finding.Drift:                     "differences from the access signed off on " + h.SignedOff().Format(time.DateOnly),
		finding.ShadowAccess:              "decisions of the enforcement points that the permission map contradicts",
	}
	for _, rule := range finding.Rules {
		fs := byRule[rule]
		fmt.Fprintf(stdout, "\n%s — %s: %s\n", rule, about[rule], demoCounts(fs))
		for _, f := range shown[rule] {
			status := ""
			if f.Status != finding.Open {
				status = ", " + f.Status
			}
			fmt.Fprintf(stdout, "  [%s%s] %s\n", f.Severity, status, f.Summary)
			for i, e := range f.Evidence {
				if i == demoEvidencePerItem && len(f.Evidence) > i+1 {
					fmt.Fprintf(stdout, "      · ... %d more (whocould findings show %s)\n", len(f.Evidence)-i, f.ID)
					break
				}
				fmt.Fprintf(stdout, "      · %s\n", e.Text)
			}
		}
		if n := len(fs) - len(shown[rule]); n > 0 && len(shown[rule]) > 0 {
			fmt.Fprintf(stdout, "  ... and %d more\n", n)
		}
	}
	where := "--data-dir " + g.dataDir
	if cfg.Store.isClickHouse() {
		where += " --store " + cfg.Store.String()
	}
	fmt.Fprintf(stdout, "\nLook further (once the demo has stopped):\n")
	fmt.Fprintf(stdout, "  go run ./cmd/whocould findings list %s --rule %s --severity high\n", where, finding.AccessAfterDeprovisioning)
	if sh := shown[finding.SeparationOfDuties]; len(sh) > 0 {
		fmt.Fprintf(stdout, "  go run ./cmd/whocould findings show %s %s\n", sh[0].ID, where)
	}
	fmt.Fprintf(stdout, "  go run ./cmd/whocould analyze %s --config %s --at %s\n", where,
		filepath.Join(g.dataDir, demoAnalyzerFile), h.End.Format(time.RFC3339))
	fmt.Fprintf(stdout, "(while it serves, ask the API, with WHOCOULD_TOKEN set as above:)\n")
	fmt.Fprintf(stdout, "  curl -H \"Authorization: Bearer $WHOCOULD_TOKEN\" '%s/v1/findings?rule=%s'\n", srv.APIURL, finding.SeparationOfDuties)
	return nil
}

// demoCounts is "N findings (kind n, kind n, ...)", kinds by how many, most first; and how
// many of them are resolved (conditions that ended before the history did).
func demoCounts(fs []finding.Finding) string {
	if len(fs) == 0 {
		return "nothing found"
	}
	kinds := map[string]int{}
	resolved := 0
	for _, f := range fs {
		kinds[f.Kind]++
		if f.Status == finding.Resolved {
			resolved++
		}
	}
	names := make([]string, 0, len(kinds))
	for k := range kinds {
		names = append(names, k)
	}
	slices.SortFunc(names, func(a, b string) int {
		if kinds[a] != kinds[b] {
			return kinds[b] - kinds[a]
		}
		return strings.Compare(a, b)
	})
	noun := "findings"
	if len(fs) == 1 {
		noun = "finding"
	}
	s := fmt.Sprintf("%d %s", len(fs), noun)
	if len(names) > 1 || names[0] != "" {
		parts := make([]string, len(names))
		for i, k := range names {
			parts[i] = fmt.Sprintf("%s %d", k, kinds[k])
		}
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	if resolved > 0 {
		s += fmt.Sprintf(", %d of them resolved", resolved)
	}
	return s
}
