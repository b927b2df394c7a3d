package svcrun

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/cache"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/natsbus/natstest"
)

// loadingService is a service whose initial state loads when the test says
// so, and whose /slow request blocks until released (an in-flight request
// during shutdown).
type loadingService struct {
	loaded  atomic.Bool
	entered chan struct{}
	release chan struct{}
}

func newLoadingService() *loadingService {
	return &loadingService{entered: make(chan struct{}, 1), release: make(chan struct{})}
}

func (s *loadingService) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, _ *http.Request) {
		s.entered <- struct{}{}
		<-s.release
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

func (s *loadingService) Run(ctx context.Context) error { <-ctx.Done(); return nil }

func (s *loadingService) Checks() map[string]httpx.Check {
	return map[string]httpx.Check{"initial_state": func(context.Context) error {
		if !s.loaded.Load() {
			return io.ErrUnexpectedEOF
		}
		return nil
	}}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type servedService struct {
	svc      *loadingService
	pub      string
	internal string
	cancel   context.CancelFunc
	done     chan error
}

func serveForTest(t *testing.T, d *Deps) *servedService {
	t.Helper()
	pub, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	internal, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &servedService{svc: newLoadingService(), pub: "http://" + pub.Addr().String(),
		internal: "http://" + internal.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- Serve(ctx, d, s.svc, pub, internal, 10*time.Second) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.svc.release:
		default:
			close(s.svc.release)
		}
		<-s.done
	})
	return s
}

