package loadgen

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer serves status(n) for the n-th request (1-based) and records
// how many requests and distinct connections it saw.
type countingServer struct {
	*httptest.Server
	requests atomic.Int64
	mu       sync.Mutex
	conns    map[string]bool // remote addresses of new connections
}

func newCountingServer(t *testing.T, status func(n int64) int) *countingServer {
	t.Helper()
	s := &countingServer{conns: map[string]bool{}}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := s.requests.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(status(n))
		_, _ = w.Write([]byte("ok"))
	}))
	s.Config.ConnState = func(c net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.mu.Lock()
			s.conns[c.RemoteAddr().String()] = true
			s.mu.Unlock()
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func (s *countingServer) distinctConns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func TestRunCountsRequestsAndErrors(t *testing.T) {
	tests := []struct {
		name        string
		status      func(n int64) int
		expect      int
		workers     int
		warmup      time.Duration
		wantAllErr  bool
		wantNoErr   bool
		wantErrCode int
		wantErrN    uint64 // exact count of wantErrCode when > 0
	}{
		{name: "all ok", status: func(int64) int { return 200 }, workers: 4, wantNoErr: true},
		{name: "all 503", status: func(int64) int { return 503 }, workers: 4, wantAllErr: true, wantErrCode: 503},
		{name: "expect 204", status: func(int64) int { return 204 }, expect: 204, workers: 2, wantNoErr: true},
		{name: "200 when 204 expected", status: func(int64) int { return 200 }, expect: 204, workers: 2, wantAllErr: true, wantErrCode: 200},
		{
			name:    "every 4th is 429",
			status:  func(n int64) int { return map[bool]int{true: 429, false: 200}[n%4 == 0] },
			workers: 4, wantErrCode: 429,
		},
		{
			name:    "first 5 fail, no warmup: counted",
			status:  func(n int64) int { return map[bool]int{true: 500, false: 200}[n <= 5] },
			workers: 1, wantErrCode: 500, wantErrN: 5,
		},
		{
			name:    "first 5 fail during warmup: discarded",
			status:  func(n int64) int { return map[bool]int{true: 500, false: 200}[n <= 5] },
			workers: 1, warmup: 300 * time.Millisecond, wantNoErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newCountingServer(t, tt.status)
			res, err := Run(context.Background(), Config{
				URL: srv.URL, Workers: tt.workers, Duration: 250 * time.Millisecond,
				Warmup: tt.warmup, Timeout: 5 * time.Second, Expect: tt.expect,
			}, nil)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			seen := uint64(srv.requests.Load())
			if res.Requests < 10 {
				t.Fatalf("Requests = %d, want a meaningful number", res.Requests)
			}
			if tt.warmup == 0 && (res.Requests > seen || seen-res.Requests > uint64(tt.workers)) {
				t.Errorf("Requests = %d, server saw %d (at most %d in flight may be discarded)", res.Requests, seen, tt.workers)
			}
			if res.TransportErrors != 0 {
				t.Errorf("TransportErrors = %d: %v", res.TransportErrors, res.TransportErrorSamples)
			}
			switch {
			case tt.wantNoErr && res.Errors != 0:
				t.Errorf("Errors = %d (%v), want 0", res.Errors, res.ErrorsByStatus)
			case tt.wantAllErr && (res.Errors != res.Requests || res.ErrorsByStatus[tt.wantErrCode] != res.Requests):
				t.Errorf("Errors = %d by status %v, want all %d as %d", res.Errors, res.ErrorsByStatus, res.Requests, tt.wantErrCode)
			case !tt.wantNoErr && !tt.wantAllErr:
				n := res.ErrorsByStatus[tt.wantErrCode]
				if n == 0 || n >= res.Requests || res.Errors != n {
					t.Errorf("ErrorsByStatus = %v, Errors = %d of %d", res.ErrorsByStatus, res.Errors, res.Requests)
				}
				if tt.wantErrN > 0 && n != tt.wantErrN {
					t.Errorf("ErrorsByStatus[%d] = %d, want %d", tt.wantErrCode, n, tt.wantErrN)
				}
			}
			if res.RPS <= 0 || res.Latency.P50 <= 0 || res.Latency.Max < res.Latency.P99 || res.Latency.P99 < res.Latency.P50 {
				t.Errorf("implausible stats: rps %v latency %+v", res.RPS, res.Latency)
			}
		})
	}
}

func TestRunReusesConnections(t *testing.T) {
	for _, workers := range []int{1, 4, 16} {
		srv := newCountingServer(t, func(int64) int { return 200 })
		res, err := Run(context.Background(), Config{
			URL: srv.URL, Workers: workers, Duration: 500 * time.Millisecond, Warmup: 50 * time.Millisecond,
		}, nil)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if res.Requests < uint64(workers)*3 { // several requests per connection
			t.Fatalf("c=%d: only %d requests", workers, res.Requests)
		}
		if got := srv.distinctConns(); got > workers {
			t.Errorf("c=%d: server saw %d connections for %d requests, want <= %d", workers, got, srv.requests.Load(), workers)
		}
	}
}

