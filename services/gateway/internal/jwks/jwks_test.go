package jwks_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/services/gateway/internal/jwks"
)

type server struct {
	srv     *httptest.Server
	fetches atomic.Int64
	fail    atomic.Bool
	jwk     jose.JWK
}

func newServer(t *testing.T, delay time.Duration) *server {
	t.Helper()
	k, err := jose.GenerateKey(jose.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{}
	if s.jwk, err = k.PublicJWK(); err != nil {
		t.Fatal(err)
	}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		time.Sleep(delay)
		if s.fail.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(jose.JWKS{Keys: []jose.JWK{s.jwk}})
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func TestConcurrentUnknownKidsShareOneFetch(t *testing.T) {
	t.Parallel()
	s := newServer(t, 50*time.Millisecond)
	c := jwks.New(jwks.Options{URL: s.srv.URL, MinInterval: time.Hour})
	var wg sync.WaitGroup
	var found atomic.Int64
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c.RefreshForKid(context.Background(), s.jwk.Kid) {
				found.Add(1)
			}
		}()
	}
	wg.Wait()
	if got := s.fetches.Load(); got != 1 {
		t.Errorf("Got(fetches) = %d; want 1", got)
	}
	// Callers that arrived during the fetch waited for it; none that came
	// after the interval started could trigger another.
	if found.Load() == 0 {
		t.Errorf("Got(found) = 0; want the concurrent callers to see the fetched key")
	}
	for i := 0; i < 20; i++ {
		if c.RefreshForKid(context.Background(), "random-kid") {
			t.Fatal("Got(random kid found) = true; want false")
		}
	}
	if got := s.fetches.Load(); got != 1 {
		t.Errorf("Got(fetches after 20 random kids within the interval) = %d; want 1", got)
	}
}

func TestFailedRefreshKeepsKeys(t *testing.T) {
	t.Parallel()
	s := newServer(t, 0)
	c := jwks.New(jwks.Options{URL: s.srv.URL})
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.fail.Store(true)
	if err := c.Refresh(context.Background()); err == nil {
		t.Error("Got(Refresh against a failing server) = nil; want error")
	}
	if _, ok := c.Key(s.jwk.Kid); !ok {
		t.Error("Got(key after failed refresh) = missing; want kept")
	}
}

func TestRunRetriesUntilLoaded(t *testing.T) {
	t.Parallel()
	s := newServer(t, 0)
	s.fail.Store(true)
	c := jwks.New(jwks.Options{URL: s.srv.URL})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx, time.Hour, 20*time.Millisecond) }()
	defer func() { cancel(); <-done }()
	time.Sleep(100 * time.Millisecond)
	if c.Loaded() {
		t.Fatal("Got(Loaded) = true while the server fails; want false")
	}
	s.fail.Store(false)
	deadline := time.Now().Add(5 * time.Second)
	for !c.Loaded() {
		if time.Now().After(deadline) {
			t.Fatal("keys never loaded")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
