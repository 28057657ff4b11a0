// Package embedded is the store for one machine: pure Go, everything in memory, persisted under
// a directory as an atomic snapshot written at each checkpoint, restored at open without
// replaying the log (the projector replays only the tail after the snapshot's position).
package embedded

import (
	"bufio"
	"cmp"
	"container/heap"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/finding"
	"github.com/whocould/whocould/graph"
	"github.com/whocould/whocould/internal/bin"
	"github.com/whocould/whocould/store"
)

var _ store.Store = (*Store)(nil)

const (
	snapshotFile  = "snapshot.bin"
	snapshotMagic = "whocould-embedded-snapshot\n"
	formatVersion = 3 // 2: the archive of change and approval events; 3: decision ids not interned
	findingsFile  = "findings.json"
)

// Config configures the embedded store.
type Config struct {
	// Dir holds the snapshot. Empty: memory only (tests).
	Dir    string
	Logger *slog.Logger
}

// decision is a decision with its strings interned, but for its id and request id, which are
// mostly unique (interning them would cost a map entry and a string header each): those are in
// the tenant's blobs.
type decision struct {
	time                        int64
	position                    uint64
	blob                        uint64 // where its id and request are in the blobs; allowBit: allowed
	principal, action, resource uint32
	reason, policy, source      uint32
}

const allowBit = 1 << 63

func (d *decision) allowed() bool { return d.blob&allowBit != 0 }

// blobs holds strings appended once and never changed, in chunks: each string a uvarint length
// and its bytes. An offset is the chunk's index (high 31 bits) and the place in it (low 32).
type blobs struct{ chunks [][]byte }

const blobChunk = 1 << 20

// add appends strs and returns the offset of the first.
func (b *blobs) add(strs ...string) uint64 {
	n := 0
	for _, str := range strs {
		n += binary.MaxVarintLen64 + len(str)
	}
	last := len(b.chunks) - 1
	if last < 0 || len(b.chunks[last])+n > cap(b.chunks[last]) {
		b.chunks = append(b.chunks, make([]byte, 0, max(blobChunk, n)))
		last++
	}
	c := b.chunks[last]
	at := uint64(last)<<32 | uint64(len(c))
	for _, str := range strs {
		c = binary.AppendUvarint(c, uint64(len(str)))
		c = append(c, str...)
	}
	b.chunks[last] = c
	return at
}

// get reads len(out) strings from offset at.
func (b *blobs) get(at uint64, out ...*string) {
	c := b.chunks[at>>32&(1<<31-1)][uint32(at):]
	for _, o := range out {
		n, k := binary.Uvarint(c)
		*o = string(c[k : k+int(n)])
		c = c[k+int(n):]
	}
}

type useKey struct{ principal, action, resource uint32 }

type use struct {
	first, last int64
	count       int64
}

// archived is a change or approval event as the log held it, kept for store.Reader.Events.
type archived struct {
	position uint64
	recorded int64
	event    []byte // the CloudEvent, JSON (archiveJSON)
}

type tenant struct {
	graph     *graph.Graph
	events    []archived
	decisions []decision
	blobs     blobs
	sorted    bool // decisions are in event-time order
	// usageOrder is usage's keys in order (nil: not made since a key was added); orderMu
	// guards making it under s.mu held for reading.
	usageOrder []keyedUse
	// usageRuns is, with usageOrder, each principal's stretch of it, in order.
	usageRuns []usageRun
	orderMu   sync.Mutex
	// byPrincipal indexes the sorted decisions by principal (nil: not built since the last
	// change).
	byPrincipal map[uint32][]int32
	// usage is the running totals of allowed decisions: each key's place in uses (no pointers:
	// millions of keys the collector need not scan).
	usage     map[useKey]int32
	uses      []use
	approvals map[string]*store.Approval
}

// Store is the embedded store.
type Store struct {
	cfg Config
	log *slog.Logger

	mu       sync.RWMutex
	tenants  map[string]*tenant
	strs     []string
	strIDs   map[string]uint32
	position uint64
	// findings, by tenant and id: apart from the tenants, since they are not in the snapshot
	// and a tenant with findings alone has no event (Tenants).
	findings map[string]map[string]finding.Finding

	ckMu sync.Mutex // one checkpoint at a time
	fMu  sync.Mutex // one findings file write at a time
}

