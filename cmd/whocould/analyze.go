package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/whocould/whocould/analyzer"
	"github.com/whocould/whocould/api"
	"github.com/whocould/whocould/finding"
	"github.com/whocould/whocould/store"
)

// analyzerFlags are the flags of analyze and findings: where the findings live.
type analyzerFlags struct {
	configPath string
	storeFlag  string
	tenant     string
}

func (f *analyzerFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.configPath, "config", "", "serve's YAML configuration: its analyzer section (thresholds, privileged roles, "+
		"separation-of-duties pairs, baseline) and its store")
	cmd.Flags().StringVar(&f.tenant, "tenant", "", "tenant (default: analyze every tenant; list the default tenant's findings)")
	addStoreFlag(cmd, &f.storeFlag)
}

// open is the analyzers on the data directory (or the configured store), or on --server; done
// closes what it opened.
func (f *analyzerFlags) open(cmd *cobra.Command, g *globals) (svc api.Findings, done func(), err error) {
	c, err := g.client()
	if err != nil {
		return nil, nil, err
	}
	if c != nil {
		if f.configPath != "" || cmd.Flags().Changed("store") {
			return nil, nil, usagef("--config and --store are for the data directory, not --server (the server has its own)")
		}
		return remoteFindings{c}, func() {}, nil
	}
	cfg, err := loadServeConfig(f.configPath)
	if err != nil {
		return nil, nil, err
	}
	if err := cfg.setStore(f.storeFlag, cmd.Flags().Changed("store"), os.Getenv); err != nil {
		return nil, nil, err
	}
	if err := cfg.Store.Validate(); err != nil {
		return nil, nil, usagef("config: %v", err)
	}
	if err := cfg.Analyzer.Validate(); err != nil {
		return nil, nil, usagef("config: analyzer: %v", err)
	}
	s, err := openStack(cmd.Context(), g.dataDir, g.logger, stackOptions{store: cfg.Store})
	if err != nil {
		return nil, nil, err
	}
	return &analyzer.Service{Analyzer: &analyzer.Analyzer{Store: s.store, Config: &cfg.Analyzer, Log: g.logger}}, s.close, nil
}

func newAnalyze(g *globals) *cobra.Command {
	var (
		f      analyzerFlags
		rules  []string
		output string
		at     string
	)
	cmd := &cobra.Command{
		Use:   "analyze [--rule NAME ...] [-o json|table]",
		Short: "Run the analyzers now and print what they found",
		Long: `Analyze runs the rules (every rule, or those named by --rule) over the permission map, the
decisions and the change history, stores their findings, and prints the findings this run touched:
those it found (a condition found in the past, such as an ended separation-of-duties violation,
is printed resolved at its end) and those it resolved because their condition cleared. A finding
keeps its id from run to run; "whocould findings" lists, shows, acknowledges and suppresses them.

Rules: ` + strings.Join(finding.Rules, ", ") + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if err := (analyzer.Filter{Rules: rules}).Validate(); err != nil {
				return usagef("--rule: %v", err)
			}
			opts := analyzer.Options{Rules: rules}
			if f.tenant != "" {
				opts.Tenants = []string{f.tenant}
			}
			if at != "" {
				t, err := time.Parse(time.RFC3339Nano, at)
				if err != nil {
					return usagef("--at %q: want RFC 3339", at)
				}
				opts.Now = t
			}
			svc, done, err := f.open(cmd, g)
			if err != nil {
				return err
			}
			defer done()
			if at != "" {
				if _, ok := svc.(remoteFindings); ok {
					return usagef("--at is for the data directory: a server judges at its own clock")
				}
			}
			res, err := svc.Analyze(cmd.Context(), opts)
			if res == nil {
				return err
			}
			if output == "json" {
				if werr := writeJSON(cmd.OutOrStdout(), res); werr != nil {
					return werr
				}
				return err
			}
			printRuns(cmd.OutOrStdout(), res)
			printFindings(cmd.OutOrStdout(), res.Findings, true)
			return err
		},
	}
	f.add(cmd)
	cmd.Flags().StringSliceVar(&rules, "rule", nil, "rules to run (repeat or comma-separate; default every rule, or the config's)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output: json or table")
	cmd.Flags().StringVar(&at, "at", "", "judge as of this time, RFC 3339 (default now)")
	return cmd
}

func printRuns(w io.Writer, res *analyzer.Result) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RULE\tTENANT\tFOUND\tNEW\tRESOLVED\tTOOK")
	for _, r := range res.Runs {
		found := fmt.Sprint(r.Found)
		if r.Error != "" {
			found = "failed: " + r.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", r.Rule, r.Tenant, found, r.New, r.Resolved, r.Took.Round(time.Millisecond))
	}
	tw.Flush()
	fmt.Fprintln(w)
}

