// Package scenario runs the scenarios of testdata/scenarios: YAML files, each an event history
// and the answers it must give. Every implementation of access.Querier (the reference, the engine,
// every store) runs the same files.
//
// A file:
//
//	description: what rule the file pins down
//	date: 2026-01-05            # optional: times may then be written 10:00, 10:00:30 or 10:00:00.000001
//	events:                     # delivery order: positions 1, 2, ... in list order
//	  - id: e1                  # default e<index>, 1-based
//	    source: test            # default "test"
//	    type: membership.added
//	    time: "10:00"           # event time (RFC 3339, or a time of day on `date`)
//	    recorded: "10:00"       # optional; default max(previous recorded + 1s, time). Must not decrease.
//	    group: group:eng        # the data fields of DESIGN.md §2, by their JSON names:
//	    member: user:alice      # principal group member role action includes subject resource
//	                            # expires_at effect reason policy request requester approver
//	                            # attributes actor approval tenant
//	expect:
//	  - who-could: {action: db.table.drop, resource: db:prod/orders, at: "10:00", known_at: "10:05", tenant: acme}
//	    principals:             # a list of principals, or principal -> its paths (all of them)
//	      user:alice:
//	        - group:eng -> grant(group:eng, role:db-owner, db:prod) => role:db-owner -> role:db-writer has db.table.*
//	  - what-could: {principal: user:alice, at: "10:00"}
//	    status: active          # optional
//	    entitlements:           # all of them, sorted by action then resource
//	      - action: db.table.*
//	        resource: db:prod
//	        paths: [...]        # optional: when given, all of them
//	  - explain: {principal: user:alice, action: db.table.drop, resource: db:prod/orders, at: "10:00"}
//	    could: true
//	    status: active          # optional
//	    paths: [...]            # optional: when given, all of them
//	    reason_contains: text   # optional
//	  - history: {principal: user:alice, from: "09:00", to: "12:00"}   # or resource:
//	    intervals:
//	      - {principal: user:alice, action: db.table.*, resource: db:prod, from: "10:00", to: "11:00", path: "..."}
//
// A path is written as access.Path.String() renders it, with -> for →, => for ⇒ and "has" for ∋
// accepted, and " until T" appended when the grant has an expiry:
// `group:eng -> grant(group:eng, role:x, db:prod) => role:x has db.* until 2026-01-05T12:00:00Z`.
// A direct grant has no groups: `grant(user:alice, db.table.drop, db:prod) has db.table.drop`.
// Unknown keys are errors, so a typo cannot make an expectation vacuous.
package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
)

// Build makes the system under test from recs: the deduplicated records, sorted by Position.
type Build func(t *testing.T, recs []event.Record) access.Querier

// Scenario is one loaded file.
type Scenario struct {
	Name        string // the file name
	Description string
	Records     []event.Record // as delivered: positions in list order, duplicates included
	Expect      []Expectation
}

// Expectation is one question and its expected answer.
type Expectation struct {
	Index int    // 0-based in the file's expect list
	Kind  string // who-could, what-could, explain or history
	Query access.Query
	e     expectYAML
}

type fileYAML struct {
	Description string       `yaml:"description"`
	Date        string       `yaml:"date"`
	Events      []EventYAML  `yaml:"events"`
	Expect      []expectYAML `yaml:"expect"`
}

// EventYAML is one event of a scenario file (see the package comment).
type EventYAML struct {
	ID         string            `yaml:"id"`
	Source     string            `yaml:"source"`
	Type       string            `yaml:"type"`
	Time       string            `yaml:"time"`
	Recorded   string            `yaml:"recorded"`
	Principal  string            `yaml:"principal"`
	Attributes map[string]string `yaml:"attributes"`
	Group      string            `yaml:"group"`
	Member     string            `yaml:"member"`
	Role       string            `yaml:"role"`
	Action     string            `yaml:"action"`
	Includes   string            `yaml:"includes"`
	Subject    string            `yaml:"subject"`
	Resource   string            `yaml:"resource"`
	ExpiresAt  string            `yaml:"expires_at"`
	Effect     string            `yaml:"effect"`
	Reason     string            `yaml:"reason"`
	Policy     string            `yaml:"policy"`
	Request    string            `yaml:"request"`
	Requester  string            `yaml:"requester"`
	Approver   string            `yaml:"approver"`
	Actor      string            `yaml:"actor"`
	Approval   string            `yaml:"approval"`
	Tenant     string            `yaml:"tenant"`
	Comment    string            `yaml:"comment"`
}

