package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingServer is an httptest server that counts the connections it
// accepted.
type countingServer struct {
	*httptest.Server
	conns atomic.Int32
}

func newCountingServer(t *testing.T, h http.HandlerFunc) *countingServer {
	t.Helper()
	s := &countingServer{Server: httptest.NewUnstartedServer(h)}
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// fallbackSpy records the requests handed to the fallback transport.
type fallbackSpy struct {
	calls atomic.Int32
	next  http.RoundTripper
}

func (f *fallbackSpy) RoundTrip(r *http.Request) (*http.Response, error) {
	f.calls.Add(1)
	return f.next.RoundTrip(r)
}

func newTestUpstreamTransport(t *testing.T) (*upstreamTransport, *fallbackSpy) {
	t.Helper()
	spy := &fallbackSpy{next: &http.Transport{}}
	tr := newUpstreamTransport(Config{UpstreamTimeout: 5 * time.Second, DialTimeout: time.Second}, spy)
	t.Cleanup(tr.CloseIdleConnections)
	return tr, spy
}

func roundTrip(t *testing.T, tr http.RoundTripper, method, target, body string) (*http.Response, string, error) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, target, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return nil, "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, string(b), nil
}

func echoHandler(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Header().Set("X-Method", r.Method)
	fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.RequestURI(), b)
}

func TestUpstreamTransportReusesOneConnection(t *testing.T) {
	t.Parallel()
	srv := newCountingServer(t, echoHandler)
	tr, spy := newTestUpstreamTransport(t)
	for i := range 20 {
		method, body := http.MethodGet, ""
		if i%2 == 1 {
			method, body = http.MethodPost, fmt.Sprintf("body-%d", i)
		}
		resp, got, err := roundTrip(t, tr, method, srv.URL+fmt.Sprintf("/p?i=%d", i), body)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		want := fmt.Sprintf("%s /p?i=%d %s", method, i, body)
		if resp.StatusCode != 200 || got != want || resp.Header.Get("X-Method") != method {
			t.Fatalf("request %d: %d %q, want 200 %q", i, resp.StatusCode, got, want)
		}
	}
	if n := srv.conns.Load(); n != 1 {
		t.Fatalf("upstream saw %d connections for 20 sequential requests, want 1", n)
	}
	if n := spy.calls.Load(); n != 0 {
		t.Fatalf("%d requests took the fallback path, want 0", n)
	}
}

func TestUpstreamTransportBodilessResponsesKeepTheConnection(t *testing.T) {
	t.Parallel()
	srv := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		default:
			w.Header().Set("Content-Length", "5")
			_, _ = w.Write([]byte("hello"))
		}
	})
	tr, _ := newTestUpstreamTransport(t)
	for _, c := range []struct{ method, path string }{
		{"HEAD", "/"}, {"GET", "/204"}, {"GET", "/304"}, {"GET", "/"}, {"HEAD", "/"},
	} {
		resp, body, err := roundTrip(t, tr, c.method, srv.URL+c.path, "")
		if err != nil {
			t.Fatalf("%s %s: %v", c.method, c.path, err)
		}
		if c.method == "HEAD" && body != "" || c.path == "/" && c.method == "GET" && body != "hello" {
			t.Fatalf("%s %s: body %q", c.method, c.path, body)
		}
		_ = resp
	}
	if n := srv.conns.Load(); n != 1 {
		t.Fatalf("upstream saw %d connections, want 1", n)
	}
}

func TestUpstreamTransportConnectionClosedWhileIdleIsNotUsed(t *testing.T) {
	t.Parallel()
	srv := newCountingServer(t, echoHandler)
	tr, _ := newTestUpstreamTransport(t)
	if _, _, err := roundTrip(t, tr, "GET", srv.URL+"/", ""); err != nil {
		t.Fatal(err)
	}
	// The upstream restarts or times the idle connection out.
	srv.CloseClientConnections()
	time.Sleep(20 * time.Millisecond) // let the FIN arrive
	// A POST is not replayable: it must not be sent on the dead connection.
	resp, got, err := roundTrip(t, tr, "POST", srv.URL+"/x", "payload")
	if err != nil {
		t.Fatalf("POST after the upstream closed the idle connection: %v", err)
	}
	if resp.StatusCode != 200 || got != "POST /x payload" {
		t.Fatalf("got %d %q", resp.StatusCode, got)
	}
	if n := srv.conns.Load(); n != 2 {
		t.Fatalf("upstream saw %d connections, want 2", n)
	}
}

// flakyUpstream answers the first request on its first connection, then
// reads the next request on that connection and closes it without an
// answer (as an upstream closing an idle connection at the moment a request
// arrives); later connections answer normally.
type flakyUpstream struct {
	ln       net.Listener
	requests atomic.Int32 // requests read, answered or not
	conns    atomic.Int32
}

func newFlakyUpstream(t *testing.T) *flakyUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &flakyUpstream{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := f.conns.Add(1)
			go f.serve(c, n == 1)
		}
	}()
	return f
}

