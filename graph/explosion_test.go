package graph

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/event"
	"github.com/whocould/whocould/internal/reference"
)

// layered is a history whose nesting multiplies chains: layers of two groups (group:l00a,
// group:l00b, group:l01a, ...), each group of a layer a member of both groups of the next, and
// with back, of both groups of the previous one too (cycles). user:alice is a member of both
// groups of the first layer; user:bob of group:l00a and, a shortcut, of the top group
// group:lNNa directly; user:carol of nothing. The top group has role:top on db:prod, and
// role:top holds db.table.*. With roleLayers > 0, role:top instead includes a lattice of roles
// the same way (role:rKKx, each including both roles of the next layer), whose last layer holds
// db.table.*.
func layered(layers, roleLayers int, back bool) []event.Record {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var recs []event.Record
	add := func(typ event.Type, d event.Data) {
		n := len(recs) + 1
		recs = append(recs, event.Record{
			Event:    event.Event{ID: fmt.Sprintf("e%d", n), Source: "test", Type: typ, Time: at, Data: d},
			Position: uint64(n), Recorded: at.Add(time.Duration(n) * time.Millisecond),
		})
	}
	grp := func(k int, x byte) string { return fmt.Sprintf("group:l%02d%c", k, x) }
	role := func(k int, x byte) string { return fmt.Sprintf("role:r%02d%c", k, x) }
	for k := 0; k+1 < layers; k++ {
		for _, a := range []byte("ab") {
			for _, b := range []byte("ab") {
				add(event.MembershipAdded, event.Data{Group: grp(k+1, b), Member: grp(k, a)})
				if back {
					add(event.MembershipAdded, event.Data{Group: grp(k, a), Member: grp(k+1, b)})
				}
			}
		}
	}
	add(event.MembershipAdded, event.Data{Group: grp(0, 'a'), Member: "user:alice"})
	add(event.MembershipAdded, event.Data{Group: grp(0, 'b'), Member: "user:alice"})
	add(event.MembershipAdded, event.Data{Group: grp(0, 'a'), Member: "user:bob"})
	add(event.MembershipAdded, event.Data{Group: grp(layers-1, 'a'), Member: "user:bob"})
	add(event.PrincipalCreated, event.Data{Principal: "user:carol"})
	add(event.GrantAdded, event.Data{Subject: grp(layers-1, 'a'), Role: "role:top", Resource: "db:prod"})
	if roleLayers == 0 {
		add(event.RolePermissionAdded, event.Data{Role: "role:top", Action: "db.table.*"})
		return recs
	}
	add(event.RoleIncludeAdded, event.Data{Role: "role:top", Includes: role(0, 'a')})
	add(event.RoleIncludeAdded, event.Data{Role: "role:top", Includes: role(0, 'b')})
	for k := 0; k+1 < roleLayers; k++ {
		for _, a := range []byte("ab") {
			for _, b := range []byte("ab") {
				add(event.RoleIncludeAdded, event.Data{Role: role(k, a), Includes: role(k+1, b)})
			}
		}
	}
	add(event.RolePermissionAdded, event.Data{Role: role(roleLayers-1, 'a'), Action: "db.table.*"})
	add(event.RolePermissionAdded, event.Data{Role: role(roleLayers-1, 'b'), Action: "db.*"})
	return recs
}

var layeredAt = time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)

// checkPaths checks that paths are in strict ComparePaths order and that there are want.
func checkPaths(t *testing.T, what string, paths []access.Path, want int) {
	t.Helper()
	if len(paths) != want {
		t.Fatalf("%s: %d paths, want %d", what, len(paths), want)
	}
	for i := 1; i < len(paths); i++ {
		if access.ComparePaths(paths[i-1], paths[i]) >= 0 {
			t.Fatalf("%s: paths %d and %d out of order:\n%s\n%s", what, i-1, i, paths[i-1], paths[i])
		}
	}
}

