package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func summarize(t *testing.T, name string, ci bool) (summary, string, bool) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := collect(f)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	ok := s.print(&out, ci)
	return s, out.String(), ok
}

// TestSummaryCountsAndReasons: testdata/mixed.json is real `go test -json`
// output of a package with a passing, a failing, two skipping tests and
// subtests, and of a package that does not build.
func TestSummaryCountsAndReasons(t *testing.T) {
	s, out, ok := summarize(t, "mixed.json", false)
	if ok {
		t.Error("a run with failures passed")
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if last := lines[len(lines)-1]; last != "3 passed, 2 failed, 3 skipped" {
		t.Errorf("last line %q, want %q", last, "3 passed, 2 failed, 3 skipped")
	}
	for _, want := range []string{
		"example.com/sum/a TestFail",
		"example.com/sum/b (package failed",
		"TestSkipDep: a_test.go:7: nats-server not found at /x",
		"TestSub/two: a_test.go:11: later",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if len(s.missingDeps) != 1 || s.missingDeps[0] != "example.com/sum/a TestSkipDep" {
		t.Errorf("missing dependencies %v, want only TestSkipDep", s.missingDeps)
	}
}

// TestSummaryCIFailsOnMissingDependency: without failures a run passes,
// unless CI=true and a test skipped because a dependency is missing; a
// deliberate skip (a benchmark gate) does not fail CI.
func TestSummaryCIFailsOnMissingDependency(t *testing.T) {
	if _, out, ok := summarize(t, "clean.json", false); !ok || !strings.HasSuffix(out, "3 passed, 0 failed, 3 skipped\n") {
		t.Errorf("clean run outside CI: ok=%v\n%s", ok, out)
	}
	_, out, ok := summarize(t, "clean.json", true)
	if ok || !strings.Contains(out, "CI=true: 1 test(s) skipped for a missing dependency") {
		t.Errorf("clean run with a missing dependency under CI: ok=%v\n%s", ok, out)
	}
}

// TestRecordKeepsOutputReadable: the streamed output is what go test
// prints without -v, plus one line per skip with its reason; the events
// are appended to the record file unchanged.
func TestRecordKeepsOutputReadable(t *testing.T) {
	in, err := os.ReadFile(filepath.Join("testdata", "mixed.json"))
	if err != nil {
		t.Fatal(err)
	}
	rec := filepath.Join(t.TempDir(), "rec.json")
	var out bytes.Buffer
	if err := runRecord(bytes.NewReader(in), &out, rec); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"undefined: undefined", "a_test.go:6: boom", "--- FAIL: TestFail", "--- SKIP: TestSkipIntent (example.com/sum/a): a_test.go:8: event benchmark", "FAIL\texample.com/sum/a"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	for _, unwanted := range []string{"=== RUN   TestPass", "--- PASS"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("output has %q (verbose noise):\n%s", unwanted, got)
		}
	}
	if b, _ := os.ReadFile(rec); !bytes.Equal(b, in) {
		t.Error("the record file differs from the input")
	}
}