func (f *flakyUpstream) serve(c net.Conn, drop bool) {
	defer c.Close()
	br := bufio.NewReader(c)
	for i := 0; ; i++ {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		f.requests.Add(1)
		if drop && i == 1 {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	}
}

func (f *flakyUpstream) url() string { return "http://" + f.ln.Addr().String() }

func TestUpstreamTransportRetriesOnlyReplayableRequests(t *testing.T) {
	t.Parallel()
	t.Run("GET is retried on a new connection", func(t *testing.T) {
		t.Parallel()
		f := newFlakyUpstream(t)
		tr, _ := newTestUpstreamTransport(t)
		for i := range 2 {
			resp, body, err := roundTrip(t, tr, "GET", f.url()+"/", "")
			if err != nil || resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("GET %d: %v", i, err)
			}
		}
		if c, r := f.conns.Load(), f.requests.Load(); c != 2 || r != 3 {
			t.Fatalf("connections %d requests %d, want 2 and 3 (one retry)", c, r)
		}
	})
	t.Run("POST is not sent twice", func(t *testing.T) {
		t.Parallel()
		f := newFlakyUpstream(t)
		tr, _ := newTestUpstreamTransport(t)
		if _, _, err := roundTrip(t, tr, "GET", f.url()+"/", ""); err != nil {
			t.Fatal(err)
		}
		_, _, err := roundTrip(t, tr, "POST", f.url()+"/", "grant_type=client_credentials")
		if err == nil {
			t.Fatal("POST lost by the upstream reported success")
		}
		if c, r := f.conns.Load(), f.requests.Load(); c != 1 || r != 2 {
			t.Fatalf("connections %d requests %d, want 1 and 2 (no retry)", c, r)
		}
	})
	t.Run("POST with an idempotency key is retried", func(t *testing.T) {
		t.Parallel()
		f := newFlakyUpstream(t)
		tr, _ := newTestUpstreamTransport(t)
		if _, _, err := roundTrip(t, tr, "GET", f.url()+"/", ""); err != nil {
			t.Fatal(err)
		}
		req, _ := http.NewRequest("POST", f.url()+"/", nil)
		req.Header.Set("Idempotency-Key", "k1")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if c, r := f.conns.Load(), f.requests.Load(); c != 2 || r != 3 {
			t.Fatalf("connections %d requests %d, want 2 and 3", c, r)
		}
	})
}

func TestUpstreamTransportHeaderTimeoutAndCancellation(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var closed atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			closed.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(func() { close(release); srv.Close() })

	tr := newUpstreamTransport(Config{UpstreamTimeout: 50 * time.Millisecond, DialTimeout: time.Second}, http.DefaultTransport)
	t.Cleanup(tr.CloseIdleConnections)
	if _, _, err := roundTrip(t, tr, "GET", srv.URL+"/", ""); !errors.Is(err, errHeaderTimeout) {
		t.Fatalf("hanging upstream: err %v, want %v", err, errHeaderTimeout)
	}

	tr = newUpstreamTransport(Config{UpstreamTimeout: time.Minute, DialTimeout: time.Second}, http.DefaultTransport)
	t.Cleanup(tr.CloseIdleConnections)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/", nil)
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := tr.RoundTrip(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: err %v, want context.Canceled", err)
	}
	// Both abandoned connections are closed, not pooled.
	waitFor(t, func() bool { return closed.Load() == 2 })
	tr.mu.Lock()
	idle := len(tr.idle)
	tr.mu.Unlock()
	if idle != 0 {
		t.Fatalf("%d idle entries after failed round trips", idle)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestUpstreamTransportUnfinishedBodyClosesTheConnection(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 1<<20)
	srv := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		_, _ = io.WriteString(w, big)
	})
	tr, _ := newTestUpstreamTransport(t)
	req, _ := http.NewRequest("GET", srv.URL+"/big", nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := resp.Body.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close() // 1 MiB minus 10 bytes unread: must not be drained
	if _, body, err := roundTrip(t, tr, "GET", srv.URL+"/close", ""); err != nil || len(body) != len(big) {
		t.Fatalf("second request: %v (%d bytes)", err, len(body))
	}
	if _, body, err := roundTrip(t, tr, "GET", srv.URL+"/big", ""); err != nil || body != big {
		t.Fatalf("third request: %v", err)
	}
	// 1: abandoned mid-body; 2: "Connection: close"; 3: fresh.
	if n := srv.conns.Load(); n != 3 {
		t.Fatalf("upstream saw %d connections, want 3", n)
	}
}

func TestUpstreamTransportSkipsInterimResponses(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"+
			"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone")
	}()
	tr, _ := newTestUpstreamTransport(t)
	resp, body, err := roundTrip(t, tr, "GET", "http://"+ln.Addr().String()+"/", "")
	if err != nil || resp.StatusCode != 201 || body != "done" {
		t.Fatalf("got %v %v %q, want 201 done", resp, err, body)
	}
}

