package main

// End-to-end tests of the whocould binary: they build it once (TestMain), run it with exec in
// a fresh --data-dir per test, and assert what a user sees — exit codes, stdout, stderr, the
// JSON documents of CONTRACT.md and the dead letters.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/whocould/whocould/event"
)

// bin is the whocould binary TestMain built.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "whocould-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "whocould")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build whocould:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// result is what one run of the binary showed.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout:\n%s\n--- stderr:\n%s", r.code, clip(r.stdout), clip(r.stderr))
}

func clip(s string) string {
	if len(s) > 4000 {
		return s[:4000] + fmt.Sprintf("... (%d bytes)", len(s))
	}
	return s
}

// runIn runs the binary with args (and --data-dir dir unless dir is ""), stdin from stdin.
func runIn(t testing.TB, dir string, stdin []byte, args ...string) result {
	t.Helper()
	if dir != "" {
		args = append(args, "--data-dir", dir)
	}
	// A bound, so that a hung or runaway command fails the test instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run whocould %q: %v", args, err)
	}
	return r
}

// mustRun runs the binary and fails the test unless it exits with want.
func mustRun(t testing.TB, want int, dir string, stdin []byte, args ...string) result {
	t.Helper()
	r := runIn(t, dir, stdin, args...)
	if r.code != want {
		t.Fatalf("whocould %s: want exit %d, got %s", strings.Join(args, " "), want, r)
	}
	return r
}

// oneJSON checks that stdout is exactly one JSON document and nothing else, and decodes it.
func oneJSON(t testing.TB, stdout string) any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("stdout is not a JSON document: %v\n%s", err, clip(stdout))
	}
	if rest, _ := ioReadAll(dec); strings.TrimSpace(rest) != "" {
		t.Fatalf("stdout holds more than one JSON document; after the first: %q", clip(rest))
	}
	return v
}

func ioReadAll(dec *json.Decoder) (string, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(dec.Buffered())
	return b.String(), err
}

// queryJSON runs a query with -o json and returns the decoded answer.
func queryJSON(t testing.TB, dir string, args ...string) any {
	t.Helper()
	args = append(append([]string{"query"}, args...), "-o", "json")
	r := mustRun(t, 0, dir, nil, args...)
	return oneJSON(t, r.stdout)
}

// sameJSON fails unless got equals the JSON document want.
func sameJSON(t testing.TB, what string, got any, want string) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(want))
	dec.UseNumber()
	var w any
	if err := dec.Decode(&w); err != nil {
		t.Fatalf("%s: bad expected JSON: %v", what, err)
	}
	if !reflect.DeepEqual(got, w) {
		g, _ := json.MarshalIndent(got, "", "  ")
		wi, _ := json.MarshalIndent(w, "", "  ")
		t.Errorf("%s:\n--- got:\n%s\n--- want:\n%s", what, g, wi)
	}
}

// ---- events ----

var t0 = time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)

func ev(id string, typ event.Type, at time.Time, d event.Data) event.Event {
	return event.Event{ID: id, Source: "test", Type: typ, Time: at, Data: d}
}

// contractHistory is the history of CONTRACT.md's example: user:alice in group:dba in
// group:eng; role:db-owner on db:prod granted to group:eng; role:db-owner includes
// role:db-writer, which holds db.table.*. The grant is the last event.
func contractHistory() []event.Event {
	m := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Minute) }
	return []event.Event{
		ev("e01", event.PrincipalCreated, m(0), event.Data{Principal: "user:alice", Attributes: map[string]string{"dept": "eng"}}),
		ev("e02", event.GroupCreated, m(1), event.Data{Group: "group:dba"}),
		ev("e03", event.GroupCreated, m(2), event.Data{Group: "group:eng"}),
		ev("e04", event.MembershipAdded, m(3), event.Data{Group: "group:dba", Member: "user:alice"}),
		ev("e05", event.MembershipAdded, m(4), event.Data{Group: "group:eng", Member: "group:dba"}),
		ev("e06", event.RoleCreated, m(5), event.Data{Role: "role:db-owner"}),
		ev("e07", event.RoleCreated, m(6), event.Data{Role: "role:db-writer"}),
		ev("e08", event.RolePermissionAdded, m(7), event.Data{Role: "role:db-writer", Action: "db.table.*"}),
		ev("e09", event.RoleIncludeAdded, m(8), event.Data{Role: "role:db-owner", Includes: "role:db-writer"}),
		ev("e10", event.GrantAdded, m(9), event.Data{Subject: "group:eng", Role: "role:db-owner", Resource: "db:prod"}),
	}
}

func marshal(t testing.TB, e event.Event) []byte {
	t.Helper()
	b, err := event.Marshal(&e)
	if err != nil {
		t.Fatalf("marshal %s: %v", e.ID, err)
	}
	return b
}