func TestRunRespectsDuration(t *testing.T) {
	tests := []struct {
		name     string
		handler  http.HandlerFunc
		duration time.Duration
		warmup   time.Duration
		wantReqs bool
	}{
		{
			name:     "fast server",
			handler:  func(w http.ResponseWriter, r *http.Request) {},
			duration: 300 * time.Millisecond, warmup: 100 * time.Millisecond, wantReqs: true,
		},
		{
			name: "server hangs longer than the run",
			handler: func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-time.After(10 * time.Second):
				}
			},
			duration: 300 * time.Millisecond, warmup: 100 * time.Millisecond,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			t.Cleanup(srv.Close)
			start := time.Now()
			res, err := Run(context.Background(), Config{
				URL: srv.URL, Workers: 4, Duration: tt.duration, Warmup: tt.warmup, Timeout: 30 * time.Second,
			}, nil)
			elapsed := time.Since(start)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if min := tt.duration + tt.warmup; elapsed < min || elapsed > min+time.Second {
				t.Errorf("Run took %v, want about %v", elapsed, min)
			}
			if res.DurationSeconds < tt.duration.Seconds()*0.9 || res.DurationSeconds > tt.duration.Seconds()*1.1 {
				t.Errorf("DurationSeconds = %v, want ~%v", res.DurationSeconds, tt.duration.Seconds())
			}
			if got := res.Requests > 0; got != tt.wantReqs {
				t.Errorf("Requests = %d, want >0: %v", res.Requests, tt.wantReqs)
			}
			if res.Errors != 0 || res.Interrupted {
				t.Errorf("Errors = %d (%v), Interrupted = %v; cut-off requests must be discarded", res.Errors, res.TransportErrorSamples, res.Interrupted)
			}
		})
	}
}

func TestRunInterrupted(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	res, err := Run(ctx, Config{URL: srv.URL, Workers: 2, Duration: time.Minute}, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Run took %v after cancellation", elapsed)
	}
	if !res.Interrupted || res.DurationSeconds > 1 || res.Requests == 0 || res.Errors != 0 {
		t.Errorf("got interrupted=%v duration=%v requests=%d errors=%d", res.Interrupted, res.DurationSeconds, res.Requests, res.Errors)
	}
}

func TestRunSendsRequestAsConfigured(t *testing.T) {
	const body = "grant_type=client_credentials"
	tests := []struct {
		name     string
		cfg      Config
		wantAuth string
	}{
		{
			name:     "bearer GET",
			cfg:      Config{Method: "GET", BearerToken: "tok123"},
			wantAuth: "Bearer tok123",
		},
		{
			name: "basic POST with body and headers",
			cfg: Config{
				Method: "post", Body: []byte(body), BasicAuthUser: "id", BasicAuthPass: "s3:cret",
				Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Host": {"idp.test"}},
			},
			wantAuth: "Basic aWQ6czM6Y3JldA==",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var bad atomic.Value
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				var problems []string
				if got := r.Header.Get("Authorization"); got != tt.wantAuth {
					problems = append(problems, "authorization "+got)
				}
				if r.Method != strings.ToUpper(tt.cfg.Method) {
					problems = append(problems, "method "+r.Method)
				}
				if !bytes.Equal(b, tt.cfg.Body) {
					problems = append(problems, "body "+string(b))
				}
				if h := tt.cfg.Header.Get("Host"); h != "" && r.Host != h {
					problems = append(problems, "host "+r.Host)
				}
				if ct := tt.cfg.Header.Get("Content-Type"); ct != "" && r.Header.Get("Content-Type") != ct {
					problems = append(problems, "content-type "+r.Header.Get("Content-Type"))
				}
				if r.Header.Get("Accept-Encoding") != "" {
					problems = append(problems, "compression requested")
				}
				if len(problems) > 0 {
					bad.Store(strings.Join(problems, "; "))
					w.WriteHeader(http.StatusBadRequest)
				}
			}))
			t.Cleanup(srv.Close)
			cfg := tt.cfg
			cfg.URL, cfg.Workers, cfg.Duration = srv.URL, 2, 100*time.Millisecond
			res, err := Run(context.Background(), cfg, nil)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if res.Requests == 0 || res.Errors != 0 {
				t.Errorf("requests %d errors %d; server: %v", res.Requests, res.Errors, bad.Load())
			}
		})
	}
}

func TestRunTransportErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens here any more: connection refused
	res, err := Run(context.Background(), Config{URL: "http://" + addr + "/", Workers: 2, Duration: 100 * time.Millisecond}, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.TransportErrors == 0 || res.Errors != res.Requests || res.Errors != res.TransportErrors {
		t.Errorf("transport %d errors %d requests %d", res.TransportErrors, res.Errors, res.Requests)
	}
	if len(res.TransportErrorSamples) == 0 || len(res.TransportErrorSamples) > maxErrorSamples*2 {
		t.Errorf("TransportErrorSamples = %v", res.TransportErrorSamples)
	}
}

func TestRunProgress(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(srv.Close)
	var buf bytes.Buffer
	_, err := Run(context.Background(), Config{URL: srv.URL, Workers: 2, Duration: 1100 * time.Millisecond, Progress: &buf}, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if lines := strings.Count(buf.String(), "req/s"); lines != 1 {
		t.Errorf("progress = %q, want exactly one line", buf.String())
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no url", Config{Workers: 1, Duration: time.Second}},
		{"relative url", Config{URL: "/x", Workers: 1, Duration: time.Second}},
		{"ftp url", Config{URL: "ftp://h/", Workers: 1, Duration: time.Second}},
		{"zero workers", Config{URL: "http://h/", Duration: time.Second}},
		{"zero duration", Config{URL: "http://h/", Workers: 1}},
		{"bad method", Config{URL: "http://h/", Workers: 1, Duration: time.Second, Method: "BREW"}},
		{"bad expect", Config{URL: "http://h/", Workers: 1, Duration: time.Second, Expect: 42}},
		{"basic and bearer", Config{URL: "http://h/", Workers: 1, Duration: time.Second, BasicAuthUser: "a", BearerToken: "t"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Run(context.Background(), tt.cfg, nil); err == nil {
				t.Error("Run succeeded, want a config error")
			}
		})
	}
}
