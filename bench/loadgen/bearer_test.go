package loadgen

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// authRecorder is an httptest server that records the Authorization header
// of every request in arrival order.
type authRecorder struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string
}

func newAuthRecorder(t *testing.T, hold func(n int)) *authRecorder {
	t.Helper()
	a := &authRecorder{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.seen = append(a.seen, r.Header.Get("Authorization"))
		n := len(a.seen)
		a.mu.Unlock()
		if hold != nil {
			hold(n)
		}
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *authRecorder) headers() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.seen...)
}

func tokenList(n int) []string {
	toks := make([]string, n)
	for i := range toks {
		toks[i] = fmt.Sprintf("tok-%d", i)
	}
	return toks
}

func TestRunBearerTokensRoundRobinSingleWorker(t *testing.T) {
	srv := newAuthRecorder(t, nil)
	toks := tokenList(5)
	cfg := Config{URL: srv.URL, Workers: 1, Duration: 150 * time.Millisecond, BearerTokens: toks}
	res, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := srv.headers()
	if len(got) < 2*len(toks) {
		t.Fatalf("only %d requests; want at least %d to see the list wrap", len(got), 2*len(toks))
	}
	for i, h := range got {
		if want := "Bearer " + toks[i%len(toks)]; h != want {
			t.Fatalf("request %d: Authorization %q, want %q (all: %v)", i, h, want, got[:min(len(got), 12)])
		}
	}
	if res.Errors != 0 {
		t.Errorf("errors = %d", res.Errors)
	}
}

func TestRunBearerTokensSpreadOverWorkers(t *testing.T) {
	const workers = 3
	toks := tokenList(6)
	// Hold the first request of every worker until all have arrived, so
	// the first three requests are the three workers' first requests.
	all := make(chan struct{})
	var once sync.Once
	srv := newAuthRecorder(t, func(n int) {
		if n == workers {
			once.Do(func() { close(all) })
		}
		if n <= workers {
			select {
			case <-all:
			case <-time.After(2 * time.Second):
			}
		}
	})
	cfg := Config{URL: srv.URL, Workers: workers, Duration: 200 * time.Millisecond, BearerTokens: toks}
	if _, err := Run(context.Background(), cfg, nil); err != nil {
		t.Fatalf("Run: %v", err)
	}
	got := srv.headers()
	if len(got) < 3*len(toks) {
		t.Fatalf("only %d requests", len(got))
	}
	first := map[string]bool{}
	for _, h := range got[:workers] {
		first[h] = true
	}
	for _, want := range []string{"Bearer tok-0", "Bearer tok-2", "Bearer tok-4"} {
		if !first[want] {
			t.Errorf("first requests %v: want the workers to start at tok-0, tok-2 and tok-4", got[:workers])
			break
		}
	}
	// Each worker cycles through the whole list, so the use counts of any
	// two tokens differ by at most one per worker.
	counts := map[string]int{}
	for _, h := range got {
		counts[h]++
	}
	if len(counts) != len(toks) {
		t.Fatalf("saw %d distinct headers, want %d: %v", len(counts), len(toks), counts)
	}
	lo, hi := len(got), 0
	for _, tok := range toks {
		n := counts["Bearer "+tok]
		lo, hi = min(lo, n), max(hi, n)
	}
	if hi-lo > workers {
		t.Errorf("token use counts %v: spread %d > %d", counts, hi-lo, workers)
	}
}

func TestStartOffset(t *testing.T) {
	tests := []struct{ i, workers, n, want int }{
		{0, 4, 10000, 0}, {1, 4, 10000, 2500}, {3, 4, 10000, 7500},
		{0, 16, 3, 0}, {15, 16, 3, 2}, {5, 16, 3, 0},
		{0, 1, 0, 0},
	}
	for _, tt := range tests {
		if got := startOffset(tt.i, tt.workers, tt.n); got != tt.want {
			t.Errorf("startOffset(%d, %d, %d) = %d, want %d", tt.i, tt.workers, tt.n, got, tt.want)
		}
	}
}

func TestRunRejectsBadBearerTokens(t *testing.T) {
	for name, cfg := range map[string]Config{
		"with single token": {BearerTokens: []string{"a"}, BearerToken: "b"},
		"with basic auth":   {BearerTokens: []string{"a"}, BasicAuthUser: "u"},
		"empty token":       {BearerTokens: []string{"a", ""}},
		"inner space":       {BearerTokens: []string{"a b"}},
	} {
		cfg.URL, cfg.Workers, cfg.Duration = "http://127.0.0.1:1/", 1, time.Millisecond
		if _, err := Run(context.Background(), cfg, nil); err == nil {
			t.Errorf("%s: Run accepted %+v", name, cfg)
		}
	}
}

func TestBearerFileFlag(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "aaa\r\n\n  bbb  \nccc")
	tests := []struct {
		name    string
		args    []string
		wantErr string
		want    []string
	}{
		{name: "good", args: []string{"-bearer-file", good}, want: []string{"aaa", "bbb", "ccc"}},
		{name: "empty", args: []string{"-bearer-file", write("empty", "")}, wantErr: "no tokens"},
		{name: "blank lines only", args: []string{"-bearer-file", write("blank", "\n \n\t\n")}, wantErr: "no tokens"},
		{name: "missing", args: []string{"-bearer-file", filepath.Join(dir, "nope")}, wantErr: "no such file"},
		{name: "directory", args: []string{"-bearer-file", dir}, wantErr: "read token file"},
		{name: "inner whitespace", args: []string{"-bearer-file", write("space", "ok\nnot ok\n")}, wantErr: "line 2"},
		{name: "with token-url", args: []string{"-bearer-file", good, "-token-url", "http://h/t", "-client-id", "c"}, wantErr: "mutually exclusive"},
		{name: "with basic auth", args: []string{"-bearer-file", good, "-basic-auth", "a:b"}, wantErr: "mutually exclusive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := ParseArgs(append([]string{"-url", "http://h/"}, tt.args...), io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "-bearer-file") {
					t.Fatalf("err = %v, want one mentioning -bearer-file and %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseArgs: %v", err)
			}
			if strings.Join(o.Config.BearerTokens, ",") != strings.Join(tt.want, ",") {
				t.Errorf("BearerTokens = %q, want %q", o.Config.BearerTokens, tt.want)
			}
		})
	}
}

func TestMainBearerFile(t *testing.T) {
	srv := newAuthRecorder(t, nil)
	file := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(file, []byte("x1\nx2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	code := Main(context.Background(), []string{"-url", srv.URL, "-bearer-file", file, "-c", "1", "-d", "100ms", "-warmup", "0s", "-quiet"}, &stdout, &stderr)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	got := srv.headers()
	if len(got) < 2 || got[0] != "Bearer x1" || got[1] != "Bearer x2" {
		t.Errorf("headers = %v", got[:min(len(got), 4)])
	}
	code = Main(context.Background(), []string{"-url", srv.URL, "-bearer-file", file + ".missing"}, &stdout, &stderr)
	if code != ExitUsage || !strings.Contains(stderr.String(), "-bearer-file") {
		t.Errorf("missing file: exit %d, stderr %q", code, stderr.String())
	}
}
