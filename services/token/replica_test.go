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
	"github.com/agentidp/agentidp/libs/revocation"
	lib "github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/token"
	"github.com/prometheus/client_golang/prometheus"
)

// TestAttackStaleReplicaCannotIssueRemovedScope: another replica removes
// admin:orgs from the admin agent and commits the agent watermark; this
// replica sees only the watermark (through NATS KV), not the agent.updated
// event. Its cached client record must go with the watermark, or it would
// go on signing admin:orgs tokens the watermark does not cover (issued
// after it) for the cache's whole lifetime.
func TestAttackStaleReplicaCannotIssueRemovedScope(t *testing.T) {
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
	nc, js := srv.Connect(t)
	codec, _ := authn.NewCodec(pepper)
	cfg := token.DefaultConfig()
	cfg.SecretPepper = pepper
	d := &svcrun.Deps{Service: "token", Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(),
		DB: db, Cache: cache.NewMemory(cache.MemoryOptions{}), NATS: nc, JS: js, Codec: codec}
	svc, err := token.New(ctx, cfg, d)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- svc.Run(ctx) }()
	orgs, err := natsbus.EnsureKV(ctx, js, events.OrgsBucket, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := orgs.Put(ctx, "org-1", []byte(`{"organizationId":"org-1","status":"active","limits":{"maxAgents":-1,"maxTokensPerDay":-1}}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the org read model", func() bool { return svc.Checks()["org_read_model"](ctx) == nil })
	issue := func() int {
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}, "scope": {"admin:orgs"}}
		req := httptest.NewRequest("POST", "/oauth2/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		svc.Handler().ServeHTTP(rec, req)
		return rec.Code
	}
	var wide, wideDefaults string
	if err := db.QueryRowContext(ctx, "SELECT scopes, default_scopes FROM agents WHERE agent_id = ?", id).Scan(&wide, &wideDefaults); err != nil {
		t.Fatal(err)
	}
	setScopes := func(scopes, defaults string) {
		t.Helper()
		if _, err := db.ExecContext(ctx, "UPDATE agents SET scopes = ?, default_scopes = ? WHERE agent_id = ?", scopes, defaults, id); err != nil {
			t.Fatal(err)
		}
	}
	// The other replica's commit is the narrowed row (and, below, the
	// watermark), no event. Wait until this replica holds the wide record
	// in its cache while the row is narrow (the bootstrap's own events
	// may drop the cache once first).
	var kv interface {
		Put(context.Context, string, []byte) (uint64, error)
	}
	waitFor(t, "the revocations bucket", func() bool {
		b, err := js.KeyValue(ctx, revocation.Bucket)
		if err != nil {
			return false
		}
		kv = b
		return true
	})
	waitFor(t, "a cached client record older than the row", func() bool {
		setScopes(wide, wideDefaults)
		if issue() != http.StatusOK {
			// A late invalidation cached the narrow row: drop it with a
			// watermark that revokes nothing (1970), and try again.
			if _, err := kv.Put(ctx, revocation.Key(revocation.KindAgent, id), revocation.FormatValue(1)); err != nil {
				t.Fatal(err)
			}
			return false
		}
		setScopes(`["agents:read"]`, `["agents:read"]`)
		return issue() == http.StatusOK
	})
	// The watermark is the other replica's commit instant, a little before
	// it reaches us.
	if _, err := kv.Put(ctx, revocation.Key(revocation.KindAgent, id), revocation.FormatValue(time.Now().Add(-50*time.Millisecond).UnixMilli())); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replica to refuse admin:orgs", func() bool { return issue() == http.StatusBadRequest })
	cancel()
	if err := <-runDone; err != nil {
		t.Errorf("Run() = %v", err)
	}
}