// Open opens the store in cfg.Dir, restoring its last snapshot when there is one.
func Open(cfg Config) (*Store, error) {
	s := &Store{cfg: cfg, log: cfg.Logger, tenants: map[string]*tenant{}, strIDs: map[string]uint32{},
		findings: map[string]map[string]finding.Finding{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.intern("")
	if cfg.Dir == "" {
		return s, nil
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("open embedded store: %w", err)
	}
	if err := s.loadFindings(); err != nil {
		return nil, err
	}
	f, err := os.Open(filepath.Join(cfg.Dir, snapshotFile))
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open embedded store: %w", err)
	}
	defer f.Close()
	start := time.Now()
	if err := s.decode(f); errors.Is(err, errOldFormat) {
		// A snapshot of an older release: start empty, and the projector replays the whole log.
		s.log.Warn("store snapshot is of an older format: the log is replayed from its start", "file", f.Name(), "err", err)
		s.reset()
		return s, nil
	} else if err != nil {
		return nil, fmt.Errorf("restore %s: %w", f.Name(), err)
	}
	s.log.Info("store restored", "dir", cfg.Dir, "position", s.position, "took", time.Since(start))
	return s, nil
}

func (s *Store) intern(str string) uint32 {
	if id, ok := s.strIDs[str]; ok {
		return id
	}
	id := uint32(len(s.strs))
	s.strIDs[str] = id
	s.strs = append(s.strs, str)
	return id
}

func (s *Store) tenant(name string) *tenant {
	t := s.tenants[name]
	if t == nil {
		t = &tenant{graph: graph.New(), usage: map[useKey]int32{}, approvals: map[string]*store.Approval{}, sorted: true}
		s.tenants[name] = t
	}
	return t
}

// Apply implements store.Writer.
func (s *Store) Apply(ctx context.Context, recs []event.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	starts := map[*tenant]int{} // where each tenant's decisions of this batch begin
	defer func() {
		for t, start := range starts {
			t.order(start)
		}
	}()
	for i := range recs {
		r := &recs[i]
		if r.Position <= s.position {
			continue
		}
		s.position = r.Position
		if !r.Type.Known() {
			continue // a log message the projector could not decode: dead-lettered there
		}
		t := s.tenant(r.TenantOrDefault())
		if r.Type == event.Decision {
			if _, ok := starts[t]; !ok {
				starts[t] = len(t.decisions)
			}
			s.addDecision(t, r)
			continue
		}
		t.events = append(t.events, archived{position: r.Position, recorded: event.Micros(r.Recorded), event: archiveJSON(&r.Event)})
		if r.Type.IsChange() {
			t.graph.Apply(r)
		} else {
			addApproval(t, r)
		}
	}
	return ctx.Err()
}

func (s *Store) addDecision(t *tenant, r *event.Record) {
	d := decision{
		time: event.Micros(r.Time), principal: s.intern(r.Data.Principal), action: s.intern(r.Data.Action),
		resource: s.intern(r.Data.Resource), reason: s.intern(r.Data.Reason), policy: s.intern(r.Data.Policy),
		source: s.intern(r.Source), position: r.Position, blob: t.blobs.add(r.ID, r.Data.Request),
	}
	if r.Data.Effect == event.Allow {
		d.blob |= allowBit
	}
	t.add(d)
}

// add appends decision d, and counts it in the usage when allowed.
func (t *tenant) add(d decision) {
	t.byPrincipal = nil
	t.decisions = append(t.decisions, d)
	if !d.allowed() {
		return
	}
	k := useKey{d.principal, d.action, d.resource}
	i, ok := t.usage[k]
	if !ok {
		t.usage[k] = int32(len(t.uses))
		t.uses = append(t.uses, use{first: d.time, last: d.time, count: 1})
		t.usageOrder, t.usageRuns = nil, nil
		return
	}
	u := &t.uses[i]
	u.first, u.last, u.count = min(u.first, d.time), max(u.last, d.time), u.count+1
}

// decisionOrder orders decisions by event time, then by log position (unique: the order is
// total, and stable in log order).
func decisionOrder(a, b decision) int {
	return cmp.Or(cmp.Compare(a.time, b.time), cmp.Compare(a.position, b.position))
}

// maxMerge bounds the decisions Apply moves to keep them in order: a batch that reaches further
// back (an import of old decisions) leaves them to be sorted once, when next read.
var maxMerge = 1 << 20 // a variable for the tests

// order puts the decisions from the start-th on (those just applied) in order among the others,
// which are: the batch is sorted and merged into the stretch of the others it overlaps, which
// for decisions arriving in roughly event-time order is a few seconds' worth.
func (t *tenant) order(start int) {
	if !t.sorted || start == len(t.decisions) {
		return
	}
	batch := t.decisions[start:]
	if !slices.IsSortedFunc(batch, decisionOrder) {
		slices.SortFunc(batch, decisionOrder)
	}
	lo, _ := slices.BinarySearchFunc(t.decisions[:start], batch[0], decisionOrder)
	if lo == start {
		return // all after the others
	}
	if start-lo > maxMerge {
		t.sorted = false
		return
	}
	// Merge from the front, the overlapped stretch of the others set aside: the place written
	// never passes the batch's next decision.
	left := slices.Clone(t.decisions[lo:start])
	i, j, k := 0, 0, lo
	for ; i < len(left); k++ {
		if j < len(batch) && decisionOrder(batch[j], left[i]) < 0 {
			t.decisions[k] = batch[j]
			j++
		} else {
			t.decisions[k] = left[i]
			i++
		}
	}
}

func addApproval(t *tenant, r *event.Record) {
	d := &r.Data
	a := t.approvals[d.Request]
	if a == nil {
		a = &store.Approval{Tenant: r.TenantOrDefault(), Request: d.Request, Answers: []store.ApprovalAnswer{}}
		t.approvals[d.Request] = a
	}
	switch r.Type {
	case event.ApprovalRequested:
		at := r.Time.UTC()
		a.Requester, a.Requested, a.Change, a.Reason = d.Requester, &at, d.Change, d.Reason
	case event.ApprovalGranted, event.ApprovalRejected:
		a.Answers = append(a.Answers, store.ApprovalAnswer{Approver: d.Approver, Granted: r.Type == event.ApprovalGranted,
			Reason: d.Reason, Time: r.Time.UTC()})
		slices.SortStableFunc(a.Answers, func(x, y store.ApprovalAnswer) int { return x.Time.Compare(y.Time) })
	}
}

func tenantName(t string) string {
	if t == "" {
		return event.DefaultTenant
	}
	return t
}

// graphOf is the graph of a tenant (an empty one for an unknown tenant).
func (s *Store) graphOf(name string) *graph.Graph {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if t := s.tenants[tenantName(name)]; t != nil {
		return t.graph
	}
	return graph.New()
}

// Graph is the graph of a tenant, for readers that need more than access.Querier.
func (s *Store) Graph(tenant string) *graph.Graph { return s.graphOf(tenant) }

// WhoCould implements access.Querier.
func (s *Store) WhoCould(ctx context.Context, q access.Query) (access.WhoCould, error) {
	return s.graphOf(q.Tenant).WhoCould(ctx, q)
}

// WhatCould implements access.Querier.
func (s *Store) WhatCould(ctx context.Context, q access.Query) (access.WhatCould, error) {
	return s.graphOf(q.Tenant).WhatCould(ctx, q)
}

// Explain implements access.Querier.
func (s *Store) Explain(ctx context.Context, q access.Query) (access.Explain, error) {
	return s.graphOf(q.Tenant).Explain(ctx, q)
}

// History implements access.Querier.
func (s *Store) History(ctx context.Context, q access.Query) (access.History, error) {
	return s.graphOf(q.Tenant).History(ctx, q)
}

// Position implements store.Reader.
func (s *Store) Position(context.Context) (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.position, nil
}

// Tenants implements store.Reader.
func (s *Store) Tenants(context.Context) ([]string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]string, 0, len(s.tenants))
	for name := range s.tenants {
		out = append(out, name)
	}
	slices.Sort(out)
	return out, nil
}