func TestUpstreamTransportFallbackForUncommonRequests(t *testing.T) {
	t.Parallel()
	srv := newCountingServer(t, echoHandler)
	tr, spy := newTestUpstreamTransport(t)

	// A body larger than maxDirectBody, and one of unknown length.
	big := strings.Repeat("b", maxDirectBody+1)
	if resp, got, err := roundTrip(t, tr, "POST", srv.URL+"/big", big); err != nil || resp.StatusCode != 200 || got != "POST /big "+big {
		t.Fatalf("large body: %v", err)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/chunked", io.NopCloser(strings.NewReader("streamed")))
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "POST /chunked streamed" {
		t.Fatalf("chunked body: %q", b)
	}
	// A protocol upgrade.
	req, _ = http.NewRequest("GET", srv.URL+"/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	if resp, err = tr.RoundTrip(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := spy.calls.Load(); n != 3 {
		t.Fatalf("fallback carried %d requests, want 3", n)
	}
	// The common case stays off the fallback.
	if _, _, err := roundTrip(t, tr, "POST", srv.URL+"/small", "a=b"); err != nil {
		t.Fatal(err)
	}
	if n := spy.calls.Load(); n != 3 {
		t.Fatalf("small POST took the fallback path")
	}
}

func TestUpstreamTransportDropsConnectionsIdleTooLong(t *testing.T) {
	t.Parallel()
	srv := newCountingServer(t, echoHandler)
	tr, _ := newTestUpstreamTransport(t)
	var mu sync.Mutex
	now := time.Now()
	tr.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	for range 2 {
		if _, _, err := roundTrip(t, tr, "GET", srv.URL+"/", ""); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	now = now.Add(tr.idleTimeout)
	mu.Unlock()
	if _, _, err := roundTrip(t, tr, "GET", srv.URL+"/", ""); err != nil {
		t.Fatal(err)
	}
	if n := srv.conns.Load(); n != 2 {
		t.Fatalf("upstream saw %d connections, want 2 (the idle one expired)", n)
	}
}

// Through the reverse proxy the gateway builds: chunked responses with
// trailers, status codes and headers pass unchanged on the direct path.
func TestProxyOverUpstreamTransportPassesResponsesThrough(t *testing.T) {
	t.Parallel()
	srv := newCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		for i := range 3 {
			fmt.Fprintf(w, `{"part":%d}`, i)
			w.(http.Flusher).Flush()
		}
		w.Header().Set("X-Checksum", "abc")
	})
	tr, spy := newTestUpstreamTransport(t)
	target, _ := url.Parse(srv.URL)
	proxy := newProxy(target, tr, newBufferPool(), slog.New(slog.DiscardHandler), "test")
	front := httptest.NewServer(proxy)
	t.Cleanup(front.Close)
	for range 3 {
		resp, err := http.Get(front.URL + "/stream")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 202 || string(b) != `{"part":0}{"part":1}{"part":2}` ||
			resp.Header.Get("Content-Type") != "application/json" || resp.Trailer.Get("X-Checksum") != "abc" {
			t.Fatalf("got %d %q trailer %v", resp.StatusCode, b, resp.Trailer)
		}
	}
	if srv.conns.Load() != 1 || spy.calls.Load() != 0 {
		t.Fatalf("connections %d fallback %d, want 1 and 0", srv.conns.Load(), spy.calls.Load())
	}
}

// Many concurrent callers through the proxy, mixing the direct path and the
// fallback: every answer belongs to its own request, and the pool keeps at
// most maxIdle connections.
func TestUpstreamTransportConcurrentMixedRequests(t *testing.T) {
	t.Parallel()
	srv := newCountingServer(t, echoHandler)
	tr, spy := newTestUpstreamTransport(t)
	tr.maxIdle = 8
	target, _ := url.Parse(srv.URL)
	proxy := newProxy(target, tr, newBufferPool(), slog.New(slog.DiscardHandler), "test")
	front := httptest.NewServer(proxy)
	t.Cleanup(front.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	big := strings.Repeat("z", maxDirectBody+10)
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				var resp *http.Response
				var err error
				var want string
				switch i % 4 {
				case 0, 1:
					resp, err = client.Get(fmt.Sprintf("%s/g/%d/%d", front.URL, w, i))
					want = fmt.Sprintf("GET /g/%d/%d ", w, i)
				case 2:
					body := fmt.Sprintf("small-%d-%d", w, i)
					resp, err = client.Post(front.URL+"/p", "text/plain", strings.NewReader(body))
					want = "POST /p " + body
				default:
					resp, err = client.Post(front.URL+"/big", "text/plain", strings.NewReader(big))
					want = "POST /big " + big
				}
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(b) != want {
					t.Errorf("worker %d request %d: %d %.60q, want %.60q", w, i, resp.StatusCode, b, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := spy.calls.Load(); n != 32*10 {
		t.Errorf("fallback carried %d requests, want %d (the large bodies)", n, 32*10)
	}
	tr.mu.Lock()
	idle := len(tr.idle[target.Host])
	tr.mu.Unlock()
	if idle > tr.maxIdle {
		t.Errorf("%d idle connections pooled, more than maxIdle %d", idle, tr.maxIdle)
	}
}