// allocated runs f and returns the bytes it allocated.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestPathExplosion: 22 layers of two groups give 2^21 chains from user:alice to the top group
// (and 2^22 with cycles, far more). Enumerating them all ran out of memory; the answers must
// stay exact about who could, list the first MaxPaths paths in order (the shortest first), and
// say that they left some out.
func TestPathExplosion(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name              string
		layers, roleLayer int
		back              bool
	}{
		{"groups", 22, 0, false},
		{"groups with cycles", 22, 0, true},
		{"roles", 2, 22, false},
		{"groups and roles with cycles", 22, 22, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := New()
			g.ApplyBatch(layered(tc.layers, tc.roleLayer, tc.back))
			q := access.Query{Principal: "user:alice", Action: "db.table.drop", Resource: "db:prod/orders", At: layeredAt,
				From: layeredAt.Add(-time.Hour), To: layeredAt.Add(time.Hour)}
			var (
				who  access.WhoCould
				ex   access.Explain
				what access.WhatCould
				hp   access.History
				hr   access.History
				err  error
			)
			bytes := allocated(func() {
				if who, err = g.WhoCould(ctx, q); err != nil {
					t.Fatal(err)
				}
				if ex, err = g.Explain(ctx, q); err != nil {
					t.Fatal(err)
				}
				if what, err = g.WhatCould(ctx, q); err != nil {
					t.Fatal(err)
				}
				hq := q
				hq.Resource = ""
				if hp, err = g.History(ctx, hq); err != nil {
					t.Fatal(err)
				}
				hq.Principal, hq.Resource = "", q.Resource
				if hr, err = g.History(ctx, hq); err != nil {
					t.Fatal(err)
				}
			})
			if bytes > 512<<20 {
				t.Errorf("the answers allocated %d MB", bytes>>20)
			}

			// Who could: exactly alice and bob, each with the first MaxPaths paths.
			if len(who.Principals) != 2 || who.Principals[0].Principal != "user:alice" || who.Principals[1].Principal != "user:bob" {
				t.Fatalf("who-could principals: %v", principalsOf(who))
			}
			if !who.PathsTruncated {
				t.Error("who-could: PathsTruncated not set")
			}
			alice, bob := who.Principals[0].Paths, who.Principals[1].Paths
			checkPaths(t, "who-could alice", alice, MaxPaths)
			checkPaths(t, "who-could bob", bob, MaxPaths)
			var shortest []string
			for k := 0; k < tc.layers; k++ {
				shortest = append(shortest, fmt.Sprintf("group:l%02da", k))
			}
			if !slices.Equal(alice[0].Groups, shortest) {
				t.Errorf("alice's first path: %s, want the groups %v", alice[0], shortest)
			}
			if tc.layers > 1 && !slices.Equal(bob[0].Groups, shortest[len(shortest)-1:]) {
				t.Errorf("bob's first path: %s, want the shortcut %v", bob[0], shortest[len(shortest)-1:])
			}

			// Explain, what-could and history: the same first paths.
			if !ex.Could || !ex.PathsTruncated {
				t.Errorf("explain: could %v, truncated %v", ex.Could, ex.PathsTruncated)
			}
			checkPaths(t, "explain", ex.Paths, MaxPaths)
			if !slices.EqualFunc(ex.Paths, alice, func(a, b access.Path) bool { return a.String() == b.String() }) {
				t.Error("explain and who-could list different paths")
			}
			if !what.PathsTruncated || len(what.Entitlements) == 0 {
				t.Fatalf("what-could: %d entitlements, truncated %v", len(what.Entitlements), what.PathsTruncated)
			}
			for _, e := range what.Entitlements {
				checkPaths(t, "what-could "+e.Action, e.Paths, MaxPaths)
			}
			if !hp.PathsTruncated || len(hp.Intervals) != MaxPaths*len(what.Entitlements) {
				t.Errorf("principal history: %d intervals, truncated %v", len(hp.Intervals), hp.PathsTruncated)
			}
			if !hr.PathsTruncated || len(hr.Intervals) != 2*MaxPaths*len(what.Entitlements) {
				t.Errorf("resource history: %d intervals, truncated %v", len(hr.Intervals), hr.PathsTruncated)
			}
		})
	}
}

