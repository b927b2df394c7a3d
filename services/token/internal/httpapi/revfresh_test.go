package httpapi_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/revocation"
	"github.com/agentidp/agentidp/services/token/internal/domain"
)

// flakyRevocations fails ListRevocations on demand (the database away).
type flakyRevocations struct {
	domain.Store
	down *atomic.Bool
}

func (f flakyRevocations) ListRevocations(ctx context.Context, now time.Time) ([]domain.Revocation, error) {
	if f.down.Load() {
		return nil, errors.New("database unavailable")
	}
	return f.Store.ListRevocations(ctx, now)
}

func jtiOf(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		JTI string `json:"jti"`
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c.JTI
}

// TestAttackReplicaCutFromNATSIntrospectsRevokedTokenActive: another
// replica revoked a token (committed in the shared database) while this
// replica's NATS KV feed is silent, so its in-memory set never heard of
// it. Gateways fall back to introspection exactly then: the answer must
// come from the database, not from the stale set.
func TestAttackReplicaCutFromNATSIntrospectsRevokedTokenActive(t *testing.T) {
	var stale, dbDown atomic.Bool
	var store domain.Store
	e := newEnvFull(t, envOptions{stale: stale.Load, wrap: func(s domain.Store) domain.Store {
		store = s
		return flakyRevocations{Store: s, down: &dbDown}
	}})
	tok, _, _ := e.issue(t, "org-1", "a@example.com")
	if got := e.introspect(t, "org-1", tok); got["active"] != true {
		t.Fatalf("introspect(before) = %v; want active", got)
	}
	// The other replica's commit; its mirror put never reaches us.
	rev := domain.Revocation{Kind: revocation.KindJTI, Key: jtiOf(t, tok), NotBefore: time.Now().UnixMilli(),
		ExpiresAt: time.Now().Add(2 * time.Hour)}
	if err := store.AddRevocations(context.Background(), []domain.Revocation{rev}, nil); err != nil {
		t.Fatal(err)
	}
	stale.Store(true)
	// The database away as well: no answer rather than a wrong one.
	dbDown.Store(true)
	rec := e.form(t, "/oauth2/introspect", "org-1", []string{"tokens:read"}, url.Values{"token": {tok}}.Encode())
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("introspect(stale feed, database down) = %d Retry-After %q %s; want 503 with Retry-After",
			rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	dbDown.Store(false)
	if got := e.introspect(t, "org-1", tok); got["active"] != false {
		t.Fatalf("introspect(stale feed) = %v; want inactive (revoked in the database)", got)
	}
}

// TestAttackGatewayFallbackAnsweredFromLaggingFeed: a gateway's fallback
// introspection arrives while this replica's feed still looks fresh but
// has not delivered another replica's revocation yet. The gateway caches
// the answer for its whole staleness bound, so it must come from the
// database, not from the feed.
func TestAttackGatewayFallbackAnsweredFromLaggingFeed(t *testing.T) {
	var store domain.Store
	e := newEnvFull(t, envOptions{stale: func() bool { return false }, wrap: func(s domain.Store) domain.Store {
		store = s
		return s
	}})
	tok, _, _ := e.issue(t, "org-1", "a@example.com")
	rev := domain.Revocation{Kind: revocation.KindJTI, Key: jtiOf(t, tok), NotBefore: time.Now().UnixMilli(),
		ExpiresAt: time.Now().Add(2 * time.Hour)}
	if err := store.AddRevocations(context.Background(), []domain.Revocation{rev}, nil); err != nil {
		t.Fatal(err)
	}
	// An ordinary caller gets the in-memory answer (the feed looks fresh).
	if got := e.introspect(t, "org-1", tok); got["active"] != true {
		t.Fatalf("introspect(agent, fresh feed) = %v; want active (the feed has not delivered it)", got)
	}
	v, err := e.codec.Sign(authn.Identity{Subject: revocation.FallbackCaller, OrgID: "org-1", Scopes: []string{"tokens:read"},
		ExpiresAt: time.Now().Add(time.Minute).Unix(), Method: "POST", Path: "/oauth2/introspect"})
	if err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("POST", "/oauth2/introspect", strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set(authn.Header, v)
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != http.StatusOK || got["active"] != false {
		t.Fatalf("introspect(gateway fallback) = %d %s; want 200 inactive", rec.Code, rec.Body)
	}
}
