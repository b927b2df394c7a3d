package token_test

import (
	"context"
	"encoding/json"
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
	"github.com/agentidp/agentidp/libs/config"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/natsbus/natstest"
	lib "github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/token"
	"github.com/prometheus/client_golang/prometheus"
)

// TestAssembly runs the real assembly (New + Run) on SQLite, the in-memory
// cache and embedded NATS: bootstrap an admin, issue a token, see the org
// read model become ready, and see a revocation published by another
// replica (here: a raw event) drop the cached client.
func TestAssembly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := lib.Open(ctx, lib.Config{Driver: lib.SQLite, URL: filepath.Join(t.TempDir(), "token.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pepper := []byte("0123456789abcdef0123456789abcdef")
	id, secret, created, err := token.Bootstrap(ctx, db, pepper, "org-1", "admin@example.com")
	if err != nil || !created || secret == "" {
		t.Fatalf("Bootstrap() = %s, %v, %v", id, created, err)
	}
	if id2, s2, created2, err := token.Bootstrap(ctx, db, pepper, "org-1", "admin@example.com"); err != nil || created2 || s2 != "" || id2 != id {
		t.Fatalf("Bootstrap(again) = %s, %q, %v, %v; want same id, no secret", id2, s2, created2, err)
	}
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	codec, _ := authn.NewCodec(pepper)
	mem := cache.NewMemory(cache.MemoryOptions{})
	cfg := token.DefaultConfig()
	cfg.SecretPepper = pepper
	d := &svcrun.Deps{Service: "token", Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(),
		DB: db, Cache: mem, NATS: nc, JS: js, Codec: codec}
	svc, err := token.New(ctx, cfg, d)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- svc.Run(ctx) }()
	kv, err := natsbus.EnsureKV(ctx, js, events.OrgsBucket, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "org-1", []byte(`{"organizationId":"org-1","status":"active","limits":{"maxAgents":-1,"maxTokensPerDay":-1}}`)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for svc.Checks()["org_read_model"](ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatal("org read model never ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	issue := func() int {
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}, "scope": {"admin:orgs"}}
		req := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		svc.Handler().ServeHTTP(rec, req)
		return rec.Code
	}
	if code := issue(); code != http.StatusOK {
		t.Fatalf("token = %d; want 200", code)
	}
	// Unlimited organisations' counts are batched (flushed every 250ms);
	// limited ones are counted at issuance. Either way the count arrives.
	day := time.Now().UTC().Format("20060102")
	deadline = time.Now().Add(3 * time.Second)
	for {
		n, _ := mem.Counters(ctx, "usage:tokens:org-1:"+day)
		if len(n) == 1 && n[0] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage:tokens counter = %v; want [1]", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Another replica revokes the credential: only the event reaches us.
	if _, err := db.ExecContext(ctx, "UPDATE credentials SET status = 'revoked'"); err != nil {
		t.Fatal(err)
	}
	ev, _ := events.New(events.CredentialRevoked, "token", "org-1", id, events.CredentialData{AgentID: id})
	raw, _ := json.Marshal(ev)
	if err := nc.Publish(events.CredentialRevoked.Subject(), raw); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(2 * time.Second)
	for issue() != http.StatusUnauthorized {
		if time.Now().After(deadline) {
			t.Fatal("revocation event did not drop the cached client")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-runDone; err != nil {
		t.Errorf("Run() = %v", err)
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		wantErr bool
	}{
		{"missing secrets", map[string]string{}, true},
		{"ok", map[string]string{"TOKEN_SECRET_PEPPER": strings.Repeat("ab", 32), "TOKEN_KEY_ENCRYPTION_KEY": strings.Repeat("cd", 32), "TOKEN_SIGNING_ALG": "EdDSA"}, false},
		{"bad alg", map[string]string{"TOKEN_SECRET_PEPPER": strings.Repeat("ab", 32), "TOKEN_KEY_ENCRYPTION_KEY": strings.Repeat("cd", 32), "TOKEN_SIGNING_ALG": "HS256"}, true},
		{"long kek", map[string]string{"TOKEN_SECRET_PEPPER": strings.Repeat("ab", 32), "TOKEN_KEY_ENCRYPTION_KEY": strings.Repeat("cd", 40)}, true},
		{"bad rotation grace", map[string]string{"TOKEN_SECRET_PEPPER": strings.Repeat("ab", 32), "TOKEN_KEY_ENCRYPTION_KEY": strings.Repeat("cd", 32), "TOKEN_ROTATION_GRACE": "soon"}, true},
		{"negative auth fail limit", map[string]string{"TOKEN_SECRET_PEPPER": strings.Repeat("ab", 32), "TOKEN_KEY_ENCRYPTION_KEY": strings.Repeat("cd", 32), "TOKEN_AUTH_FAIL_CLIENT_LIMIT": "-1"}, true},
		{"auth fail window too short", map[string]string{"TOKEN_SECRET_PEPPER": strings.Repeat("ab", 32), "TOKEN_KEY_ENCRYPTION_KEY": strings.Repeat("cd", 32), "TOKEN_AUTH_FAIL_WINDOW": "10ms"}, true},
		{"auth fail limits", map[string]string{"TOKEN_SECRET_PEPPER": strings.Repeat("ab", 32), "TOKEN_KEY_ENCRYPTION_KEY": strings.Repeat("cd", 32), "TOKEN_AUTH_FAIL_CLIENT_LIMIT": "5", "TOKEN_AUTH_FAIL_ADDR_LIMIT": "0", "TOKEN_AUTH_FAIL_WINDOW": "5m"}, false},
	}
	for _, tc := range tests {
		env := config.New(func(k string) string { return tc.env[k] })
		token.ConfigFromEnv(env)
		if got := env.Err() != nil; got != tc.wantErr {
			t.Errorf("%s: ConfigFromEnv() error = %v; want error %v", tc.name, env.Err(), tc.wantErr)
		}
	}
	env := config.New(func(k string) string {
		return map[string]string{"TOKEN_SECRET_PEPPER": strings.Repeat("ab", 32), "TOKEN_KEY_ENCRYPTION_KEY": strings.Repeat("cd", 32),
			"TOKEN_ROTATION_GRACE": "90s", "TOKEN_DELEGATION_MAX_DEPTH": "2"}[k]
	})
	if cfg := token.ConfigFromEnv(env); cfg.RotationGrace != 90*time.Second || cfg.MaxDelegationDepth != 2 || env.Err() != nil {
		t.Errorf("ConfigFromEnv() = grace %v, depth %d, err %v; want 90s, 2, nil", cfg.RotationGrace, cfg.MaxDelegationDepth, env.Err())
	}
}

// TestKVReplicasFollowNATSStreamReplicas: the token service ensures the
// revocations and organisations buckets at every start; with a replica
// count other than the cluster's (it used to be always 1) each start of a
// token replica shrank the R3 buckets tier and the gateway had created to
// one replica, which the fault suite saw as a stream remapping and tier
// writes timing out.
func TestKVReplicasFollowNATSStreamReplicas(t *testing.T) {
	t.Parallel()
	base := map[string]string{"TOKEN_SECRET_PEPPER": strings.Repeat("ab", 32), "TOKEN_KEY_ENCRYPTION_KEY": strings.Repeat("cd", 32)}
	for _, tc := range []struct {
		replicas string
		want     int
		wantErr  bool
	}{{"", 1, false}, {"3", 3, false}, {"0", 0, true}} {
		env := config.New(func(k string) string {
			if k == "NATS_STREAM_REPLICAS" {
				return tc.replicas
			}
			return base[k]
		})
		cfg := token.ConfigFromEnv(env)
		if (env.Err() != nil) != tc.wantErr || !tc.wantErr && cfg.KVReplicas != tc.want {
			t.Errorf("NATS_STREAM_REPLICAS=%q: KVReplicas = %d, err %v; want %d, error %v", tc.replicas, cfg.KVReplicas, env.Err(), tc.want, tc.wantErr)
		}
	}
}
