// Package difftest is the differential test of an access.Querier against the brute-force
// reference (internal/reference): random histories (internal/randhist), delivered late, out of
// order and twice, deduplicated as the log does, and thousands of who-could, explain and
// what-could questions on change boundaries, with and without known-at. On the first mismatch it
// shrinks the history to a small one that still disagrees and prints it with both answers.
//
// Usage, in the package of the system under test:
//
//	func TestDiff(t *testing.T) {
//		difftest.Run(t, func(t *testing.T, recs []event.Record) access.Querier { ... }, difftest.Options{})
//	}
//
// Long runs: `go test -run TestDiff ./graph -difftest.seeds=500` (or WHOCOULD_DIFFTEST_SEEDS=500)
// adds that many seeds after the fixed ones.
package difftest

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/internal/randhist"
	"github.com/whocould/whocould/internal/reference"
)

var seedsFlag = flag.Int("difftest.seeds", 0, "run this many random seeds in addition to the fixed ones (env WHOCOULD_DIFFTEST_SEEDS)")

// Build makes the system under test from recs: the deduplicated records, sorted by Position.
// It owns recs.
type Build func(t *testing.T, recs []event.Record) access.Querier

// Options tune Run. The zero value gives the defaults.
type Options struct {
	// Seeds replaces the fixed seeds (DefaultSeeds).
	Seeds []int64
	// Extra adds this many seeds (also -difftest.seeds and WHOCOULD_DIFFTEST_SEEDS; the largest
	// wins).
	Extra int
	// History scales the histories.
	History randhist.Options
	// Questions per seed (default 600); each is asked as who-could, explain and what-could.
	Questions int
	// NoShrink reports the first mismatch on the full history, without shrinking it.
	NoShrink bool
	// ShrinkBudget bounds the time spent shrinking a mismatch (default 30s).
	ShrinkBudget time.Duration
	// CompareHistory also asks, for one question in ten, the history of the principal and of the
	// resource over [At-1h, At+1h) and compares every interval (off by default: History's shape
	// is defined by the reference's doc comment, see reference.Ref.History).
	CompareHistory bool
	// IgnorePathExpiry compares paths without Grant.ExpiresAt. The reference puts there the
	// expiry in force at the asked time; use this only while that meaning is being settled.
	IgnorePathExpiry bool
}

// DefaultSeeds are the seeds every run checks.
var DefaultSeeds = []int64{1, 2, 3, 5, 8, 13, 21, 34}

func (o Options) seeds() []int64 {
	seeds := o.Seeds
	if seeds == nil {
		seeds = DefaultSeeds
	}
	extra := o.Extra
	if *seedsFlag > extra {
		extra = *seedsFlag
	}
	if n, err := strconv.Atoi(os.Getenv("WHOCOULD_DIFFTEST_SEEDS")); err == nil && n > extra {
		extra = n
	}
	seeds = slices.Clone(seeds)
	for i := range extra {
		seeds = append(seeds, 1000+int64(i))
	}
	return seeds
}

func (o Options) questions() int {
	if o.Questions <= 0 {
		return 600
	}
	return o.Questions
}

// Run checks the system under test against the reference, one subtest per seed; each subtest
// stops at its first mismatch.
func Run(t *testing.T, build Build, opts Options) {
	t.Helper()
	for _, seed := range opts.seeds() {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			if m := FirstMismatch(t, seed, build, opts); m != nil {
				t.Fatal(m.Report())
			}
		})
	}
}

// Mismatch is a question on which the system under test and the reference disagree.
type Mismatch struct {
	Seed     int64
	Kind     string // "who-could", "explain", "what-could", "history-principal" or "history-resource"
	Query    access.Query
	Want     any // the reference's answer (the compared part)
	Got      any // the system under test's (or its error)
	Records  []event.Record
	Shrunk   bool
	Original int // records in the full history
}