func (s *Store) sortDecisions(t *tenant) {
	if t.sorted {
		return
	}
	slices.SortFunc(t.decisions, decisionOrder)
	t.sorted = true
	t.byPrincipal = nil
}

// selected calls fn, under s.mu (held for writing: sorting and indexing may write), with each
// decision sel selects, in event-time order, after position after at sel.from: a principal's
// decisions through its index, a time range by binary search.
func (s *Store) selected(t *tenant, sel selection, after uint64, fn func(d *decision) bool) {
	s.sortDecisions(t)
	match := func(d *decision) bool {
		return sel.matches(d) && (d.time != sel.from || d.position > after)
	}
	if sel.ps != nil {
		s.principalsSelected(t, sel.ps, sel.from, sel.to, match, fn)
		return
	}
	lo, _ := slices.BinarySearchFunc(t.decisions, sel.from, func(d decision, t0 int64) int { return cmp.Compare(d.time, t0) })
	for i := lo; i < len(t.decisions); i++ {
		d := &t.decisions[i]
		if d.time >= sel.to {
			return
		}
		if match(d) && !fn(d) {
			return
		}
	}
}

// Decisions implements store.Reader. The decisions selected are copied out under the lock, in
// pages, and fn is called without it; a page goes on after the last decision sent (its time
// and position: the decisions are in that order). The query's strings are looked up once (a
// string first seen after the read began is not read).
func (s *Store) Decisions(ctx context.Context, q store.DecisionQuery, fn func(store.Decision) error) error {
	const page = 4096
	tenant := tenantName(q.Tenant)
	var after uint64 // the last position sent at sel.from's instant
	var sel selection
	for first := true; ; first = false {
		out := make([]store.Decision, 0, page)
		s.mu.Lock()
		t := s.tenants[tenant]
		if t == nil {
			s.mu.Unlock()
			return nil
		}
		if first {
			var ok bool
			if sel, ok = s.selectionOf(q); !ok {
				s.mu.Unlock()
				return nil
			}
		}
		s.selected(t, sel, after, func(d *decision) bool {
			if len(out) == page {
				return false
			}
			out = append(out, s.decisionOut(t, tenant, d))
			return true
		})
		s.mu.Unlock()
		for _, d := range out {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := fn(d); err != nil {
				return err
			}
		}
		if len(out) < page {
			return nil
		}
		last := out[len(out)-1]
		sel.from, after = event.Micros(last.Time), last.Position
	}
}

// decisionOut is d as store.Decision.
func (s *Store) decisionOut(t *tenant, tenant string, d *decision) store.Decision {
	effect := event.Deny
	if d.allowed() {
		effect = event.Allow
	}
	out := store.Decision{Tenant: tenant, Principal: s.strs[d.principal], Action: s.strs[d.action],
		Resource: s.strs[d.resource], Effect: effect, Time: event.FromMicros(d.time), Reason: s.strs[d.reason],
		Policy: s.strs[d.policy], Source: s.strs[d.source], Position: d.position}
	t.blobs.get(d.blob, &out.ID, &out.Request)
	return out
}

// selection is a query's filters by string ids.
type selection struct {
	ps       []uint32        // the principals, sorted (nil: any)
	a, r     uint32          // the action and the resource (0: any)
	keys     map[useKey]bool // the keys (nil: any); ps holds their principals
	effect   string          // "", allow or deny
	from, to int64           // event time, [from, to)
}

