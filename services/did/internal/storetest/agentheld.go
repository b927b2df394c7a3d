package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/services/did/internal/domain"
	"github.com/google/uuid"
)

func heldKey(t *testing.T, agentID string, at time.Time) domain.AgentHeldKey {
	t.Helper()
	k := key(t, agentID, at)
	return domain.AgentHeldKey{AgentID: agentID, OrgID: "org-1", KID: k.KID, PublicJWK: k.PublicJWK, CreatedAt: at}
}

// testAgentHeldKeys: add is idempotent, revocation is recorded once, a
// revoked key is never re-added, and the list keeps (CreatedAt, KID) order.
func testAgentHeldKeys(t *testing.T, h Harness) {
	ctx := context.Background()
	id := uuid.NewString()
	if got, err := h.Store.AgentHeldKeys(ctx, id); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("AgentHeldKeys(none) = %v, %v; want empty, nil", got, err)
	}
	second, first := heldKey(t, id, base.Add(time.Minute)), heldKey(t, id, base)
	for _, k := range []domain.AgentHeldKey{second, first} {
		if added, err := h.Store.AddAgentHeldKey(ctx, k); err != nil || !added {
			t.Fatalf("AddAgentHeldKey(%s) = %v, %v; want true, nil", k.KID, added, err)
		}
	}
	again := first
	again.CreatedAt = base.Add(time.Hour)
	if added, err := h.Store.AddAgentHeldKey(ctx, again); err != nil || added {
		t.Errorf("AddAgentHeldKey(redelivered) = %v, %v; want false, nil", added, err)
	}
	got, err := h.Store.AgentHeldKeys(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].KID != first.KID || got[1].KID != second.KID || got[0].PublicJWK != first.PublicJWK ||
		!got[0].CreatedAt.Equal(base) || got[0].OrgID != "org-1" || got[0].RevokedAt != nil {
		t.Errorf("Got(AgentHeldKeys) = %+v; want [%s, %s] active, first unchanged by the redelivery", got, first.KID, second.KID)
	}
	at := base.Add(2 * time.Hour)
	if revoked, err := h.Store.RevokeAgentHeldKey(ctx, id, "org-1", first.KID, at); err != nil || !revoked {
		t.Errorf("RevokeAgentHeldKey = %v, %v; want true, nil", revoked, err)
	}
	if revoked, err := h.Store.RevokeAgentHeldKey(ctx, id, "org-1", first.KID, at.Add(time.Hour)); err != nil || revoked {
		t.Errorf("RevokeAgentHeldKey(again) = %v, %v; want false, nil", revoked, err)
	}
	if added, err := h.Store.AddAgentHeldKey(ctx, first); err != nil || added {
		t.Errorf("AddAgentHeldKey(revoked kid) = %v, %v; want false, nil", added, err)
	}
	got, _ = h.Store.AgentHeldKeys(ctx, id)
	if len(got) != 2 || got[0].RevokedAt == nil || !got[0].RevokedAt.Equal(at) || got[1].RevokedAt != nil {
		t.Errorf("Got(AgentHeldKeys after revoke) = %+v; want %s revoked at %v, %s active", got, first.KID, at, second.KID)
	}
	if other, _ := h.Store.AgentHeldKeys(ctx, uuid.NewString()); len(other) != 0 {
		t.Errorf("Got(AgentHeldKeys(other agent)) = %v; want none", other)
	}
}

// testAgentHeldRevokedFirst: a revocation delivered before its generation
// leaves a revoked row, and the late generation adds nothing.
func testAgentHeldRevokedFirst(t *testing.T, h Harness) {
	ctx := context.Background()
	id := uuid.NewString()
	k := heldKey(t, id, base)
	if revoked, err := h.Store.RevokeAgentHeldKey(ctx, id, "org-1", k.KID, base.Add(time.Minute)); err != nil || revoked {
		t.Fatalf("RevokeAgentHeldKey(unknown) = %v, %v; want false, nil", revoked, err)
	}
	if added, err := h.Store.AddAgentHeldKey(ctx, k); err != nil || added {
		t.Errorf("AddAgentHeldKey(after revocation) = %v, %v; want false, nil", added, err)
	}
	got, err := h.Store.AgentHeldKeys(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].RevokedAt == nil || got[0].PublicJWK != (jose.JWK{}) {
		t.Errorf("Got(AgentHeldKeys) = %+v; want one revoked row without key material", got)
	}
}