type questionYAML struct {
	Tenant    string `yaml:"tenant"`
	Principal string `yaml:"principal"`
	Action    string `yaml:"action"`
	Resource  string `yaml:"resource"`
	At        string `yaml:"at"`
	KnownAt   string `yaml:"known_at"`
	From      string `yaml:"from"`
	To        string `yaml:"to"`
}

type entitlementYAML struct {
	Action   string    `yaml:"action"`
	Resource string    `yaml:"resource"`
	Paths    *[]string `yaml:"paths"`
}

type intervalYAML struct {
	Principal string `yaml:"principal"`
	Action    string `yaml:"action"`
	Resource  string `yaml:"resource"`
	From      string `yaml:"from"`
	To        string `yaml:"to"`
	Path      string `yaml:"path"`
}

type expectYAML struct {
	Comment   string        `yaml:"comment"`
	WhoCould  *questionYAML `yaml:"who-could"`
	WhatCould *questionYAML `yaml:"what-could"`
	Explain   *questionYAML `yaml:"explain"`
	History   *questionYAML `yaml:"history"`

	Principals     yaml.Node          `yaml:"principals"`
	Status         *string            `yaml:"status"`
	Entitlements   *[]entitlementYAML `yaml:"entitlements"`
	Could          *bool              `yaml:"could"`
	Paths          *[]string          `yaml:"paths"`
	ReasonContains string             `yaml:"reason_contains"`
	Intervals      *[]intervalYAML    `yaml:"intervals"`

	date string
}

// parseTime reads RFC 3339, or a time of day (15:04, 15:04:05, 15:04:05.999999) on date.
func parseTime(s, date string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	if date != "" {
		for _, layout := range []string{"2006-01-02 15:04", "2006-01-02 15:04:05.999999999"} {
			if t, err := time.Parse(layout, date+" "+s); err == nil {
				return t.UTC(), nil
			}
		}
	}
	return time.Time{}, fmt.Errorf("bad time %q (want RFC 3339, or HH:MM[:SS[.ffffff]] with a date:)", s)
}

// Load reads one scenario file.
func Load(file string) (*Scenario, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f fileYAML
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	s := &Scenario{Name: filepath.Base(file), Description: f.Description}
	if len(f.Events) == 0 || len(f.Expect) == 0 {
		return nil, fmt.Errorf("%s: needs events and expect", file)
	}
	if s.Records, err = Records(file, f.Date, f.Events); err != nil {
		return nil, err
	}
	for i, ex := range f.Expect {
		where := fmt.Sprintf("%s: expect[%d]", file, i)
		x := Expectation{Index: i, e: ex}
		x.e.date = f.Date
		var q *questionYAML
		n := 0
		for kind, qq := range map[string]*questionYAML{"who-could": ex.WhoCould, "what-could": ex.WhatCould, "explain": ex.Explain, "history": ex.History} {
			if qq != nil {
				x.Kind, q = kind, qq
				n++
			}
		}
		if n != 1 {
			return nil, fmt.Errorf("%s: needs exactly one of who-could, what-could, explain, history", where)
		}
		x.Query = access.Query{Tenant: q.Tenant, Principal: q.Principal, Action: q.Action, Resource: q.Resource}
		for _, tf := range []struct {
			name string
			s    string
			dst  *time.Time
			need bool
		}{{"at", q.At, &x.Query.At, x.Kind != "history"}, {"from", q.From, &x.Query.From, x.Kind == "history"}, {"to", q.To, &x.Query.To, x.Kind == "history"}} {
			if tf.s == "" {
				if tf.need {
					return nil, fmt.Errorf("%s: %s is missing", where, tf.name)
				}
				continue
			}
			if *tf.dst, err = parseTime(tf.s, f.Date); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", where, tf.name, err)
			}
		}
		if q.KnownAt != "" {
			k, err := parseTime(q.KnownAt, f.Date)
			if err != nil {
				return nil, fmt.Errorf("%s: known_at: %w", where, err)
			}
			x.Query.KnownAt = &k
		}
		if err := x.validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		s.Expect = append(s.Expect, x)
	}
	return s, nil
}