// FirstMismatch runs one seed and returns its first mismatch (shrunk unless opts.NoShrink), or
// nil when every answer agrees.
func FirstMismatch(t *testing.T, seed int64, build Build, opts Options) *Mismatch {
	t.Helper()
	recs := randhist.Dedup(randhist.Generate(seed, opts.History))
	sut := build(t, slices.Clone(recs))
	ref := reference.New(recs)
	for i, q := range randhist.Questions(seed, recs, opts.questions()) {
		kinds := []string{"who-could", "explain", "what-could"}
		if opts.CompareHistory && i%10 == 0 {
			q.From, q.To = q.At.Add(-time.Hour), q.At.Add(time.Hour)
			kinds = append(kinds, "history-principal", "history-resource")
		}
		for _, kind := range kinds {
			want, got, ok := compare(kind, q, ref, sut, opts.IgnorePathExpiry)
			if ok {
				continue
			}
			m := &Mismatch{Seed: seed, Kind: kind, Query: q, Want: want, Got: got, Records: recs, Original: len(recs)}
			if !opts.NoShrink {
				shrink(t, m, build, opts)
			}
			return m
		}
	}
	return nil
}

// The compared parts of answers: everything but the echo of the question and Explain's reason.
type whoCould struct {
	Principals []access.PrincipalPaths `json:"principals"`
}
type explain struct {
	Could  bool          `json:"could"`
	Status string        `json:"status"`
	Paths  []access.Path `json:"paths"`
}
type whatCould struct {
	Status       string               `json:"status"`
	Entitlements []access.Entitlement `json:"entitlements"`
}
type history struct {
	Intervals []access.Interval `json:"intervals"`
}
type failed struct {
	Error string `json:"error"`
}

// normPaths makes paths comparable: nil and empty slices alike, times in UTC.
func normPaths(ps []access.Path) []access.Path {
	out := make([]access.Path, 0, len(ps))
	for _, p := range ps {
		p.Groups = append([]string{}, p.Groups...)
		p.Roles = append([]string{}, p.Roles...)
		if p.Grant.ExpiresAt != nil {
			x := p.Grant.ExpiresAt.UTC()
			p.Grant.ExpiresAt = &x
		}
		out = append(out, p)
	}
	return out
}

func ask(ctx context.Context, kind string, q access.Query, a access.Querier, noExpiry bool) any {
	normPaths := func(ps []access.Path) []access.Path {
		ps = normPaths(ps)
		if noExpiry {
			for i := range ps {
				ps[i].Grant.ExpiresAt = nil
			}
		}
		return ps
	}
	switch kind {
	case "who-could":
		ans, err := a.WhoCould(ctx, q)
		if err != nil {
			return failed{err.Error()}
		}
		w := whoCould{Principals: []access.PrincipalPaths{}}
		for _, p := range ans.Principals {
			w.Principals = append(w.Principals, access.PrincipalPaths{Principal: p.Principal, Paths: normPaths(p.Paths)})
		}
		return w
	case "explain":
		ans, err := a.Explain(ctx, q)
		if err != nil {
			return failed{err.Error()}
		}
		return explain{Could: ans.Could, Status: ans.Status, Paths: normPaths(ans.Paths)}
	case "history-principal", "history-resource":
		hq := q
		if kind == "history-principal" {
			hq.Resource = ""
		} else {
			hq.Principal = ""
		}
		ans, err := a.History(ctx, hq)
		if err != nil {
			return failed{err.Error()}
		}
		h := history{Intervals: []access.Interval{}}
		for _, iv := range ans.Intervals {
			iv.Path = normPaths([]access.Path{iv.Path})[0]
			iv.From = iv.From.UTC()
			if iv.To != nil {
				x := iv.To.UTC()
				iv.To = &x
			}
			h.Intervals = append(h.Intervals, iv)
		}
		return h
	default:
		ans, err := a.WhatCould(ctx, q)
		if err != nil {
			return failed{err.Error()}
		}
		w := whatCould{Status: ans.Status, Entitlements: []access.Entitlement{}}
		for _, e := range ans.Entitlements {
			w.Entitlements = append(w.Entitlements, access.Entitlement{Action: e.Action, Resource: e.Resource, Paths: normPaths(e.Paths)})
		}
		return w
	}
}

func jsonOf(v any) string {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Sprintf("%#v", v)
	}
	return string(b)
}

func compare(kind string, q access.Query, ref, sut access.Querier, noExpiry bool) (want, got any, ok bool) {
	ctx := context.Background()
	want = ask(ctx, kind, q, ref, noExpiry)
	got = ask(ctx, kind, q, sut, noExpiry)
	return want, got, jsonOf(want) == jsonOf(got)
}

