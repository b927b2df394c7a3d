package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// Exit codes returned by Main.
const (
	// ExitOK means the run completed with at least one successful request.
	ExitOK = 0
	// ExitFailed means the run (or token fetch) failed, or no request succeeded.
	ExitFailed = 1
	// ExitUsage means the command line was invalid.
	ExitUsage = 2
)

// headerFlag collects repeatable "-header 'K: V'" values.
type headerFlag struct{ h http.Header }

func (f *headerFlag) String() string {
	if f == nil || f.h == nil {
		return ""
	}
	var parts []string
	for k, vs := range f.h {
		for _, v := range vs {
			parts = append(parts, k+": "+v)
		}
	}
	return strings.Join(parts, ", ")
}

func (f *headerFlag) Set(s string) error {
	k, v, err := ParseHeader(s)
	if err != nil {
		return err
	}
	if f.h == nil {
		f.h = http.Header{}
	}
	f.h.Add(k, v)
	return nil
}

// ParseHeader splits a "Key: Value" header argument.
func ParseHeader(s string) (key, value string, err error) {
	k, v, ok := strings.Cut(s, ":")
	k = strings.TrimSpace(k)
	if !ok || k == "" || strings.ContainsAny(k, " \t\r\n") {
		return "", "", fmt.Errorf("header %q: want \"Key: Value\"", s)
	}
	v = strings.TrimSpace(v)
	if strings.ContainsAny(v, "\r\n") {
		return "", "", fmt.Errorf("header %q: value contains a line break", k)
	}
	return k, v, nil
}

// Options is the parsed command line.
type Options struct {
	// Config is the load run configuration.
	Config Config
	// Token, when Token.URL is set, is fetched before the run and used as
	// Config.BearerToken.
	Token TokenRequest
	// BearerFile, when set, is the token file loaded into
	// Config.BearerTokens (see ReadTokenFile).
	BearerFile string
	// JSON selects JSON output.
	JSON bool
	// JSONOut, when set, also writes the JSON result to this file.
	JSONOut string
	// Quiet suppresses per-second progress.
	Quiet bool
	// Compare holds two result files to compare instead of running.
	Compare []string
}

// ParseArgs parses loadgen command-line arguments (without the program name).
func ParseArgs(args []string, stderr io.Writer) (*Options, error) {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		_, _ = fmt.Fprint(stderr, `usage: loadgen -url URL [flags]
       loadgen -compare BASE.json OTHER.json

Closed-loop HTTP load generator: -c workers send requests back to back for
-d after a discarded -warmup, over keep-alive connections (at most -c).

`)
		fs.PrintDefaults()
	}
	var (
		o         Options
		headers   headerFlag
		body      string
		bodyFile  string
		basicAuth string
		compare   bool
		c         = &o.Config
	)
	fs.StringVar(&c.URL, "url", "", "target URL (http or https)")
	fs.StringVar(&c.Method, "method", http.MethodGet, "HTTP method (GET, POST, ...)")
	fs.StringVar(&body, "body", "", "request body")
	fs.StringVar(&bodyFile, "body-file", "", "read the request body from this file")
	fs.Var(&headers, "header", "extra header \"Key: Value\" (repeatable)")
	fs.StringVar(&basicAuth, "basic-auth", "", "HTTP basic auth \"user:pass\" (sent verbatim)")
	fs.IntVar(&c.Workers, "c", 16, "concurrent workers (= max connections)")
	fs.DurationVar(&c.Duration, "d", 10*time.Second, "measured duration")
	fs.DurationVar(&c.Warmup, "warmup", time.Second, "warmup before measuring (results discarded)")
	fs.DurationVar(&c.Timeout, "timeout", 10*time.Second, "per-request timeout (0 = none)")
	fs.IntVar(&c.Expect, "expect", http.StatusOK, "expected status; other statuses count as errors")
	fs.StringVar(&c.Label, "label", "", "label for the report")
	fs.BoolVar(&o.JSON, "json", false, "print the result as JSON")
	fs.StringVar(&o.JSONOut, "json-out", "", "also write the JSON result to this file")
	fs.BoolVar(&o.Quiet, "quiet", false, "no per-second progress on stderr")
	fs.StringVar(&o.Token.URL, "token-url", "", "fetch an OAuth2 client-credentials token here first and send it as a Bearer token")
	fs.StringVar(&o.Token.ClientID, "client-id", "", "client ID for -token-url")
	fs.StringVar(&o.Token.ClientSecret, "client-secret", "", "client secret for -token-url")
	fs.StringVar(&o.Token.Scope, "scope", "", "scope for -token-url (optional)")
	fs.StringVar(&o.BearerFile, "bearer-file", "", "send the access tokens of this file (one per line) as Bearer tokens, round-robin")
	fs.BoolVar(&compare, "compare", false, "compare two -json result files (BASE OTHER) instead of running")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if compare {
		if fs.NArg() != 2 {
			return nil, fmt.Errorf("-compare needs exactly two result files, got %d", fs.NArg())
		}
		o.Compare = fs.Args()
		return &o, nil
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if c.URL == "" {
		return nil, errors.New("-url is required")
	}
	switch {
	case body != "" && bodyFile != "":
		return nil, errors.New("-body and -body-file are mutually exclusive")
	case bodyFile != "":
		b, err := os.ReadFile(bodyFile)
		if err != nil {
			return nil, fmt.Errorf("read -body-file: %w", err)
		}
		c.Body = b
	case body != "":
		c.Body = []byte(body)
	}
	c.Header = headers.h
	if basicAuth != "" {
		u, p, ok := strings.Cut(basicAuth, ":")
		if !ok || u == "" {
			return nil, errors.New("-basic-auth: want \"user:pass\"")
		}
		c.BasicAuthUser, c.BasicAuthPass = u, p
	}
	if o.Token.URL != "" {
		if o.Token.ClientID == "" {
			return nil, errors.New("-token-url needs -client-id")
		}
		if basicAuth != "" {
			return nil, errors.New("-token-url and -basic-auth are mutually exclusive")
		}
	}
	if o.BearerFile != "" {
		switch {
		case o.Token.URL != "":
			return nil, errors.New("-bearer-file and -token-url are mutually exclusive")
		case basicAuth != "":
			return nil, errors.New("-bearer-file and -basic-auth are mutually exclusive")
		}
		toks, err := ReadTokenFile(o.BearerFile)
		if err != nil {
			return nil, fmt.Errorf("-bearer-file: %w", err)
		}
		c.BearerTokens = toks
	}
	if err := c.normalize(); err != nil {
		return nil, err
	}
	return &o, nil
}

