// Package storetest is the conformance suite for domain.Store: every
// backend's test calls Run.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/revocation"
	"github.com/agentidp/agentidp/services/token/internal/domain"
	"github.com/google/uuid"
)

// Run runs the suite; newStore returns an empty store per call.
func Run(t *testing.T, newStore func(t *testing.T) domain.Store) {
	t.Run("AgentLifecycle", func(t *testing.T) { testAgentLifecycle(t, newStore(t)) })
	t.Run("AgentLimit", func(t *testing.T) { testAgentLimit(t, newStore(t)) })
	t.Run("ListAgents", func(t *testing.T) { testList(t, newStore(t)) })
	t.Run("Credentials", func(t *testing.T) { testCredentials(t, newStore(t)) })
	t.Run("SigningKeys", func(t *testing.T) { testSigningKeys(t, newStore(t)) })
	t.Run("Revocations", func(t *testing.T) { testRevocations(t, newStore(t)) })
	t.Run("CountAgentsByOrg", func(t *testing.T) { testCountAgentsByOrg(t, newStore(t)) })
}

var base = time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)

func agent(org, email string, at time.Time) domain.Agent {
	return domain.Agent{AgentID: uuid.Must(uuid.NewV7()).String(), Email: email, AgentType: "custom", Version: "1.0.0",
		Capabilities: []string{"a:b"}, Owner: "o", DeploymentEnv: "development", Status: domain.StatusActive,
		OrganizationID: org, Scopes: []string{"agents:read"}, DefaultScopes: []string{"agents:read"}, CreatedAt: at, UpdatedAt: at}
}

func ev(t *testing.T, a domain.Agent) []events.Envelope {
	t.Helper()
	e, err := events.New(events.AgentCreated, "test", a.OrganizationID, a.AgentID, events.AgentData{AgentID: a.AgentID})
	if err != nil {
		t.Fatal(err)
	}
	return []events.Envelope{e}
}

func mustCreate(t *testing.T, s domain.Store, a domain.Agent) {
	t.Helper()
	if _, err := s.CreateAgent(context.Background(), a, -1, ev(t, a)); err != nil {
		t.Fatalf("CreateAgent(%s) = %v", a.Email, err)
	}
}

