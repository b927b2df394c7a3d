package token

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	lib "github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/services/token/internal/domain"
	"github.com/agentidp/agentidp/services/token/internal/sqlstore"
	"github.com/google/uuid"
)

// Bootstrap creates, idempotently by (orgID, email), an admin agent holding
// every scope (defaultScopes: all but admin:orgs) and one credential, with
// their outbox events. It applies Migrations and ensures the outbox first,
// both idempotent, so it may run before or after the service started. When
// the agent exists it returns created=false and no secret.
func Bootstrap(ctx context.Context, db *lib.DB, pepper []byte, orgID, email string) (agentID, clientSecret string, created bool, err error) {
	if len(pepper) < 32 {
		return "", "", false, errors.New("bootstrap: pepper must be at least 32 bytes")
	}
	if orgID == "" || email == "" {
		return "", "", false, errors.New("bootstrap: organisation and email are required")
	}
	if err := db.Migrate(ctx, Migrations); err != nil {
		return "", "", false, fmt.Errorf("bootstrap: %w", err)
	}
	if err := db.EnsureOutbox(ctx); err != nil {
		return "", "", false, fmt.Errorf("bootstrap: %w", err)
	}
	store := sqlstore.New(db)
	if a, err := store.FindAgentByEmail(ctx, orgID, email); err == nil {
		return a.AgentID, "", false, nil
	} else if !errors.Is(err, domain.ErrNotFound) {
		return "", "", false, fmt.Errorf("bootstrap: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	id, err := uuid.NewV7()
	if err != nil {
		return "", "", false, err
	}
	var defaults []string
	for _, s := range domain.KnownScopes {
		if s != domain.ScopeAdminOrgs {
			defaults = append(defaults, s)
		}
	}
	a := domain.Agent{AgentID: id.String(), Email: email, AgentType: "orchestrator", Version: "1.0.0",
		Capabilities: []string{"admin:all"}, Owner: "bootstrap", DeploymentEnv: "production",
		Status: domain.StatusActive, OrganizationID: orgID, Scopes: append([]string(nil), domain.KnownScopes...),
		DefaultScopes: defaults, CreatedAt: now, UpdatedAt: now}
	ev, err := events.New(events.AgentCreated, domain.Source, orgID, a.AgentID, events.AgentData{
		AgentID: a.AgentID, OrganizationID: orgID, Email: email, AgentType: a.AgentType, Status: a.Status, Scopes: a.Scopes, At: now})
	if err != nil {
		return "", "", false, err
	}
	if _, err := store.CreateAgent(ctx, a, -1, []events.Envelope{ev}); err != nil {
		if errors.Is(err, domain.ErrAgentExists) {
			existing, ferr := store.FindAgentByEmail(ctx, orgID, email)
			if ferr != nil {
				return "", "", false, fmt.Errorf("bootstrap: %w", ferr)
			}
			return existing.AgentID, "", false, nil
		}
		return "", "", false, fmt.Errorf("bootstrap: create agent: %w", err)
	}
	nc, err := domain.NewCredentialFor(pepper, a.AgentID, nil, now)
	if err != nil {
		return "", "", false, err
	}
	cev, err := events.New(events.CredentialGenerated, domain.Source, orgID, a.AgentID, events.CredentialData{
		CredentialID: nc.CredentialID, AgentID: a.AgentID, Status: nc.Status, At: now})
	if err != nil {
		return "", "", false, err
	}
	if err := store.CreateCredential(ctx, orgID, nc.Credential, []events.Envelope{cev}); err != nil {
		return "", "", false, fmt.Errorf("bootstrap: create credential: %w", err)
	}
	return a.AgentID, nc.ClientSecret, true, nil
}
