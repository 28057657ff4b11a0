package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/internal/synth"
	"github.com/whocould/whocould/projector"
	"github.com/whocould/whocould/store/embedded"
)

func newBench(g *globals) *cobra.Command {
	var (
		opts    synth.Options
		queries int
		output  string
		cpuProf string
	)
	cmd := &cobra.Command{
		Use:   "bench [--principals N] [--groups N] [--grants N] [--queries N]",
		Short: "Measure import, projection, restart and query speed on a synthetic organisation",
		Long: `Bench generates a synthetic organisation (principals in nested groups, roles over database
actions, grants over six months), imports it through the real path (JSON lines decoded, validated,
appended to the event log, projected into the store) in a fresh data directory, restarts, and asks
random who-could questions at random past times. It removes its data directory at the end unless
--data-dir is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			dir := g.dataDir
			if !cmd.Flags().Changed("data-dir") {
				tmp, err := os.MkdirTemp("", "whocould-bench-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(tmp)
				dir = tmp
			} else if entries, _ := os.ReadDir(dir); len(entries) > 0 {
				return usagef("--data-dir %s is not empty: bench needs a fresh one", dir)
			}
			if cpuProf != "" {
				f, err := os.Create(cpuProf)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			res, err := runBench(cmd.Context(), g, dir, opts, queries)
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), res)
			}
			return res.table(cmd.OutOrStdout())
		},
	}
	cmd.Flags().IntVar(&opts.Principals, "principals", 100_000, "principals")
	cmd.Flags().IntVar(&opts.Groups, "groups", 10_000, "groups")
	cmd.Flags().IntVar(&opts.Grants, "grants", 1_000_000, "grants")
	cmd.Flags().IntVar(&queries, "queries", 2000, "who-could questions to time")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "json or table")
	cmd.Flags().StringVar(&cpuProf, "cpuprofile", "", "write a CPU profile of the whole run to this file (for go tool pprof)")
	return cmd
}

type benchResult struct {
	Events           int     `json:"events"`
	Bytes            int     `json:"bytes"`
	ProjectPerSec    float64 `json:"project_events_per_s"`
	ImportPerSec     float64 `json:"import_events_per_s"`
	RestartSeconds   float64 `json:"restart_s"`
	Intervals        int     `json:"intervals"`
	HeapBytes        uint64  `json:"heap_bytes"`
	BytesPerInterval float64 `json:"heap_bytes_per_interval"`
	WhoCouldP50us    float64 `json:"who_could_p50_us"`
	WhoCouldP99us    float64 `json:"who_could_p99_us"`
	AnswerSize       float64 `json:"who_could_mean_principals"`
}

func (r benchResult) table(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "events\t%d (%d MB of JSON lines)\n", r.Events, r.Bytes>>20)
	fmt.Fprintf(tw, "import (decode, validate, append, project)\t%.0f events/s\n", r.ImportPerSec)
	fmt.Fprintf(tw, "replay the log into a fresh store\t%.0f events/s\n", r.ProjectPerSec)
	fmt.Fprintf(tw, "restart (server, log, store)\t%.2f s\n", r.RestartSeconds)
	fmt.Fprintf(tw, "intervals\t%d (heap %d MB, %.0f B/interval)\n", r.Intervals, r.HeapBytes>>20, r.BytesPerInterval)
	fmt.Fprintf(tw, "who-could\tp50 %.0f µs, p99 %.0f µs (%.0f principals per answer)\n", r.WhoCouldP50us, r.WhoCouldP99us, r.AnswerSize)
	return tw.Flush()
}

func runBench(ctx context.Context, g *globals, dir string, opts synth.Options, queries int) (res benchResult, err error) {
	fmt.Fprintln(os.Stderr, "generating the organisation...")
	org := synth.Generate(opts)
	var buf bytes.Buffer
	for i := range org.Events {
		b, err := event.Marshal(&org.Events[i])
		if err != nil {
			return res, fmt.Errorf("synthetic event %d: %w", i, err)
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	res.Events, res.Bytes = len(org.Events), buf.Len()

	s, err := openStack(ctx, dir, g.logger, stackOptions{})
	if err != nil {
		return res, err
	}
	prog := newProgress()
	prog.set("importing")
	start := time.Now()
	err = s.projectWhile(ctx, func() error {
		_, err := importReader(ctx, s, bytes.NewReader(buf.Bytes()), "bench", int64(buf.Len()), prog)
		return err
	})
	prog.done()
	if err != nil {
		s.close()
		return res, err
	}
	res.ImportPerSec = float64(res.Events) / time.Since(start).Seconds()

	// The projector alone: replay the whole log into a fresh store in memory (as rebuild does).
	fresh, err := embedded.Open(embedded.Config{})
	if err != nil {
		s.close()
		return res, err
	}
	pstart := time.Now()
	if _, err := projector.New(s.log, fresh, nil, projector.Config{}).CatchUp(ctx); err != nil {
		s.close()
		return res, err
	}
	res.ProjectPerSec = float64(res.Events) / time.Since(pstart).Seconds()
	s.close()
	s, fresh = nil, nil // let the collector take both before the heap is measured

	buf = bytes.Buffer{}
	org.Events = nil
	rstart := time.Now()
	s, err = openStack(ctx, dir, g.logger, stackOptions{})
	if err != nil {
		return res, err
	}
	res.RestartSeconds = time.Since(rstart).Seconds()
	s.close()
	s = nil

	// The heap of the store alone (restored from its snapshot, without the NATS server and its
	// caches): what one interval costs in memory.
	var before, after runtime.MemStats
	settle := func() { // let the stack's goroutines end, then collect what they held
		runtime.GC()
		time.Sleep(200 * time.Millisecond)
		runtime.GC()
	}
	settle()
	runtime.ReadMemStats(&before)
	st, err := embedded.Open(embedded.Config{Dir: filepath.Join(dir, "store"), Logger: g.logger})
	if err != nil {
		return res, err
	}
	defer st.Close()
	settle()
	runtime.ReadMemStats(&after)
	stats := st.Graph(event.DefaultTenant).Stats()
	res.Intervals = stats.Intervals
	res.HeapBytes = after.HeapAlloc - min(after.HeapAlloc, before.HeapAlloc)
	res.BytesPerInterval = float64(res.HeapBytes) / float64(max(stats.Intervals, 1))

	r := rand.New(rand.NewPCG(7, 8))
	lat := make([]time.Duration, 0, queries)
	total := 0
	for i := 0; i < queries; i++ {
		q := access.Query{
			Action:   org.Actions[r.IntN(len(org.Actions))],
			Resource: org.Resources[r.IntN(len(org.Resources))] + "/rows",
			At:       org.Start.Add(time.Duration(r.Int64N(int64(org.Span)))),
		}
		t0 := time.Now()
		ans, err := st.WhoCould(ctx, q)
		lat = append(lat, time.Since(t0))
		if err != nil {
			return res, err
		}
		total += len(ans.Principals)
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		res.WhoCouldP50us = float64(lat[len(lat)/2].Microseconds())
		res.WhoCouldP99us = float64(lat[len(lat)*99/100].Microseconds())
		res.AnswerSize = float64(total) / float64(len(lat))
	}
	return res, nil
}