func testAgentLifecycle(t *testing.T, s domain.Store) {
	ctx := context.Background()
	a := agent("org-1", "a@example.com", base)
	n, err := s.CreateAgent(ctx, a, 5, ev(t, a))
	if err != nil || n != 1 {
		t.Fatalf("CreateAgent() = %d, %v; want 1, nil", n, err)
	}
	got, err := s.GetAgent(ctx, "org-1", a.AgentID)
	if err != nil {
		t.Fatalf("GetAgent() = %v", err)
	}
	if got.Email != a.Email || !got.CreatedAt.Equal(a.CreatedAt) || !slices.Equal(got.Capabilities, a.Capabilities) || got.DID != nil {
		t.Errorf("GetAgent() = %+v; want %+v", got, a)
	}
	if _, err := s.GetAgent(ctx, "org-2", a.AgentID); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("GetAgent(other org) = %v; want ErrNotFound", err)
	}
	dup := agent("org-1", "a@example.com", base)
	if _, err := s.CreateAgent(ctx, dup, -1, ev(t, dup)); !errors.Is(err, domain.ErrAgentExists) {
		t.Errorf("CreateAgent(duplicate email) = %v; want ErrAgentExists", err)
	}
	other := agent("org-2", "a@example.com", base)
	if _, err := s.CreateAgent(ctx, other, -1, ev(t, other)); err != nil {
		t.Errorf("CreateAgent(same email, other org) = %v; want nil", err)
	}
	if got, err := s.FindAgentByEmail(ctx, "org-1", "a@example.com"); err != nil || got.AgentID != a.AgentID {
		t.Errorf("FindAgentByEmail() = %v, %v; want %s", got.AgentID, err, a.AgentID)
	}
	sentinel := errors.New("boom")
	if _, _, err := s.UpdateAgent(ctx, "org-1", a.AgentID, func(x *domain.Agent) (domain.AgentChange, error) {
		x.Owner = "changed"
		return domain.AgentChange{}, sentinel
	}); !errors.Is(err, sentinel) {
		t.Errorf("UpdateAgent(mutate error) = %v; want sentinel", err)
	}
	if got, _ := s.GetAgent(ctx, "org-1", a.AgentID); got.Owner != "o" {
		t.Errorf("Owner after failed update = %q; want o", got.Owner)
	}
	if _, _, err := s.UpdateAgent(ctx, "org-2", a.AgentID, func(x *domain.Agent) (domain.AgentChange, error) {
		return domain.AgentChange{MaxAgents: -1}, nil
	}); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("UpdateAgent(other org) = %v; want ErrNotFound", err)
	}
	c := domain.Credential{CredentialID: uuid.NewString(), ClientID: a.AgentID, Status: domain.CredentialActive, CreatedAt: base, Digest: []byte("d1")}
	if err := s.CreateCredential(ctx, "org-1", c, nil); err != nil {
		t.Fatalf("CreateCredential() = %v", err)
	}
	upd, n, err := s.UpdateAgent(ctx, "org-1", a.AgentID, func(x *domain.Agent) (domain.AgentChange, error) {
		x.Status = domain.StatusDecommissioned
		x.UpdatedAt = base.Add(time.Hour)
		return domain.AgentChange{MaxAgents: -1, RevokeCredentials: true, Events: ev(t, *x)}, nil
	})
	if err != nil || upd.Status != domain.StatusDecommissioned || n != 0 {
		t.Fatalf("UpdateAgent(decommission) = %s, %d, %v; want decommissioned, 0, nil", upd.Status, n, err)
	}
	cs, err := s.ListCredentials(ctx, "org-1", a.AgentID)
	if err != nil || len(cs) != 1 || cs[0].Status != domain.CredentialRevoked || cs[0].RevokedAt == nil {
		t.Errorf("ListCredentials after decommission = %+v, %v; want one revoked", cs, err)
	}
	if err := s.CreateCredential(ctx, "org-1", domain.Credential{CredentialID: uuid.NewString(), ClientID: a.AgentID, Status: "active", CreatedAt: base, Digest: []byte("x")}, nil); !errors.Is(err, domain.ErrDecommissioned) {
		t.Errorf("CreateCredential(decommissioned) = %v; want ErrDecommissioned", err)
	}
	rec, err := s.LoadClient(ctx, a.AgentID)
	if err != nil || rec.Status != domain.StatusDecommissioned || len(rec.Credentials) != 0 || rec.OrgID != "org-1" {
		t.Errorf("LoadClient() = %+v, %v; want decommissioned without credentials", rec, err)
	}
	if _, err := s.LoadClient(ctx, uuid.NewString()); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("LoadClient(unknown) = %v; want ErrNotFound", err)
	}
}

func testAgentLimit(t *testing.T, s domain.Store) {
	ctx := context.Background()
	a1, a2, a3 := agent("org", "1@x.io", base), agent("org", "2@x.io", base), agent("org", "3@x.io", base)
	for _, a := range []domain.Agent{a1, a2} {
		if _, err := s.CreateAgent(ctx, a, 2, ev(t, a)); err != nil {
			t.Fatalf("CreateAgent() = %v", err)
		}
	}
	if _, err := s.CreateAgent(ctx, a3, 2, ev(t, a3)); !errors.Is(err, domain.ErrAgentLimit) {
		t.Fatalf("CreateAgent(over limit) = %v; want ErrAgentLimit", err)
	}
	if _, err := s.GetAgent(ctx, "org", a3.AgentID); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("agent over limit was stored: %v", err)
	}
	// Suspended agents still count; reactivating within the limit works.
	setStatus := func(id, st string, max int64) error {
		_, _, err := s.UpdateAgent(ctx, "org", id, func(x *domain.Agent) (domain.AgentChange, error) {
			x.Status = st
			return domain.AgentChange{MaxAgents: max}, nil
		})
		return err
	}
	if err := setStatus(a1.AgentID, domain.StatusSuspended, -1); err != nil {
		t.Fatal(err)
	}
	if err := setStatus(a1.AgentID, domain.StatusActive, 2); err != nil {
		t.Errorf("reactivate within limit = %v; want nil", err)
	}
	if err := setStatus(a1.AgentID, domain.StatusActive, 1); !errors.Is(err, domain.ErrAgentLimit) {
		t.Errorf("reactivate over lowered limit = %v; want ErrAgentLimit", err)
	}
	if err := setStatus(a2.AgentID, domain.StatusDecommissioned, -1); err != nil {
		t.Fatal(err)
	}
	if n, err := s.CreateAgent(ctx, a3, 2, ev(t, a3)); err != nil || n != 2 {
		t.Errorf("CreateAgent(after decommission) = %d, %v; want 2, nil", n, err)
	}
}

