package loadgen

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MintConfig describes how many access tokens Mint obtains and how.
type MintConfig struct {
	// Token is the client-credentials request sent for every token.
	Token TokenRequest
	// N is the number of tokens to obtain (>= 1).
	N int
	// Workers is the number of concurrent requests (>= 1; capped at N).
	Workers int
	// Progress, when non-nil, receives one line per second.
	Progress io.Writer
}

// Mint obtains cfg.N access tokens by performing cfg.N client-credentials
// grants with cfg.Workers concurrent workers, and returns them in the order
// they were requested. It stops at the first failed grant and fails if the
// token endpoint returned the same token twice (the caller wants N distinct
// tokens).
func Mint(ctx context.Context, client *http.Client, cfg MintConfig) ([]string, error) {
	if cfg.N < 1 {
		return nil, fmt.Errorf("mint tokens: count must be >= 1, got %d", cfg.N)
	}
	if cfg.Workers < 1 {
		return nil, fmt.Errorf("mint tokens: workers must be >= 1, got %d", cfg.Workers)
	}
	if cfg.Token.URL == "" || cfg.Token.ClientID == "" {
		return nil, errors.New("mint tokens: token URL and client ID are required")
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	tokens := make([]string, cfg.N)
	var next, done atomic.Int64
	var wg sync.WaitGroup
	for range min(cfg.Workers, cfg.N) {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(cfg.N) || ctx.Err() != nil {
					return
				}
				tok, err := FetchToken(ctx, client, cfg.Token)
				if err != nil {
					cancel(fmt.Errorf("token %d of %d: %w", i+1, cfg.N, err))
					return
				}
				tokens[i] = tok
				done.Add(1)
			}
		})
	}
	start := time.Now()
	stop := make(chan struct{})
	var progress sync.WaitGroup
	if cfg.Progress != nil {
		progress.Go(func() { mintProgress(cfg.Progress, &done, cfg.N, start, stop) })
	}
	wg.Wait()
	close(stop)
	progress.Wait()

	if err := context.Cause(ctx); err != nil {
		return nil, fmt.Errorf("mint tokens: %w (%d obtained)", err, done.Load())
	}
	seen := make(map[string]int, len(tokens))
	for i, t := range tokens {
		if j, dup := seen[t]; dup {
			return nil, fmt.Errorf("mint tokens: token %d is the same as token %d: the endpoint does not issue distinct tokens", i+1, j+1)
		}
		seen[t] = i
	}
	return tokens, nil
}

// mintProgress prints one progress line per second until stop is closed.
func mintProgress(out io.Writer, done *atomic.Int64, n int, start time.Time, stop <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var last int64
	lastAt := start
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			d := done.Load()
			_, _ = fmt.Fprintf(out, "minttokens: %5.1fs %d/%d tokens (%.1f tokens/s)\n",
				now.Sub(start).Seconds(), d, n, float64(d-last)/now.Sub(lastAt).Seconds())
			last, lastAt = d, now
		}
	}
}

// WriteTokenFile writes tokens one per line to path (mode 0600, as they are
// credentials), through a temporary file renamed into place so that a
// reader never sees a partial file.
func WriteTokenFile(path string, tokens []string) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write token file: %w", err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	var b strings.Builder
	for _, t := range tokens {
		b.WriteString(t)
		b.WriteByte('\n')
	}
	if _, err := f.WriteString(b.String()); err != nil {
		return fmt.Errorf("write token file: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("write token file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write token file: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write token file: %w", err)
	}
	return nil
}

// MintMain runs the minttokens command (arguments without the program name)
// and returns the process exit code: ExitOK, ExitFailed or ExitUsage.
func MintMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("minttokens", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		_, _ = fmt.Fprint(stderr, `usage: minttokens -token-url URL -client-id ID -client-secret S -n N -o FILE [flags]

Obtains N access tokens with N OAuth2 client-credentials grants (HTTP basic
auth, -c concurrent workers) and writes them to FILE, one per line, for
loadgen -bearer-file.

`)
		fs.PrintDefaults()
	}
	var (
		cfg     MintConfig
		out     string
		timeout time.Duration
		quiet   bool
	)
	fs.StringVar(&cfg.Token.URL, "token-url", "", "token endpoint, e.g. http://127.0.0.1:8080/oauth2/token")
	fs.StringVar(&cfg.Token.ClientID, "client-id", "", "client ID")
	fs.StringVar(&cfg.Token.ClientSecret, "client-secret", "", "client secret")
	fs.StringVar(&cfg.Token.Scope, "scope", "", "scope to request (optional)")
	fs.IntVar(&cfg.N, "n", 1000, "number of tokens")
	fs.IntVar(&cfg.Workers, "c", 16, "concurrent requests")
	fs.StringVar(&out, "o", "", "output file (one token per line)")
	fs.DurationVar(&timeout, "timeout", 10*time.Second, "per-request timeout (0 = none)")
	fs.BoolVar(&quiet, "quiet", false, "no per-second progress on stderr")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	usage := func(msg string) int {
		_, _ = fmt.Fprintf(stderr, "minttokens: %s\n", msg)
		return ExitUsage
	}
	switch {
	case fs.NArg() > 0:
		return usage(fmt.Sprintf("unexpected arguments: %q", fs.Args()))
	case cfg.Token.URL == "":
		return usage("-token-url is required")
	case cfg.Token.ClientID == "":
		return usage("-client-id is required")
	case out == "":
		return usage("-o is required")
	case cfg.N < 1:
		return usage("-n must be >= 1")
	case cfg.Workers < 1:
		return usage("-c must be >= 1")
	case timeout < 0:
		return usage("-timeout must be >= 0")
	}
	if !quiet {
		cfg.Progress = stderr
	}
	tr := NewTransport(cfg.Workers)
	defer tr.CloseIdleConnections()
	start := time.Now()
	tokens, err := Mint(ctx, NewClient(tr, timeout), cfg)
	elapsed := time.Since(start)
	if err == nil {
		err = WriteTokenFile(out, tokens)
	}
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "minttokens: %v\n", err)
		return ExitFailed
	}
	_, _ = fmt.Fprintf(stdout, "minted %d distinct tokens in %.3fs (%.1f tokens/s, c=%d) -> %s\n",
		len(tokens), elapsed.Seconds(), float64(len(tokens))/elapsed.Seconds(), cfg.Workers, out)
	return ExitOK
}