func jsonLines(t testing.TB, evs []event.Event) []byte {
	t.Helper()
	var b bytes.Buffer
	for _, e := range evs {
		b.Write(marshal(t, e))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

func jsonArray(t testing.TB, evs []event.Event) []byte {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("[\n")
	for i, e := range evs {
		b.WriteString("  ")
		b.Write(marshal(t, e))
		if i < len(evs)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString("]\n")
	return b.Bytes()
}

func writeFile(t testing.TB, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// importSummary is the -o json summary of import.
type importJSON struct {
	Files []struct {
		File       string            `json:"file"`
		Accepted   int               `json:"accepted"`
		Duplicates int               `json:"duplicates"`
		Rejected   []json.RawMessage `json:"rejected"`
		Position   uint64            `json:"position"`
	} `json:"files"`
	Accepted   int               `json:"accepted"`
	Duplicates int               `json:"duplicates"`
	Rejected   []json.RawMessage `json:"rejected"`
	Position   uint64            `json:"position"`
	Projected  uint64            `json:"projected"`
}

func parseImport(t testing.TB, stdout string) importJSON {
	t.Helper()
	oneJSON(t, stdout)
	var s importJSON
	if err := json.Unmarshal([]byte(stdout), &s); err != nil {
		t.Fatalf("import summary: %v\n%s", err, stdout)
	}
	return s
}

// ---- 2. import ----

func TestImportFormatsAndDuplicates(t *testing.T) {
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	h := contractHistory()
	lines := writeFile(t, tmp, "events.jsonl", jsonLines(t, h[:5]))
	array := writeFile(t, tmp, "events.json", jsonArray(t, h[5:8]))

	// JSON lines and a JSON array in one run: a line per file and a total.
	r := mustRun(t, 0, data, nil, "import", lines, array)
	want := fmt.Sprintf("%s: 5 accepted, 0 duplicates, 0 rejected\n%s: 3 accepted, 0 duplicates, 0 rejected\ntotal: 8 accepted, 0 duplicates, 0 rejected\n", lines, array)
	if r.stdout != want {
		t.Errorf("import summary:\n got %q\nwant %q", r.stdout, want)
	}

	// The same file again: all duplicates, exit 0.
	r = mustRun(t, 0, data, nil, "import", lines)
	if want := lines + ": 0 accepted, 5 duplicates, 0 rejected\n"; r.stdout != want {
		t.Errorf("second import:\n got %q\nwant %q", r.stdout, want)
	}

	// stdin ("-"), with -o json: exactly one JSON document on stdout; the last two events
	// are new, the first two of the batch duplicates.
	stdin := jsonLines(t, h[6:])
	r = mustRun(t, 0, data, stdin, "import", "-", "-o", "json")
	s := parseImport(t, r.stdout)
	if s.Accepted != 2 || s.Duplicates != 2 || len(s.Rejected) != 0 || len(s.Files) != 1 ||
		s.Files[0].File != "-" || s.Files[0].Accepted != 2 || s.Projected != 10 || s.Position != 10 {
		t.Errorf("stdin import summary: %+v\n%s", s, r.stdout)
	}
	if r.stderr != "" {
		t.Errorf("stdin import wrote to stderr: %q", r.stderr)
	}

	// A JSON array from stdin, all duplicates, table output names stdin's "-".
	r = mustRun(t, 0, data, jsonArray(t, h), "import", "-")
	if want := "-: 0 accepted, 10 duplicates, 0 rejected\n"; r.stdout != want {
		t.Errorf("array from stdin:\n got %q\nwant %q", r.stdout, want)
	}

	// Everything landed: alice could drop the table.
	got := queryJSON(t, data, "who-could", "--action", "db.table.drop", "--resource", "db:prod/orders", "--at", "2026-01-06T02:14:00Z")
	ps := got.(map[string]any)["principals"].([]any)
	if len(ps) != 1 || ps[0].(map[string]any)["principal"] != "user:alice" {
		t.Errorf("who-could after import: %v", got)
	}
}

// TestImportRepeated: importing a small file again and again always succeeds (all duplicates,
// exit 0). A race between the end of the import and the projector's start made some of these
// runs fail with "catch up: last of WHOCOULD: context canceled" (exit 1).
func TestImportRepeated(t *testing.T) {
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	h := contractHistory()
	f := writeFile(t, tmp, "events.jsonl", jsonLines(t, h))
	mustRun(t, 0, data, nil, "import", f)
	failed := 0
	const runs = 30
	for i := range runs {
		r := runIn(t, data, nil, "import", f)
		if r.code != 0 || r.stdout != f+": 0 accepted, 10 duplicates, 0 rejected\n" {
			failed++
			t.Logf("run %d: %s", i, r)
		}
	}
	if failed > 0 {
		t.Errorf("%d of %d imports of duplicates failed", failed, runs)
	}
}

// ---- 3. bad input ----

// badCase is one bad line of a mixed file.
type badCase struct {
	name  string
	line  string // the line as written
	field string // the field the message must name ("" when none)
	// reason is a fragment the message must hold.
	reason string
}

func TestImportBadInput(t *testing.T) {
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	h := contractHistory()
	good := func(i int) string { return string(marshal(t, h[i])) }

	env := func(id, typ, tm, data string) string {
		return fmt.Sprintf(`{"specversion":"1.0","id":%s,"source":"test","type":%q,"time":%q,"datacontenttype":"application/json","data":%s}`,
			id, typ, tm, data)
	}
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	huge := strings.Repeat("x", 10<<20)
	longID := strings.Repeat("i", 10<<10)
	cases := []badCase{
		{"malformed JSON", `{"specversion":"1.0","id":"bad-json","source":"test","type":"group.created","time":"2026-01-01T09:00:00Z","data":{"group":"group:x",}}`, "", "malformed JSON"},
		{"unknown type", env(`"bad-type"`, "user.teleported", "2026-01-01T09:00:00Z", `{"principal":"user:bob"}`), "type", "user.teleported"},
		{"missing field", env(`"bad-missing"`, "membership.added", "2026-01-01T09:00:00Z", `{"group":"group:eng"}`), "data.member", "missing"},
		{"role as member", env(`"bad-role-member"`, "membership.added", "2026-01-01T09:00:00Z", `{"group":"group:eng","member":"role:db-owner"}`), "data.member", "role"},
		{"user as group", env(`"bad-user-group"`, "membership.added", "2026-01-01T09:00:00Z", `{"group":"user:bob","member":"user:alice"}`), "data.group", "principal"},
		{"unparsable time", env(`"bad-time"`, "group.created", "yesterday at noon", `{"group":"group:x"}`), "time", ""},
		{"absurd time", env(`"bad-year"`, "group.created", "9999-01-01T00:00:00Z", `{"group":"group:x"}`), "time", "9999"},
		{"10 MB event", env(`"bad-huge"`, "principal.created", "2026-01-01T09:00:00Z", `{"principal":"user:huge","attributes":{"note":"`+huge+`"}}`), "", "bytes long"},
		{"NUL in id", env(q("bad\x00nul"), "group.created", "2026-01-01T09:00:00Z", `{"group":"group:x"}`), "id", "forbidden character"},
		{"newline in id", env(q("bad\nnewline"), "group.created", "2026-01-01T09:00:00Z", `{"group":"group:x"}`), "id", "forbidden character"},
		{"RTL override in id", env(q("bad\u202eevil"), "group.created", "2026-01-01T09:00:00Z", `{"group":"group:x"}`), "id", "U+202E"},
		{"10 kB id", env(q(longID), "group.created", "2026-01-01T09:00:00Z", `{"group":"group:x"}`), "id", "bytes long"},
		{"RTL override in member", env(`"bad-rtl-member"`, "membership.added", "2026-01-01T09:00:00Z", `{"group":"group:eng","member":"user:mallory\u202eecila"}`), "data.member", "U+202E"},
	}
	// The file: the good events of the contract history, with a bad line after each of the
	// first ones, so that good and bad alternate.
	var lines []string
	badLine := map[int]badCase{} // 1-based line → case
	gi := 0
	for _, c := range cases {
		if gi < len(h) {
			lines = append(lines, good(gi))
			gi++
		}
		lines = append(lines, c.line)
		badLine[len(lines)] = c
	}
	for ; gi < len(h); gi++ {
		lines = append(lines, good(gi))
	}
	name := writeFile(t, tmp, "mixed.jsonl", []byte(strings.Join(lines, "\n")+"\n"))

	r := runIn(t, data, nil, "import", name)
	t.Logf("stderr of the import:\n%s", r.stderr)
	if r.code != 2 {
		t.Fatalf("import of a file with bad events: want exit 2, got %s", r)
	}
	if want := fmt.Sprintf("%s: %d accepted, 0 duplicates, %d rejected\n", name, len(h), len(cases)); r.stdout != want {
		t.Errorf("summary:\n got %q\nwant %q", r.stdout, want)
	}
	// stderr: one message per bad event naming file, line and field; no raw hostile bytes, no
	// megabytes of echoed input.
	if len(r.stderr) > 32<<10 {
		t.Errorf("stderr is %d bytes long: the bad input is echoed", len(r.stderr))
	}
	for _, bad := range []string{"\x00", "\u202e", "bad\nnewline"} {
		if strings.Contains(r.stderr, bad) {
			t.Errorf("stderr holds the raw hostile text %q:\n%s", bad, clip(r.stderr))
		}
	}
	msgs := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	for ln, c := range badLine {
		prefix := fmt.Sprintf("%s:%d:", name, ln)
		var msg string
		for _, m := range msgs {
			if strings.HasPrefix(m, prefix) {
				msg = m
				break
			}
		}
		if msg == "" {
			t.Errorf("%s (line %d): no message starting %q on stderr:\n%s", c.name, ln, prefix, clip(r.stderr))
			continue
		}
		if c.field != "" && !strings.Contains(msg, ": "+c.field+": ") {
			t.Errorf("%s (line %d): message does not name field %s: %s", c.name, ln, c.field, msg)
		}
		if !strings.Contains(msg, c.reason) {
			t.Errorf("%s (line %d): message does not say %q: %s", c.name, ln, c.reason, msg)
		}
	}
	if last := msgs[len(msgs)-1]; !strings.Contains(last, fmt.Sprintf("%d event(s) rejected", len(cases))) {
		t.Errorf("last line of stderr: %q", last)
	}

	// The good events of the same file landed.
	got := queryJSON(t, data, "who-could", "--action", "db.table.drop", "--resource", "db:prod/orders", "--at", "2026-01-06T02:14:00Z")
	sameJSON(t, "who-could after the mixed import", got, contractWhoCould)

	// Each bad event is a dead letter with its place, reason and raw bytes.
	letters := readDeadLetters(t, data)
	if len(letters) != len(cases) {
		t.Errorf("%d dead letters, want %d", len(letters), len(cases))
	}
	byWhere := map[string]deadLetter{}
	for _, l := range letters {
		byWhere[l.Where] = l
	}
	for ln, c := range badLine {
		l, ok := byWhere[fmt.Sprintf("line %d", ln)]
		if !ok {
			t.Errorf("%s (line %d): no dead letter", c.name, ln)
			continue
		}
		if l.Source != name {
			t.Errorf("%s: dead letter source %q, want %q", c.name, l.Source, name)
		}
		if l.Reason == "" || (c.field != "" && !strings.Contains(l.Reason, c.field)) || !strings.Contains(l.Reason, c.reason) {
			t.Errorf("%s: dead letter reason %q (want field %q, %q)", c.name, l.Reason, c.field, c.reason)
		}
		raw := l.Bytes()
		switch {
		case len(c.line) > event.DefaultMaxEventBytes:
			// An over-size event keeps its first 4 KiB.
			if len(raw) == 0 || len(raw) > 4096 || !strings.HasPrefix(c.line, string(raw)) {
				t.Errorf("%s: dead letter raw is %d bytes, not a prefix of at most 4 KiB of the line", c.name, len(raw))
			}
		case string(raw) != c.line:
			t.Errorf("%s: dead letter raw\n got %q\nwant %q", c.name, clip(string(raw)), clip(c.line))
		}
	}

	// A bad item in a JSON array: named by its line too, and the good items land.
	arr := "[\n  " + good(0) + ",\n  " + badLineOf(cases, "role as member") + ",\n  " + good(1) + "\n]\n"
	arrName := writeFile(t, tmp, "mixed.json", []byte(arr))
	data3 := filepath.Join(tmp, "data3")
	r = runIn(t, data3, nil, "import", arrName)
	if r.code != 2 || r.stdout != arrName+": 2 accepted, 0 duplicates, 1 rejected\n" ||
		!strings.Contains(r.stderr, arrName+":3: event \"bad-role-member\": data.member: ") {
		t.Errorf("array with a bad item: %s", r)
	}

	// -o json with rejections: still one JSON document on stdout, listing them; exit 2.
	data2 := filepath.Join(tmp, "data2")
	r = runIn(t, data2, nil, "import", name, "-o", "json")
	if r.code != 2 {
		t.Fatalf("import -o json: want exit 2, got %s", r)
	}
	s := parseImport(t, r.stdout)
	if s.Accepted != len(h) || len(s.Rejected) != len(cases) {
		t.Errorf("import -o json: accepted %d, rejected %d", s.Accepted, len(s.Rejected))
	}
}

func badLineOf(cases []badCase, name string) string {
	for _, c := range cases {
		if c.name == name {
			return c.line
		}
	}
	panic("no case " + name)
}

type deadLetter struct {
	Seq       uint64 `json:"seq"`
	Source    string `json:"source"`
	Where     string `json:"where"`
	ID        string `json:"id"`
	Reason    string `json:"reason"`
	Raw       string `json:"raw"`
	RawBase64 []byte `json:"raw_base64"`
}

func (l deadLetter) Bytes() []byte {
	if l.RawBase64 != nil {
		return l.RawBase64
	}
	return []byte(l.Raw)
}

func readDeadLetters(t testing.TB, data string) []deadLetter {
	t.Helper()
	f, err := os.Open(filepath.Join(data, "deadletters.jsonl"))
	if err != nil {
		t.Fatalf("dead letters: %v", err)
	}
	defer f.Close()
	var out []deadLetter
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var l deadLetter
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("dead letter line %q: %v", clip(sc.Text()), err)
		}
		out = append(out, l)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// ---- 4. usage errors ----

func TestUsageErrors(t *testing.T) {
	tmp := t.TempDir()
	evfile := writeFile(t, tmp, "ok.jsonl", jsonLines(t, contractHistory()))
	cases := []struct {
		name string
		args []string
		msg  string // a fragment stderr must hold
	}{
		{"unknown flag", []string{"query", "who-could", "--bogus", "1"}, "unknown flag: --bogus"},
		{"unknown flag of import", []string{"import", "--frobnicate", evfile}, "unknown flag: --frobnicate"},
		{"missing --action", []string{"query", "who-could", "--resource", "db:prod"}, "--action is required"},
		{"missing --principal", []string{"query", "what-could"}, "--principal is required"},
		{"bad --at", []string{"query", "who-could", "--action", "db.table.drop", "--resource", "db:prod", "--at", "yesterday"}, `--at "yesterday": not an RFC 3339 time`},
		{"bad --known-at", []string{"query", "who-could", "--action", "db.table.drop", "--resource", "db:prod", "--known-at", "2026-13-01T00:00:00Z"}, `--known-at "2026-13-01T00:00:00Z"`},
		{"--at out of range", []string{"query", "explain", "--principal", "user:alice", "--action", "a.b", "--resource", "db:prod", "--at", "9999-01-01T00:00:00Z"}, "out of range"},
		{"group as --principal", []string{"query", "what-could", "--principal", "group:eng"}, `--principal "group:eng" names a group, not a principal`},
		{"role as --principal", []string{"query", "explain", "--principal", "role:db-owner", "--action", "a.b", "--resource", "db:prod"}, "names a role"},
		{"history without subject", []string{"query", "history"}, "exactly one of --principal and --resource"},
		{"bad -o", []string{"query", "who-could", "--action", "a.b", "--resource", "db:prod", "-o", "yaml"}, `-o "yaml"`},
		{"bad --resource", []string{"query", "who-could", "--action", "a.b", "--resource", "db:prod//x"}, "empty path segment"},
		{"argument to query", []string{"query", "who-could", "--action", "a.b", "--resource", "db:prod", "stray"}, "stray"},
		{"--format okta", []string{"import", "--format", "okta", evfile}, `--format "okta": only canonical`},
		{"missing file", []string{"import", filepath.Join(tmp, "no-such-file.jsonl")}, "no-such-file.jsonl"},
		{"missing file after a good one", []string{"import", evfile, filepath.Join(tmp, "also-missing.jsonl")}, "also-missing.jsonl"},
		{"directory as file", []string{"import", tmp}, "is a directory"},
		{"import without files", []string{"import"}, "requires at least 1 arg"},
		{"bad --log-level", []string{"query", "what-could", "--principal", "user:a", "--log-level", "loud"}, "--log-level"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			r := runIn(t, data, nil, c.args...)
			if r.code != 2 {
				t.Fatalf("want exit 2, got %s", r)
			}
			if !strings.Contains(r.stderr, c.msg) {
				t.Errorf("stderr does not say %q: %q", c.msg, r.stderr)
			}
			if !strings.HasPrefix(r.stderr, "whocould: ") {
				t.Errorf("stderr does not start with \"whocould: \": %q", r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("a usage error wrote to stdout: %q", r.stdout)
			}
			// Bad usage is caught before the data directory is touched.
			if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the data directory was created (%v)", err)
			}
		})
	}
}

// TestUnknownCommand: an unknown command is bad usage (exit 2, CONTRACT.md); cobra's error
// for it is not a flag error, so it used to exit 1. Below the top level too: cobra answers an
// unknown subcommand of a command group (query, completion) with the group's help and exit 0,
// and an unknown help topic likewise.
func TestUnknownCommand(t *testing.T) {
	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate" for "whocould"`},
		{[]string{"query", "frob"}, `unknown command "frob" for "whocould query"`},
		{[]string{"query", "who"}, "Did you mean this?\n\twho-could"},
		{[]string{"query", "frob", "--action", "a.b"}, `unknown command "frob" for "whocould query"`},
		{[]string{"completion", "frob"}, `unknown command "frob" for "whocould completion"`},
		{[]string{"help", "frob"}, `unknown command "frob" for "whocould"`},
		{[]string{"help", "query", "frob"}, `unknown command "frob" for "whocould query"`},
	} {
		data := filepath.Join(t.TempDir(), "data")
		r := runIn(t, data, nil, c.args...)
		if r.code != 2 || !strings.Contains(r.stderr, c.msg) || !strings.HasPrefix(r.stderr, "whocould: ") || r.stdout != "" {
			t.Errorf("whocould %s: want exit 2 and %q on stderr alone, got %s", strings.Join(c.args, " "), c.msg, r)
		}
		if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("whocould %s: the data directory was created (%v)", strings.Join(c.args, " "), err)
		}
	}
	// A group alone, or asked for help, still shows its help.
	for _, args := range [][]string{{"query"}, {"query", "--help"}, {"help", "query"}, {"completion"}} {
		r := runIn(t, "", nil, args...)
		if r.code != 0 || !strings.Contains(r.stdout, "Available Commands:") {
			t.Errorf("whocould %s: want its help and exit 0, got %s", strings.Join(args, " "), r)
		}
	}
}

// TestFailureExitsOne: a failure that is not the user's input exits 1. The data directory
// path is a regular file, so it cannot be created (root may write anywhere, so permissions
// cannot arrange this reliably).
func TestFailureExitsOne(t *testing.T) {
	tmp := t.TempDir()
	notDir := writeFile(t, tmp, "data", []byte("not a directory\n"))
	r := runIn(t, notDir, nil, "query", "who-could", "--action", "a.b", "--resource", "db:prod")
	if r.code != 1 {
		t.Fatalf("data dir is a file: want exit 1, got %s", r)
	}
	if !strings.Contains(r.stderr, "data directory") || r.stdout != "" {
		t.Errorf("data dir is a file: %s", r)
	}
	evfile := writeFile(t, tmp, "ok.jsonl", jsonLines(t, contractHistory()))
	r = runIn(t, notDir, nil, "import", evfile)
	if r.code != 1 || !strings.Contains(r.stderr, "data directory") {
		t.Errorf("import into a data dir that is a file: want exit 1, got %s", r)
	}
	if b, _ := os.ReadFile(notDir); string(b) != "not a directory\n" {
		t.Errorf("the file was changed: %q", b)
	}
}

// TestDataDirInUse: a data directory another process holds is a failure (exit 1) with a
// message saying so (openStack's clean-up once dereferenced the nil stack its error returns
// set, so every failure after the data directory was made panicked, exit 2). The test holds the event log's writer lock itself, as a running import
// or `whocould serve` would.
func TestDataDirInUse(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	importContract(t, data)
	lock, err := os.OpenFile(filepath.Join(data, "eventlog", "eventlog-WHOCOULD.lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("the writer lock file: %v", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"query", "who-could", "--action", "db.table.drop", "--resource", "db:prod/orders"},
		{"rebuild"},
	} {
		r := runIn(t, data, nil, args...)
		if r.code != 1 || !strings.Contains(r.stderr, "in use by another whocould process") || strings.Contains(r.stderr, "panic") {
			t.Errorf("whocould %s on a data dir in use: want exit 1 and \"in use by another whocould process\", got %s", args[0], r)
		}
	}
	syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	got := queryJSON(t, data, "who-could", "--action", "db.table.drop", "--resource", "db:prod/orders", "--at", "2026-01-06T02:14:00Z")
	sameJSON(t, "who-could once the lock is released", got, contractWhoCould)
}

// TestDataDirLocked: while one whocould process uses a data directory, a second one on it is
// refused at once (exit 1, "in use by another whocould process", naming the holder) by the data
// directory's lock, which it takes before anything else, the NATS server above all; and the
// first goes on unharmed. The directory carries the demo's marker, so that the demo, which
// empties such a directory, is among the refused.
func TestDataDirLocked(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(data, 0o750); err != nil {
		t.Fatal(err)
	}
	writeFile(t, data, ".whocould-demo", []byte("made by whocould demo\n"))
	importContract(t, data)

	// The first process: an import from stdin, which holds the directory while it waits for
	// more input.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	first := exec.CommandContext(ctx, bin, "import", "-", "-o", "json", "--data-dir", data)
	var out, errb bytes.Buffer
	first.Stdout, first.Stderr = &out, &errb
	stdin, err := first.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer first.Process.Kill() // only if the test ends early: Wait below reaps it
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Minute) }
	if _, err := stdin.Write(jsonLines(t, []event.Event{
		ev("e11", event.MembershipAdded, at(20), event.Data{Group: "group:dba", Member: "user:bob"})})); err != nil {
		t.Fatal(err)
	}
	// It holds the lock once it has written its pid into the lock file.
	lockPath := filepath.Join(data, "whocould.lock")
	pid := strconv.Itoa(first.Process.Pid)
	for deadline := time.Now().Add(30 * time.Second); ; {
		if b, _ := os.ReadFile(lockPath); strings.TrimSpace(string(b)) == pid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the first whocould never took %s; stderr: %s", lockPath, errb.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	for _, args := range [][]string{
		{"query", "who-could", "--action", "db.table.drop", "--resource", "db:prod/orders"},
		{"import", writeFile(t, t.TempDir(), "more.jsonl", jsonLines(t, contractHistory()))},
		{"rebuild"},
		{"demo", "--serve=false"},
	} {
		start := time.Now()
		r := runIn(t, data, nil, args...)
		took := time.Since(start)
		if r.code != 1 || !strings.Contains(r.stderr, "in use by another whocould process") || strings.Contains(r.stderr, "panic") {
			t.Errorf("whocould %s while another process holds the data dir: want exit 1 and \"in use by another whocould process\", got %s", args[0], r)
		}
		// Refused by the data directory's lock (not, later, by the event log's writer lock).
		if !strings.Contains(r.stderr, "(pid "+pid+")") || !strings.Contains(r.stderr, lockPath) {
			t.Errorf("whocould %s: the refusal names neither the holder (pid %s) nor %s: %q", args[0], pid, lockPath, r.stderr)
		}
		if r.stdout != "" {
			t.Errorf("whocould %s: a refusal wrote to stdout: %q", args[0], r.stdout)
		}
		if took > 10*time.Second {
			t.Errorf("whocould %s took %s to be refused", args[0], took)
		}
	}

	// The first goes on: more input, then the end of it.
	if _, err := stdin.Write(jsonLines(t, []event.Event{
		ev("e12", event.MembershipAdded, at(21), event.Data{Group: "group:dba", Member: "user:carol"})})); err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	if err := first.Wait(); err != nil {
		t.Fatalf("the first whocould: %v\n--- stdout:\n%s\n--- stderr:\n%s", err, out.String(), errb.String())
	}
	if s := parseImport(t, out.String()); s.Accepted != 2 || s.Duplicates != 0 || len(s.Rejected) != 0 {
		t.Errorf("the first whocould's import: %+v", s)
	}
	// The lock went with it, and the directory holds everything.
	got := queryJSON(t, data, "who-could", "--action", "db.table.drop", "--resource", "db:prod/orders", "--at", "2026-01-06T02:14:00Z")
	var who []string
	for _, p := range got.(map[string]any)["principals"].([]any) {
		who = append(who, p.(map[string]any)["principal"].(string))
	}
	if want := []string{"user:alice", "user:bob", "user:carol"}; !reflect.DeepEqual(who, want) {
		t.Errorf("who-could after the first whocould finished: %v, want %v", who, want)
	}
	if _, err := os.Stat(filepath.Join(data, ".whocould-demo")); err != nil {
		t.Errorf("the demo marker: %v", err)
	}
}