func testList(t *testing.T, s domain.Store) {
	ctx := context.Background()
	var ids []string
	for i := range 5 {
		a := agent("org", fmt.Sprintf("%d@x.io", i), base) // same createdAt: agentId breaks ties
		if i%2 == 0 {
			a.AgentType = "router"
		}
		mustCreate(t, s, a)
		ids = append(ids, a.AgentID)
	}
	mustCreate(t, s, agent("other", "z@x.io", base))
	slices.Sort(ids)
	tests := []struct {
		name   string
		f      domain.AgentFilter
		off    int
		lim    int
		want   int
		total  int64
		firstI int
	}{
		{"all", domain.AgentFilter{}, 0, 10, 5, 5, 0},
		{"page 2", domain.AgentFilter{}, 2, 2, 2, 5, 2},
		{"type", domain.AgentFilter{AgentType: "router"}, 0, 10, 3, 3, -1},
		{"status none", domain.AgentFilter{Status: "suspended"}, 0, 10, 0, 0, -1},
		{"owner", domain.AgentFilter{Owner: "o"}, 0, 10, 5, 5, 0},
	}
	for _, tc := range tests {
		got, total, err := s.ListAgents(ctx, "org", tc.f, tc.off, tc.lim)
		if err != nil || len(got) != tc.want || total != tc.total {
			t.Errorf("%s: ListAgents() = %d items, total %d, %v; want %d, %d", tc.name, len(got), total, err, tc.want, tc.total)
			continue
		}
		if tc.firstI >= 0 && got[0].AgentID != ids[tc.firstI] {
			t.Errorf("%s: first = %s; want %s (stable order)", tc.name, got[0].AgentID, ids[tc.firstI])
		}
	}
}

