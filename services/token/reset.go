package token

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/revocation"
	lib "github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/services/token/internal/domain"
	"github.com/agentidp/agentidp/services/token/internal/sqlstore"
)

// maxTokenTTL bounds TOKEN_TTL (Config.Validate); an offline reset does not
// know the running services' TTL, so its revocation watermarks outlive the
// longest one any configuration allows.
const maxTokenTTL = 24 * time.Hour

// ResetResult reports an offline credential reset.
type ResetResult struct {
	AgentID, OrganizationID string
	// Revoked counts the credentials revoked (active or expired ones).
	Revoked int
	// ClientSecret is the new credential's secret, shown once.
	ClientSecret string
}

// ResetAdminCredentials is the offline recovery of a lost admin secret:
// it revokes every credential of the agent (agentID, or else the one agent
// with that email; both are looked up across organisations) and creates a
// new one, writing credential.revoked, credential.generated and the
// revocation watermarks through the outbox and the revocations table like
// any credential change, so the audit log records it and the token
// service mirrors the revocations to the gateways when it (re)starts.
// Run it with the token service stopped: a running one keeps its cached
// revocation set until restarted.
func ResetAdminCredentials(ctx context.Context, db *lib.DB, pepper []byte, agentID, email string) (ResetResult, error) {
	if len(pepper) < 32 {
		return ResetResult{}, errors.New("reset credentials: pepper must be at least 32 bytes")
	}
	if err := db.Migrate(ctx, Migrations); err != nil {
		return ResetResult{}, fmt.Errorf("reset credentials: %w", err)
	}
	if err := db.EnsureOutbox(ctx); err != nil {
		return ResetResult{}, fmt.Errorf("reset credentials: %w", err)
	}
	store := sqlstore.New(db)
	orgID, agentID, err := findResetTarget(ctx, db, store, agentID, email)
	if err != nil {
		return ResetResult{}, err
	}
	a, err := store.GetAgent(ctx, orgID, agentID)
	if err != nil {
		return ResetResult{}, fmt.Errorf("reset credentials: agent %s: %w", agentID, err)
	}
	if a.Status != domain.StatusActive {
		return ResetResult{}, fmt.Errorf("reset credentials: agent %s is %s, not active", agentID, a.Status)
	}
	creds, err := store.ListCredentials(ctx, orgID, agentID)
	if err != nil {
		return ResetResult{}, fmt.Errorf("reset credentials: list credentials: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	res := ResetResult{AgentID: agentID, OrganizationID: orgID}
	for _, c := range creds {
		if c.Status == domain.CredentialRevoked {
			continue
		}
		_, err := store.UpdateCredential(ctx, orgID, agentID, c.CredentialID, func(a domain.Agent, c *domain.Credential) (domain.CredentialChange, error) {
			if c.Status == domain.CredentialRevoked {
				return domain.CredentialChange{}, nil
			}
			c.Status, c.RevokedAt = domain.CredentialRevoked, &now
			ev, err := events.New(events.CredentialRevoked, domain.Source, orgID, agentID, events.CredentialData{
				CredentialID: c.CredentialID, AgentID: agentID, Status: c.Status, ExpiresAt: c.ExpiresAt, At: now})
			if err != nil {
				return domain.CredentialChange{}, err
			}
			rev := domain.Revocation{Kind: revocation.KindCredential, Key: c.CredentialID, NotBefore: now.UnixMilli(),
				ExpiresAt: now.Add(maxTokenTTL + domain.RevocationMargin)}
			return domain.CredentialChange{Events: []events.Envelope{ev}, Revocations: []domain.Revocation{rev}}, nil
		})
		if err != nil {
			return ResetResult{}, fmt.Errorf("reset credentials: revoke %s: %w", c.CredentialID, err)
		}
		res.Revoked++
	}
	nc, err := domain.NewCredentialFor(pepper, agentID, nil, now)
	if err != nil {
		return ResetResult{}, fmt.Errorf("reset credentials: %w", err)
	}
	ev, err := events.New(events.CredentialGenerated, domain.Source, orgID, agentID, events.CredentialData{
		CredentialID: nc.CredentialID, AgentID: agentID, Status: nc.Status, At: now})
	if err != nil {
		return ResetResult{}, err
	}
	if err := store.CreateCredential(ctx, orgID, nc.Credential, []events.Envelope{ev}); err != nil {
		return ResetResult{}, fmt.Errorf("reset credentials: create credential: %w", err)
	}
	res.ClientSecret = nc.ClientSecret
	return res, nil
}

// findResetTarget resolves the agent to reset: by id, or by email when
// exactly one agent has it.
func findResetTarget(ctx context.Context, db *lib.DB, store *sqlstore.Store, agentID, email string) (orgID, id string, err error) {
	if agentID != "" {
		org, err := store.AgentOrg(ctx, agentID)
		if errors.Is(err, domain.ErrNotFound) {
			return "", "", fmt.Errorf("reset credentials: no agent %s", agentID)
		}
		if err != nil {
			return "", "", fmt.Errorf("reset credentials: %w", err)
		}
		return org, agentID, nil
	}
	rows, err := db.QueryContext(ctx, "SELECT agent_id, organization_id FROM agents WHERE email = ? ORDER BY agent_id", email)
	if err != nil {
		return "", "", fmt.Errorf("reset credentials: find %s: %w", email, err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var a, o string
		if err := rows.Scan(&a, &o); err != nil {
			return "", "", fmt.Errorf("reset credentials: find %s: %w", email, err)
		}
		ids, id, orgID = append(ids, a), a, o
	}
	if err := rows.Err(); err != nil {
		return "", "", fmt.Errorf("reset credentials: find %s: %w", email, err)
	}
	switch len(ids) {
	case 0:
		return "", "", fmt.Errorf("reset credentials: no agent with email %s (name it with --agent)", email)
	case 1:
		return orgID, id, nil
	}
	return "", "", fmt.Errorf("reset credentials: %d agents have email %s (%s); name one with --agent", len(ids), email, strings.Join(ids, ", "))
}
