package loadgen

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// mintServer is a client-credentials endpoint that checks the request
// (basic auth "bench:s3cr%t", scope "agents:read"), issues token-<n> for the
// n-th request (1-based) unless issue says otherwise, and records the
// highest number of requests it served at once.
type mintServer struct {
	*httptest.Server
	requests, inFlight, maxInFlight atomic.Int64
}

func newMintServer(t *testing.T, delay time.Duration, issue func(n int64) (status int, token string)) *mintServer {
	t.Helper()
	s := &mintServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cur := s.inFlight.Add(1)
		defer s.inFlight.Add(-1)
		for {
			m := s.maxInFlight.Load()
			if cur <= m || s.maxInFlight.CompareAndSwap(m, cur) {
				break
			}
		}
		n := s.requests.Add(1)
		u, p, ok := r.BasicAuth()
		if err := r.ParseForm(); err != nil || !ok || u != "bench" || p != "s3cr%25t" || r.Method != http.MethodPost ||
			r.PostForm.Get("grant_type") != "client_credentials" || r.PostForm.Get("scope") != "agents:read" {
			http.Error(w, `{"error":"invalid_request"}`, http.StatusBadRequest)
			return
		}
		time.Sleep(delay)
		status, tok := http.StatusOK, fmt.Sprintf("token-%d", n)
		if issue != nil {
			status, tok = issue(n)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if status == http.StatusOK {
			_, _ = fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":3600}`, tok)
		} else {
			_, _ = fmt.Fprint(w, `{"error":"invalid_client"}`)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func mintConfig(url string, n, workers int) MintConfig {
	return MintConfig{
		Token: TokenRequest{URL: url, ClientID: "bench", ClientSecret: "s3cr%t", Scope: "agents:read"},
		N:     n, Workers: workers,
	}
}

func TestMintDistinctTokensConcurrently(t *testing.T) {
	srv := newMintServer(t, 5*time.Millisecond, nil)
	tokens, err := Mint(context.Background(), srv.Client(), mintConfig(srv.URL, 60, 4))
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	if len(tokens) != 60 || srv.requests.Load() != 60 {
		t.Fatalf("got %d tokens from %d requests, want 60 from 60", len(tokens), srv.requests.Load())
	}
	seen := map[string]bool{}
	for i, tok := range tokens {
		if !strings.HasPrefix(tok, "token-") || seen[tok] {
			t.Fatalf("token %d = %q (empty or repeated)", i, tok)
		}
		seen[tok] = true
	}
	if m := srv.maxInFlight.Load(); m > 4 || m < 2 {
		t.Errorf("max concurrent requests = %d, want 2..4", m)
	}
}

func TestMintFailures(t *testing.T) {
	tests := []struct {
		name    string
		issue   func(n int64) (int, string)
		wantErr string
	}{
		{
			name: "endpoint refuses",
			issue: func(n int64) (int, string) {
				if n == 7 {
					return http.StatusUnauthorized, ""
				}
				return http.StatusOK, fmt.Sprintf("t%d", n)
			},
			wantErr: "status 401",
		},
		{
			name:    "duplicate tokens",
			issue:   func(n int64) (int, string) { return http.StatusOK, fmt.Sprintf("t%d", n%5) },
			wantErr: "distinct",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newMintServer(t, 0, tt.issue)
			tokens, err := Mint(context.Background(), srv.Client(), mintConfig(srv.URL, 20, 3))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Mint = %d tokens, err %v; want error containing %q", len(tokens), err, tt.wantErr)
			}
		})
	}
	if _, err := Mint(context.Background(), http.DefaultClient, mintConfig("http://127.0.0.1:1/", 0, 1)); err == nil {
		t.Error("Mint accepted N = 0")
	}
}

func TestMintMain(t *testing.T) {
	srv := newMintServer(t, 25*time.Millisecond, nil)
	out := filepath.Join(t.TempDir(), "tokens.txt")
	var stdout, stderr strings.Builder
	args := []string{"-token-url", srv.URL, "-client-id", "bench", "-client-secret", "s3cr%t", "-scope", "agents:read",
		"-n", "50", "-c", "1", "-o", out}
	if code := MintMain(context.Background(), args, &stdout, &stderr); code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	tokens, err := ReadTokenFile(out)
	if err != nil {
		t.Fatalf("ReadTokenFile: %v", err)
	}
	if len(tokens) != 50 || tokens[0] != "token-1" || tokens[49] != "token-50" {
		t.Errorf("file holds %d tokens: first %q last %q", len(tokens), tokens[0], tokens[len(tokens)-1])
	}
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode: %v %v", fi, err)
	}
	if !strings.Contains(stdout.String(), "minted 50 distinct tokens in ") {
		t.Errorf("stdout = %q", stdout.String())
	}
	// 50 requests of 25 ms at c=1 take over a second: one progress line.
	if !strings.Contains(stderr.String(), "/50 tokens (") {
		t.Errorf("no progress line on stderr: %q", stderr.String())
	}

	// A failed run reports the error and leaves no file behind.
	bad := filepath.Join(t.TempDir(), "bad.txt")
	stderr.Reset()
	args = []string{"-token-url", srv.URL, "-client-id", "bench", "-client-secret", "wrong", "-n", "3", "-o", bad, "-quiet"}
	if code := MintMain(context.Background(), args, &stdout, &stderr); code != ExitFailed || !strings.Contains(stderr.String(), "status 400") {
		t.Errorf("bad secret: exit %d, stderr %q", code, stderr.String())
	}
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Errorf("output file after failure: %v", err)
	}

	for _, args := range [][]string{
		{"-client-id", "c", "-o", out},
		{"-token-url", srv.URL, "-o", out},
		{"-token-url", srv.URL, "-client-id", "c"},
		{"-token-url", srv.URL, "-client-id", "c", "-o", out, "-n", "0"},
		{"-token-url", srv.URL, "-client-id", "c", "-o", out, "-c", "0"},
		{"-token-url", srv.URL, "-client-id", "c", "-o", out, "stray"},
	} {
		if code := MintMain(context.Background(), args, &stdout, &strings.Builder{}); code != ExitUsage {
			t.Errorf("MintMain(%q) = %d, want %d", args, code, ExitUsage)
		}
	}
}