func principalsOf(w access.WhoCould) []string {
	var out []string
	for _, p := range w.Principals {
		out = append(out, p.Principal)
	}
	return out
}

// TestPathsFirstInOrder checks, against the brute-force reference, that answers list exactly
// every path while there are at most MaxPaths, and exactly the first MaxPaths (in ComparePaths
// order) when there are more.
func TestPathsFirstInOrder(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		layers, roleLayers int
		back               bool
	}{
		{5, 0, false},  // 16 chains for alice
		{12, 0, false}, // 2048
		{6, 0, true},   // cycles: many more
		{8, 0, true},
		{2, 12, false}, // role chains: 2 x 2048
		{3, 5, true},
	} {
		t.Run(fmt.Sprintf("layers=%d,roles=%d,back=%v", tc.layers, tc.roleLayers, tc.back), func(t *testing.T) {
			recs := layered(tc.layers, tc.roleLayers, tc.back)
			g := New()
			g.ApplyBatch(recs)
			ref := reference.New(recs)
			q := access.Query{Principal: "user:alice", Action: "db.table.drop", Resource: "db:prod/orders", At: layeredAt}
			first := func(ps []access.Path) ([]access.Path, bool) {
				if len(ps) > MaxPaths {
					return ps[:MaxPaths], true
				}
				return ps, false
			}
			same := func(what string, got, want []access.Path, gotTrunc, wantTrunc bool) {
				t.Helper()
				if gotTrunc != wantTrunc || len(got) != len(want) {
					t.Fatalf("%s: %d paths (truncated %v), want %d (truncated %v)", what, len(got), gotTrunc, len(want), wantTrunc)
				}
				for i := range got {
					if got[i].String() != want[i].String() {
						t.Fatalf("%s: path %d is %s, want %s", what, i, got[i], want[i])
					}
				}
			}
			gw, _ := g.WhoCould(ctx, q)
			rw, _ := ref.WhoCould(ctx, q)
			for _, p := range rw.Principals {
				t.Logf("%s: %d paths", p.Principal, len(p.Paths))
			}
			if !slices.Equal(principalsOf(gw), principalsOf(rw)) {
				t.Fatalf("who-could: %v, want %v", principalsOf(gw), principalsOf(rw))
			}
			anyTrunc := false
			for i := range rw.Principals {
				want, trunc := first(rw.Principals[i].Paths)
				anyTrunc = anyTrunc || trunc
				same("who-could "+rw.Principals[i].Principal, gw.Principals[i].Paths, want, trunc, trunc)
			}
			if gw.PathsTruncated != anyTrunc {
				t.Errorf("who-could: truncated %v, want %v", gw.PathsTruncated, anyTrunc)
			}
			ge, _ := g.Explain(ctx, q)
			re, _ := ref.Explain(ctx, q)
			want, trunc := first(re.Paths)
			same("explain", ge.Paths, want, ge.PathsTruncated, trunc)
			gc, _ := g.WhatCould(ctx, q)
			rc, _ := ref.WhatCould(ctx, q)
			if len(gc.Entitlements) != len(rc.Entitlements) {
				t.Fatalf("what-could: %d entitlements, want %d", len(gc.Entitlements), len(rc.Entitlements))
			}
			anyTrunc = false
			for i := range rc.Entitlements {
				want, trunc := first(rc.Entitlements[i].Paths)
				anyTrunc = anyTrunc || trunc
				same("what-could "+rc.Entitlements[i].Action, gc.Entitlements[i].Paths, want, trunc, trunc)
			}
			if gc.PathsTruncated != anyTrunc {
				t.Errorf("what-could: truncated %v, want %v", gc.PathsTruncated, anyTrunc)
			}
		})
	}
}