// TestBrokenDataDir: a data directory whose dead-letter file cannot be opened (it is a
// directory) is a failure (exit 1) that names the file.
func TestBrokenDataDir(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	importContract(t, data)
	dl := filepath.Join(data, "deadletters.jsonl")
	if err := os.Remove(dl); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dl, 0o750); err != nil {
		t.Fatal(err)
	}
	r := runIn(t, data, nil, "query", "who-could", "--action", "db.table.drop", "--resource", "db:prod/orders")
	if r.code != 1 || !strings.Contains(r.stderr, "deadletters.jsonl") || strings.Contains(r.stderr, "panic") {
		t.Errorf("dead-letter file is a directory: want exit 1 and a message naming it, got %s", r)
	}
}

// ---- 5. queries ----

const contractWhoCould = `{
  "action": "db.table.drop",
  "resource": "db:prod/orders",
  "at": "2026-01-06T02:14:00Z",
  "principals": [
    {
      "principal": "user:alice",
      "paths": [
        {"groups": ["group:dba", "group:eng"],
         "grant": {"subject": "group:eng", "role": "role:db-owner", "resource": "db:prod"},
         "roles": ["role:db-owner", "role:db-writer"],
         "permission": "db.table.*"}
      ]
    }
  ]
}`

const contractPath = `{"groups": ["group:dba", "group:eng"],
  "grant": {"subject": "group:eng", "role": "role:db-owner", "resource": "db:prod"},
  "roles": ["role:db-owner", "role:db-writer"],
  "permission": "db.table.*"}`