// selectionOf is q's filters by string ids; false when nothing can match: a string asked was
// never seen, no principal or key asked was, or the effect is neither allow nor deny. Keys
// narrow the principals to theirs. Called with s.mu held.
func (s *Store) selectionOf(q store.DecisionQuery) (selection, bool) {
	sel := selection{effect: q.Effect, from: math.MinInt64, to: math.MaxInt64}
	if q.Effect != "" && q.Effect != event.Allow && q.Effect != event.Deny {
		return sel, false
	}
	if !q.From.IsZero() {
		sel.from = event.Micros(q.From)
	}
	if !q.To.IsZero() {
		sel.to = event.Micros(q.To)
	}
	id := func(str string) (uint32, bool) {
		if str == "" {
			return 0, true
		}
		id := s.strIDs[str]
		return id, id != 0
	}
	var ok1, ok2 bool
	sel.a, ok1 = id(q.Action)
	sel.r, ok2 = id(q.Resource)
	if !ok1 || !ok2 {
		return sel, false
	}
	if q.Principal != "" || len(q.Principals) > 0 {
		names := q.Principals
		if q.Principal != "" {
			names = []string{q.Principal}
			if len(q.Principals) > 0 && !slices.Contains(q.Principals, q.Principal) {
				names = nil
			}
		}
		sel.ps = make([]uint32, 0, len(names))
		for _, name := range names {
			if p, ok := id(name); ok {
				sel.ps = append(sel.ps, p)
			}
		}
		if sel.ps = sortedIDs(sel.ps); len(sel.ps) == 0 {
			return sel, false
		}
	}
	if len(q.Keys) > 0 {
		sel.keys = make(map[useKey]bool, len(q.Keys))
		var kps []uint32
		for _, k := range q.Keys {
			p, a, r := s.strIDs[k.Principal], s.strIDs[k.Action], s.strIDs[k.Resource]
			if p != 0 && a != 0 && r != 0 && (sel.ps == nil || sortedHas(sel.ps, p)) {
				sel.keys[useKey{p, a, r}] = true
				kps = append(kps, p)
			}
		}
		if sel.ps = sortedIDs(kps); len(sel.ps) == 0 {
			return sel, false
		}
	}
	return sel, true
}

// sortedIDs is ids sorted, each once.
func sortedIDs(ids []uint32) []uint32 {
	slices.Sort(ids)
	return slices.Compact(ids)
}

// matches reports whether decision d passes sel's filters, bar its principals and its time.
func (sel selection) matches(d *decision) bool {
	return (sel.a == 0 || d.action == sel.a) && (sel.r == 0 || d.resource == sel.r) &&
		(sel.effect == "" || d.allowed() == (sel.effect == event.Allow)) && sel.hasKey(useKey{d.principal, d.action, d.resource})
}

// hasKey reports whether sel's keys (any, when it names none) hold k.
func (sel selection) hasKey(k useKey) bool { return sel.keys == nil || sel.keys[k] }

// principalsSelected calls fn with each decision of the principals ps from from to to that
// match, in order: their index lists merged (each list is in order, as the decisions are).
func (s *Store) principalsSelected(t *tenant, ps []uint32, from, to int64, match, fn func(d *decision) bool) {
	s.indexPrincipals(t)
	var lists [][]int32 // each principal's decisions from from on
	for _, p := range ps {
		idx := t.byPrincipal[p]
		lo, _ := slices.BinarySearchFunc(idx, from, func(i int32, t0 int64) int { return cmp.Compare(t.decisions[i].time, t0) })
		if lo < len(idx) {
			lists = append(lists, idx[lo:])
		}
	}
	// A heap of the lists by their next decision's index (the decisions' order).
	h := indexHeap(lists)
	heap.Init(&h)
	for len(h) > 0 {
		i := h[0][0]
		if h[0] = h[0][1:]; len(h[0]) == 0 {
			heap.Pop(&h)
		} else {
			heap.Fix(&h, 0)
		}
		d := &t.decisions[i]
		if d.time >= to {
			return
		}
		if match(d) && !fn(d) {
			return
		}
	}
}

func sortedHas(ps []uint32, p uint32) bool {
	_, ok := slices.BinarySearch(ps, p)
	return ok
}

// indexPrincipals makes t.byPrincipal if need be (the decisions sorted).
func (s *Store) indexPrincipals(t *tenant) {
	if t.byPrincipal == nil {
		t.byPrincipal = map[uint32][]int32{}
		for i := range t.decisions {
			pi := t.decisions[i].principal
			t.byPrincipal[pi] = append(t.byPrincipal[pi], int32(i))
		}
	}
}

// indexHeap is lists of decision indexes, by the first of each.
type indexHeap [][]int32

