package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/whocould/whocould/deadletter"
	"github.com/whocould/whocould/ingest"
)

func newDeadLetter(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "deadletter",
		Short: "List, show and replay the dead letters: events that could not be taken",
		Long: `Every event that could not be decoded, validated or adapted is kept as a dead letter, with its raw
bytes, its source, its place in it and the reason. list and show read them; replay tries them again
(after a fix): a letter whose bytes are good now lands in the log and is marked replayed, one still
bad stays open with the reason why.

They work on --data-dir, or on a running whocould with --server URL and an admin token (--token
or WHOCOULD_TOKEN).`,
	}
	cmd.AddCommand(newDLList(g), newDLShow(g), newDLReplay(g))
	return cmd
}

func newDLList(g *globals) *cobra.Command {
	var status, output string
	cmd := &cobra.Command{
		Use:   "list [--status open|replayed|all] [-o json|table]",
		Short: "List the dead letters, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if status != "all" && status != deadletter.StatusOpen && status != deadletter.StatusReplayed {
				return usagef("--status %q: want open, replayed or all", status)
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			b, err := openLetters(cmd.Context(), g, false)
			if err != nil {
				return err
			}
			defer b.close()
			letters := []deadletter.Letter{}
			err = b.list(cmd.Context(), status, func(l deadletter.Letter) error {
				letters = append(letters, l)
				return nil
			})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if output == "json" {
				return writeJSON(w, map[string]any{"deadletters": letters})
			}
			return listTable(w, letters, status)
		},
	}
	cmd.Flags().StringVar(&status, "status", "all", "which letters: open, replayed or all")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output: json or table")
	return cmd
}

