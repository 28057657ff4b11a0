package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/whocould/whocould/analyzer"
	"github.com/whocould/whocould/demo"
	"github.com/whocould/whocould/finding"
)

// TestDemoAnalyzers: the demo runs every analyzer at the end of its history and prints, per
// rule, how many findings and the stories' findings with their evidence; the configuration and
// baseline it writes into the data directory judge the same when `analyze --config` runs them
// again (nothing new, nothing resolved), and `findings list` lists what it found.
func TestDemoAnalyzers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	r := mustRun(t, 0, dir, nil, "demo", "--serve=false")
	out := r.stdout
	i := strings.Index(out, "\nWhat the analyzers found")
	if i < 0 || i < strings.Index(out, "Ask your own questions") {
		t.Fatalf("no findings after the answers:\n%s", clip(out))
	}
	section := out[i:]
	h := demo.Generate(1, demo.Options{})
	total := 0
	for _, rule := range finding.Rules {
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(rule) + ` — [^\n]*: (\d+) findings?\b`).FindStringSubmatch(section)
		if m == nil {
			t.Errorf("no count for %s:\n%s", rule, section)
			continue
		}
		var n int
		fmt.Sscan(m[1], &n)
		total += n
	}
	for _, want := range []string{
		h.Org.Cast["leaver-kept-access"] + " was allowed ",
		h.Org.Cast["separation-of-duties"] + " could do both payment.create and payment.approve",
		h.Org.Cast["unauthorised-actor"] + " added grant(",
		h.Org.Cast["shadow-access"] + " was allowed db.table.select on db:prod/payments",
		"      · ", // evidence
		"analyze --data-dir " + dir + " --config " + filepath.Join(dir, "analyzer.yaml") + " --at 2026-07-01T00:00:00Z",
	} {
		if !strings.Contains(section, want) {
			t.Errorf("the findings lack %q:\n%s", want, section)
		}
	}
	if !strings.Contains(section, fmt.Sprintf(": %d findings.", total)) {
		t.Errorf("the per-rule counts do not add up to the total (%d):\n%s", total, section)
	}
	for _, l := range strings.Split(section, "\n") {
		if len(l) > 700 {
			t.Errorf("a line of %d characters: %.200s...", len(l), l)
		}
	}

	// The files it wrote: the analyzers judge the same again.
	for _, f := range []string{"analyzer.yaml", "baseline.yaml"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	r = mustRun(t, 0, dir, nil, "analyze", "--config", filepath.Join(dir, "analyzer.yaml"), "--at", h.End.Format(time.RFC3339), "-o", "json")
	var res analyzer.Result
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("analyze -o json: %v\n%s", err, clip(r.stdout))
	}
	found := 0
	for _, run := range res.Runs {
		found += run.Found
		if run.Error != "" || run.New != 0 || run.Resolved != 0 || run.Found == 0 {
			t.Errorf("analyze again with the demo's files: %+v", run)
		}
	}
	if found != total {
		t.Errorf("analyze again found %d, the demo %d", found, total)
	}
	r = mustRun(t, 0, dir, nil, "findings", "list", "--status", "all", "-o", "json")
	var list struct {
		Findings []finding.Finding `json:"findings"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Findings) != total {
		t.Errorf("findings list: %d, the demo found %d", len(list.Findings), total)
	}
}
