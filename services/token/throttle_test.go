package token_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/cache"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/natsbus/natstest"
	lib "github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/libs/testkit"
	"github.com/agentidp/agentidp/services/token"
	"github.com/prometheus/client_golang/prometheus"
)

// TestAttackBruteForceSpreadOverReplicas: an attacker spreading wrong
// secrets over two token-service replicas meets one limit, because the
// failures are counted in the shared cache; the replica whose count
// reaches the limit tells the other over NATS, so the right secret is
// refused on both during the window. Run over the in-process cache (dev)
// and Redis (production).
func TestAttackBruteForceSpreadOverReplicas(t *testing.T) {
	t.Parallel()
	caches := map[string]func(t *testing.T) cache.Cache{
		"memory": func(t *testing.T) cache.Cache { return cache.NewMemory(cache.MemoryOptions{}) },
		"redis": func(t *testing.T) cache.Cache {
			c, err := cache.NewRedis(cache.RedisOptions{URL: testkit.RedisURL(t), Prefix: testkit.RedisPrefix(t)})
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
	}
	for name, newCache := range caches {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			shared := newCache(t)
			t.Cleanup(func() { _ = shared.Close() })
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			db, err := lib.Open(ctx, lib.Config{Driver: lib.SQLite, URL: filepath.Join(t.TempDir(), "token.db")})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			pepper := []byte("0123456789abcdef0123456789abcdef")
			id, secret, _, err := token.Bootstrap(ctx, db, pepper, "org-1", "admin@example.com")
			if err != nil {
				t.Fatal(err)
			}
			srv := natstest.Start(t)
			// A fixed instant 10 s into the next minute: the window ends 50 s
			// later, in the future for the caches' own expiry.
			now := time.Now().UTC().Truncate(time.Minute).Add(time.Minute + 10*time.Second)
			a := startReplica(t, ctx, db, shared, srv, pepper, now)
			b := startReplica(t, ctx, db, shared, srv, pepper, now)
			post := func(r *token.Service, secret string) *httptest.ResponseRecorder {
				form := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}
				req := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				rec := httptest.NewRecorder()
				r.Handler().ServeHTTP(rec, req)
				return rec
			}
			// 9 failures spread over both replicas: neither has seen 10.
			for i := range 9 {
				r := a
				if i%2 == 1 {
					r = b
				}
				if rec := post(r, "ais_wrong"); rec.Code != http.StatusUnauthorized {
					t.Fatalf("failure %d = %d %s; want 401", i+1, rec.Code, rec.Body)
				}
			}
			if a.AuthBlockedForTest(id, "") != 0 || b.AuthBlockedForTest(id, "") != 0 {
				t.Fatal("blocked after 9 failures; want the limit of 10 counted across replicas")
			}
			// The 10th, on a, reaches the shared limit: a blocks, and b hears.
			if rec := post(a, "ais_wrong"); rec.Code != http.StatusUnauthorized {
				t.Fatalf("failure 10 = %d %s; want 401", rec.Code, rec.Body)
			}
			if got := a.AuthBlockedForTest(id, ""); got != 50*time.Second {
				t.Fatalf("Got(a blocked for) = %v; want 50s", got)
			}
			waitFor(t, "replica b to hear of the block", func() bool { return b.AuthBlockedForTest(id, "") == 50*time.Second })
			for name, r := range map[string]*token.Service{"a": a, "b": b} {
				rec := post(r, secret)
				if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "50" {
					t.Errorf("Got(right secret on %s during the window) = %d %s Retry-After %q; want 429, 50", name, rec.Code, rec.Body, rec.Header().Get("Retry-After"))
				}
			}
		})
	}
}

// startReplica runs one token-service replica over the shared database,
// cache and NATS server, with its clock fixed at now.
func startReplica(t *testing.T, ctx context.Context, db *lib.DB, shared cache.Cache, srv *natstest.Server, pepper []byte, now time.Time) *token.Service {
	t.Helper()
	nc, js := srv.Connect(t)
	codec, _ := authn.NewCodec(pepper)
	cfg := token.DefaultConfig()
	cfg.SecretPepper = pepper
	d := &svcrun.Deps{Service: "token", Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(),
		DB: db, Cache: shared, NATS: nc, JS: js, Codec: codec}
	svc, err := token.New(ctx, cfg, d)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	svc.SetClockForTest(func() time.Time { return now })
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	kv, err := natsbus.EnsureKV(ctx, js, events.OrgsBucket, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "org-1", []byte(`{"organizationId":"org-1","status":"active","limits":{"maxAgents":-1,"maxTokensPerDay":-1}}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replica to be ready", func() bool {
		for _, check := range svc.Checks() {
			if check(ctx) != nil {
				return false
			}
		}
		return true
	})
	return svc
}