func importContract(t *testing.T, data string) {
	t.Helper()
	f := writeFile(t, t.TempDir(), "contract.jsonl", jsonLines(t, contractHistory()))
	mustRun(t, 0, data, nil, "import", f)
}

func TestQueriesMatchContract(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	importContract(t, data)
	checkContractAnswers(t, data)
}

// contractAnswers runs the fixed queries of the contract history and returns their JSON.
func contractAnswers(t *testing.T, data string) map[string]any {
	t.Helper()
	at := "2026-01-06T02:14:00Z"
	return map[string]any{
		"who-could": queryJSON(t, data, "who-could", "--action", "db.table.drop", "--resource", "db:prod/orders", "--at", at),
		"who-could before": queryJSON(t, data, "who-could", "--action", "db.table.drop", "--resource", "db:prod/orders",
			"--at", t0.Add(8*time.Minute).Format(time.RFC3339)),
		"who-could elsewhere": queryJSON(t, data, "who-could", "--action", "db.table.drop", "--resource", "db:staging", "--at", at),
		"what-could":          queryJSON(t, data, "what-could", "--principal", "user:alice", "--at", at),
		"what-could unknown":  queryJSON(t, data, "what-could", "--principal", "user:nobody", "--at", at),
		"explain":             queryJSON(t, data, "explain", "--principal", "user:alice", "--action", "db.table.drop", "--resource", "db:prod/orders", "--at", at),
		"explain no":          queryJSON(t, data, "explain", "--principal", "user:alice", "--action", "db.drop", "--resource", "db:prod/orders", "--at", at),
		"history": queryJSON(t, data, "history", "--principal", "user:alice",
			"--from", "2026-01-01T00:00:00Z", "--to", "2026-02-01T00:00:00Z"),
		"history resource": queryJSON(t, data, "history", "--resource", "db:prod/orders",
			"--from", "2026-01-01T00:00:00Z", "--to", "2026-02-01T00:00:00Z"),
	}
}

