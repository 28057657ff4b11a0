package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/whocould/whocould/event"
)

// crashEvents is how many change events TestImportCrashSafety imports.
const crashEvents = 200_000

// crashStart is the event time of the first generated event; events are 30 s apart.
var crashStart = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

const crashStep = 30 * time.Second

// genChurn writes n deterministic, valid change events as JSON lines: principals, nested groups
// and teams, roles with permissions and inclusions, then churn — memberships added and removed,
// grants of roles and of actions on resources at several depths (some expiring, some removed),
// principals disabled, enabled and updated.
func genChurn(t testing.TB, path string, n int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.New(rand.NewPCG(42, 4242))
	seq := 0
	// life, when given, is how long after its event time a grant expires.
	emit := func(typ event.Type, d event.Data, life ...time.Duration) {
		at := crashStart.Add(time.Duration(seq) * crashStep)
		e := event.Event{ID: fmt.Sprintf("c%07d", seq), Source: "crash-test", Type: typ, Time: at, Data: d}
		if len(life) > 0 {
			x := at.Add(life[0])
			e.Data.ExpiresAt = &x
		}
		b, err := event.Marshal(&e)
		if err != nil {
			t.Fatalf("generated event %d: %v", seq, err)
		}
		w.Write(b)
		w.WriteByte('\n')
		seq++
	}
	const (
		users  = 3000
		groups = 300
		roles  = 30
	)
	user := func(i int) string { return fmt.Sprintf("user:u%04d", i) }
	group := func(i int) string {
		if i%5 == 0 {
			return fmt.Sprintf("team:t%03d", i)
		}
		return fmt.Sprintf("group:g%03d", i)
	}
	role := func(i int) string { return fmt.Sprintf("role:r%02d", i) }
	for i := range users {
		emit(event.PrincipalCreated, event.Data{Principal: user(i), Attributes: map[string]string{"dept": strconv.Itoa(i % 7)}})
	}
	// Groups nest in blocks of four (each in a lower group of its block), and a few blocks in
	// lower groups: real organisations nest shallowly, and the number of membership chains
	// (every one a path of the answers) grows exponentially with a dense nesting.
	for i := range groups {
		emit(event.GroupCreated, event.Data{Group: group(i)})
		if i%4 != 0 {
			emit(event.MembershipAdded, event.Data{Group: group(i/4*4 + rng.IntN(i%4)), Member: group(i)})
		}
	}
	for range 20 {
		i := 1 + rng.IntN(groups-1)
		if i%4 == 0 {
			emit(event.MembershipAdded, event.Data{Group: group(rng.IntN(i)), Member: group(i)})
		}
	}
	for i := range roles {
		emit(event.RoleCreated, event.Data{Role: role(i)})
		for j := range 1 + i%3 {
			emit(event.RolePermissionAdded, event.Data{Role: role(i), Action: crashActions[(i+j*7)%len(crashActions)]})
		}
		if i > 0 && i%3 == 0 {
			emit(event.RoleIncludeAdded, event.Data{Role: role(i), Includes: role(rng.IntN(i))})
		}
	}

	type mem struct{ group, member string }
	type grant struct{ subject, role, action, resource string }
	var (
		mems    []mem
		memSet  = map[mem]bool{}
		grants  []grant
		grSet   = map[grant]bool{}
		enabled = make([]bool, users)
	)
	for i := range enabled {
		enabled[i] = true
	}
	for seq < n {
		switch p := rng.IntN(100); {
		case p < 30 || len(mems) < 100: // membership of a user added
			m := mem{group(rng.IntN(groups)), user(rng.IntN(users))}
			if memSet[m] {
				continue
			}
			memSet[m] = true
			mems = append(mems, m)
			emit(event.MembershipAdded, event.Data{Group: m.group, Member: m.member})
		case p < 58: // membership removed
			i := rng.IntN(len(mems))
			m := mems[i]
			mems[i] = mems[len(mems)-1]
			mems = mems[:len(mems)-1]
			delete(memSet, m)
			emit(event.MembershipRemoved, event.Data{Group: m.group, Member: m.member})
		case p < 78: // grant added, a third of them expiring
			g := grant{resource: crashResources[rng.IntN(len(crashResources))]}
			if rng.IntN(3) == 0 {
				g.subject = user(rng.IntN(users))
			} else {
				g.subject = group(rng.IntN(groups))
			}
			if rng.IntN(4) == 0 {
				g.action = crashActions[rng.IntN(len(crashActions))]
			} else {
				g.role = role(rng.IntN(roles))
			}
			d := event.Data{Subject: g.subject, Role: g.role, Action: g.action, Resource: g.resource}
			if rng.IntN(3) == 0 {
				emit(event.GrantAdded, d, time.Duration(1+rng.IntN(30*24))*time.Hour)
				continue
			}
			if grSet[g] {
				continue
			}
			grSet[g] = true
			grants = append(grants, g)
			emit(event.GrantAdded, d)
		case p < 90: // grant removed
			if len(grants) == 0 {
				continue
			}
			i := rng.IntN(len(grants))
			g := grants[i]
			grants[i] = grants[len(grants)-1]
			grants = grants[:len(grants)-1]
			delete(grSet, g)
			emit(event.GrantRemoved, event.Data{Subject: g.subject, Role: g.role, Action: g.action, Resource: g.resource})
		case p < 95: // disabled or enabled
			i := rng.IntN(users)
			if enabled[i] {
				emit(event.PrincipalDisabled, event.Data{Principal: user(i)})
			} else {
				emit(event.PrincipalEnabled, event.Data{Principal: user(i)})
			}
			enabled[i] = !enabled[i]
		default:
			i := rng.IntN(users)
			emit(event.PrincipalUpdated, event.Data{Principal: user(i), Attributes: map[string]string{"dept": strconv.Itoa(rng.IntN(7))}})
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

var crashActions = []string{"db.table.*", "db.table.read", "db.table.drop", "db.*", "repo.push", "repo.*", "repo.admin", "payments.approve", "*", "db.table.write"}

var crashResources = func() []string {
	var rs []string
	for d := range 6 {
		rs = append(rs, fmt.Sprintf("db:d%d", d))
		for tb := range 4 {
			rs = append(rs, fmt.Sprintf("db:d%d/t%d", d, tb))
		}
	}
	for r := range 8 {
		rs = append(rs, fmt.Sprintf("repo:x%d", r))
	}
	return append(rs, "db:*", "payments:eu")
}()

// crashQuestions are ~50 who-could and what-could questions at several event times.
func crashQuestions() [][]string {
	end := crashStart.Add(crashEvents * crashStep)
	times := []time.Time{
		crashStart.Add(crashEvents * crashStep / 4),
		crashStart.Add(crashEvents * crashStep / 2),
		crashStart.Add(crashEvents * crashStep * 9 / 10),
		end.Add(24 * time.Hour),
	}
	var qs [][]string
	who := [][2]string{
		{"db.table.drop", "db:d0/t1"}, {"db.table.read", "db:d3"}, {"repo.push", "repo:x2"},
		{"payments.approve", "payments:eu"}, {"db.table.write", "db:d5/t3/part9"}, {"repo.admin", "repo:x7"},
	}
	for i, at := range times {
		for _, w := range who {
			qs = append(qs, []string{"who-could", "--action", w[0], "--resource", w[1], "--at", at.Format(time.RFC3339)})
		}
		for j := range 6 {
			p := fmt.Sprintf("user:u%04d", (i*977+j*331)%3000)
			qs = append(qs, []string{"what-could", "--principal", p, "--at", at.Format(time.RFC3339)})
		}
	}
	return qs
}

// TestImportCrashSafety imports a big file, SIGKILLs the import at moments spread over its
// duration, re-runs it each time until one run completes, and checks that the result is
// exactly that of a clean import: no event lost or applied twice, the same answers.
func TestImportCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("imports 200k events several times")
	}
	tmp := t.TempDir()
	file := filepath.Join(tmp, "churn.jsonl")
	start := time.Now()
	genChurn(t, file, crashEvents)
	t.Logf("generated %d events in %s", crashEvents, time.Since(start).Round(time.Millisecond))

	// The clean run, timed.
	clean := filepath.Join(tmp, "clean")
	start = time.Now()
	r := mustRun(t, 0, clean, nil, "import", file, "-o", "json")
	took := time.Since(start)
	cs := parseImport(t, r.stdout)
	t.Logf("clean import: %d accepted in %s", cs.Accepted, took.Round(time.Millisecond))
	if cs.Accepted != crashEvents || cs.Duplicates != 0 || len(cs.Rejected) != 0 || cs.Projected != crashEvents {
		t.Fatalf("clean import: %+v", cs)
	}

	// The crashed runs: SIGKILL after delays that add up to 70% of the clean import's
	// duration, so that the kills land at progress points spread over the import.
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("WHOCOULD_CRASH_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("kill seed %d (WHOCOULD_CRASH_SEED to repeat)", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	const kills = 6
	weights := make([]float64, kills)
	sum := 0.0
	for i := range weights {
		weights[i] = 0.3 + rng.Float64()
		sum += weights[i]
	}
	crashed := filepath.Join(tmp, "crashed")
	var final importJSON
	killed := 0
	for run := 0; ; run++ {
		if run > 3*kills {
			t.Fatalf("no import completed after %d runs", run)
		}
		var delay time.Duration
		if run < kills {
			delay = time.Duration(0.7 * float64(took) * weights[run] / sum)
		}
		res, wasKilled, elapsed := runKilled(t, crashed, delay, "import", file, "-o", "json")
		if wasKilled {
			killed++
			t.Logf("run %d: killed after %s", run, elapsed.Round(time.Millisecond))
			continue
		}
		if res.code != 0 {
			t.Fatalf("run %d after %d kills: %s", run, killed, res)
		}
		final = parseImport(t, res.stdout)
		t.Logf("run %d completed in %s: %d accepted, %d duplicates, projected %d",
			run, elapsed.Round(time.Millisecond), final.Accepted, final.Duplicates, final.Projected)
		break
	}
	if killed < 5 {
		t.Errorf("only %d kills landed before an import completed (want at least 5)", killed)
	}
	// Every event is in the log once: the runs killed appended final.Duplicates of them, the
	// last one the rest, and the log's position is the number of distinct events.
	if final.Accepted+final.Duplicates != crashEvents || len(final.Rejected) != 0 || final.Projected != crashEvents {
		t.Errorf("after the kills: accepted %d + duplicates %d (want %d in all), rejected %d, projected %d (want %d)",
			final.Accepted, final.Duplicates, crashEvents, len(final.Rejected), final.Projected, crashEvents)
	}
	// Once more: all duplicates, the position unchanged.
	r = mustRun(t, 0, crashed, nil, "import", file, "-o", "json")
	if s := parseImport(t, r.stdout); s.Accepted != 0 || s.Duplicates != crashEvents || s.Projected != crashEvents {
		t.Errorf("re-import after the kills: accepted %d, duplicates %d, projected %d", s.Accepted, s.Duplicates, s.Projected)
	}
	for _, d := range []string{clean, crashed} {
		if letters := readDeadLetters(t, d); len(letters) != 0 {
			t.Errorf("%s: %d dead letters, first: %+v", filepath.Base(d), len(letters), letters[0])
		}
	}

	// The same answers.
	qs := crashQuestions()
	// answers runs in its own goroutine, so it reports errors rather than failing the test.
	// The answers are compared as the bytes of the JSON documents (the output is
	// deterministic): some are megabytes long.
	answers := func(dir string) ([]string, error) {
		out := make([]string, len(qs))
		for i, q := range qs {
			r := runIn(t, dir, nil, append(append([]string{"query"}, q...), "-o", "json")...)
			if r.code != 0 {
				return nil, fmt.Errorf("%s: query %v: %s", filepath.Base(dir), q, r)
			}
			out[i] = r.stdout
		}
		return out, nil
	}
	start = time.Now()
	var wg sync.WaitGroup
	var got, want []string
	var gotErr, wantErr error
	wg.Go(func() { want, wantErr = answers(clean) })
	wg.Go(func() { got, gotErr = answers(crashed) })
	wg.Wait()
	if err := errors.Join(wantErr, gotErr); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d questions on two data dirs in %s", len(qs), time.Since(start).Round(time.Millisecond))
	nonEmpty, size := 0, 0
	for i, q := range qs {
		size += len(want[i])
		if got[i] != want[i] {
			t.Errorf("question %v: the crashed import answers differently (%d bytes, the clean one %d)", q, len(got[i]), len(want[i]))
		}
		var a struct {
			Principals, Entitlements []json.RawMessage
		}
		if err := json.Unmarshal([]byte(want[i]), &a); err != nil {
			t.Fatalf("question %v: %v", q, err)
		}
		if len(a.Principals)+len(a.Entitlements) > 0 {
			nonEmpty++
		}
	}
	t.Logf("%d of %d answers non-empty, %d bytes of answers", nonEmpty, len(qs), size)
	if nonEmpty < len(qs)/2 {
		t.Errorf("only %d of %d questions have a non-empty answer: the history is too thin to compare", nonEmpty, len(qs))
	}
}

// runKilled runs the binary and SIGKILLs it after delay (0: never); it reports whether the kill
// landed (the process had not exited by itself).
func runKilled(t *testing.T, dir string, delay time.Duration, args ...string) (result, bool, time.Duration) {
	t.Helper()
	cmd := exec.Command(bin, append(args, "--data-dir", dir)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	killed := false
	if delay > 0 {
		select {
		case err = <-done:
		case <-time.After(delay):
			_ = cmd.Process.Kill() // SIGKILL
			err = <-done
			killed = true
		}
	} else {
		err = <-done
	}
	elapsed := time.Since(start)
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
		killed = false
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
		if killed && ee.ProcessState != nil && ee.ProcessState.ExitCode() != -1 {
			killed = false // it exited before the signal
		}
	default:
		t.Fatalf("run whocould %q: %v", args, err)
	}
	return r, killed, elapsed
}