// TestPathBudgets: past a question's budgets, every principal and every entitlement still gets
// its first path, and answers say that they left paths out.
func TestPathBudgets(t *testing.T) {
	ctx := context.Background()
	recs := layered(22, 22, true)
	// An entitlement half-way up, whose chains come before those to the top group: on a small
	// budget, the others get their first path by a walk of their own.
	recs = append(recs, event.Record{Event: event.Event{ID: "half", Source: "test", Type: event.GrantAdded, Time: layeredAt.Add(-time.Hour),
		Data: event.Data{Subject: "group:l10a", Action: "db.other", Resource: "db:prod"}}, Position: uint64(len(recs) + 1), Recorded: layeredAt})
	// 300 more principals in group:l00b, joining one a second around layeredAt.
	for i := 0; i < 300; i++ {
		n := len(recs) + 1
		at := layeredAt.Add(time.Duration(i-150) * time.Second)
		recs = append(recs, event.Record{
			Event: event.Event{ID: fmt.Sprintf("e%d", n), Source: "test", Type: event.MembershipAdded, Time: at,
				Data: event.Data{Group: "group:l00b", Member: fmt.Sprintf("user:u%04d", i)}},
			Position: uint64(n), Recorded: at,
		})
	}
	g := New()
	g.ApplyBatch(recs)
	q := access.Query{Principal: "user:alice", Action: "db.table.drop", Resource: "db:prod/orders", At: layeredAt,
		From: layeredAt.Add(-time.Minute), To: layeredAt.Add(time.Minute)}
	full, _ := g.WhoCould(ctx, q)
	fullWhat, _ := g.WhatCould(ctx, q)
	if len(full.Principals) != 153 || !full.PathsTruncated { // alice, bob, u0000..u0150
		t.Fatalf("who-could: %d principals, truncated %v", len(full.Principals), full.PathsTruncated)
	}
	n := 0
	for _, p := range full.Principals {
		n += len(p.Paths)
	}
	if n > maxAnswerPaths+len(full.Principals)*MaxPaths/16 {
		t.Errorf("who-could lists %d paths in all", n)
	}

	defer func(steps int) { maxSteps = steps }(maxSteps)
	maxSteps = 50
	low, _ := g.WhoCould(ctx, q)
	if !slices.Equal(principalsOf(low), principalsOf(full)) || !low.PathsTruncated {
		t.Fatalf("who-could on a small budget: %d principals, truncated %v", len(low.Principals), low.PathsTruncated)
	}
	for i, p := range low.Principals {
		if len(p.Paths) == 0 || p.Paths[0].String() != full.Principals[i].Paths[0].String() {
			t.Fatalf("who-could on a small budget: %s's first path %v, want %s", p.Principal, p.Paths, full.Principals[i].Paths[0])
		}
	}
	lowWhat, _ := g.WhatCould(ctx, q)
	if len(lowWhat.Entitlements) != len(fullWhat.Entitlements) || !lowWhat.PathsTruncated {
		t.Fatalf("what-could on a small budget: %d entitlements, want %d", len(lowWhat.Entitlements), len(fullWhat.Entitlements))
	}
	for i, e := range lowWhat.Entitlements {
		if len(e.Paths) == 0 || e.Paths[0].String() != fullWhat.Entitlements[i].Paths[0].String() {
			t.Fatalf("what-could on a small budget: %s's first path %v, want %s", e.Action, e.Paths, fullWhat.Entitlements[i].Paths[0])
		}
	}
	h, _ := g.History(ctx, access.Query{Resource: q.Resource, From: q.From, To: q.To})
	if !h.PathsTruncated {
		t.Error("resource history on a small budget: not truncated")
	}
	seen := map[string]bool{}
	for _, iv := range h.Intervals {
		seen[iv.Principal+" "+iv.Action] = true
	}
	if want := 3 * (2 + 210); len(seen) != want { // alice, bob, u0000..u0209, three entitlements each
		t.Errorf("resource history on a small budget: %d (principal, action)s, want %d", len(seen), want)
	}
}

