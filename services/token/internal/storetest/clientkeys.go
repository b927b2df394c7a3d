package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/services/token/internal/domain"
)

// RunClientKeys is the conformance suite of domain.ClientKeyStore.
func RunClientKeys(t *testing.T, newStore func(t *testing.T) domain.Store) {
	t.Run("ClientKeys", func(t *testing.T) { testClientKeys(t, newStore(t)) })
}

func clientKey(t *testing.T, agentID string, i int) domain.ClientKey {
	t.Helper()
	k, err := jose.GenerateKey(jose.EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	j, _ := k.PublicJWK()
	j.Kid = fmt.Sprintf("k%02d", i)
	return domain.ClientKey{KeyID: j.Kid, AgentID: agentID, Alg: j.Alg, JWK: j, Status: domain.ClientKeyActive, CreatedAt: base.Add(time.Duration(i) * time.Second)}
}

func testClientKeys(t *testing.T, s domain.Store) {
	ctx := context.Background()
	a := agent("org-1", "keys@example.com", base)
	mustCreate(t, s, a)
	uri := "https://example.com/jwks"
	k0 := clientKey(t, a.AgentID, 0)
	k0.JWKSURI = &uri
	if err := s.CreateClientKeys(ctx, "org-1", a.AgentID, []domain.ClientKey{k0, clientKey(t, a.AgentID, 1)}, ev(t, a)); err != nil {
		t.Fatalf("CreateClientKeys() = %v; want nil", err)
	}
	if err := s.CreateClientKeys(ctx, "org-2", a.AgentID, []domain.ClientKey{clientKey(t, a.AgentID, 2)}, nil); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("CreateClientKeys(other org) = %v; want ErrNotFound", err)
	}
	if err := s.CreateClientKeys(ctx, "org-1", a.AgentID, []domain.ClientKey{clientKey(t, a.AgentID, 1)}, nil); !errors.Is(err, domain.ErrConflict) {
		t.Errorf("CreateClientKeys(duplicate kid) = %v; want ErrConflict", err)
	}
	many := make([]domain.ClientKey, 0, domain.MaxClientKeys)
	for i := 2; i < domain.MaxClientKeys+1; i++ {
		many = append(many, clientKey(t, a.AgentID, i))
	}
	if err := s.CreateClientKeys(ctx, "org-1", a.AgentID, many, nil); !errors.Is(err, domain.ErrKeyLimit) {
		t.Errorf("CreateClientKeys(over the limit) = %v; want ErrKeyLimit", err)
	}
	ks, err := s.ListClientKeys(ctx, "org-1", a.AgentID)
	if err != nil || len(ks) != 2 || ks[0].KeyID != "k00" || ks[0].JWKSURI == nil || *ks[0].JWKSURI != uri || ks[0].JWK.X != k0.JWK.X || !ks[0].CreatedAt.Equal(k0.CreatedAt) {
		t.Fatalf("ListClientKeys() = %+v, %v; want k00 (with its jwksUri) and k01", ks, err)
	}
	if _, err := s.ListClientKeys(ctx, "org-2", a.AgentID); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("ListClientKeys(other org) = %v; want ErrNotFound", err)
	}
	for i, want := range []bool{true, false} {
		if changed, err := s.RevokeClientKey(ctx, "org-1", a.AgentID, "k00", base.Add(time.Hour), nil); err != nil || changed != want {
			t.Errorf("RevokeClientKey() #%d = %v, %v; want %v, nil", i, changed, err, want)
		}
	}
	if _, err := s.RevokeClientKey(ctx, "org-1", a.AgentID, "nope", base, nil); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("RevokeClientKey(missing) = %v; want ErrNotFound", err)
	}
	if _, err := s.RevokeClientKey(ctx, "org-2", a.AgentID, "k01", base, nil); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("RevokeClientKey(other org) = %v; want ErrNotFound", err)
	}
	active, err := s.ActiveClientKeys(ctx, a.AgentID)
	if err != nil || len(active) != 1 || active[0].KeyID != "k01" {
		t.Errorf("ActiveClientKeys() = %+v, %v; want only k01", active, err)
	}
	ks, _ = s.ListClientKeys(ctx, "org-1", a.AgentID)
	if ks[0].Status != domain.ClientKeyRevoked || ks[0].RevokedAt == nil {
		t.Errorf("ListClientKeys()[0] = %+v; want revoked", ks[0])
	}
}