func checkContractAnswers(t *testing.T, data string) {
	t.Helper()
	a := contractAnswers(t, data)
	at := "2026-01-06T02:14:00Z"
	sameJSON(t, "who-could", a["who-could"], contractWhoCould)
	sameJSON(t, "who-could before the grant", a["who-could before"], `{"action": "db.table.drop", "resource": "db:prod/orders",
		"at": "2026-01-01T09:08:00Z", "principals": []}`)
	sameJSON(t, "who-could on another resource", a["who-could elsewhere"], `{"action": "db.table.drop", "resource": "db:staging",
		"at": "`+at+`", "principals": []}`)
	// "status" is an extension of CONTRACT.md's what-could shape.
	sameJSON(t, "what-could", a["what-could"], `{"principal": "user:alice", "at": "`+at+`", "status": "active",
		"entitlements": [{"action": "db.table.*", "resource": "db:prod", "paths": [`+contractPath+`]}]}`)
	sameJSON(t, "what-could of an unknown principal", a["what-could unknown"], `{"principal": "user:nobody", "at": "`+at+`",
		"status": "unknown", "entitlements": []}`)
	// "status" is an extension of CONTRACT.md's explain shape.
	sameJSON(t, "explain", a["explain"], `{"principal": "user:alice", "action": "db.table.drop", "resource": "db:prod/orders",
		"at": "`+at+`", "could": true, "status": "active", "paths": [`+contractPath+`], "reason": ""}`)
	ex := a["explain no"].(map[string]any)
	if ex["could"] != false || ex["reason"] == "" || len(ex["paths"].([]any)) != 0 {
		t.Errorf("explain of an action alice cannot do: %v", ex)
	}
	sameJSON(t, "history of alice", a["history"], `{"principal": "user:alice",
		"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z",
		"intervals": [{"principal": "user:alice", "action": "db.table.*", "resource": "db:prod",
			"from": "2026-01-01T09:09:00Z", "to": null, "path": `+contractPath+`}]}`)
	sameJSON(t, "history of db:prod/orders", a["history resource"], `{"resource": "db:prod/orders",
		"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z",
		"intervals": [{"principal": "user:alice", "action": "db.table.*", "resource": "db:prod",
			"from": "2026-01-01T09:09:00Z", "to": null, "path": `+contractPath+`}]}`)
}