func testCredentials(t *testing.T, s domain.Store) {
	ctx := context.Background()
	a := agent("org", "c@x.io", base)
	mustCreate(t, s, a)
	exp := base.Add(24 * time.Hour)
	c1 := domain.Credential{CredentialID: uuid.NewString(), ClientID: a.AgentID, Status: "active", CreatedAt: base, ExpiresAt: &exp, Digest: []byte("d1")}
	c2 := domain.Credential{CredentialID: uuid.NewString(), ClientID: a.AgentID, Status: "active", CreatedAt: base.Add(time.Second), Digest: []byte("d2")}
	for _, c := range []domain.Credential{c1, c2} {
		if err := s.CreateCredential(ctx, "org", c, nil); err != nil {
			t.Fatalf("CreateCredential() = %v", err)
		}
	}
	if err := s.CreateCredential(ctx, "other", domain.Credential{CredentialID: uuid.NewString(), ClientID: a.AgentID, Status: "active", CreatedAt: base, Digest: []byte("x")}, nil); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("CreateCredential(other org) = %v; want ErrNotFound", err)
	}
	cs, err := s.ListCredentials(ctx, "org", a.AgentID)
	if err != nil || len(cs) != 2 || cs[0].CredentialID != c1.CredentialID || cs[0].ExpiresAt == nil || !cs[0].ExpiresAt.Equal(exp) {
		t.Fatalf("ListCredentials() = %+v, %v", cs, err)
	}
	if _, err := s.ListCredentials(ctx, "other", a.AgentID); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("ListCredentials(other org) = %v; want ErrNotFound", err)
	}
	revokedAt := base.Add(time.Minute)
	e, _ := events.New(events.CredentialRevoked, "test", "org", a.AgentID, events.CredentialData{})
	wm := domain.Revocation{Kind: revocation.KindCredential, Key: c2.CredentialID, NotBefore: revokedAt.UnixMilli(), ExpiresAt: revokedAt.Add(time.Hour)}
	got, err := s.UpdateCredential(ctx, "org", a.AgentID, c2.CredentialID, func(_ domain.Agent, c *domain.Credential) (domain.CredentialChange, error) {
		c.Status, c.RevokedAt = domain.CredentialRevoked, &revokedAt
		return domain.CredentialChange{Events: []events.Envelope{e}, Revocations: []domain.Revocation{wm}}, nil
	})
	if err != nil || got.Status != domain.CredentialRevoked {
		t.Fatalf("UpdateCredential(revoke) = %+v, %v", got, err)
	}
	if revs, err := s.ListRevocations(ctx, revokedAt); err != nil || len(revs) != 1 || revs[0] != wm {
		t.Errorf("ListRevocations() after revoke = %+v, %v; want [%+v] (same transaction)", revs, err, wm)
	}
	if _, err := s.UpdateCredential(ctx, "org", a.AgentID, uuid.NewString(), func(domain.Agent, *domain.Credential) (domain.CredentialChange, error) {
		return domain.CredentialChange{}, nil
	}); !errors.Is(err, domain.ErrCredentialNotFound) {
		t.Errorf("UpdateCredential(unknown) = %v; want ErrCredentialNotFound", err)
	}
	// A failing mutation writes no revocation.
	boom := errors.New("boom")
	if _, err := s.UpdateCredential(ctx, "org", a.AgentID, c1.CredentialID, func(domain.Agent, *domain.Credential) (domain.CredentialChange, error) {
		return domain.CredentialChange{Revocations: []domain.Revocation{{Kind: revocation.KindCredential, Key: c1.CredentialID, NotBefore: 1, ExpiresAt: exp}}}, boom
	}); !errors.Is(err, boom) {
		t.Errorf("UpdateCredential(failing) = %v; want boom", err)
	}
	// Rotation with a grace period: the old credential gets an expiry and
	// a new one is inserted in the same transaction.
	grace := base.Add(2 * time.Minute)
	c3 := domain.Credential{CredentialID: uuid.NewString(), ClientID: a.AgentID, Status: "active", CreatedAt: base.Add(time.Minute), Digest: []byte("d3")}
	if _, err := s.UpdateCredential(ctx, "org", a.AgentID, c1.CredentialID, func(_ domain.Agent, c *domain.Credential) (domain.CredentialChange, error) {
		c.ExpiresAt = &grace
		e2, _ := events.New(events.CredentialRotated, "test", "org", a.AgentID, events.CredentialData{})
		return domain.CredentialChange{Events: []events.Envelope{e2}, Insert: &c3}, nil
	}); err != nil {
		t.Fatalf("UpdateCredential(rotate with grace) = %v", err)
	}
	rec, err := s.LoadClient(ctx, a.AgentID)
	if err != nil || len(rec.Credentials) != 2 {
		t.Fatalf("LoadClient() = %+v, %v; want c1 and c3", rec, err)
	}
	for _, c := range rec.Credentials {
		switch c.ID {
		case c1.CredentialID:
			if c.ExpiresAt == nil || !c.ExpiresAt.Equal(grace) || string(c.Digest) != "d1" {
				t.Errorf("LoadClient() old credential = %+v; want digest d1 expiring at %v", c, grace)
			}
		case c3.CredentialID:
			if c.ExpiresAt != nil || string(c.Digest) != "d3" {
				t.Errorf("LoadClient() new credential = %+v; want digest d3, no expiry", c)
			}
		default:
			t.Errorf("LoadClient() has credential %s; want only %s and %s", c.ID, c1.CredentialID, c3.CredentialID)
		}
	}
}