// shrink removes records while the question still gets different answers: first chunks, then
// single records, until nothing more can go or the budget is spent.
func shrink(t *testing.T, m *Mismatch, build Build, opts Options) {
	budget := opts.ShrinkBudget
	if budget <= 0 {
		budget = 30 * time.Second
	}
	deadline := time.Now().Add(budget)
	fails := func(recs []event.Record) (any, any, bool) {
		recs = renumber(recs)
		want, got, ok := compare(m.Kind, m.Query, reference.New(recs), build(t, slices.Clone(recs)), opts.IgnorePathExpiry)
		return want, got, !ok
	}
	cur := m.Records
	for chunk := len(cur) / 2; chunk >= 1 && time.Now().Before(deadline); {
		removed := false
		for i := 0; i < len(cur) && time.Now().Before(deadline); {
			cand := slices.Concat(cur[:i], cur[min(i+chunk, len(cur)):])
			if want, got, bad := fails(cand); bad {
				cur, m.Want, m.Got, removed = cand, want, got, true
				continue
			}
			i += chunk
		}
		if !removed || chunk > 1 {
			chunk /= 2
		}
	}
	if len(cur) < len(m.Records) {
		m.Records, m.Shrunk = renumber(cur), true
	}
}

func renumber(recs []event.Record) []event.Record {
	out := slices.Clone(recs)
	for i := range out {
		out[i].Position = uint64(i + 1)
	}
	return out
}

// Report is a readable account of the mismatch: the question, the history (shrunk when it could
// be), and the differences between the answers, then both answers in full.
func (m *Mismatch) Report() string {
	var b strings.Builder
	q := m.Query
	fmt.Fprintf(&b, "seed %d: %s disagrees with the reference\n", m.Seed, m.Kind)
	fmt.Fprintf(&b, "question: %s\n", describe(m.Kind, q))
	if m.Shrunk {
		fmt.Fprintf(&b, "history (shrunk from %d to %d records that still disagree; in log order):\n", m.Original, len(m.Records))
	} else {
		fmt.Fprintf(&b, "history (%d records; only the change events naming an id of either answer, at or before the asked time, are shown):\n", len(m.Records))
	}
	for _, r := range m.relevant() {
		fmt.Fprintf(&b, "  %s\n", FormatRecord(r))
	}
	b.WriteString(diffLines(m.Want, m.Got))
	fmt.Fprintf(&b, "want (reference):\n%s\ngot:\n%s\n", jsonOf(m.Want), jsonOf(m.Got))
	return b.String()
}

func describe(kind string, q access.Query) string {
	var parts []string
	if q.Tenant != "" {
		parts = append(parts, "tenant="+q.Tenant)
	}
	switch kind {
	case "history-principal":
		parts = append(parts, "principal="+q.Principal)
	case "history-resource":
		parts = append(parts, "resource="+q.Resource)
	default:
		if kind != "who-could" {
			parts = append(parts, "principal="+q.Principal)
		}
		if kind != "what-could" {
			parts = append(parts, "action="+q.Action, "resource="+q.Resource)
		}
	}
	if strings.HasPrefix(kind, "history") {
		parts = append(parts, "from="+q.From.UTC().Format(time.RFC3339Nano), "to="+q.To.UTC().Format(time.RFC3339Nano))
	} else {
		parts = append(parts, "at="+q.At.UTC().Format(time.RFC3339Nano))
	}
	if q.KnownAt != nil {
		parts = append(parts, "known_at="+q.KnownAt.UTC().Format(time.RFC3339Nano))
	}
	return kind + " " + strings.Join(parts, " ")
}

