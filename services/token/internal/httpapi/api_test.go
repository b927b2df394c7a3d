package httpapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/natsbus/natstest"
	lib "github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/services/token/internal/domain"
	"github.com/agentidp/agentidp/services/token/internal/httpapi"
	"github.com/agentidp/agentidp/services/token/internal/opa"
	"github.com/agentidp/agentidp/services/token/internal/sqlstore"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"os"
)

// memCounters is an in-process stand-in for libs/cache's counters.
type memCounters struct {
	mu       sync.Mutex
	m        map[string]int64
	v        map[string]string
	reserves int // ReserveUpTo round trips
	once     map[string]bool
	down     bool // every call fails, as with Redis away
}

var errCountersDown = errors.New("counters unreachable")

func (c *memCounters) SetValue(_ context.Context, k, v string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.v[k] = v
	return nil
}

func (c *memCounters) IncrBy(_ context.Context, k string, n int64, _ time.Time) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return 0, errCountersDown
	}
	c.m[k] += n
	return c.m[k], nil
}

func (c *memCounters) ReserveUpTo(_ context.Context, k string, n, limit int64, _ time.Time) (int64, int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return 0, 0, errCountersDown
	}
	c.reserves++
	g := max(min(n, limit-c.m[k]), 0)
	c.m[k] += g
	return g, c.m[k], nil
}

func (c *memCounters) IncrByOnce(_ context.Context, k, id string, n int64, _ time.Time) (bool, int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return false, 0, errCountersDown
	}
	if c.once == nil {
		c.once = map[string]bool{}
	}
	if c.once[k+"\x00"+id] {
		return false, c.m[k], nil
	}
	c.once[k+"\x00"+id] = true
	c.m[k] += n
	return true, c.m[k], nil
}

type env struct {
	h        http.Handler
	codec    *authn.Codec
	svc      *domain.Service
	js       jetstream.JetStream
	counters *memCounters
	keys     domain.KeyStore
}

var testKey = []byte("0123456789abcdef0123456789abcdef")

func newEnv(t testing.TB) *env { t.Helper(); return newEnvWith(t, nil) }

// newEnvWith builds the env with the store wrapped by wrap (nil: as is),
// and loads the revocation state as the assembly does at start.
func newEnvWith(t testing.TB, wrap func(domain.Store) domain.Store) *env {
	t.Helper()
	return newEnvFull(t, envOptions{wrap: wrap})
}

// envOptions configure newEnvFull; the zero value is newEnv.
type envOptions struct {
	wrap       func(domain.Store) domain.Store // the store as the service sees it
	tune       func(*domain.Settings)
	policy     domain.DelegationPolicy // nil: the embedded one
	replay     domain.ReplayCache
	federation domain.FederationExchanger
	stale      func() bool // Deps.RevocationsStale
}

// newEnvFull builds the service over SQLite and an in-process NATS server
// as the options say.
func newEnvFull(t testing.TB, o envOptions) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	db, err := lib.Open(ctx, lib.Config{Driver: lib.SQLite, URL: filepath.Join(t.TempDir(), "t.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, os.DirFS("../..")); err != nil {
		t.Fatal(err)
	}
	if err := db.EnsureOutbox(ctx); err != nil {
		t.Fatal(err)
	}
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	var store domain.Store = sqlstore.New(db)
	if o.wrap != nil {
		store = o.wrap(store)
	}
	keys, err := domain.NewSealedKeyStore(store, testKey)
	if err != nil {
		t.Fatal(err)
	}
	relay := lib.NewRelay(db, func(ctx context.Context, msgs []lib.OutboxMessage) error {
		raw := make([]natsbus.RawMessage, len(msgs))
		for i, m := range msgs {
			raw[i] = natsbus.RawMessage{ID: m.ID, Subject: m.Subject, Data: m.Data}
		}
		return natsbus.PublishRaw(ctx, js, raw)
	}, lib.RelayOptions{Logger: slog.New(slog.DiscardHandler)})
	done := make(chan struct{})
	go func() { defer close(done); _ = relay.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	pub := natsbus.NewAsyncPublisher(js, natsbus.AsyncOptions{})
	t.Cleanup(pub.Close)
	ctr := &memCounters{m: map[string]int64{}, v: map[string]string{}}
	orgs := domain.NewOrgModel(slog.New(slog.DiscardHandler))
	settings := domain.Settings{Issuer: "http://idp.test", Audience: "agentidp", TokenTTL: time.Hour, Alg: jose.ES256, Pepper: testKey}
	if o.tune != nil {
		o.tune(&settings)
	}
	policy := o.policy
	if policy == nil {
		p, err := opa.NewDelegation(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		policy = p
	}
	svc, err := domain.NewService(ctx, settings, domain.Deps{Store: store, Keys: keys, Counters: ctr, Orgs: orgs, Publisher: pub,
		Registry: prometheus.NewRegistry(), Notify: relay.Notify, Policy: policy, Replay: o.replay, Federation: o.federation,
		RevocationsStale: o.stale})
	if err != nil {
		t.Fatal(err)
	}
	_, _ = svc.LoadRevocations(ctx) // a failing store leaves the set not ready
	codec, _ := authn.NewCodec(testKey)
	return &env{h: httpapi.New(svc, slog.New(slog.DiscardHandler), nil, codec), codec: codec, svc: svc, js: js, counters: ctr, keys: keys}
}

var allScopes = []string{"agents:read", "agents:write", "tokens:read", "audit:read", "webhooks:read", "webhooks:write", "analytics:read"}

func (e *env) do(t testing.TB, method, path, org string, scopes []string, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if org != "" {
		v, err := e.codec.Sign(authn.Identity{Subject: "caller", OrgID: org, Scopes: scopes, ExpiresAt: time.Now().Add(time.Hour).Unix(),
			Method: req.Method, Path: req.URL.Path})
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(authn.Header, v)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}

func decode[T any](t testing.TB, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %q: %v", rec.Body.String(), err)
	}
	return v
}

const agentBody = `{"email":"%s","agentType":"screener","version":"1.2.3","capabilities":["agents:read"],"owner":"team","deploymentEnv":"production"%s}`

func body(email, extra string) string {
	return strings.Replace(strings.Replace(agentBody, "%s", email, 1), "%s", extra, 1)
}

func (e *env) createAgent(t testing.TB, org, email, extra string) domain.Agent {
	t.Helper()
	rec := e.do(t, "POST", "/api/v1/agents", org, allScopes, body(email, extra))
	if rec.Code != http.StatusCreated {
		t.Fatalf("create agent = %d %s; want 201", rec.Code, rec.Body)
	}
	return decode[domain.Agent](t, rec)
}

func (e *env) createCredential(t testing.TB, org, agentID, b string) domain.NewCredential {
	t.Helper()
	rec := e.do(t, "POST", "/api/v1/agents/"+agentID+"/credentials", org, allScopes, b)
	if rec.Code != http.StatusCreated {
		t.Fatalf("create credential = %d %s; want 201", rec.Code, rec.Body)
	}
	return decode[domain.NewCredential](t, rec)
}

type tokenReq struct {
	id, secret, scope string
	basic, hasScope   bool
}

func (e *env) token(t testing.TB, r tokenReq) *httptest.ResponseRecorder {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	if r.hasScope {
		form.Set("scope", r.scope)
	}
	if !r.basic {
		form.Set("client_id", r.id)
		form.Set("client_secret", r.secret)
	}
	req := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if r.basic {
		req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(r.id)+":"+url.QueryEscape(r.secret))))
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec
}