func TestQueryTableOutput(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	importContract(t, data)
	path := "user:alice → group:dba → group:eng → grant(group:eng, role:db-owner, db:prod) ⇒ role:db-owner → role:db-writer ∋ db.table.*"
	r := mustRun(t, 0, data, nil, "query", "who-could", "--action", "db.table.drop", "--resource", "db:prod/orders", "--at", "2026-01-06T02:14:00Z")
	if !strings.Contains(r.stdout, "Who could db.table.drop on db:prod/orders at 2026-01-06T02:14:00Z: 1 principal(s)") ||
		!strings.Contains(r.stdout, path) {
		t.Errorf("who-could table:\n%s", r.stdout)
	}
	r = mustRun(t, 0, data, nil, "query", "explain", "--principal", "user:alice", "--action", "db.table.drop", "--resource", "db:prod/orders", "--at", "2026-01-06T02:14:00Z")
	if !strings.Contains(r.stdout, "user:alice (active) could do db.table.drop on db:prod/orders") || !strings.Contains(r.stdout, path) {
		t.Errorf("explain table:\n%s", r.stdout)
	}
	r = mustRun(t, 0, data, nil, "query", "what-could", "--principal", "user:alice", "--at", "2026-01-06T02:14:00Z")
	if !strings.Contains(r.stdout, "group:dba → group:eng → grant(group:eng, role:db-owner, db:prod) ⇒ role:db-owner → role:db-writer ∋ db.table.*") {
		t.Errorf("what-could table:\n%s", r.stdout)
	}
	r = mustRun(t, 0, data, nil, "query", "history", "--resource", "db:prod/orders", "--from", "2026-01-01T00:00:00Z", "--to", "2026-02-01T00:00:00Z")
	if !strings.Contains(r.stdout, "(holds)") || !strings.Contains(r.stdout, "2026-01-01T09:09:00Z") {
		t.Errorf("history table:\n%s", r.stdout)
	}
}