// Main runs the loadgen command and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := ParseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return ExitUsage
	}
	if o.Compare != nil {
		if err := CompareFiles(stdout, o.Compare[0], o.Compare[1]); err != nil {
			_, _ = fmt.Fprintf(stderr, "loadgen: %v\n", err)
			return ExitFailed
		}
		return ExitOK
	}

	tr := NewTransport(o.Config.Workers)
	defer tr.CloseIdleConnections()
	client := NewClient(tr, o.Config.Timeout)
	if o.Token.URL != "" {
		tok, err := FetchToken(ctx, client, o.Token)
		if err != nil {
			_, _ = fmt.Fprintf(stderr, "loadgen: %v\n", err)
			return ExitFailed
		}
		o.Config.BearerToken = tok
	}
	if !o.Quiet {
		o.Config.Progress = stderr
	}
	res, err := Run(ctx, o.Config, client)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "loadgen: %v\n", err)
		return ExitFailed
	}
	if o.JSON {
		err = writeJSON(stdout, res)
	} else {
		err = WriteText(stdout, res)
	}
	if err == nil && o.JSONOut != "" {
		err = writeJSONFile(o.JSONOut, res)
	}
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "loadgen: write result: %v\n", err)
		return ExitFailed
	}
	if res.Requests == res.Errors {
		_, _ = fmt.Fprintf(stderr, "loadgen: no successful request (%d errors)\n", res.Errors)
		return ExitFailed
	}
	return ExitOK
}

func writeJSON(w io.Writer, r *Result) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("encode json: %w", err)
	}
	return nil
}

func writeJSONFile(path string, r *Result) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close %s: %w", path, cerr)
		}
	}()
	return writeJSON(f, r)
}

// ReadResult loads a Result written with -json.
func ReadResult(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read result: %w", err)
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode result %s: %w", path, err)
	}
	return &r, nil
}

// CompareFiles prints the difference between two -json result files.
func CompareFiles(out io.Writer, basePath, otherPath string) error {
	base, err := ReadResult(basePath)
	if err != nil {
		return err
	}
	other, err := ReadResult(otherPath)
	if err != nil {
		return err
	}
	return WriteComparison(out, base, other)
}

// WriteComparison prints other minus base for throughput and latency.
func WriteComparison(out io.Writer, base, other *Result) error {
	name := func(r *Result, def string) string {
		if r.Label != "" {
			return r.Label
		}
		return def
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-10s %14s %14s %12s %9s\n", "metric", name(base, "base"), name(other, "other"), "delta", "delta%")
	row := func(metric string, x, y float64) {
		pct := "n/a"
		if x != 0 {
			pct = fmt.Sprintf("%+.1f%%", 100*(y-x)/x)
		}
		fmt.Fprintf(&b, "%-10s %14.3f %14.3f %+12.3f %9s\n", metric, x, y, y-x, pct)
	}
	row("req/s", base.RPS, other.RPS)
	row("p50 ms", base.Latency.P50, other.Latency.P50)
	row("p90 ms", base.Latency.P90, other.Latency.P90)
	row("p99 ms", base.Latency.P99, other.Latency.P99)
	row("p99.9 ms", base.Latency.P999, other.Latency.P999)
	row("max ms", base.Latency.Max, other.Latency.Max)
	row("errors", float64(base.Errors), float64(other.Errors))
	if _, err := io.WriteString(out, b.String()); err != nil {
		return fmt.Errorf("write comparison: %w", err)
	}
	return nil
}
