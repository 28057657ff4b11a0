package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/projector"
	"github.com/whocould/whocould/store"
	"github.com/whocould/whocould/store/clickhouse"
	"github.com/whocould/whocould/store/embedded"
)

func newRebuild(g *globals) *cobra.Command {
	var (
		storeFlag string
		grace     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "rebuild",
		Short: "Replay the whole event log into a fresh store and swap it in",
		Long: `Rebuild replays the event log from its first event into a fresh store beside the current one,
then swaps it in. The current store keeps serving until the swap; a rebuild cut short leaves
the current store as it was.

With --store clickhouse://..., the fresh store is a new database beside the live one (DB_gN);
the swap is one insert into the catalog database, atomic for every process reading the store
(each question is asked wholly on the old store or wholly on the new). The old database is
dropped --grace after the swap, once the questions asked on it are done. Rebuild reads the log
of --data-dir and takes its lock: the serve process on that data directory must be stopped, while
processes answering from the database alone (--target api) keep serving throughout. A projector
that wrote into the old database goes on, at its next write, from the new one's checkpoint.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("store") {
				var c serveConfig
				if err := c.setStore(storeFlag, true, os.Getenv); err != nil {
					return err
				}
				if err := c.Store.Validate(); err != nil {
					return usagef("%v", err)
				}
				if c.Store.isClickHouse() {
					return runRebuildClickHouse(cmd.Context(), g, c.Store, grace, cmd.OutOrStdout())
				}
			}
			return runRebuild(cmd.Context(), g, cmd.OutOrStdout())
		},
	}
	addStoreFlag(cmd, &storeFlag)
	cmd.Flags().DurationVar(&grace, "grace", 30*time.Second, "with ClickHouse: how long the old store stays after the swap, for the questions asked on it")
	return cmd
}

// runRebuildClickHouse rebuilds a ClickHouse store into a new generation and swaps it in.
func runRebuildClickHouse(ctx context.Context, g *globals, sc storeConfig, grace time.Duration, stdout io.Writer) error {
	s, err := openStack(ctx, g.dataDir, g.logger, stackOptions{noStore: true})
	if err != nil {
		return err
	}
	defer s.close()
	start := time.Now()
	st, err := openStore(ctx, sc, g.dataDir, g.logger)
	if err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	defer st.Close()
	live := st.(*clickhouse.Store)
	fresh, err := live.NewGeneration(ctx)
	if err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	defer fresh.Close()
	n, pos, err := replayAll(ctx, g, s, fresh, "rebuilding into "+fresh.Database())
	if err != nil {
		return fmt.Errorf("rebuild: %w (the live store %s is unchanged)", err, live.Database())
	}
	if err := fresh.Checkpoint(ctx); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	old, err := live.Promote(ctx, fresh)
	if err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	took := time.Since(start)
	fmt.Fprintf(stdout, "rebuilt the store from %d events (log position %d) into %s in %s (%.0f events/s); it replaces %s\n",
		n, pos, fresh.Database(), took.Round(time.Millisecond), float64(n)/max(took.Seconds(), 1e-3), old)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(grace):
	}
	if err := live.DropGeneration(ctx, old); err != nil {
		return fmt.Errorf("rebuild: the new store is live, but dropping the old one failed: %w", err)
	}
	fmt.Fprintf(stdout, "dropped the old store %s\n", old)
	return nil
}

func runRebuild(ctx context.Context, g *globals, stdout io.Writer) error {
	s, err := openStack(ctx, g.dataDir, g.logger, stackOptions{})
	if err != nil {
		return err
	}
	defer s.close()
	start := time.Now()
	dir := filepath.Join(g.dataDir, "store")
	fresh := dir + ".rebuild"
	if err := os.RemoveAll(fresh); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	ns, err := embedded.Open(embedded.Config{Dir: fresh, Logger: g.logger})
	if err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	n, pos, err := replayAll(ctx, g, s, ns, "rebuilding")
	if err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	// The findings are not rebuilt from the log (their acknowledgements and suppressions are
	// people's work): they move to the fresh store as they are.
	if err := copyFindings(ctx, s.store, ns); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	if err := swapDirs(dir, fresh); err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	took := time.Since(start)
	fmt.Fprintf(stdout, "rebuilt the store from %d events (log position %d) in %s (%.0f events/s)\n",
		n, pos, took.Round(time.Millisecond), float64(n)/max(took.Seconds(), 1e-3))
	return nil
}

// copyFindings copies every tenant's findings from one store to another.
func copyFindings(ctx context.Context, from store.Reader, to store.FindingWriter) error {
	tenants, err := from.Tenants(ctx)
	if err != nil {
		return err
	}
	if !slices.Contains(tenants, event.DefaultTenant) {
		tenants = append(tenants, event.DefaultTenant)
	}
	for _, t := range tenants {
		fs, err := from.Findings(ctx, t)
		if err != nil {
			return fmt.Errorf("findings of %s: %w", t, err)
		}
		if len(fs) == 0 {
			continue
		}
		if err := to.PutFindings(ctx, t, fs); err != nil {
			return fmt.Errorf("findings of %s: %w", t, err)
		}
	}
	return nil
}

// replayAll replays s's whole log into st, showing progress under label, and returns how many
// events it applied and the log position reached.
func replayAll(ctx context.Context, g *globals, s *stack, st store.Store, label string) (int, uint64, error) {
	prog := newProgress()
	prog.set(label)
	p := projector.New(s.log, st, rejects{s.dead}, projector.Config{Logger: g.logger, Progress: func(done, last uint64) {
		prog.update(int64(done), int64(last), "events")
	}})
	n, err := p.CatchUp(ctx)
	prog.done()
	return n, p.Position(), err
}

// swapDirs replaces dir by fresh: dir is moved aside, fresh renamed into its place, the old one
// removed. Each step is a rename, so a crash leaves either the old or the new store whole
// (recoverStore puts an interrupted swap right).
func swapDirs(dir, fresh string) error {
	old := dir + ".old"
	if err := os.RemoveAll(old); err != nil {
		return err
	}
	if err := os.Rename(dir, old); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := os.Rename(fresh, dir); err != nil {
		return err
	}
	return os.RemoveAll(old)
}

// recoverStore puts right a swap that a crash interrupted: when the store directory is missing
// but its moved-aside copy exists, the copy comes back; a half-built rebuild is discarded.
func recoverStore(dataDir string) error {
	dir := filepath.Join(dataDir, "store")
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		if _, err := os.Stat(dir + ".old"); err == nil {
			if err := os.Rename(dir+".old", dir); err != nil {
				return err
			}
		}
	}
	return os.RemoveAll(dir + ".rebuild")
}