// TestKnownAt: --known-at before the grant was recorded answers without it.
func TestKnownAt(t *testing.T) {
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	h := contractHistory()
	mustRun(t, 0, data, nil, "import", writeFile(t, tmp, "a.jsonl", jsonLines(t, h[:9])))
	time.Sleep(20 * time.Millisecond)
	before := time.Now().UTC()
	time.Sleep(20 * time.Millisecond)
	mustRun(t, 0, data, nil, "import", writeFile(t, tmp, "b.jsonl", jsonLines(t, h[9:])))
	time.Sleep(20 * time.Millisecond)
	after := time.Now().UTC()

	args := []string{"who-could", "--action", "db.table.drop", "--resource", "db:prod/orders", "--at", "2026-01-06T02:14:00Z"}
	k := before.Format(time.RFC3339Nano)
	got := queryJSON(t, data, append(args, "--known-at", k)...)
	sameJSON(t, "who-could known at "+k, got, `{"action": "db.table.drop", "resource": "db:prod/orders",
		"at": "2026-01-06T02:14:00Z", "known_at": "`+k+`", "principals": []}`)
	got = queryJSON(t, data, append(args, "--known-at", after.Format(time.RFC3339Nano))...)
	ps := got.(map[string]any)["principals"].([]any)
	if len(ps) != 1 {
		t.Errorf("who-could known after the grant was recorded: %v", got)
	}
	// what-could too.
	got = queryJSON(t, data, "what-could", "--principal", "user:alice", "--at", "2026-01-06T02:14:00Z", "--known-at", k)
	if es := got.(map[string]any)["entitlements"].([]any); len(es) != 0 {
		t.Errorf("what-could known before the grant: %v", got)
	}
}

// ---- 6. rebuild ----

