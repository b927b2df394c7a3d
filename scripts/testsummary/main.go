// Command testsummary turns `go test -json` into the test command's output
// and its closing summary (scripts/test.sh). It uses only the standard
// library and runs outside the workspace (GOWORK=off).
//
//	go test -json ./... | testsummary -record results.json   # readable output
//	testsummary -summarize results.json                        # the summary
//
// -record prints what `go test` prints without -v (package results, the
// output of failed tests, build errors) plus one line per skipped test with
// its reason, and appends the raw events to the file. -summarize lists the
// failures and the skips with their reasons and ends with the plain line
// "N passed, N failed, N skipped"; it exits 1 when anything failed, and,
// with CI=true, when a test skipped because a dependency is missing.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action     string
	Package    string
	ImportPath string // build-output (Go 1.24+); the package's own fail event follows
	Test       string
	Output     string
}

func main() {
	record := flag.String("record", "", "read go test -json on stdin, print readable output, append the events to this file")
	summarize := flag.String("summarize", "", "print the summary of the events in this file")
	flag.Parse()
	switch {
	case *record != "":
		if err := runRecord(os.Stdin, os.Stdout, *record); err != nil {
			fmt.Fprintln(os.Stderr, "testsummary:", err)
			os.Exit(2)
		}
	case *summarize != "":
		f, err := os.Open(*summarize)
		if err != nil {
			fmt.Fprintln(os.Stderr, "testsummary:", err)
			os.Exit(2)
		}
		defer f.Close()
		s, err := collect(f)
		if err != nil {
			fmt.Fprintln(os.Stderr, "testsummary:", err)
			os.Exit(2)
		}
		if !s.print(os.Stdout, os.Getenv("CI") == "true") {
			os.Exit(1)
		}
	default:
		flag.Usage()
		os.Exit(2)
	}
}

type testKey struct{ pkg, test string }

// runRecord streams events from r to w as readable text and appends them
// to the file at path. Lines that are not JSON (a go command error before
// any test ran) are printed as they are.
func runRecord(r io.Reader, w io.Writer, path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	out := bufio.NewWriter(f)
	defer out.Flush()
	buf := map[testKey][]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if json.Unmarshal(line, &e) != nil || e.Action == "" {
			fmt.Fprintln(w, string(line))
			continue
		}
		out.Write(line)
		out.WriteByte('\n')
		k := testKey{e.Package, e.Test}
		switch {
		case e.Action == "build-output":
			fmt.Fprint(w, e.Output)
		case e.Test == "" && e.Action == "output":
			// Package lines: "ok  pkg 1.2s", "FAIL pkg", "?  pkg [no test
			// files]", a panic outside a test; not the bare PASS/FAIL.
			if t := strings.TrimSpace(e.Output); t != "PASS" && t != "FAIL" && !strings.HasPrefix(t, "=== ") {
				fmt.Fprint(w, e.Output)
			}
		case e.Action == "output":
			buf[k] = append(buf[k], e.Output)
		case e.Action == "fail" && e.Test != "":
			for _, o := range buf[k] {
				fmt.Fprint(w, o)
			}
			delete(buf, k)
		case e.Action == "skip" && e.Test != "":
			fmt.Fprintf(w, "--- SKIP: %s (%s): %s\n", e.Test, e.Package, skipReason(buf[k]))
			delete(buf, k)
		case e.Action == "pass" && e.Test != "":
			delete(buf, k)
		}
	}
	return sc.Err()
}

// logLine matches what t.Log, t.Skip and t.Fatal print: "file.go:12: ...".
var logLine = regexp.MustCompile(`^\S+\.go:\d+: `)

// skipReason is the message of the test's t.Skip: its last log line (a
// library's own log output around it is left out), or else everything it
// printed besides the framing lines of test2json.
func skipReason(lines []string) string {
	var parts []string
	reason := ""
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP") {
			continue
		}
		if logLine.MatchString(t) {
			reason = t
		}
		parts = append(parts, t)
	}
	switch {
	case reason != "":
		return reason
	case len(parts) == 0:
		return "no reason given"
	}
	return strings.Join(parts, " ")
}

// summary is the outcome of a whole run.
type summary struct {
	passed, failed, skipped int
	failures                []string // "pkg TestName", or "pkg (build failed)"
	skips                   []string // "pkg TestName: reason"
	missingDeps             []string // skips whose reason is a missing dependency
}

// missingDependency recognises the reasons tests give when a server or a
// binary they need is absent (libs/testkit, the stripe-mock, helm and
// nats-server helpers).
var missingDependency = regexp.MustCompile(`(?i)not reachable|not found|unavailable|not installed|not on PATH|go install`)

// collect reads the recorded events of one or more go test runs.
func collect(r io.Reader) (summary, error) {
	var s summary
	buf := map[testKey][]string{}
	testFailed := map[string]bool{} // package → a test of it failed
	pkgFailed := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		k := testKey{e.Package, e.Test}
		switch e.Action {
		case "output":
			if e.Test != "" {
				buf[k] = append(buf[k], e.Output)
			}
		case "pass":
			if e.Test != "" {
				s.passed++
			}
			delete(buf, k)
		case "skip":
			if e.Test != "" {
				s.skipped++
				reason := skipReason(buf[k])
				s.skips = append(s.skips, fmt.Sprintf("%s %s: %s", e.Package, e.Test, reason))
				if missingDependency.MatchString(reason) {
					s.missingDeps = append(s.missingDeps, e.Package+" "+e.Test)
				}
			}
			delete(buf, k)
		case "fail":
			if e.Test != "" {
				s.failed++
				s.failures = append(s.failures, e.Package+" "+e.Test)
				testFailed[e.Package] = true
			} else {
				pkgFailed[e.Package] = true
			}
			delete(buf, k)
		}
	}
	// A package that failed with no failed test (a build error, a panic in
	// TestMain, a timeout) counts as one failure.
	var pkgs []string
	for p := range pkgFailed {
		if !testFailed[p] && p != "" {
			pkgs = append(pkgs, p)
		}
	}
	sort.Strings(pkgs)
	for _, p := range pkgs {
		s.failed++
		s.failures = append(s.failures, p+" (package failed: build error, panic or timeout)")
	}
	return s, sc.Err()
}

// print writes the summary and reports whether the run passes.
func (s summary) print(w io.Writer, ci bool) bool {
	ok := s.failed == 0
	if len(s.failures) > 0 {
		fmt.Fprintf(w, "Failed (%d):\n", len(s.failures))
		for _, f := range s.failures {
			fmt.Fprintln(w, "  "+f)
		}
	}
	if len(s.skips) > 0 {
		fmt.Fprintf(w, "Skipped (%d):\n", len(s.skips))
		for _, sk := range s.skips {
			fmt.Fprintln(w, "  "+sk)
		}
	}
	if ci && len(s.missingDeps) > 0 {
		ok = false
		fmt.Fprintf(w, "CI=true: %d test(s) skipped for a missing dependency; CI must provide it:\n", len(s.missingDeps))
		for _, m := range s.missingDeps {
			fmt.Fprintln(w, "  "+m)
		}
	}
	fmt.Fprintf(w, "%d passed, %d failed, %d skipped\n", s.passed, s.failed, s.skipped)
	return ok
}