func testRevocations(t *testing.T, s domain.Store) {
	ctx := context.Background()
	a := agent("org", "r@x.io", base)
	mustCreate(t, s, a)
	exp1, exp2 := base.Add(time.Hour), base.Add(2*time.Hour)
	jti := domain.Revocation{Kind: revocation.KindJTI, Key: "j1", NotBefore: base.UnixMilli(), ExpiresAt: exp1}
	wm := domain.Revocation{Kind: revocation.KindAgent, Key: a.AgentID, NotBefore: base.UnixMilli(), ExpiresAt: exp2}
	e, _ := events.New(events.TokenRevoked, "test", "org", a.AgentID, map[string]string{"jti": "j1"})
	if err := s.AddRevocations(ctx, []domain.Revocation{jti, wm}, []events.Envelope{e}); err != nil {
		t.Fatalf("AddRevocations() = %v", err)
	}
	// An older watermark does not move it back; a newer one moves it forward.
	older := wm
	older.NotBefore -= 1000
	if err := s.AddRevocations(ctx, []domain.Revocation{older}, nil); err != nil {
		t.Fatalf("AddRevocations(older) = %v", err)
	}
	list := func(at time.Time) []domain.Revocation {
		t.Helper()
		revs, err := s.ListRevocations(ctx, at)
		if err != nil {
			t.Fatalf("ListRevocations() = %v", err)
		}
		return revs
	}
	if got := list(base); len(got) != 2 || !slices.Contains(got, wm) || !slices.Contains(got, jti) {
		t.Errorf("ListRevocations() = %+v; want %+v and %+v", got, jti, wm)
	}
	// Suspension through UpdateAgent records the watermark with the change.
	newer := wm
	newer.NotBefore += 5000
	newer.ExpiresAt = exp2.Add(time.Second)
	if _, _, err := s.UpdateAgent(ctx, "org", a.AgentID, func(x *domain.Agent) (domain.AgentChange, error) {
		x.Status = domain.StatusSuspended
		return domain.AgentChange{MaxAgents: -1, Revocations: []domain.Revocation{newer}}, nil
	}); err != nil {
		t.Fatalf("UpdateAgent(suspend) = %v", err)
	}
	if got := list(base); !slices.Contains(got, newer) {
		t.Errorf("ListRevocations() after suspension = %+v; want %+v", got, newer)
	}
	// jti expiry: after its expires_at the row is neither listed nor kept.
	if got := list(exp1); len(got) != 1 || got[0] != newer {
		t.Errorf("ListRevocations(at jti expiry) = %+v; want only %+v", got, newer)
	}
	n, err := s.PruneRevocations(ctx, exp1)
	if err != nil || n != 1 {
		t.Errorf("PruneRevocations(exp1) = %d, %v; want 1", n, err)
	}
	if n, err := s.PruneRevocations(ctx, exp2.Add(time.Hour)); err != nil || n != 1 {
		t.Errorf("PruneRevocations(later) = %d, %v; want 1", n, err)
	}
	if got := list(base); len(got) != 0 {
		t.Errorf("ListRevocations() after pruning = %+v; want none", got)
	}
}

func testSigningKeys(t *testing.T, s domain.Store) {
	ctx := context.Background()
	if _, err := s.ActiveSigningKey(ctx, "ES256"); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("ActiveSigningKey(empty) = %v; want ErrNotFound", err)
	}
	k := domain.SealedKey{KID: "k1", Alg: "ES256", Sealed: []byte{1, 2, 3}, Status: "active", CreatedAt: base}
	if err := s.InsertSigningKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertSigningKey(ctx, domain.SealedKey{KID: "k2", Alg: "ES256", Sealed: []byte{4}, Status: "active", CreatedAt: base}); !errors.Is(err, domain.ErrConflict) {
		t.Errorf("InsertSigningKey(second active) = %v; want ErrConflict", err)
	}
	if err := s.InsertSigningKey(ctx, domain.SealedKey{KID: "k3", Alg: "EdDSA", Sealed: []byte{5}, Status: "active", CreatedAt: base.Add(time.Second)}); err != nil {
		t.Errorf("InsertSigningKey(other alg) = %v", err)
	}
	got, err := s.ActiveSigningKey(ctx, "ES256")
	if err != nil || got.KID != "k1" || string(got.Sealed) != string(k.Sealed) {
		t.Errorf("ActiveSigningKey() = %+v, %v", got, err)
	}
	all, err := s.SigningKeys(ctx)
	if err != nil || len(all) != 2 {
		t.Errorf("SigningKeys() = %d, %v; want 2", len(all), err)
	}
}

func testCountAgentsByOrg(t *testing.T, s domain.Store) {
	ctx := context.Background()
	now := time.Now().UTC()
	for i := range 3 {
		mustCreate(t, s, agent("org-a", fmt.Sprintf("a%d@example.com", i), now))
	}
	gone := agent("org-b", "gone@example.com", now)
	mustCreate(t, s, gone)
	if _, _, err := s.UpdateAgent(ctx, "org-b", gone.AgentID, func(x *domain.Agent) (domain.AgentChange, error) {
		x.Status = domain.StatusDecommissioned
		return domain.AgentChange{MaxAgents: -1}, nil
	}); err != nil {
		t.Fatal(err)
	}
	got, err := s.CountAgentsByOrg(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["org-a"] != 3 {
		t.Errorf("CountAgentsByOrg() = %v; want map[org-a:3] (decommissioned agents not counted)", got)
	}
}
