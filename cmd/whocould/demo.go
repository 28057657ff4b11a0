package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/whocould/whocould/demo"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/ingest"
)

// demoMarker marks a data directory the demo made, so that it may replace it.
const demoMarker = ".whocould-demo"

func newDemo(g *globals) *cobra.Command {
	var (
		seed   uint64
		people int
		export string
	)
	cmd := &cobra.Command{
		Use:   "demo [--seed N] [--people N] [--export FILE]",
		Short: "Generate a realistic organisation with six months of history, import it and ask it questions",
		Long: `Demo generates an organisation (people with departments, titles and managers; nested groups and
teams; the roles of a code-security product and of production databases; a payments approval
workflow; service accounts and an AI agent) and six months of joiners, movers, leavers,
just-in-time and break-glass access, approvals and access decisions. It imports them into a
fresh data directory (default ./whocould-demo) and prints a few telling answers.
The same seed gives the same data. --export FILE writes the events as CloudEvents JSON lines
instead, for whocould import.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			h := demo.Generate(seed, demo.Options{People: people})
			if export != "" {
				return exportEvents(export, h.Events, cmd.OutOrStdout())
			}
			if !cmd.Flags().Changed("data-dir") {
				g.dataDir = "./whocould-demo"
			}
			return runDemo(cmd.Context(), g, h, cmd.OutOrStdout())
		},
	}
	cmd.Flags().Uint64Var(&seed, "seed", 1, "random seed: the same seed gives the same organisation and history")
	cmd.Flags().IntVar(&people, "people", 300, "how many people the organisation has")
	cmd.Flags().StringVar(&export, "export", "", "write the events to FILE as CloudEvents JSON lines instead of importing them")
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

func runDemo(ctx context.Context, g *globals, h *demo.History, stdout io.Writer) error {
	lock, err := freshDemoDir(g.dataDir)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Generated %d events from %s to %s (seed %d):\n%s\n",
		len(h.Events), h.Start.Format(time.DateOnly), h.End.Format(time.DateOnly), h.Seed, h.Summary())
	s, err := openStack(ctx, g.dataDir, g.logger, stackOptions{lock: lock})
	if err != nil {
		return err
	}
	defer s.close()
	prog := newProgress()
	prog.set("importing")
	start := time.Now()
	total := ingest.Result{Rejected: []ingest.Rejection{}}
	for i := 0; i < len(h.Events); i += importBatch {
		batch := h.Events[i:min(i+importBatch, len(h.Events))]
		items := make([]ingest.Item, len(batch))
		for j := range batch {
			items[j] = ingest.Item{Event: batch[j], Where: fmt.Sprintf("event %d", i+j)}
		}
		res, err := s.ingest.Ingest(ctx, "demo", items)
		total.Add(res)
		if err != nil {
			return err
		}
		prog.update(int64(i+len(batch)), int64(len(h.Events)), "events")
	}
	prog.set("projecting")
	if _, err := s.proj.CatchUp(ctx); err != nil {
		return err
	}
	prog.done()
	if len(total.Rejected) > 0 {
		return fmt.Errorf("demo: %d generated events were rejected, first: %s", len(total.Rejected), total.Rejected[0].Error)
	}
	fmt.Fprintf(stdout, "Imported into %s: %d accepted, %d duplicates, in %s.\n\n",
		g.dataDir, total.Accepted, total.Duplicates, time.Since(start).Round(time.Millisecond))

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
	fmt.Fprintf(stdout, "Ask your own questions, for example:\n")
	fmt.Fprintf(stdout, "  go run ./cmd/whocould query who-could --data-dir %s --action %s --resource %s --at %s\n",
		g.dataDir, first.Action, first.Resource, first.At.Format(time.RFC3339))
	fmt.Fprintf(stdout, "  go run ./cmd/whocould query explain --data-dir %s --principal %s --action %s --resource %s --at %s -o json\n",
		g.dataDir, h.Org.Cast["break-glass"], first.Action, first.Resource, first.At.Format(time.RFC3339))
	fmt.Fprintf(stdout, "  go run ./cmd/whocould query history --data-dir %s --resource %s --from %s --to %s\n",
		g.dataDir, first.Resource, first.At.Add(-6*time.Hour).Format(time.RFC3339), first.At.Add(6*time.Hour).Format(time.RFC3339))
	return nil
}