// printFindings writes findings as a table, with each one's evidence under it when evidence
// is set.
func printFindings(w io.Writer, fs []finding.Finding, evidence bool) {
	if len(fs) == 0 {
		fmt.Fprintln(w, "No findings.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRULE\tSEVERITY\tSTATUS\tSINCE\tSUMMARY")
	for _, f := range fs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", f.ID, ruleKind(f), f.Severity, f.Status, f.Since.UTC().Format("2006-01-02 15:04"), f.Summary)
		if evidence {
			for _, e := range f.Evidence {
				fmt.Fprintf(tw, "\t\t\t\t\t  · %s\n", e.Text)
			}
		}
	}
	tw.Flush()
}

func ruleKind(f finding.Finding) string {
	if f.Kind == "" {
		return f.Rule
	}
	return f.Rule + "/" + f.Kind
}

func newFindings(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "findings",
		Short: "List, show, acknowledge and suppress the analyzers' findings",
	}
	var (
		lf       analyzerFlags
		filter   analyzer.Filter
		statuses []string
		output   string
	)
	list := &cobra.Command{
		Use:   "list [--rule R] [--status S] [--severity S] [--principal P] [--resource R] [-o json|table]",
		Short: "List findings (default: the open and acknowledged ones)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			filter.Statuses = statuses
			if len(statuses) == 1 && statuses[0] == "all" {
				filter.Statuses = nil
			}
			filter.Tenant = lf.tenant
			if err := filter.Validate(); err != nil {
				return usageError{err}
			}
			svc, done, err := lf.open(cmd, g)
			if err != nil {
				return err
			}
			defer done()
			fs, err := svc.List(cmd.Context(), filter)
			if err != nil {
				return err
			}
			if fs == nil {
				fs = []finding.Finding{}
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"findings": fs})
			}
			printFindings(cmd.OutOrStdout(), fs, false)
			return nil
		},
	}
	lf.add(list)
	list.Flags().StringSliceVar(&filter.Rules, "rule", nil, "only these rules")
	list.Flags().StringSliceVar(&statuses, "status", []string{finding.Open, finding.Acknowledged}, "only these statuses (open, acknowledged, resolved, suppressed, or all)")
	list.Flags().StringVar(&filter.Severity, "severity", "", "at least this severity: low, medium, high, critical")
	list.Flags().StringVar(&filter.Principal, "principal", "", "only findings about this principal")
	list.Flags().StringVar(&filter.Action, "action", "", "only findings about this action")
	list.Flags().StringVar(&filter.Resource, "resource", "", "only findings about this resource or one below it")
	list.Flags().StringVarP(&output, "output", "o", "table", "output: json or table")

	var (
		sf      analyzerFlags
		sOutput string
	)
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show one finding: its evidence, details and lifecycle",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(sOutput); err != nil {
				return err
			}
			svc, done, err := sf.open(cmd, g)
			if err != nil {
				return err
			}
			defer done()
			f, err := svc.Get(cmd.Context(), sf.tenant, args[0])
			if err != nil {
				return findingError(err)
			}
			if sOutput == "json" {
				return writeJSON(cmd.OutOrStdout(), f)
			}
			printFinding(cmd.OutOrStdout(), f)
			return nil
		},
	}
	sf.add(show)
	show.Flags().StringVarP(&sOutput, "output", "o", "table", "output: json or table")

	change := func(use, short string, suppress bool) *cobra.Command {
		var (
			af     analyzerFlags
			by     string
			reason string
			until  string
		)
		c := &cobra.Command{
			Use:   use,
			Short: short,
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				var end *time.Time
				if until != "" {
					t, err := time.Parse(time.RFC3339Nano, until)
					if err != nil {
						return usagef("--until %q: want RFC 3339", until)
					}
					end = &t
				}
				if suppress && reason == "" {
					return usagef("suppress needs --reason")
				}
				svc, done, err := af.open(cmd, g)
				if err != nil {
					return err
				}
				defer done()
				if by == "" {
					by = "cli:" + os.Getenv("USER")
				}
				var f finding.Finding
				if suppress {
					f, err = svc.Suppress(cmd.Context(), af.tenant, args[0], by, reason, end)
				} else {
					f, err = svc.Acknowledge(cmd.Context(), af.tenant, args[0], by, reason)
				}
				if err != nil {
					return findingError(err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s is %s\n", f.ID, f.Status)
				return nil
			},
		}
		af.add(c)
		c.Flags().StringVar(&reason, "reason", "", "why")
		c.Flags().StringVar(&by, "by", "", "who (default cli:$USER; with --server the token's name)")
		if suppress {
			c.Flags().StringVar(&until, "until", "", "end of the suppression, RFC 3339 (default: until lifted)")
		}
		return c
	}
	cmd.AddCommand(list, show,
		change("ack ID [--reason TEXT]", "Acknowledge an open finding: someone is acting on it", false),
		change("suppress ID --reason TEXT [--until T]", "Suppress a finding, for a reason, until a time (or for good)", true))
	return cmd
}