// A NATS or Redis outage used to make /health/ready answer 503 on every
// replica at once, emptying the Service although each replica kept serving
// (outbox, cache fallback). Readiness must stay 200 while /health/detailed
// says degraded and names the dependency, with agentidp_dependency_up 0.
func TestAttackDependencyBlipCannotEmptyEveryReplica(t *testing.T) {
	srv := natstest.Start(t)
	nc, err := natsbus.Connect(srv.URL(), "health-test", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	redisAddr := closedAddr(t)
	c, err := cache.NewRedis(cache.RedisOptions{URL: "redis://" + redisAddr + "/0", Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	d := &Deps{Service: "test", Logger: slog.New(slog.DiscardHandler), Registry: NewRegistry(), Cache: c, NATS: nc}
	s := serveForTest(t, d)
	s.svc.loaded.Store(true)

	waitFor(t, "internal port", func() bool {
		resp, err := http.Get(s.internal + "/health/live")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	if code, body := get(t, s.internal+"/health/ready"); code != http.StatusOK {
		t.Fatalf("Got(ready with Redis unreachable) = %d %s; want 200", code, body)
	}
	detailed := func() (int, httpx.Report, string) {
		t.Helper()
		code, body := get(t, s.internal+"/health/detailed")
		var rep httpx.Report
		if err := json.Unmarshal([]byte(body), &rep); err != nil {
			t.Fatalf("decode %s: %v", body, err)
		}
		return code, rep, body
	}
	code, rep, body := detailed()
	if code != http.StatusMultiStatus || rep.Status != httpx.StatusDegraded || !rep.Ready {
		t.Errorf("Got(detailed with Redis unreachable) = %d %s; want 207 degraded, ready", code, body)
	}
	if got := rep.Dependencies["cache"]; got.State != httpx.StateUnreachable || got.Error != "connection_refused" {
		t.Errorf("Got(cache) = %+v; want unreachable, connection_refused", got)
	}
	if got := rep.Dependencies["nats"]; got.State != httpx.StateHealthy {
		t.Errorf("Got(nats) = %+v; want healthy", got)
	}
	if strings.Contains(body, redisAddr) {
		t.Errorf("Got(detailed) = %s; names the Redis address", body)
	}

	srv.Shutdown()
	waitFor(t, "nats disconnected", func() bool { return !nc.IsConnected() })
	if code, body := get(t, s.internal+"/health/ready"); code != http.StatusOK {
		t.Fatalf("Got(ready with NATS down) = %d %s; want 200", code, body)
	}
	code, rep, body = detailed()
	if code != http.StatusMultiStatus || rep.Status != httpx.StatusDegraded {
		t.Errorf("Got(detailed with NATS down) = %d %s; want 207 degraded", code, body)
	}
	if got := rep.Dependencies["nats"]; got.State != httpx.StateUnreachable || got.Error != "reconnecting" {
		t.Errorf("Got(nats) = %+v; want unreachable, reconnecting", got)
	}
	_, metrics := get(t, s.internal+"/metrics")
	for _, want := range []string{`agentidp_dependency_up{dependency="cache"} 0`, `agentidp_dependency_up{dependency="nats"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("Got(metrics) without %q", want)
		}
	}
}

// Traffic must not reach a replica that has not loaded its initial state,
// nor one that is shutting down: readiness answers 503 before the initial
// load and from the moment shutdown begins, while in-flight requests still
// complete.
func TestAttackTrafficCannotReachStartingOrDrainingReplica(t *testing.T) {
	d := &Deps{Service: "test", Logger: slog.New(slog.DiscardHandler), Registry: NewRegistry()}
	s := serveForTest(t, d)
	waitFor(t, "internal port", func() bool {
		resp, err := http.Get(s.internal + "/health/live")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	if code, body := get(t, s.internal+"/health/ready"); code != http.StatusServiceUnavailable {
		t.Errorf("Got(ready before the initial load) = %d %s; want 503", code, body)
	}
	if code, body := get(t, s.internal+"/health/detailed"); code != http.StatusServiceUnavailable || !strings.Contains(body, `"status":"down"`) {
		t.Errorf("Got(detailed before the initial load) = %d %s; want 503 down", code, body)
	}
	s.svc.loaded.Store(true)
	if code, body := get(t, s.internal+"/health/ready"); code != http.StatusOK {
		t.Fatalf("Got(ready after the initial load) = %d %s; want 200", code, body)
	}

	inflight := make(chan int, 1)
	go func() {
		resp, err := http.Get(s.pub + "/slow")
		if err != nil {
			inflight <- 0
			return
		}
		resp.Body.Close()
		inflight <- resp.StatusCode
	}()
	<-s.svc.entered
	s.cancel()
	waitFor(t, "readiness 503 while draining", func() bool {
		code, _ := get(t, s.internal+"/health/ready")
		return code == http.StatusServiceUnavailable
	})
	if code, body := get(t, s.internal+"/health/ready"); code != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
		t.Errorf("Got(ready while draining) = %d %s; want 503 draining", code, body)
	}
	close(s.svc.release)
	if code := <-inflight; code != http.StatusNoContent {
		t.Errorf("Got(in-flight request during shutdown) = %d; want 204", code)
	}
	if err := <-s.done; err != nil {
		t.Errorf("Got(Serve) = %v; want nil", err)
	}
	s.done <- nil // for the cleanup
}

// consumerService is a served service with an event consumer whose state
// the test sets.
type consumerService struct {
	*loadingService
	state atomic.Pointer[natsbus.ConsumerState]
}

func (c *consumerService) ConsumerState() natsbus.ConsumerState { return *c.state.Load() }

// A consumer retrying through an outage shows in /health/detailed (207
// degraded, its state with the error category) and leaves readiness alone.
func TestConsumerStateInDetailedHealth(t *testing.T) {
	pub, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	internal, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := &consumerService{loadingService: newLoadingService()}
	svc.loaded.Store(true)
	svc.state.Store(&natsbus.ConsumerState{Durable: "audit", Retrying: true, ConsecutiveFailures: 7, LastErrorCategory: "dependency"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	d := &Deps{Service: "test", Logger: slog.New(slog.DiscardHandler), Registry: NewRegistry()}
	go func() { done <- Serve(ctx, d, svc, pub, internal, time.Second) }()
	t.Cleanup(func() { cancel(); close(svc.release); <-done })
	base := "http://" + internal.Addr().String()
	waitFor(t, "internal port", func() bool {
		resp, err := http.Get(base + "/health/live")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	detail := func() (int, httpx.DetailReport) {
		t.Helper()
		code, body := get(t, base+"/health/detailed")
		var rep httpx.Report
		if err := json.Unmarshal([]byte(body), &rep); err != nil {
			t.Fatalf("decode %s: %v", body, err)
		}
		return code, rep.Details["consumer:audit"]
	}
	if code, d := detail(); code != http.StatusMultiStatus || d.Error == "" || !strings.Contains(fmt.Sprint(d.Value), "dependency") {
		t.Errorf("Got(detailed while the consumer retries) = %d %+v; want 207 with the consumer's state and an error", code, d)
	}
	if code, body := get(t, base+"/health/ready"); code != http.StatusOK {
		t.Errorf("Got(ready while the consumer retries) = %d %s; want 200", code, body)
	}
	svc.state.Store(&natsbus.ConsumerState{Durable: "audit"})
	if code, d := detail(); code != http.StatusOK || d.Error != "" {
		t.Errorf("Got(detailed once the consumer recovered) = %d %+v; want 200 without error", code, d)
	}
}