// TestRankedOrder: with many names, answers sort by a rank table computed in the background;
// they must come out in the order of the names, also for names added after it.
func TestRankedOrder(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var recs []event.Record
	add := func(d event.Data, typ event.Type) {
		n := len(recs) + 1
		recs = append(recs, event.Record{Event: event.Event{ID: fmt.Sprintf("e%d", n), Source: "test", Type: typ, Time: at, Data: d},
			Position: uint64(n), Recorded: at})
	}
	add(event.Data{Subject: "group:all", Role: "role:r", Resource: "db:prod"}, event.GrantAdded)
	add(event.Data{Role: "role:r", Action: "db.*"}, event.RolePermissionAdded)
	member := func(i int) {
		// Names whose order is not their order of arrival.
		add(event.Data{Group: "group:all", Member: fmt.Sprintf("user:%d", (i*7919)%10007)}, event.MembershipAdded)
	}
	for i := 0; i < 2*minRankNew; i++ {
		member(i)
	}
	// A few principals among many names: sorted by rank, not through a bitmap of every name.
	add(event.Data{Subject: "group:few", Role: "role:r", Resource: "db:few"}, event.GrantAdded)
	for i := 0; i < 70; i++ {
		add(event.Data{Group: "group:few", Member: fmt.Sprintf("user:%d", (i*7919)%10007)}, event.MembershipAdded)
	}
	for i := 0; i < 70000; i++ {
		add(event.Data{Subject: "group:other", Role: "role:r", Resource: fmt.Sprintf("db:r%d", i)}, event.GrantAdded)
	}
	g := New()
	g.ApplyBatch(recs)
	check := func(what string) {
		t.Helper()
		for _, res := range []string{"db:prod", "db:few"} {
			ans, err := g.WhoCould(ctx, access.Query{Action: "db.x", Resource: res, At: at})
			if err != nil {
				t.Fatal(err)
			}
			ps := principalsOf(ans)
			if len(ps) < 70 || !slices.IsSorted(ps) || len(ps) != len(slices.Compact(slices.Clone(ps))) {
				t.Fatalf("%s, %s: %d principals, not sorted", what, res, len(ps))
			}
		}
	}
	check("before the rank table")
	for deadline := time.Now().Add(time.Minute); g.rank.Load() == nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no rank table")
		}
	}
	check("with the rank table")
	recs = recs[:0]
	for i := 2 * minRankNew; i < 2*minRankNew+100; i++ {
		member(i)
	}
	g.ApplyBatch(recs)
	check("with names past the rank table")
}

// TestConcurrentQuestions: questions share pooled scratch memory; run many at once, with
// events applied meanwhile (go test -race).
func TestConcurrentQuestions(t *testing.T) {
	ctx := context.Background()
	recs := layered(8, 4, true)
	g := New()
	g.ApplyBatch(recs)
	want, _ := g.WhoCould(ctx, access.Query{Action: "db.table.drop", Resource: "db:prod/orders", At: layeredAt})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			n := len(recs) + i + 1
			g.Apply(&event.Record{Event: event.Event{ID: fmt.Sprintf("x%d", i), Source: "test", Type: event.MembershipAdded,
				Time: layeredAt.Add(time.Hour), Data: event.Data{Group: "group:l00a", Member: fmt.Sprintf("user:x%d", i)}},
				Position: uint64(n), Recorded: layeredAt})
		}
	}()
	errs := make(chan error, 4)
	for w := 0; w < 4; w++ {
		go func() {
			for i := 0; i < 50; i++ {
				q := access.Query{Principal: "user:alice", Action: "db.table.drop", Resource: "db:prod/orders", At: layeredAt,
					From: layeredAt.Add(-time.Hour), To: layeredAt.Add(time.Minute)}
				got, err := g.WhoCould(ctx, q)
				if err == nil && jsonOf(got) != jsonOf(want) {
					err = fmt.Errorf("who-could changed under concurrency")
				}
				if err == nil {
					_, err = g.Explain(ctx, q)
				}
				if err == nil {
					_, err = g.WhatCould(ctx, q)
				}
				if err == nil {
					_, err = g.History(ctx, q)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for w := 0; w < 4; w++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	<-done
}