// findingError makes an unknown id or a refused change a usage error (exit 2).
func findingError(err error) error {
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, finding.ErrTransition) || errors.Is(err, finding.ErrInvalid) {
		return usageError{err}
	}
	return err
}

func printFinding(w io.Writer, f finding.Finding) {
	fmt.Fprintf(w, "%s  %s  %s  %s\n", f.ID, ruleKind(f), f.Severity, f.Status)
	fmt.Fprintf(w, "%s\n\n", f.Summary)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%-12s %s\n", k+":", v)
		}
	}
	row("tenant", f.Tenant)
	row("principal", f.Principal)
	row("action", f.Action)
	row("resource", f.Resource)
	row("since", fmtTime(f.Since))
	if f.Ended != nil {
		row("ended", fmtTime(*f.Ended))
	}
	row("first seen", fmtTime(f.FirstSeen))
	row("last seen", fmtTime(f.LastSeen))
	if len(f.Details) > 0 {
		fmt.Fprintln(w, "\ndetails:")
		for _, k := range slices.Sorted(maps.Keys(f.Details)) {
			fmt.Fprintf(w, "  %s: %v\n", k, f.Details[k])
		}
	}
	fmt.Fprintln(w, "\nevidence:")
	for _, e := range f.Evidence {
		fmt.Fprintf(w, "  · %s\n", e.Text)
		if e.Event != nil {
			fmt.Fprintf(w, "      event %s (%s, source %s, position %d)\n", e.Event.ID, e.Event.Type, e.Event.Source, e.Event.Position)
		}
	}
	fmt.Fprintln(w, "\nhistory:")
	for _, h := range f.History {
		by := ""
		if h.By != "" {
			by = " by " + h.By
		}
		reason := ""
		if h.Reason != "" {
			reason = ": " + h.Reason
		}
		fmt.Fprintf(w, "  %s  %s%s%s\n", fmtTime(h.At), h.Status, by, reason)
	}
}

// remoteFindings asks a running whocould's API.
type remoteFindings struct{ c *apiClient }

var _ api.Findings = remoteFindings{}

func (r remoteFindings) Analyze(ctx context.Context, opts analyzer.Options) (*analyzer.Result, error) {
	v := url.Values{}
	for _, rule := range opts.Rules {
		v.Add("rule", rule)
	}
	for _, t := range opts.Tenants {
		v.Add("tenant", t)
	}
	var out struct {
		analyzer.Result
		Error string `json:"error"`
	}
	if err := r.c.do(ctx, http.MethodPost, "/v1/analyze?"+v.Encode(), "", nil, http.StatusOK, &out); err != nil {
		return nil, err
	}
	if out.Error != "" {
		return &out.Result, errors.New(out.Error)
	}
	return &out.Result, nil
}

func (r remoteFindings) List(ctx context.Context, f analyzer.Filter) ([]finding.Finding, error) {
	v := url.Values{}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	set("tenant", f.Tenant)
	set("severity", f.Severity)
	set("principal", f.Principal)
	set("action", f.Action)
	set("resource", f.Resource)
	for _, x := range f.Rules {
		v.Add("rule", x)
	}
	for _, x := range f.Statuses {
		v.Add("status", x)
	}
	var out struct {
		Findings []finding.Finding `json:"findings"`
	}
	err := r.c.do(ctx, http.MethodGet, "/v1/findings?"+v.Encode(), "", nil, http.StatusOK, &out)
	return out.Findings, err
}

func (r remoteFindings) path(tenant, id, verb string) string {
	p := "/v1/findings/" + url.PathEscape(id) + verb
	if tenant != "" {
		p += "?tenant=" + url.QueryEscape(tenant)
	}
	return p
}

func (r remoteFindings) Get(ctx context.Context, tenant, id string) (f finding.Finding, err error) {
	err = r.c.do(ctx, http.MethodGet, r.path(tenant, id, ""), "", nil, http.StatusOK, &f)
	return f, err
}

func (r remoteFindings) Acknowledge(ctx context.Context, tenant, id, _, reason string) (f finding.Finding, err error) {
	body, _ := json.Marshal(map[string]any{"reason": reason})
	err = r.c.do(ctx, http.MethodPost, r.path(tenant, id, "/ack"), "application/json", body, http.StatusOK, &f)
	return f, err
}

func (r remoteFindings) Suppress(ctx context.Context, tenant, id, _, reason string, until *time.Time) (f finding.Finding, err error) {
	body, _ := json.Marshal(map[string]any{"reason": reason, "until": until})
	err = r.c.do(ctx, http.MethodPost, r.path(tenant, id, "/suppress"), "application/json", body, http.StatusOK, &f)
	return f, err
}