func TestRebuild(t *testing.T) {
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	h := contractHistory()
	// Two imports, and an expiring grant to make the store less trivial.
	extra := []event.Event{
		ev("x1", event.PrincipalCreated, t0.Add(20*time.Minute), event.Data{Principal: "user:bob"}),
		ev("x2", event.GrantAdded, t0.Add(21*time.Minute), event.Data{Subject: "user:bob", Role: "role:db-writer",
			Resource: "db:analytics/events", ExpiresAt: ptr(t0.Add(24 * time.Hour))}),
	}
	mustRun(t, 0, data, nil, "import", writeFile(t, tmp, "a.jsonl", jsonLines(t, h)))
	mustRun(t, 0, data, nil, "import", writeFile(t, tmp, "b.json", jsonArray(t, extra)))
	before := contractAnswers(t, data)
	bob := queryJSON(t, data, "who-could", "--action", "db.table.drop", "--resource", "db:analytics/events", "--at", t0.Add(time.Hour).Format(time.RFC3339))

	r := mustRun(t, 0, data, nil, "rebuild")
	if !strings.Contains(r.stdout, "rebuilt the store from 12 events (log position 12)") {
		t.Errorf("rebuild: %q", r.stdout)
	}
	if !reflect.DeepEqual(contractAnswers(t, data), before) {
		t.Errorf("answers differ after rebuild")
	}
	checkContractAnswers(t, data)
	if got := queryJSON(t, data, "who-could", "--action", "db.table.drop", "--resource", "db:analytics/events", "--at", t0.Add(time.Hour).Format(time.RFC3339)); !reflect.DeepEqual(got, bob) {
		t.Errorf("who-could with bob differs after rebuild: %v, was %v", got, bob)
	}
	for _, leftover := range []string{"store.rebuild", "store.old"} {
		if _, err := os.Stat(filepath.Join(data, leftover)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after rebuild (%v)", leftover, err)
		}
	}

	// An interrupted swap: the store moved aside, a half-built rebuild beside it. The next
	// command puts it right.
	store := filepath.Join(data, "store")
	if err := os.Rename(store, store+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(store+".rebuild", "junk"), 0o750); err != nil {
		t.Fatal(err)
	}
	writeFile(t, store+".rebuild", "snapshot", []byte("half a snapshot"))
	if !reflect.DeepEqual(contractAnswers(t, data), before) {
		t.Errorf("answers differ after recovering an interrupted swap")
	}
	if _, err := os.Stat(store); err != nil {
		t.Errorf("store not recovered: %v", err)
	}
	for _, leftover := range []string{"store.rebuild", "store.old"} {
		if _, err := os.Stat(filepath.Join(data, leftover)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after recovery (%v)", leftover, err)
		}
	}
	// And rebuild still works after the recovery, and a later import still dedups.
	mustRun(t, 0, data, nil, "rebuild")
	r = mustRun(t, 0, data, jsonLines(t, append(h, extra...)), "import", "-")
	if r.stdout != "-: 0 accepted, 12 duplicates, 0 rejected\n" {
		t.Errorf("import after rebuild: %q", r.stdout)
	}
	checkContractAnswers(t, data)
}

func ptr[T any](v T) *T { return &v }

// ---- 8. demo ----

func TestDemo(t *testing.T) {
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "demo")
	r := mustRun(t, 0, dir, nil, "demo", "--serve=false")
	for _, want := range []string{"Generated ", "Published over NATS into " + dir, "curl -H", "1. Who could", "Who could db.table.drop on db:prod/orders at 2026-03-17T02:14:00Z:", "Ask your own questions"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("demo output lacks %q:\n%s", want, clip(r.stdout))
		}
	}
	first := r.stdout

	// Twice: it replaces its own directory, with the same answers.
	r = mustRun(t, 0, dir, nil, "demo", "--serve=false")
	if stripTimings(r.stdout) != stripTimings(first) {
		t.Errorf("the second demo run answers differently")
	}
	// The first question: the command line it suggests.
	q := demoFirstQuestion(t, first)
	want := queryJSON(t, dir, append([]string{"who-could"}, q...)...)
	if ps := want.(map[string]any)["principals"].([]any); len(ps) == 0 {
		t.Errorf("the demo's first question has no principals: %v", want)
	}

	// A non-empty directory the demo did not make: exit 2, untouched.
	other := filepath.Join(tmp, "mine")
	if err := os.MkdirAll(filepath.Join(other, "sub"), 0o750); err != nil {
		t.Fatal(err)
	}
	writeFile(t, other, "precious.txt", []byte("keep me"))
	r = runIn(t, other, nil, "demo", "--serve=false")
	if r.code != 2 || !strings.Contains(r.stderr, "the demo did not make") {
		t.Errorf("demo into a foreign directory: want exit 2, got %s", r)
	}
	entries, _ := os.ReadDir(other)
	if b, err := os.ReadFile(filepath.Join(other, "precious.txt")); err != nil || string(b) != "keep me" || len(entries) != 2 {
		t.Errorf("the foreign directory was touched: %v %q %v", err, b, entries)
	}

	// --export, then import elsewhere: the same answer to the first question.
	export := filepath.Join(tmp, "demo.jsonl")
	r = mustRun(t, 0, "", nil, "demo", "--export", export)
	if !strings.HasPrefix(r.stdout, "wrote ") {
		t.Errorf("demo --export: %q", r.stdout)
	}
	data := filepath.Join(tmp, "imported")
	r = mustRun(t, 0, data, nil, "import", export, "-o", "json")
	if s := parseImport(t, r.stdout); s.Accepted == 0 || s.Duplicates != 0 || len(s.Rejected) != 0 {
		t.Errorf("import of the demo export: %+v", s)
	}
	got := queryJSON(t, data, append([]string{"who-could"}, q...)...)
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Errorf("first demo question after export and import:\n%s\nthe demo's own:\n%s", g, w)
	}
}

// stripTimings drops the lines of the demo's output that hold timings.
func stripTimings(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "Published over NATS into ") {
			l = l[:strings.LastIndex(l, " in ")]
		}
		if strings.Contains(l, "curl ") { // the API's port differs from run to run
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// demoFirstQuestion reads the flags of the who-could command line the demo suggests.
func demoFirstQuestion(t *testing.T, out string) []string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, "query who-could "); i >= 0 {
			f := strings.Fields(l[i+len("query who-could "):])
			var q []string
			for j := 0; j+1 < len(f); j += 2 {
				if f[j] != "--data-dir" {
					q = append(q, f[j], f[j+1])
				}
			}
			return q
		}
	}
	t.Fatalf("the demo suggests no who-could command:\n%s", clip(out))
	return nil
}