// ParseTime parses a scenario's time: RFC 3339, "YYYY-MM-DD[ HH:MM[:SS]]", or a time of day on
// date.
func ParseTime(s, date string) (time.Time, error) { return parseTime(s, date) }

// Records makes the records of a scenario's events, positions 1, 2, ... in list order; file
// names them in errors, date is the file's date (or "").
func Records(file, date string, evs []EventYAML) ([]event.Record, error) {
	f := struct{ Date string }{date}
	var out []event.Record
	var prevRec time.Time
	for i, ey := range evs {
		where := fmt.Sprintf("%s: events[%d]", file, i)
		typ := event.Type(ey.Type)
		if !typ.Known() {
			return nil, fmt.Errorf("%s: unknown type %q", where, ey.Type)
		}
		t, err := parseTime(ey.Time, f.Date)
		if err != nil {
			return nil, fmt.Errorf("%s: time: %w", where, err)
		}
		e := event.Event{ID: ey.ID, Source: ey.Source, Type: typ, Time: t, Data: event.Data{
			Principal: ey.Principal, Attributes: ey.Attributes, Group: ey.Group, Member: ey.Member, Role: ey.Role,
			Action: ey.Action, Includes: ey.Includes, Subject: ey.Subject, Resource: ey.Resource, Effect: ey.Effect,
			Reason: ey.Reason, Policy: ey.Policy, Request: ey.Request, Requester: ey.Requester, Approver: ey.Approver,
			Actor: ey.Actor, Approval: ey.Approval, Tenant: ey.Tenant,
		}}
		if e.ID == "" {
			e.ID = fmt.Sprintf("e%d", i+1)
		}
		if e.Source == "" {
			e.Source = "test"
		}
		if ey.ExpiresAt != "" {
			x, err := parseTime(ey.ExpiresAt, f.Date)
			if err != nil {
				return nil, fmt.Errorf("%s: expires_at: %w", where, err)
			}
			e.Data.ExpiresAt = &x
		}
		var rec time.Time
		if ey.Recorded != "" {
			if rec, err = parseTime(ey.Recorded, f.Date); err != nil {
				return nil, fmt.Errorf("%s: recorded: %w", where, err)
			}
			if i > 0 && rec.Before(prevRec) {
				return nil, fmt.Errorf("%s: recorded %s is before the previous record's %s (recorded times never decrease along the log)", where, rec.Format(time.RFC3339Nano), prevRec.Format(time.RFC3339Nano))
			}
		} else {
			rec = t
			if i > 0 && !prevRec.Add(time.Second).Before(t) {
				rec = prevRec.Add(time.Second)
			}
		}
		prevRec = rec
		out = append(out, event.Record{Event: e, Position: uint64(i + 1), Recorded: rec})
	}
	return out, nil
}

