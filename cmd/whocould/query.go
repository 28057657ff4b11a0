package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
)

type queryFlags struct {
	tenant, principal, action, resource string
	at, knownAt, from, to               string
	output                              string
}

func newQuery(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "query",
		Short: "Ask the permission map: who-could, what-could, explain, history",
	}
	sub := func(use, short, ask string, answer func(ctx context.Context, q access.Query, a access.Querier, w io.Writer, json bool) error) *cobra.Command {
		f := &queryFlags{}
		c := &cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				q, err := f.query(ask)
				if err != nil {
					return err
				}
				if err := checkOutput(f.output); err != nil {
					return err
				}
				c, err := g.client()
				if err != nil {
					return err
				}
				if c != nil {
					return answer(cmd.Context(), q, remoteQuerier{c}, cmd.OutOrStdout(), f.output == "json")
				}
				s, err := openStack(cmd.Context(), g.dataDir, g.logger, stackOptions{})
				if err != nil {
					return err
				}
				defer s.close()
				return answer(cmd.Context(), q, s.store, cmd.OutOrStdout(), f.output == "json")
			},
		}
		fl := c.Flags()
		fl.StringVar(&f.tenant, "tenant", event.DefaultTenant, "tenant")
		fl.StringVar(&f.principal, "principal", "", "principal id, e.g. user:alice")
		fl.StringVar(&f.action, "action", "", "action, e.g. db.table.drop")
		fl.StringVar(&f.resource, "resource", "", "resource, e.g. db:prod/orders")
		fl.StringVar(&f.at, "at", "", "event time to ask about, RFC 3339 (default now)")
		fl.StringVar(&f.knownAt, "known-at", "", "answer as whocould knew it at this recorded time, RFC 3339")
		fl.StringVar(&f.from, "from", "", "history: start, RFC 3339 (default: the beginning)")
		fl.StringVar(&f.to, "to", "", "history: end, RFC 3339 (default now)")
		fl.StringVarP(&f.output, "output", "o", "table", "output: json or table")
		return c
	}
	cmd.AddCommand(
		sub("who-could --action A --resource R [--at T] [--known-at T]", "Who could do an action on a resource, and through which paths",
			access.AskWhoCould, answerWhoCould),
		sub("what-could --principal P [--at T] [--known-at T]", "What a principal could do, and through which paths",
			access.AskWhatCould, answerWhatCould),
		sub("explain --principal P --action A --resource R [--at T]", "Whether a principal could do an action on a resource, and why (or why not)",
			access.AskExplain, answerExplain),
		sub("history (--principal P | --resource R) [--from T] [--to T]", "How access changed over a stretch of time",
			access.AskHistory, answerHistory),
	)
	return cmd
}

// query checks the flags and builds the question of kind ask (access.AskWhoCould, ...).
func (f *queryFlags) query(ask string) (access.Query, error) {
	vals := map[string]string{"tenant": f.tenant, "principal": f.principal, "action": f.action, "resource": f.resource,
		"at": f.at, "known_at": f.knownAt, "from": f.from, "to": f.to}
	q, err := access.ParseQuery(ask, func(p string) string { return vals[p] }, time.Now())
	var pe *access.ParamError
	switch {
	case errors.As(err, &pe) && strings.Contains(pe.Param, "|"):
		return q, usagef("give exactly one of --principal and --resource")
	case errors.As(err, &pe):
		return q, usagef("--%s %s", strings.ReplaceAll(pe.Param, "_", "-"), pe.Msg)
	case err != nil:
		return q, usageError{err}
	}
	return q, nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func answerWhoCould(ctx context.Context, q access.Query, a access.Querier, w io.Writer, asJSON bool) error {
	ans, err := a.WhoCould(ctx, q)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(w, ans)
	}
	fmt.Fprintf(w, "Who could %s on %s at %s: %d principal(s)\n", ans.Action, ans.Resource, fmtTime(ans.At), len(ans.Principals))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PRINCIPAL\tPATH")
	for _, p := range ans.Principals {
		for i, path := range p.Paths {
			name := p.Principal
			if i > 0 {
				name = ""
			}
			fmt.Fprintf(tw, "%s\t%s\n", name, pathString(p.Principal, path))
		}
	}
	return tw.Flush()
}

// pathString renders a path starting from its principal.
func pathString(principal string, p access.Path) string {
	return principal + " → " + p.String()
}

func answerWhatCould(ctx context.Context, q access.Query, a access.Querier, w io.Writer, asJSON bool) error {
	ans, err := a.WhatCould(ctx, q)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(w, ans)
	}
	fmt.Fprintf(w, "What %s (%s) could do at %s: %d entitlement(s)\n", ans.Principal, ans.Status, fmtTime(ans.At), len(ans.Entitlements))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACTION\tRESOURCE\tPATH")
	for _, e := range ans.Entitlements {
		for i, path := range e.Paths {
			act, res := e.Action, e.Resource
			if i > 0 {
				act, res = "", ""
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", act, res, path.String())
		}
	}
	return tw.Flush()
}

func answerExplain(ctx context.Context, q access.Query, a access.Querier, w io.Writer, asJSON bool) error {
	ans, err := a.Explain(ctx, q)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(w, ans)
	}
	verdict := "could not"
	if ans.Could {
		verdict = "could"
	}
	fmt.Fprintf(w, "%s (%s) %s do %s on %s at %s\n", ans.Principal, ans.Status, verdict, ans.Action, ans.Resource, fmtTime(ans.At))
	if ans.Reason != "" {
		fmt.Fprintf(w, "why not: %s\n", ans.Reason)
	}
	for _, p := range ans.Paths {
		fmt.Fprintf(w, "  %s\n", pathString(ans.Principal, p))
	}
	return nil
}

func answerHistory(ctx context.Context, q access.Query, a access.Querier, w io.Writer, asJSON bool) error {
	ans, err := a.History(ctx, q)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(w, ans)
	}
	what := ans.Principal
	if what == "" {
		what = ans.Resource
	}
	fmt.Fprintf(w, "Access of %s from %s to %s: %d interval(s)\n", what, fmtTime(ans.From), fmtTime(ans.To), len(ans.Intervals))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FROM\tTO\tPRINCIPAL\tACTION\tRESOURCE\tPATH")
	for _, iv := range ans.Intervals {
		to := "(holds)"
		if iv.To != nil {
			to = fmtTime(*iv.To)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", fmtTime(iv.From), to, iv.Principal, iv.Action, iv.Resource, iv.Path.String())
	}
	return tw.Flush()
}
