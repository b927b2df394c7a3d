package domain

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/httpx"
)

// AgentOp is an operation a caller performs on one agent (the target). Every
// route that names an agent goes through Service.authorizeOn with one of the
// ops below, so a new route cannot skip the privilege rule: it has to pick
// an op, and every op that changes the target is a managing op.
type AgentOp struct {
	// Scope is the scope the caller's token must carry.
	Scope string
	// Manage: the op changes the target or its ability to authenticate, so
	// the privilege rule (mayManage) applies.
	Manage bool
	// Verb names the op in refusals ("create a credential for").
	Verb string
}

// The operations on an agent (unexported: nothing outside the domain may
// redefine what an operation requires).
var (
	opReadAgent        = AgentOp{Scope: ScopeAgentsRead, Verb: "read"}
	opUpdateAgent      = AgentOp{Scope: ScopeAgentsWrite, Manage: true, Verb: "update"}
	opDecommission     = AgentOp{Scope: ScopeAgentsWrite, Manage: true, Verb: "decommission"}
	opCreateCredential = AgentOp{Scope: ScopeAgentsWrite, Manage: true, Verb: "create a credential for"}
	opRotateCredential = AgentOp{Scope: ScopeAgentsWrite, Manage: true, Verb: "rotate a credential of"}
	opRevokeCredential = AgentOp{Scope: ScopeAgentsWrite, Manage: true, Verb: "revoke a credential of"}
	opRegisterKey      = AgentOp{Scope: ScopeAgentsWrite, Manage: true, Verb: "register a key for"}
	opRevokeKey        = AgentOp{Scope: ScopeAgentsWrite, Manage: true, Verb: "remove a key of"}
)

// authorizeOn is the one gate of every operation on an agent: it checks
// that the caller's token carries op's scope, finds the target in the
// organisation the caller may act in (its own; any for the platform
// operator) and, for a managing op, applies the privilege rule. A target
// in another organisation is AGENT_NOT_FOUND, exactly like a missing one.
//
// The caller's scopes are those of its access token as the internal
// context carries them: no lookup of the caller. The target is loaded (one
// read on a management route; never on the token endpoint).
func (s *Service) authorizeOn(ctx context.Context, caller authn.Identity, agentID string, op AgentOp) (Agent, error) {
	if err := httpx.RequireScope(caller, op.Scope); err != nil {
		return Agent{}, err
	}
	if !validAgentID(agentID) {
		return Agent{}, notFoundAgent()
	}
	org := caller.OrgID
	if caller.HasScope(ScopeAdminOrgs) {
		o, err := s.store.AgentOrg(ctx, agentID)
		if errors.Is(err, ErrNotFound) {
			return Agent{}, notFoundAgent()
		}
		if err != nil {
			return Agent{}, httpx.Internal(fmt.Errorf("agent org %s: %w", agentID, err))
		}
		org = o
	}
	a, err := s.store.GetAgent(ctx, org, agentID)
	if errors.Is(err, ErrNotFound) {
		return Agent{}, notFoundAgent()
	}
	if err != nil {
		return Agent{}, httpx.Internal(fmt.Errorf("load agent %s: %w", agentID, err))
	}
	if op.Manage {
		if err := mayManage(caller, a, op); err != nil {
			return Agent{}, err
		}
	}
	return a, nil
}

// mayManage is the privilege rule (its core, authn.MayManage, is shared
// with the did service's key rotation): a caller may manage a target only when
// every scope the target is allowed is one the caller's token carries, so
// that no operation can hand the caller (through a credential or key it
// controls) or anyone else more than the caller was given. The platform
// operator (admin:orgs) manages everyone; since nobody else holds
// admin:orgs, nobody else touches an agent that holds it. A caller acting
// on itself follows the same rule (a token narrower than its agent cannot
// mint a wider credential for it).
func mayManage(caller authn.Identity, target Agent, op AgentOp) error {
	if !authn.MayManage(caller, target.Scopes) {
		return httpx.Forbidden(fmt.Sprintf("cannot %s this agent: it holds scopes the caller does not, "+
			"and an agent may only manage agents whose scopes are a subset of its own (only admin:orgs manages everyone)", op.Verb))
	}
	return nil
}

// mayGrant refuses a scope list (scopes or defaultScopes of an agent)
// naming a scope the caller's token does not carry: nobody gives what it
// does not hold, the platform operator included.
func mayGrant(caller authn.Identity, field string, scopes []string) error {
	for _, sc := range scopes {
		if !caller.HasScope(sc) {
			return &httpx.Error{Status: http.StatusForbidden, Code: httpx.CodeForbidden,
				Message: fmt.Sprintf("cannot grant scope %q the caller does not hold: an agent never gives a scope it does not hold itself", sc),
				Details: map[string]string{field: "names a scope the caller does not hold"}}
		}
	}
	return nil
}