// validate checks that the expectation says something about the answer, and only what its kind
// answers, and that every path and time in it parses.
func (x *Expectation) validate() error {
	e := x.e
	has := map[string]bool{
		"principals": e.Principals.Kind != 0, "status": e.Status != nil, "entitlements": e.Entitlements != nil,
		"could": e.Could != nil, "paths": e.Paths != nil, "reason_contains": e.ReasonContains != "", "intervals": e.Intervals != nil,
	}
	allowed := map[string][]string{
		"who-could":  {"principals"},
		"what-could": {"status", "entitlements"},
		"explain":    {"could", "status", "paths", "reason_contains"},
		"history":    {"intervals"},
	}[x.Kind]
	required := map[string]string{"who-could": "principals", "what-could": "entitlements", "explain": "could", "history": "intervals"}[x.Kind]
	for k, v := range has {
		if v && !slices.Contains(allowed, k) {
			return fmt.Errorf("%s does not answer %q", x.Kind, k)
		}
	}
	if !has[required] {
		return fmt.Errorf("%s needs %q", x.Kind, required)
	}
	if x.Kind == "who-could" {
		if _, err := x.wantWho(); err != nil {
			return err
		}
	}
	var paths []string
	if e.Paths != nil {
		paths = append(paths, *e.Paths...)
	}
	if e.Entitlements != nil {
		for _, en := range *e.Entitlements {
			if en.Paths != nil {
				paths = append(paths, *en.Paths...)
			}
		}
	}
	for _, p := range paths {
		if _, err := normPathString(p, e.date); err != nil {
			return err
		}
	}
	if e.Intervals != nil {
		if _, err := x.wantIntervals(); err != nil {
			return err
		}
	}
	return nil
}

var untilRE = regexp.MustCompile(`\s+until\s+(\S+)\s*$`)

// normPathString turns a written path into the canonical form of FormatPath.
func normPathString(s, date string) (string, error) {
	s = strings.Join(strings.Fields(s), " ")
	until := ""
	if m := untilRE.FindStringSubmatchIndex(s); m != nil {
		t, err := parseTime(s[m[2]:m[3]], date)
		if err != nil {
			return "", fmt.Errorf("path %q: %w", s, err)
		}
		until = " until " + t.UTC().Format(time.RFC3339Nano)
		s = s[:m[0]]
	}
	s = strings.ReplaceAll(s, " -> ", " → ")
	s = strings.ReplaceAll(s, " => ", " ⇒ ")
	s = strings.ReplaceAll(s, " has ", " ∋ ")
	if !strings.Contains(s, "grant(") || !strings.Contains(s, " ∋ ") {
		return "", fmt.Errorf("path %q: want [groups ->] grant(subject, role-or-action, resource) [=> roles] has permission [until T]", s)
	}
	return s + until, nil
}

// FormatPath is the canonical written form of a path: access.Path.String(), plus " until T" when
// the grant has an expiry.
func FormatPath(p access.Path) string {
	s := p.String()
	if p.Grant.ExpiresAt != nil {
		s += " until " + p.Grant.ExpiresAt.UTC().Format(time.RFC3339Nano)
	}
	return s
}

func formatPaths(ps []access.Path) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, FormatPath(p))
	}
	return out
}

func normPaths(ss []string, date string) []string {
	out := []string{}
	for _, s := range ss {
		n, _ := normPathString(s, date) // validated at load
		out = append(out, n)
	}
	return out
}

// who-could: principal -> paths (nil when only the principals are checked).
type whoAnswer struct {
	Principals []string            `json:"principals"`
	Paths      map[string][]string `json:"paths,omitempty"`
}

func (x *Expectation) wantWho() (whoAnswer, error) {
	n := x.e.Principals
	w := whoAnswer{Principals: []string{}}
	switch n.Kind {
	case yaml.SequenceNode:
		if err := n.Decode(&w.Principals); err != nil {
			return w, fmt.Errorf("principals: %w", err)
		}
	case yaml.MappingNode:
		var m map[string][]string
		if err := n.Decode(&m); err != nil {
			return w, fmt.Errorf("principals: want principal: [paths]: %w", err)
		}
		w.Paths = map[string][]string{}
		for p, ps := range m {
			w.Principals = append(w.Principals, p)
			for _, s := range ps {
				if _, err := normPathString(s, x.e.date); err != nil {
					return w, err
				}
			}
			w.Paths[p] = normPaths(ps, x.e.date)
		}
		if len(m) == 0 {
			w.Paths = nil
		}
	default:
		return w, errors.New("principals: want a list of principals, or a map of principal to paths")
	}
	sort.Strings(w.Principals)
	return w, nil
}

