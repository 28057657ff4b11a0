package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"

	"github.com/spf13/cobra"

	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/ingest"
)

// importBatch is how many events go to the log in one append.
const importBatch = 5000

func newImport(g *globals) *cobra.Command {
	var format, output string
	cmd := &cobra.Command{
		Use:   "import [--format canonical] [--server URL] FILE|- ...",
		Short: "Import events from files (CloudEvents as JSON lines or a JSON array; - for stdin)",
		Long: `Import reads CloudEvents as JSON lines, a JSON array or a single JSON object, validates them,
appends the good ones to the event log (duplicates by source and id are skipped), dead-letters
the bad ones with their reason, and returns once every accepted event is durable and projected.
It prints how many were accepted, duplicates and rejected, and exits 2 if any were rejected.

With --server, the events go to a running whocould service (POST /v1/events, with --token or
WHOCOULD_TOKEN, scope events:write) instead of the data directory; the server dead-letters what it
refuses, and import returns once every accepted event is durable in its log.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "canonical" {
				return usagef("--format %q: only canonical (CloudEvents) is supported so far", format)
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			if c != nil {
				return runImportTo(cmd.Context(), c, args, output, cmd.OutOrStdout())
			}
			return runImport(cmd.Context(), g, args, output, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&format, "format", "canonical", "input format: canonical (CloudEvents JSON)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "summary format: json or table")
	return cmd
}

type importSummary struct {
	Files []fileSummary `json:"files"`
	ingest.Result
	// Projected is the log position the store has reached.
	Projected uint64 `json:"projected"`
}

type fileSummary struct {
	File string `json:"file"`
	ingest.Result
}

func runImport(ctx context.Context, g *globals, files []string, output string, stdout io.Writer) error {
	// Check every file before touching the data directory.
	for _, f := range files {
		if f == "-" {
			continue
		}
		if st, err := os.Stat(f); err != nil {
			return usageError{err}
		} else if st.IsDir() {
			return usagef("%s is a directory", f)
		}
	}
	prog := newProgress()
	prog.set("catching up")
	s, err := openStack(ctx, g.dataDir, g.logger, stackOptions{progress: func(done, last uint64) {
		prog.update(int64(done), int64(last), "events")
	}})
	prog.done()
	if err != nil {
		return err
	}
	defer s.close()

	sum := importSummary{Result: ingest.Result{Rejected: []ingest.Rejection{}}, Files: []fileSummary{}}
	err = s.projectWhile(ctx, func() error {
		for _, f := range files {
			res, err := importFile(ctx, s, f, prog)
			sum.Files = append(sum.Files, fileSummary{File: f, Result: res})
			sum.Add(res)
			if err != nil {
				return err
			}
		}
		prog.set("projecting")
		return nil
	})
	prog.done()
	if err != nil {
		return err
	}
	sum.Projected = s.proj.Position()
	return printImport(sum, output, stdout, g.dataDir+"/deadletters.jsonl")
}

// printImport prints the summary and turns rejections into exit code 2; deadLetters says where
// the rejected events went.
func printImport(sum importSummary, output string, stdout io.Writer, deadLetters string) error {
	if output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(sum); err != nil {
			return err
		}
	} else {
		for _, f := range sum.Files {
			fmt.Fprintf(stdout, "%s: %d accepted, %d duplicates, %d rejected\n", f.File, f.Accepted, f.Duplicates, len(f.Rejected))
		}
		if len(sum.Files) > 1 {
			fmt.Fprintf(stdout, "total: %d accepted, %d duplicates, %d rejected\n", sum.Accepted, sum.Duplicates, len(sum.Rejected))
		}
	}
	if len(sum.Rejected) > 0 {
		const show = 20
		for i, r := range sum.Rejected {
			if i == show {
				fmt.Fprintf(os.Stderr, "... and %d more rejected (see %s)\n", len(sum.Rejected)-show, deadLetters)
				break
			}
			fmt.Fprintln(os.Stderr, r.Error)
		}
		return usagef("%d event(s) rejected and dead-lettered; the other %d were imported", len(sum.Rejected), sum.Accepted+sum.Duplicates)
	}
	return nil
}

// runImportTo sends the files to a running service in batches of JSON lines.
func runImportTo(ctx context.Context, c *apiClient, files []string, output string, stdout io.Writer) error {
	sum := importSummary{Result: ingest.Result{Rejected: []ingest.Rejection{}}, Files: []fileSummary{}}
	for _, name := range files {
		res, err := sendFile(ctx, c, name)
		sum.Files = append(sum.Files, fileSummary{File: name, Result: res})
		sum.Add(res)
		if err != nil {
			return err
		}
	}
	sum.Projected = sum.Position
	return printImport(sum, output, stdout, "the server's dead letters (whocould deadletter list --server ...)")
}

// sendBatchBytes bounds one request's body.
const sendBatchBytes = 4 << 20

// sendFile decodes name locally only to cut it at event boundaries, and sends the events' own
// bytes as JSON lines; the server validates and answers for each. What cannot even be cut out
// (malformed JSON) is reported here and not sent.
func sendFile(ctx context.Context, c *apiClient, name string) (ingest.Result, error) {
	res := ingest.Result{Rejected: []ingest.Rejection{}}
	r := io.Reader(os.Stdin)
	label := "stdin"
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return res, usageError{err}
		}
		defer f.Close()
		r, label = f, name
	}
	dec := event.NewDecoder(r, label)
	var (
		body  []byte
		index []int // file index of each line in body
		n     int
	)
	flush := func() error {
		if len(index) == 0 {
			return nil
		}
		var got ingest.Result
		err := c.do(ctx, "POST", "/v1/events", "application/x-ndjson", body, http.StatusAccepted, &got)
		if err != nil {
			return fmt.Errorf("send %s: %w", label, err)
		}
		for i := range got.Rejected {
			if k := got.Rejected[i].Index; k >= 0 && k < len(index) {
				got.Rejected[i].Index = index[k]
				got.Rejected[i].Where = fmt.Sprintf("item %d", index[k])
			}
		}
		res.Add(got)
		body, index = body[:0], index[:0]
		return nil
	}
	for ; ; n++ {
		_, raw, err := dec.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		var (
			de *event.DecodeError
			se *event.SyntaxError
		)
		switch {
		case errors.As(err, &de) && errors.As(err, &se):
			res.Rejected = append(res.Rejected, ingest.Rejection{Index: n, Where: fmt.Sprintf("line %d", de.Line), ID: de.ID, Error: err.Error()})
			continue
		case errors.As(err, &de):
			// JSON, but not a valid event: the server says why, and keeps it.
		case err != nil:
			return res, fmt.Errorf("read %s: %w", label, err)
		}
		var line bytes.Buffer
		if err := json.Compact(&line, raw); err != nil { // one event per line
			return res, fmt.Errorf("read %s: item %d: %w", label, n, err)
		}
		if len(body)+line.Len() >= sendBatchBytes {
			if err := flush(); err != nil {
				return res, err
			}
		}
		body = append(append(body, line.Bytes()...), '\n')
		index = append(index, n)
	}
	err := flush()
	slices.SortStableFunc(res.Rejected, func(a, b ingest.Rejection) int { return a.Index - b.Index })
	return res, err
}

func importFile(ctx context.Context, s *stack, name string, prog *progress) (ingest.Result, error) {
	var (
		r    io.Reader = os.Stdin
		size int64
	)
	label := name
	if name == "-" {
		label = "stdin"
	} else {
		f, err := os.Open(name)
		if err != nil {
			return ingest.Result{Rejected: []ingest.Rejection{}}, usageError{err}
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil {
			size = st.Size()
		}
		r = f
	}
	return importReader(ctx, s, r, label, size, prog)
}

// importReader decodes events from r (size bytes, 0 when unknown) and ingests them in batches;
// label names r in messages and dead letters.
func importReader(ctx context.Context, s *stack, r io.Reader, label string, size int64, prog *progress) (ingest.Result, error) {
	res := ingest.Result{Rejected: []ingest.Rejection{}}
	cr := &countingReader{r: r}
	dec := event.NewDecoder(cr, label)
	prog.set("importing " + label)
	defer prog.done()
	items := make([]ingest.Item, 0, importBatch)
	index := 0
	flush := func() error {
		if len(items) == 0 {
			return nil
		}
		br, err := s.ingest.Ingest(ctx, label, items)
		for i := range br.Rejected {
			br.Rejected[i].Index += index - len(items)
		}
		res.Add(br)
		items = items[:0]
		return err
	}
	for {
		e, raw, err := dec.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		var de *event.DecodeError
		switch {
		case errors.As(err, &de):
			items = append(items, ingest.Item{Raw: raw, Err: de, Where: fmt.Sprintf("line %d", de.Line), ID: de.ID})
		case err != nil:
			return res, fmt.Errorf("read %s: %w", label, err)
		default:
			items = append(items, ingest.Item{Event: e, Raw: raw, Where: fmt.Sprintf("item %d", index)})
		}
		index++
		if len(items) == importBatch {
			if err := flush(); err != nil {
				return res, err
			}
			prog.update(cr.n, size, "bytes")
		}
	}
	return res, flush()
}