func (h indexHeap) Len() int           { return len(h) }
func (h indexHeap) Less(i, j int) bool { return h[i][0] < h[j][0] }
func (h indexHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *indexHeap) Push(x any)        { *h = append(*h, x.([]int32)) }
func (h *indexHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Usage implements store.Reader: from the running totals of allowed decisions when q counts
// them all (every key of the tenant: copied out in pages, fn called without the lock), else by
// counting, in place, the decisions q selects.
func (s *Store) Usage(ctx context.Context, q store.DecisionQuery, fn func(store.Use) error) error {
	q.Effect = cmp.Or(q.Effect, event.Allow)
	var out []store.Use
	var err error
	switch totals := q.From.IsZero() && q.To.IsZero() && q.Effect == event.Allow; {
	case totals && q.Principal == "" && len(q.Principals) == 0 && len(q.Keys) == 0 && q.Action == "" && q.Resource == "":
		return s.allUsage(ctx, q.Tenant, fn)
	case totals:
		out = s.totalUsage(q)
	default:
		out, err = s.countedUsage(ctx, q)
	}
	if err != nil {
		return err
	}
	for _, u := range out {
		if err := fn(u); err != nil {
			return err
		}
	}
	return nil
}

// countedUsage is the use by the decisions q selects (within bounds of time, or denied).
func (s *Store) countedUsage(ctx context.Context, q store.DecisionQuery) ([]store.Use, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[tenantName(q.Tenant)]
	sel, ok := s.selectionOf(q)
	if t == nil || !ok {
		return nil, nil
	}
	if sel.effect == event.Allow {
		return s.allowedUsage(t, sel), ctx.Err()
	}
	at := map[useKey]int32{}
	var uses []use
	s.selected(t, sel, 0, func(d *decision) bool {
		k := useKey{d.principal, d.action, d.resource}
		if i, ok := at[k]; ok {
			uses[i].last = d.time // in event-time order
			uses[i].count++
		} else {
			at[k] = int32(len(uses))
			uses = append(uses, use{first: d.time, last: d.time, count: 1})
		}
		return true
	})
	kus := make([]keyedUse, 0, len(at))
	for k, i := range at {
		kus = append(kus, keyedUse{k, i})
	}
	return s.usesOut(uses, kus), ctx.Err()
}

// totalUsage is the running totals q selects (all time, allowed decisions).
func (s *Store) totalUsage(q store.DecisionQuery) []store.Use {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t := s.tenants[tenantName(q.Tenant)]
	sel, ok := s.selectionOf(q)
	if t == nil || !ok {
		return nil
	}
	var kus []keyedUse
	if sel.a == 0 && sel.r == 0 && sel.ps != nil {
		// Principals' uses: their stretches of the ordered totals.
		order, runs := s.usageOrdered(t)
		for _, run := range runs {
			if sortedHas(sel.ps, run.principal) {
				for _, ku := range order[run.lo:run.hi] {
					if sel.hasKey(ku.k) {
						kus = append(kus, ku)
					}
				}
			}
		}
		return s.useOut(t.uses, kus)
	}
	for k, i := range t.usage {
		if (sel.ps == nil || sortedHas(sel.ps, k.principal)) && (sel.a == 0 || k.action == sel.a) && (sel.r == 0 || k.resource == sel.r) &&
			sel.hasKey(k) {
			kus = append(kus, keyedUse{k, i})
		}
	}
	return s.usesOut(t.uses, kus)
}

// allUsage calls fn with every use of tenant, in order: the order is kept (usageOrder) until a
// decision adds a new key, so that the analyzers' repeated reads of millions of uses do not sort
// them again. The uses are copied out in pages under the lock, and fn called without it; a key
// added meanwhile is not sent.
func (s *Store) allUsage(ctx context.Context, tenant string, fn func(store.Use) error) error {
	const page = 4096
	s.mu.RLock()
	t := s.tenants[tenantName(tenant)]
	if t == nil {
		s.mu.RUnlock()
		return nil
	}
	order, _ := s.usageOrdered(t)
	s.mu.RUnlock()
	for lo := 0; lo < len(order); lo += page {
		s.mu.RLock()
		out := s.useOut(t.uses, order[lo:min(lo+page, len(order))])
		s.mu.RUnlock()
		for _, u := range out {
			if err := fn(u); err != nil {
				return err
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// usageRun is a principal's stretch [lo, hi) of usageOrder.
type usageRun struct {
	principal uint32
	lo, hi    int
}

// usageOrdered is t.usageOrder and t.usageRuns, made if need be. Called with s.mu held.
func (s *Store) usageOrdered(t *tenant) ([]keyedUse, []usageRun) {
	t.orderMu.Lock()
	defer t.orderMu.Unlock()
	if t.usageOrder == nil {
		kus := make([]keyedUse, 0, len(t.usage))
		for k, i := range t.usage {
			kus = append(kus, keyedUse{k, i})
		}
		s.rankUses(kus)
		var runs []usageRun
		for i, ku := range kus {
			if n := len(runs); n == 0 || runs[n-1].principal != ku.k.principal {
				runs = append(runs, usageRun{principal: ku.k.principal, lo: i})
			}
			runs[len(runs)-1].hi = i + 1
		}
		t.usageOrder, t.usageRuns = kus, runs
	}
	return t.usageOrder, t.usageRuns
}

// allowedUsage is the use by the allowed decisions sel selects. Every key of an allowed
// decision has its running total, so the keys and their order are usageOrder's: each
// principal's decisions (through its index) are counted in a slice of its stretch of it, found
// by a small map — a principal's handful of keys stay in the cache, where one tenant-wide map
// or slice would miss it at nearly every decision — and no sort is needed. Called with s.mu
// held for writing.
func (s *Store) allowedUsage(t *tenant, sel selection) []store.Use {
	s.sortDecisions(t)
	s.indexPrincipals(t)
	order, runs := s.usageOrdered(t)
	if sel.ps != nil {
		runs = slices.DeleteFunc(slices.Clone(runs), func(r usageRun) bool { return !sortedHas(sel.ps, r.principal) })
	}
	// The principals in as many parts as there are cores, counted side by side.
	parts := make([][]store.Use, min(runtime.GOMAXPROCS(0), max(len(runs)/256, 1)))
	var wg sync.WaitGroup
	for w := range parts {
		wg.Go(func() {
			lo, hi := len(runs)*w/len(parts), len(runs)*(w+1)/len(parts)
			parts[w] = s.countUses(t, order, runs[lo:hi], sel)
		})
	}
	wg.Wait()
	return slices.Concat(parts...)
}

// countUses is the use by the decisions sel selects (allowed ones) of the principals of runs:
// see allowedUsage.
func (s *Store) countUses(t *tenant, order []keyedUse, runs []usageRun, sel selection) []store.Use {
	var out []store.Use
	place := map[[2]uint32]int{}
	var counts []use
	for _, run := range runs {
		clear(place)
		for i := run.lo; i < run.hi; i++ {
			place[[2]uint32{order[i].k.action, order[i].k.resource}] = i - run.lo
		}
		counts = slices.Grow(counts[:0], run.hi-run.lo)[:run.hi-run.lo]
		clear(counts)
		idx := t.byPrincipal[run.principal]
		lo, _ := slices.BinarySearchFunc(idx, sel.from, func(i int32, t0 int64) int { return cmp.Compare(t.decisions[i].time, t0) })
		for _, i := range idx[lo:] {
			d := &t.decisions[i]
			if d.time >= sel.to {
				break
			}
			if !sel.matches(d) {
				continue
			}
			c := &counts[place[[2]uint32{d.action, d.resource}]]
			if c.count == 0 {
				c.first = d.time
			}
			c.last = d.time // in event-time order
			c.count++
		}
		for j, c := range counts {
			if c.count > 0 {
				out = append(out, s.useOf(order[run.lo+j].k, c))
			}
		}
	}
	return out
}

// keyedUse is a key and its place in a slice of uses.
type keyedUse struct {
	k useKey
	i int32
}

// usesOut makes the uses of kus (places in uses), sorted by principal, action and resource:
// the strings are ranked once and the uses sorted by rank, which is much cheaper than
// comparing strings for millions of uses. Called with s.mu held.
func (s *Store) usesOut(uses []use, kus []keyedUse) []store.Use {
	s.rankUses(kus)
	return s.useOut(uses, kus)
}

// useOut makes the uses of kus (places in uses), in their order.
func (s *Store) useOut(uses []use, kus []keyedUse) []store.Use {
	out := make([]store.Use, len(kus))
	for i, ku := range kus {
		out[i] = s.useOf(ku.k, uses[ku.i])
	}
	return out
}

// useOf is key k's use u as store.Use.
func (s *Store) useOf(k useKey, u use) store.Use {
	return store.Use{Principal: s.strs[k.principal], Action: s.strs[k.action], Resource: s.strs[k.resource],
		First: event.FromMicros(u.first), Last: event.FromMicros(u.last), Count: u.count}
}

// rankUses sorts kus by principal, action and resource (see usesOut).
func (s *Store) rankUses(kus []keyedUse) {
	rank := map[uint32]int32{}
	for _, ku := range kus {
		rank[ku.k.principal], rank[ku.k.action], rank[ku.k.resource] = 0, 0, 0
	}
	ids := make([]uint32, 0, len(rank))
	for id := range rank {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b uint32) int { return cmp.Compare(s.strs[a], s.strs[b]) })
	for i, id := range ids {
		rank[id] = int32(i)
	}
	type ranked struct{ p, a, r, i int32 }
	rs := make([]ranked, len(kus))
	for i, ku := range kus {
		rs[i] = ranked{rank[ku.k.principal], rank[ku.k.action], rank[ku.k.resource], int32(i)}
	}
	slices.SortFunc(rs, func(x, y ranked) int {
		return cmp.Or(cmp.Compare(x.p, y.p), cmp.Compare(x.a, y.a), cmp.Compare(x.r, y.r))
	})
	sorted := make([]keyedUse, len(rs))
	for j, r := range rs {
		sorted[j] = kus[r.i]
	}
	copy(kus, sorted)
}

// Events implements store.Reader.
func (s *Store) Events(ctx context.Context, tenant string, fn func(event.Record) error) error {
	s.mu.RLock()
	var evs []archived
	if t := s.tenants[tenantName(tenant)]; t != nil {
		evs = t.events[:len(t.events):len(t.events)] // appends do not move what is already there
	}
	s.mu.RUnlock()
	for i, a := range evs {
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		e, err := unarchive(a.event)
		if err != nil {
			return fmt.Errorf("archived event at position %d: %w", a.position, err)
		}
		if err := fn(event.Record{Event: e, Position: a.position, Recorded: event.FromMicros(a.recorded)}); err != nil {
			return err
		}
	}
	return nil
}

// archiveJSON is e as the archive keeps it: a CloudEvent (event.Marshal). The log may hold an
// event that does not validate (accepted under an older rule; the projector applies it all the
// same): that one is kept as encoding/json writes its fields, as the ClickHouse store archives it,
// rather than failing Apply and stopping the projector there for ever.
func archiveJSON(e *event.Event) []byte {
	if b, err := event.Marshal(e); err == nil {
		return b
	}
	b, err := json.Marshal(archivedEvent{event.SpecVersion, e.ID, e.Source, string(e.Type), e.Time.UTC(), e.Data})
	if err != nil { // only for a Change that is not JSON: keep what can be kept
		e2 := *e
		e2.Data.Change = nil
		return archiveJSON(&e2)
	}
	return b
}

// archivedEvent is an archived event that did not validate, as encoding/json writes it.
type archivedEvent struct {
	SpecVersion string     `json:"specversion"`
	ID          string     `json:"id"`
	Source      string     `json:"source"`
	Type        string     `json:"type"`
	Time        time.Time  `json:"time"`
	Data        event.Data `json:"data"`
}

// unarchive decodes what archiveJSON wrote.
func unarchive(b []byte) (event.Event, error) {
	e, err := event.Unmarshal(b)
	if err == nil {
		return e, nil
	}
	var raw archivedEvent
	if jerr := json.Unmarshal(b, &raw); jerr != nil || raw.Type == "" {
		return event.Event{}, err
	}
	return event.Event{ID: raw.ID, Source: raw.Source, Type: event.Type(raw.Type), Time: raw.Time, Data: raw.Data}, nil
}

// Findings implements store.Reader.
func (s *Store) Findings(_ context.Context, tenant string) ([]finding.Finding, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fs := s.findings[tenantName(tenant)]
	out := make([]finding.Finding, 0, len(fs))
	for _, f := range fs {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b finding.Finding) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// PutFindings implements store.FindingWriter: the findings of every tenant are one JSON file
// under the store's directory, written to a temporary file and renamed over the last. The store
// keeps a deep copy of each finding, its Details as that file holds them (finding.Finding.Clone:
// numbers are float64), so that Findings answers the same before and after a reopen, and the
// same as the ClickHouse store, and shares no map or slice with the caller.
func (s *Store) PutFindings(_ context.Context, tenant string, fs []finding.Finding) error {
	kept := make([]finding.Finding, len(fs))
	for i, f := range fs {
		kept[i] = f.Clone()
		kept[i].Tenant = tenantName(tenant)
	}
	s.fMu.Lock()
	defer s.fMu.Unlock()
	s.mu.Lock()
	byID := s.findings[tenantName(tenant)]
	if byID == nil {
		byID = map[string]finding.Finding{}
		s.findings[tenantName(tenant)] = byID
	}
	for _, f := range kept {
		byID[f.ID] = f
	}
	all := map[string][]finding.Finding{}
	for name, fs := range s.findings {
		for _, f := range fs {
			all[name] = append(all[name], f)
		}
		slices.SortFunc(all[name], func(a, b finding.Finding) int { return cmp.Compare(a.ID, b.ID) })
	}
	s.mu.Unlock()
	if s.cfg.Dir == "" {
		return nil
	}
	path := filepath.Join(s.cfg.Dir, findingsFile)
	tmp := path + ".tmp"
	// Encoded as it is written: the file of a large organisation runs to hundreds of MB.
	if err := writeSynced(tmp, func(w io.Writer) error { return json.NewEncoder(w).Encode(all) }); err != nil {
		return fmt.Errorf("store findings: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("store findings: %w", err)
	}
	return syncDir(s.cfg.Dir)
}

func writeSynced(path string, write func(io.Writer) error) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := write(bw); err != nil {
		f.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// loadFindings reads the findings file, when there is one.
func (s *Store) loadFindings() error {
	f, err := os.Open(filepath.Join(s.cfg.Dir, findingsFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open embedded store: %w", err)
	}
	defer f.Close()
	var all map[string][]finding.Finding
	if err := json.NewDecoder(bufio.NewReaderSize(f, 1<<20)).Decode(&all); err != nil {
		return fmt.Errorf("open embedded store: %s: %w", findingsFile, err)
	}
	for name, fs := range all {
		byID := make(map[string]finding.Finding, len(fs))
		for _, f := range fs {
			byID[f.ID] = f
		}
		s.findings[name] = byID
	}
	return nil
}

// errOldFormat is a snapshot written by an older release.
var errOldFormat = errors.New("snapshot of an older format")

// reset empties the store of everything the snapshot holds (the findings stay: they are not
// rebuilt from the log).
func (s *Store) reset() {
	s.position = 0
	s.strs, s.strIDs = nil, map[string]uint32{}
	s.intern("")
	s.tenants = map[string]*tenant{}
}

// Approval implements store.Reader.
func (s *Store) Approval(_ context.Context, tenant, request string) (store.Approval, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if t := s.tenants[tenantName(tenant)]; t != nil {
		if a := t.approvals[request]; a != nil {
			c := *a
			c.Answers = slices.Clone(a.Answers)
			return c, nil
		}
	}
	return store.Approval{}, fmt.Errorf("approval %q: %w", request, store.ErrNotFound)
}

// Checkpoint implements store.Writer: it writes the snapshot to a temporary file, syncs it and
// renames it over the last one, so a crash at any moment leaves one whole snapshot.
func (s *Store) Checkpoint(ctx context.Context) error {
	if s.cfg.Dir == "" {
		return nil
	}
	s.ckMu.Lock()
	defer s.ckMu.Unlock()
	start := time.Now()
	final := filepath.Join(s.cfg.Dir, snapshotFile)
	tmp, err := os.CreateTemp(s.cfg.Dir, snapshotFile+".*.tmp")
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing left to remove
	n, err := s.encode(tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), final)
	}
	if err == nil {
		err = syncDir(s.cfg.Dir)
	}
	if err != nil {
		return fmt.Errorf("checkpoint %s: %w", final, err)
	}
	pos, _ := s.Position(ctx)
	s.log.Debug("checkpoint written", "position", pos, "bytes", n, "took", time.Since(start))
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Close implements store.Store. It does not checkpoint: call Checkpoint first.
func (s *Store) Close() error { return nil }

// encode writes the snapshot: magic, body, and the SHA-256 of the body.
func (s *Store) encode(w io.Writer) (int64, error) {
	s.mu.Lock() // decisions are sorted first; Apply waits
	defer s.mu.Unlock()
	h := sha256.New()
	if _, err := io.WriteString(w, snapshotMagic); err != nil {
		return 0, err
	}
	bw := bin.NewWriter(io.MultiWriter(w, h))
	bw.Uvarint(formatVersion)
	bw.Uvarint(s.position)
	bw.Uvarint(uint64(len(s.strs)))
	for _, str := range s.strs {
		bw.String(str)
	}
	names := make([]string, 0, len(s.tenants))
	for name := range s.tenants {
		names = append(names, name)
	}
	slices.Sort(names)
	bw.Uvarint(uint64(len(names)))
	for _, name := range names {
		t := s.tenants[name]
		s.sortDecisions(t)
		bw.String(name)
		t.graph.Encode(bw)
		bw.Uvarint(uint64(len(t.events)))
		for _, e := range t.events {
			bw.Uvarint(e.position)
			bw.Varint(e.recorded)
			bw.Bytes(e.event)
		}
		bw.Uvarint(uint64(len(t.decisions)))
		for _, d := range t.decisions {
			bw.Varint(d.time)
			for _, id := range []uint32{d.principal, d.action, d.resource, d.reason, d.policy, d.source} {
				bw.Uvarint(uint64(id))
			}
			var id, request string
			t.blobs.get(d.blob, &id, &request)
			bw.String(id)
			bw.String(request)
			bw.Uvarint(d.position)
			if d.allowed() {
				bw.Uvarint(1)
			} else {
				bw.Uvarint(0)
			}
		}
		reqs := make([]string, 0, len(t.approvals))
		for r := range t.approvals {
			reqs = append(reqs, r)
		}
		slices.Sort(reqs)
		bw.Uvarint(uint64(len(reqs)))
		for _, r := range reqs {
			a := t.approvals[r]
			bw.String(a.Request)
			bw.String(a.Requester)
			var at int64
			if a.Requested != nil {
				at = event.Micros(*a.Requested)
			}
			bw.Varint(at)
			bw.Bytes(a.Change)
			bw.String(a.Reason)
			bw.Uvarint(uint64(len(a.Answers)))
			for _, ans := range a.Answers {
				bw.String(ans.Approver)
				g := uint64(0)
				if ans.Granted {
					g = 1
				}
				bw.Uvarint(g)
				bw.String(ans.Reason)
				bw.Varint(event.Micros(ans.Time))
			}
		}
	}
	n, err := bw.Flush()
	if err != nil {
		return n, err
	}
	_, err = w.Write(h.Sum(nil))
	return n + int64(len(snapshotMagic)) + sha256.Size, err
}

// decode reads a snapshot, checking its digest.
func (s *Store) decode(f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if st.Size() < int64(len(snapshotMagic)+sha256.Size) {
		return errors.New("snapshot is truncated")
	}
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(f, magic); err != nil || string(magic) != snapshotMagic {
		return errors.New("not a whocould snapshot")
	}
	bodyLen := st.Size() - int64(len(snapshotMagic)) - sha256.Size
	h := sha256.New()
	tee := io.TeeReader(io.LimitReader(f, bodyLen), h)
	br := bin.NewReader(tee)
	if v := br.Uvarint(); br.Err == nil && v != formatVersion {
		return fmt.Errorf("%w: format %d, this release reads %d", errOldFormat, v, formatVersion)
	}
	s.position = br.Uvarint()
	ns := br.Len(bin.MaxLen)
	s.strs, s.strIDs = make([]string, 0, ns), make(map[string]uint32, ns)
	for i := 0; i < ns && br.Err == nil; i++ {
		str := br.String()
		s.strIDs[str] = uint32(len(s.strs))
		s.strs = append(s.strs, str)
	}
	str := func() uint32 {
		id := br.Uint32()
		if int(id) >= len(s.strs) && br.Err == nil {
			br.Err = fmt.Errorf("string %d out of range", id)
			return 0
		}
		return id
	}
	nt := br.Len(1 << 20)
	for i := 0; i < nt && br.Err == nil; i++ {
		name := br.String()
		g, err := graph.Decode(br)
		if err != nil {
			return err
		}
		t := s.tenant(name)
		t.graph = g
		ne := br.Len(bin.MaxLen)
		t.events = make([]archived, 0, ne)
		for j := 0; j < ne && br.Err == nil; j++ {
			t.events = append(t.events, archived{position: br.Uvarint(), recorded: br.Varint(), event: br.Bytes()})
		}
		nd := br.Len(bin.MaxLen)
		t.decisions = make([]decision, 0, nd)
		for j := 0; j < nd && br.Err == nil; j++ {
			d := decision{time: br.Varint()}
			d.principal, d.action, d.resource, d.reason = str(), str(), str(), str()
			d.policy, d.source = str(), str()
			d.blob = t.blobs.add(br.String(), br.String())
			d.position = br.Uvarint()
			if br.Uvarint() == 1 {
				d.blob |= allowBit
			}
			t.add(d)
		}
		na := br.Len(bin.MaxLen)
		for j := 0; j < na && br.Err == nil; j++ {
			a := &store.Approval{Tenant: name, Request: br.String(), Requester: br.String()}
			if at := br.Varint(); at != 0 {
				tm := event.FromMicros(at)
				a.Requested = &tm
			}
			a.Change = br.Bytes()
			a.Reason = br.String()
			nans := br.Len(1 << 20)
			a.Answers = make([]store.ApprovalAnswer, 0, nans)
			for k := 0; k < nans && br.Err == nil; k++ {
				ans := store.ApprovalAnswer{Approver: br.String(), Granted: br.Uvarint() == 1, Reason: br.String()}
				ans.Time = event.FromMicros(br.Varint())
				a.Answers = append(a.Answers, ans)
			}
			t.approvals[a.Request] = a
		}
	}
	if br.Err != nil {
		return br.Err
	}
	// Hash what the buffered reader did not read, so the digest covers the whole body.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return err
	}
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(f, want); err != nil {
		return err
	}
	if string(want) != string(h.Sum(nil)) {
		return errors.New("snapshot digest does not match: the file is corrupt")
	}
	return nil
}