type intervalAnswer struct {
	Principal string `json:"principal"`
	Action    string `json:"action"`
	Resource  string `json:"resource"`
	From      string `json:"from"`
	To        string `json:"to,omitempty"`
	Path      string `json:"path"`
}

func (x *Expectation) wantIntervals() ([]intervalAnswer, error) {
	out := []intervalAnswer{}
	for _, iv := range *x.e.Intervals {
		f, err := parseTime(iv.From, x.e.date)
		if err != nil {
			return nil, fmt.Errorf("interval from: %w", err)
		}
		a := intervalAnswer{Principal: iv.Principal, Action: iv.Action, Resource: iv.Resource, From: f.Format(time.RFC3339Nano)}
		if iv.To != "" {
			to, err := parseTime(iv.To, x.e.date)
			if err != nil {
				return nil, fmt.Errorf("interval to: %w", err)
			}
			a.To = to.Format(time.RFC3339Nano)
		}
		if a.Path, err = normPathString(iv.Path, x.e.date); err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

func jsonOf(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

// Failure is one expectation the system under test did not meet.
type Failure struct {
	Scenario string
	Index    int
	Question string
	Comment  string
	Want     string // JSON
	Got      string // JSON
	Err      error
}

func (f Failure) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: expect[%d]: %s", f.Scenario, f.Index, f.Question)
	if f.Comment != "" {
		fmt.Fprintf(&b, "\n  (%s)", f.Comment)
	}
	if f.Err != nil {
		fmt.Fprintf(&b, "\n  error: %v", f.Err)
		return b.String()
	}
	fmt.Fprintf(&b, "\nwant:\n%s\ngot:\n%s", f.Want, f.Got)
	return b.String()
}

func (x *Expectation) describe() string {
	q := x.Query
	parts := []string{x.Kind}
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	add("tenant", q.Tenant)
	add("principal", q.Principal)
	add("action", q.Action)
	add("resource", q.Resource)
	if x.Kind == "history" {
		add("from", q.From.Format(time.RFC3339Nano))
		add("to", q.To.Format(time.RFC3339Nano))
	} else {
		add("at", q.At.Format(time.RFC3339Nano))
	}
	if q.KnownAt != nil {
		add("known_at", q.KnownAt.Format(time.RFC3339Nano))
	}
	return strings.Join(parts, " ")
}

// Check asks the expectation's question and compares the answer; nil when it matches.
func (x *Expectation) Check(ctx context.Context, scenario string, a access.Querier) *Failure {
	f := &Failure{Scenario: scenario, Index: x.Index, Question: x.describe(), Comment: x.e.Comment}
	var want, got any
	switch x.Kind {
	case "who-could":
		ans, err := a.WhoCould(ctx, x.Query)
		if err != nil {
			f.Err = err
			return f
		}
		w, _ := x.wantWho()
		g := whoAnswer{Principals: []string{}}
		if w.Paths != nil {
			g.Paths = map[string][]string{}
		}
		for _, p := range ans.Principals {
			g.Principals = append(g.Principals, p.Principal)
			if w.Paths != nil {
				g.Paths[p.Principal] = formatPaths(p.Paths)
			}
		}
		want, got = w, g
	case "what-could":
		ans, err := a.WhatCould(ctx, x.Query)
		if err != nil {
			f.Err = err
			return f
		}
		type ent struct {
			Action   string   `json:"action"`
			Resource string   `json:"resource"`
			Paths    []string `json:"paths,omitempty"`
		}
		type wc struct {
			Status       string `json:"status,omitempty"`
			Entitlements []ent  `json:"entitlements"`
		}
		w, g := wc{Entitlements: []ent{}}, wc{Entitlements: []ent{}}
		if x.e.Status != nil {
			w.Status, g.Status = *x.e.Status, ans.Status
		}
		for i, en := range *x.e.Entitlements {
			e := ent{Action: en.Action, Resource: en.Resource}
			if en.Paths != nil {
				e.Paths = normPaths(*en.Paths, x.e.date)
			}
			w.Entitlements = append(w.Entitlements, e)
			_ = i
		}
		for i, en := range ans.Entitlements {
			e := ent{Action: en.Action, Resource: en.Resource}
			// Paths are compared where the expectation gives them (matched by position, so a
			// missing or extra entitlement shows as a difference anyway).
			if i < len(w.Entitlements) && w.Entitlements[i].Paths != nil {
				e.Paths = formatPaths(en.Paths)
			}
			g.Entitlements = append(g.Entitlements, e)
		}
		want, got = w, g
	case "explain":
		ans, err := a.Explain(ctx, x.Query)
		if err != nil {
			f.Err = err
			return f
		}
		type ex struct {
			Could  bool     `json:"could"`
			Status string   `json:"status,omitempty"`
			Paths  []string `json:"paths,omitempty"`
			Reason string   `json:"reason_contains,omitempty"`
		}
		w, g := ex{Could: *x.e.Could}, ex{Could: ans.Could}
		if x.e.Status != nil {
			w.Status, g.Status = *x.e.Status, ans.Status
		}
		if x.e.Paths != nil {
			w.Paths, g.Paths = normPaths(*x.e.Paths, x.e.date), formatPaths(ans.Paths)
		}
		if x.e.ReasonContains != "" {
			w.Reason = x.e.ReasonContains
			g.Reason = ans.Reason
			if strings.Contains(ans.Reason, x.e.ReasonContains) {
				g.Reason = w.Reason
			}
		}
		want, got = w, g
	case "history":
		ans, err := a.History(ctx, x.Query)
		if err != nil {
			f.Err = err
			return f
		}
		w, _ := x.wantIntervals()
		g := []intervalAnswer{}
		for _, iv := range ans.Intervals {
			a := intervalAnswer{Principal: iv.Principal, Action: iv.Action, Resource: iv.Resource,
				From: iv.From.UTC().Format(time.RFC3339Nano), Path: FormatPath(iv.Path)}
			if iv.To != nil {
				a.To = iv.To.UTC().Format(time.RFC3339Nano)
			}
			g = append(g, a)
		}
		want, got = w, g
	}
	f.Want, f.Got = jsonOf(want), jsonOf(got)
	if f.Want == f.Got {
		return nil
	}
	return f
}

// Deduped is what the log holds of the scenario: records in position order, later deliveries of
// an (source, id) already delivered dropped, positions renumbered 1, 2, ...
func (s *Scenario) Deduped() []event.Record {
	seen := map[event.Key]bool{}
	var out []event.Record
	for _, r := range s.Records {
		if seen[r.Key()] {
			continue
		}
		seen[r.Key()] = true
		r.Position = uint64(len(out) + 1)
		out = append(out, r)
	}
	return out
}

// Verify builds nothing: it checks every expectation against a, and returns the failures.
func (s *Scenario) Verify(ctx context.Context, a access.Querier) []Failure {
	var fs []Failure
	for i := range s.Expect {
		if f := s.Expect[i].Check(ctx, s.Name, a); f != nil {
			fs = append(fs, *f)
		}
	}
	return fs
}

// LoadDir loads every *.yaml file of dir, sorted by name.
func LoadDir(dir string) ([]*Scenario, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no scenarios in %s", dir)
	}
	sort.Strings(files)
	var out []*Scenario
	for _, f := range files {
		s, err := Load(f)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// Run loads every scenario of dir and, one subtest per file, builds the system under test from
// its deduplicated records (in position order) and checks every expectation.
func Run(t *testing.T, dir string, build Build) {
	t.Helper()
	scs, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range scs {
		t.Run(strings.TrimSuffix(s.Name, ".yaml"), func(t *testing.T) {
			a := build(t, s.Deduped())
			for _, f := range s.Verify(t.Context(), a) {
				t.Error(f.Error())
			}
		})
	}
}
