package analyzer

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
)

// Filter selects findings: every set field must match.
type Filter struct {
	Tenant    string
	Rules     []string
	Statuses  []string
	Severity  string // at least this severity
	Principal string
	Action    string
	// Resource selects findings about this resource or one it covers.
	Resource string
}

// Validate checks the filter's names.
func (f Filter) Validate() error {
	for _, r := range f.Rules {
		if !slices.Contains(finding.Rules, r) {
			return fmt.Errorf("rule %q: unknown (the rules are %s)", r, strings.Join(finding.Rules, ", "))
		}
	}
	for _, s := range f.Statuses {
		if !slices.Contains([]string{finding.Open, finding.Acknowledged, finding.Resolved, finding.Suppressed}, s) {
			return fmt.Errorf("status %q: want open, acknowledged, resolved or suppressed", s)
		}
	}
	if _, ok := severityRank[f.Severity]; f.Severity != "" && !ok {
		return fmt.Errorf("severity %q: want low, medium, high or critical", f.Severity)
	}
	return nil
}

func (f Filter) match(x *finding.Finding) bool {
	return (len(f.Rules) == 0 || slices.Contains(f.Rules, x.Rule)) &&
		(len(f.Statuses) == 0 || slices.Contains(f.Statuses, x.Status)) &&
		(f.Severity == "" || severityRank[x.Severity] <= severityRank[f.Severity]) &&
		(f.Principal == "" || x.Principal == f.Principal) &&
		(f.Action == "" || x.Action == f.Action) &&
		(f.Resource == "" || (x.Resource != "" && event.Covers(f.Resource, x.Resource)))
}

// Service is the analyzers as the CLI and the API use them: runs, and the findings' lifecycle.
// Runs are one at a time (a second waits); acknowledging and suppressing wait for a run in
// progress, so neither overwrites the other.
type Service struct {
	Analyzer *Analyzer
	// Now is the clock (default time.Now).
	Now func() time.Time

	mu sync.Mutex
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Analyze runs the rules (see Analyzer.Run).
func (s *Service) Analyze(ctx context.Context, opts Options) (*Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if opts.Now.IsZero() {
		opts.Now = s.now()
	}
	return s.Analyzer.Run(ctx, opts)
}

// List is the findings f selects, sorted as SortFindings does.
func (s *Service) List(ctx context.Context, f Filter) ([]finding.Finding, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	all, err := s.Analyzer.Store.Findings(ctx, tenantOr(f.Tenant))
	if err != nil {
		return nil, fmt.Errorf("list findings: %w", err)
	}
	out := all[:0]
	for i := range all {
		if f.match(&all[i]) {
			out = append(out, all[i])
		}
	}
	SortFindings(out)
	return out, nil
}

// Get is one finding, or an error wrapping store.ErrNotFound.
func (s *Service) Get(ctx context.Context, tenant, id string) (finding.Finding, error) {
	return Get(ctx, s.Analyzer.Store, tenantOr(tenant), id)
}

// Acknowledge records that by is acting on an open finding.
func (s *Service) Acknowledge(ctx context.Context, tenant, id, by, reason string) (finding.Finding, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Acknowledge(ctx, s.Analyzer.Store, tenantOr(tenant), id, by, reason, s.now())
}

// Suppress hides a finding until until (nil: until lifted), for reason.
func (s *Service) Suppress(ctx context.Context, tenant, id, by, reason string, until *time.Time) (finding.Finding, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Suppress(ctx, s.Analyzer.Store, tenantOr(tenant), id, by, reason, until, s.now())
}

func tenantOr(t string) string {
	if t == "" {
		return event.DefaultTenant
	}
	return t
}