// relevant is every record when shrunk; otherwise the change events at or before the asked time
// that name the asked principal or any id on a path of either answer.
func (m *Mismatch) relevant() []event.Record {
	if m.Shrunk {
		return m.Records
	}
	ids := map[string]bool{m.Query.Principal: true}
	var collect func(v any)
	addPaths := func(ps []access.Path) {
		for _, p := range ps {
			for _, g := range p.Groups {
				ids[g] = true
			}
			for _, r := range p.Roles {
				ids[r] = true
			}
			ids[p.Grant.Subject] = true
		}
	}
	collect = func(v any) {
		switch a := v.(type) {
		case whoCould:
			for _, p := range a.Principals {
				ids[p.Principal] = true
				addPaths(p.Paths)
			}
		case explain:
			addPaths(a.Paths)
		case whatCould:
			for _, e := range a.Entitlements {
				addPaths(e.Paths)
			}
		case history:
			for _, iv := range a.Intervals {
				ids[iv.Principal] = true
				addPaths([]access.Path{iv.Path})
			}
		}
	}
	collect(m.Want)
	collect(m.Got)
	var out []event.Record
	for _, r := range m.Records {
		d := r.Data
		until := m.Query.At
		if strings.HasPrefix(m.Kind, "history") {
			until = m.Query.To
		}
		if !r.Type.IsChange() || event.Micros(r.Time) > event.Micros(until) {
			continue
		}
		if ids[d.Principal] || ids[d.Group] || ids[d.Member] || ids[d.Role] || ids[d.Includes] || ids[d.Subject] {
			out = append(out, r)
		}
	}
	return out
}

// FormatRecord is a one-line rendering of a record.
func FormatRecord(r event.Record) string {
	d := r.Data
	var f []string
	add := func(k, v string) {
		if v != "" {
			f = append(f, k+"="+v)
		}
	}
	add("principal", d.Principal)
	add("group", d.Group)
	add("member", d.Member)
	add("subject", d.Subject)
	add("role", d.Role)
	add("includes", d.Includes)
	add("action", d.Action)
	add("resource", d.Resource)
	if d.ExpiresAt != nil {
		add("expires_at", d.ExpiresAt.UTC().Format(time.RFC3339Nano))
	}
	add("tenant", d.Tenant)
	return fmt.Sprintf("#%d recorded=%s %s/%s time=%s %s %s", r.Position, r.Recorded.UTC().Format(time.RFC3339Nano),
		r.Source, r.ID, r.Time.UTC().Format(time.RFC3339Nano), r.Type, strings.Join(f, " "))
}

// diffLines lists what only one answer has, path by path.
func diffLines(want, got any) string {
	w, g := lines(want), lines(got)
	var b strings.Builder
	b.WriteString("difference (- only in reference, + only in system under test):\n")
	for _, l := range w {
		if !slices.Contains(g, l) {
			fmt.Fprintf(&b, "  - %s\n", l)
		}
	}
	for _, l := range g {
		if !slices.Contains(w, l) {
			fmt.Fprintf(&b, "  + %s\n", l)
		}
	}
	return b.String()
}

func pathLine(p access.Path) string {
	s := p.String()
	if p.Grant.ExpiresAt != nil {
		s += " until " + p.Grant.ExpiresAt.UTC().Format(time.RFC3339Nano)
	}
	return s
}

func lines(v any) []string {
	var out []string
	switch a := v.(type) {
	case whoCould:
		for _, p := range a.Principals {
			for _, path := range p.Paths {
				out = append(out, p.Principal+": "+pathLine(path))
			}
			if len(p.Paths) == 0 {
				out = append(out, p.Principal+": (no paths)")
			}
		}
	case explain:
		out = append(out, fmt.Sprintf("could=%v status=%s", a.Could, a.Status))
		for _, path := range a.Paths {
			out = append(out, pathLine(path))
		}
	case whatCould:
		out = append(out, "status="+a.Status)
		for _, e := range a.Entitlements {
			for _, path := range e.Paths {
				out = append(out, fmt.Sprintf("%s on %s: %s", e.Action, e.Resource, pathLine(path)))
			}
		}
	case history:
		for _, iv := range a.Intervals {
			to := "-"
			if iv.To != nil {
				to = iv.To.UTC().Format(time.RFC3339Nano)
			}
			out = append(out, fmt.Sprintf("%s %s on %s [%s, %s): %s", iv.Principal, iv.Action, iv.Resource,
				iv.From.UTC().Format(time.RFC3339Nano), to, pathLine(iv.Path)))
		}
	case failed:
		out = append(out, "error: "+a.Error)
	}
	return out
}