func newDLShow(g *globals) *cobra.Command {
	var (
		output string
		raw    bool
	)
	cmd := &cobra.Command{
		Use:   "show SEQ [-o json] [--raw]",
		Short: "Show one dead letter, its raw bytes as they were received",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			seq, err := parseSeq(args[0])
			if err != nil {
				return err
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			if raw && output == "json" {
				return usagef("--raw and -o json: give one of them")
			}
			b, err := openLetters(cmd.Context(), g, false)
			if err != nil {
				return err
			}
			defer b.close()
			l, err := b.get(cmd.Context(), seq)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			switch {
			case raw:
				_, err = w.Write(l.Bytes())
				return err
			case output == "json":
				return writeJSON(w, l)
			}
			return showLetter(w, l)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output: json or table")
	cmd.Flags().BoolVar(&raw, "raw", false, "print only the raw bytes, exactly as received")
	return cmd
}

func newDLReplay(g *globals) *cobra.Command {
	var (
		output string
		all    bool
	)
	cmd := &cobra.Command{
		Use:   "replay SEQ...|--all [-o json|table]",
		Short: "Try dead letters again: the good ones land, the others stay open",
		Long: `Replay decodes and validates each letter's raw bytes again. When they are good now, its events are
appended to the log (once: events already there are duplicates) and the letter is marked replayed
with the log position they landed at; a letter replayed before is left alone. When they are still
bad, the letter stays open (no new letter is kept) and the reason why is printed. Letters of the
event log itself (source "eventlog") cannot be replayed; a whocould that decodes them takes them
on rebuild.

Exits 0 when every letter asked for is replayed, 2 when some stay open (their reasons on stderr).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) > 0) {
				return usagef("give the dead letters to replay (SEQ...) or --all, not both")
			}
			seqs := make([]uint64, len(args))
			for i, a := range args {
				seq, err := parseSeq(a)
				if err != nil {
					return err
				}
				seqs[i] = seq
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			b, err := openLetters(cmd.Context(), g, true)
			if err != nil {
				return err
			}
			defer b.close()
			sum, err := b.replay(cmd.Context(), seqs)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if output == "json" {
				err = writeJSON(w, sum)
			} else {
				err = replayTable(w, sum)
			}
			if err != nil {
				return err
			}
			if sum.Open > 0 {
				for _, r := range sum.Results {
					if r.Open() {
						fmt.Fprintf(os.Stderr, "dead letter %d (%s): %s: %s\n", r.Seq, printable(place(r.Source, r.Where), 200),
							strings.ReplaceAll(r.Outcome, "_", " "), printable(r.Reason, 2000))
					}
				}
				return usagef("%d of %d dead letter(s) still open", sum.Open, len(sum.Results))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "replay every open dead letter")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output: json or table")
	return cmd
}

func checkOutput(output string) error {
	if output != "json" && output != "table" {
		return usagef("-o %q: want json or table", output)
	}
	return nil
}

func parseSeq(s string) (uint64, error) {
	seq, err := strconv.ParseUint(s, 10, 64)
	if err != nil || seq == 0 {
		return 0, usagef("dead letter %q: not a dead-letter number (1, 2, ... as `whocould deadletter list` shows)", s)
	}
	return seq, nil
}

// letterStore is where the dead letters are: the data directory or a server.
type letterStore interface {
	list(ctx context.Context, status string, fn func(deadletter.Letter) error) error
	get(ctx context.Context, seq uint64) (deadletter.Letter, error)
	// replay replays seqs (none: every open letter).
	replay(ctx context.Context, seqs []uint64) (ingest.ReplaySummary, error)
	close()
}

// open opens the letters: on the server when --server is given, else in the data directory
// (with the whole pipeline when replaying, else only the dead-letter file).
func openLetters(ctx context.Context, g *globals, replay bool) (letterStore, error) {
	c, err := g.client()
	if err != nil {
		return nil, err
	}
	if c != nil {
		return &remoteLetters{c: c}, nil
	}
	if replay {
		s, err := openStack(ctx, g.dataDir, g.logger, stackOptions{})
		if err != nil {
			return nil, err
		}
		return &localLetters{dead: s.dead, stack: s}, nil
	}
	lock, err := lockDataDir(g.dataDir)
	if err != nil {
		return nil, err
	}
	d, err := deadletter.Open(filepath.Join(g.dataDir, "deadletters.jsonl"))
	if err != nil {
		lock.Close()
		return nil, err
	}
	return &localLetters{dead: d, lock: lock}, nil
}

// localLetters are the letters of the data directory.
type localLetters struct {
	dead  *deadletter.File
	lock  *os.File // list, show: the data directory's lock, held
	stack *stack   // replay: the whole pipeline
}

func (l *localLetters) close() {
	if l.stack != nil {
		l.stack.close()
		return
	}
	l.dead.Close()
	l.lock.Close()
}

func (l *localLetters) list(ctx context.Context, status string, fn func(deadletter.Letter) error) error {
	return l.dead.List(ctx, func(lt deadletter.Letter) error {
		if status != "all" && lt.Status != status {
			return nil
		}
		return fn(lt)
	})
}

func (l *localLetters) get(ctx context.Context, seq uint64) (deadletter.Letter, error) {
	lt, err := l.dead.Get(ctx, seq)
	if errors.Is(err, deadletter.ErrNotFound) {
		return lt, usageError{err}
	}
	return lt, err
}

// replay replays, and returns once what landed is projected.
func (l *localLetters) replay(ctx context.Context, seqs []uint64) (ingest.ReplaySummary, error) {
	var res []ingest.ReplayResult
	err := l.stack.projectWhile(ctx, func() (err error) {
		if len(seqs) == 0 {
			res, err = l.stack.ingest.ReplayAll(ctx, l.dead)
		} else {
			res, err = l.stack.ingest.Replay(ctx, l.dead, seqs)
		}
		return err
	})
	if errors.Is(err, deadletter.ErrNotFound) {
		return ingest.ReplaySummary{}, usageError{err}
	}
	return ingest.Summarize(res), err
}

// remoteLetters are the letters of a running whocould, through its API.
type remoteLetters struct{ c *apiClient }

func (r *remoteLetters) close() {}

// call sends a request and decodes the 200 answer into out.
func (r *remoteLetters) call(ctx context.Context, method, path string, out any) error {
	return r.c.do(ctx, method, path, "", nil, http.StatusOK, out)
}

func (r *remoteLetters) list(ctx context.Context, status string, fn func(deadletter.Letter) error) error {
	var after uint64
	for {
		var page struct {
			Letters []deadletter.Letter `json:"deadletters"`
			More    bool                `json:"more"`
		}
		q := url.Values{"status": {status}, "limit": {"10000"}, "after": {strconv.FormatUint(after, 10)}}
		if err := r.call(ctx, http.MethodGet, "/v1/deadletters?"+q.Encode(), &page); err != nil {
			return err
		}
		for _, l := range page.Letters {
			if err := fn(l); err != nil {
				return err
			}
			after = l.Seq
		}
		if !page.More || len(page.Letters) == 0 {
			return nil
		}
	}
}

func (r *remoteLetters) get(ctx context.Context, seq uint64) (deadletter.Letter, error) {
	var l deadletter.Letter
	err := r.call(ctx, http.MethodGet, fmt.Sprintf("/v1/deadletters/%d", seq), &l)
	return l, err
}

func (r *remoteLetters) replay(ctx context.Context, seqs []uint64) (ingest.ReplaySummary, error) {
	q := url.Values{}
	for _, s := range seqs {
		q.Add("seq", strconv.FormatUint(s, 10))
	}
	path := "/v1/deadletters/replay"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var sum ingest.ReplaySummary
	err := r.call(ctx, http.MethodPost, path, &sum)
	return sum, err
}

// ---- output ----

func listTable(w io.Writer, letters []deadletter.Letter, status string) error {
	open := 0
	for _, l := range letters {
		if l.Status == deadletter.StatusOpen {
			open++
		}
	}
	what := "Dead letters"
	if status != "all" {
		what = "Dead letters " + status
	}
	fmt.Fprintf(w, "%s: %d (%d open, %d replayed)\n", what, len(letters), open, len(letters)-open)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tSTATUS\tRECEIVED\tSOURCE\tWHERE\tID\tREASON")
	for _, l := range letters {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Seq, l.Status, l.Received.UTC().Format("2006-01-02T15:04:05Z07:00"),
			printable(l.Source, 60), printable(orDash(l.Where), 40), printable(orDash(l.ID), 40), printable(l.Reason, 200))
	}
	return tw.Flush()
}

func showLetter(w io.Writer, l deadletter.Letter) error {
	raw := l.Bytes()
	fmt.Fprintf(w, "dead letter %d (%s)\n", l.Seq, l.Status)
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	fmt.Fprintf(tw, "received:\t%s\n", fmtTime(l.Received))
	fmt.Fprintf(tw, "source:\t%s\n", printable(l.Source, 0))
	fmt.Fprintf(tw, "where:\t%s\n", printable(orDash(l.Where), 0))
	fmt.Fprintf(tw, "id:\t%s\n", printable(orDash(l.ID), 0))
	fmt.Fprintf(tw, "reason:\t%s\n", printable(l.Reason, 0))
	if l.ReplayedAt != nil {
		how := fmt.Sprintf("its events landed at log position %d", l.Position)
		if l.Duplicate {
			how = fmt.Sprintf("its events were in the log already (log position %d)", l.Position)
		}
		fmt.Fprintf(tw, "replayed:\t%s: %s\n", fmtTime(*l.ReplayedAt), how)
	}
	enc := "text"
	if l.RawBase64 != nil {
		enc = "binary"
	}
	fmt.Fprintf(tw, "raw:\t%d bytes (%s), as received:\n", len(raw), enc)
	if err := tw.Flush(); err != nil {
		return err
	}
	if _, err := w.Write(raw); err != nil {
		return err
	}
	if len(raw) > 0 && raw[len(raw)-1] != '\n' {
		_, err := io.WriteString(w, "\n")
		return err
	}
	return nil
}

func replayTable(w io.Writer, sum ingest.ReplaySummary) error {
	if len(sum.Results) == 0 {
		_, err := fmt.Fprintln(w, "No open dead letters: nothing to replay.")
		return err
	}
	fmt.Fprintf(w, "Replayed %d of %d dead letter(s); %d still open\n", sum.Replayed, len(sum.Results), sum.Open)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tOUTCOME\tPOSITION\tSOURCE\tWHERE\tREASON")
	for _, r := range sum.Results {
		pos := "-"
		if r.Position > 0 {
			pos = strconv.FormatUint(r.Position, 10)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", r.Seq, strings.ReplaceAll(r.Outcome, "_", " "), pos,
			printable(r.Source, 60), printable(orDash(r.Where), 40), printable(orDash(r.Reason), 200))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func place(source, where string) string {
	if where == "" {
		return source
	}
	return source + " " + where
}

// printable is s safe for a terminal: control and format characters (newlines, NUL, bidi
// overrides) and invalid UTF-8 escaped, cut to max runes (0: no limit).
func printable(s string, max int) string {
	var b strings.Builder
	n := 0
	for i, r := range s {
		if max > 0 && n == max {
			b.WriteString("…")
			break
		}
		n++
		switch {
		case r == utf8.RuneError && isInvalidAt(s, i):
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unicode.IsGraphic(r):
			b.WriteRune(r)
		default:
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		}
	}
	return b.String()
}

// isInvalidAt reports whether the byte at i of s starts no valid UTF-8 sequence.
func isInvalidAt(s string, i int) bool {
	r, size := utf8.DecodeRuneInString(s[i:])
	return r == utf8.RuneError && size <= 1
}
