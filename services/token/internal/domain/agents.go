package domain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/libs/revocation"
	"github.com/google/uuid"
)

// Error codes of this service.
const (
	CodeAgentNotFound      = "AGENT_NOT_FOUND"
	CodeAgentExists        = "AGENT_ALREADY_EXISTS"
	CodeAgentDecommission  = "AGENT_DECOMMISSIONED"
	CodeOrgNotFound        = "ORGANIZATION_NOT_FOUND"
	CodeCredentialNotFound = "CREDENTIAL_NOT_FOUND"
)

var (
	semverRE     = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$`)
	capabilityRE = regexp.MustCompile(`^[A-Za-z0-9_-]+:[A-Za-z0-9_*-]+$`)
)

// CreateAgentInput is the body of POST /agents.
type CreateAgentInput struct {
	Email          string   `json:"email"`
	AgentType      string   `json:"agentType"`
	Version        string   `json:"version"`
	Capabilities   []string `json:"capabilities"`
	Owner          string   `json:"owner"`
	DeploymentEnv  string   `json:"deploymentEnv"`
	Scopes         []string `json:"scopes"`
	DefaultScopes  []string `json:"defaultScopes"`
	OrganizationID *string  `json:"organizationId"`
}

// UpdateAgentInput is the body of PATCH /agents/{id}; nil fields are unchanged.
type UpdateAgentInput struct {
	Version       *string   `json:"version"`
	Capabilities  *[]string `json:"capabilities"`
	Owner         *string   `json:"owner"`
	DeploymentEnv *string   `json:"deploymentEnv"`
	AgentType     *string   `json:"agentType"`
	Scopes        *[]string `json:"scopes"`
	DefaultScopes *[]string `json:"defaultScopes"`
	Status        *string   `json:"status"`
}

type fieldErrors map[string]string

func (f fieldErrors) err() error {
	if len(f) == 0 {
		return nil
	}
	return httpx.Validation("invalid request body", map[string]string(f))
}

func checkEmail(f fieldErrors, v string) string {
	v = strings.TrimSpace(v)
	if v == "" || len(v) > 255 {
		f["email"] = "must be an email address of at most 255 characters"
		return v
	}
	a, err := mail.ParseAddress(v)
	if err != nil || a.Address != v || a.Name != "" || !strings.Contains(v[strings.LastIndexByte(v, '@')+1:], ".") {
		f["email"] = "must be a valid email address"
	}
	return strings.ToLower(v)
}

func checkEnum(f fieldErrors, name, v string, allowed []string) {
	if !slices.Contains(allowed, v) {
		f[name] = "must be one of " + strings.Join(allowed, ", ")
	}
}

func checkVersion(f fieldErrors, v string) {
	if len(v) > 64 || !semverRE.MatchString(v) {
		f["version"] = "must be a semantic version (e.g. 1.0.0)"
	}
}

func checkCapabilities(f fieldErrors, v []string) {
	if len(v) < 1 || len(v) > 100 {
		f["capabilities"] = "must list between 1 and 100 capabilities"
		return
	}
	for _, c := range v {
		if len(c) > 128 || !capabilityRE.MatchString(c) {
			f["capabilities"] = fmt.Sprintf("%q is not of the form resource:action", c)
			return
		}
	}
}

func checkOwner(f fieldErrors, v string) {
	if n := len([]rune(v)); n < 1 || n > 128 || strings.TrimSpace(v) == "" {
		f["owner"] = "must be 1 to 128 characters"
	}
}

// checkScopes validates scope names against the known set. Whether the
// caller may grant them is the privilege rule's question (mayGrant), asked
// once the body is valid.
func checkScopes(f fieldErrors, name string, v []string) {
	if len(v) > len(KnownScopes) {
		f[name] = "too many scopes"
		return
	}
	for _, sc := range v {
		if !slices.Contains(KnownScopes, sc) {
			f[name] = fmt.Sprintf("unknown scope %q", sc)
			return
		}
	}
}

func dedupe(v []string) []string {
	out := make([]string, 0, len(v))
	for _, s := range v {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func withoutAdmin(v []string) []string {
	out := make([]string, 0, len(v))
	for _, s := range v {
		if s != ScopeAdminOrgs {
			out = append(out, s)
		}
	}
	return out
}

func agentEvent(t events.Type, a Agent, previous string) (events.Envelope, error) {
	return events.New(t, Source, a.OrganizationID, a.AgentID, events.AgentData{
		AgentID: a.AgentID, OrganizationID: a.OrganizationID, Email: a.Email, AgentType: a.AgentType,
		Status: a.Status, PreviousStatus: previous, Scopes: a.Scopes, At: a.UpdatedAt,
	})
}

func notFoundAgent() *httpx.Error { return httpx.NotFound(CodeAgentNotFound, "agent not found") }

func tierLimit(max int64) *httpx.Error {
	return httpx.TooMany(httpx.CodeTierLimit, fmt.Sprintf("the organisation's tier allows %d agents", max), time.Hour)
}

// validAgentID reports whether id can name an agent; anything else is a 404.
func validAgentID(id string) bool {
	_, err := uuid.Parse(id)
	return err == nil && len(id) == 36
}

// CreateAgent registers an agent in the caller's org (or, for an
// admin:orgs caller, in the named org).
func (s *Service) CreateAgent(ctx context.Context, caller authn.Identity, in CreateAgentInput) (Agent, error) {
	if err := httpx.RequireScope(caller, ScopeAgentsWrite); err != nil {
		return Agent{}, err
	}
	f := fieldErrors{}
	email := checkEmail(f, in.Email)
	checkEnum(f, "agentType", in.AgentType, AgentTypes)
	checkVersion(f, in.Version)
	checkCapabilities(f, in.Capabilities)
	checkOwner(f, in.Owner)
	checkEnum(f, "deploymentEnv", in.DeploymentEnv, DeploymentEnvs)
	scopes := []string{ScopeAgentsRead}
	if in.Scopes != nil {
		scopes = dedupe(in.Scopes)
		if len(scopes) == 0 {
			f["scopes"] = "must list at least one scope"
		}
		checkScopes(f, "scopes", scopes)
	}
	defaults := withoutAdmin(scopes)
	if in.DefaultScopes != nil {
		defaults = dedupe(in.DefaultScopes)
		if !containsAll(scopes, defaults) {
			f["defaultScopes"] = "must be a subset of scopes"
		}
	}
	orgID := caller.OrgID
	if in.OrganizationID != nil && *in.OrganizationID != caller.OrgID {
		if !caller.HasScope(ScopeAdminOrgs) {
			return Agent{}, httpx.Forbidden("only admin:orgs may register agents in another organisation")
		}
		orgID = *in.OrganizationID
		if len(orgID) == 0 || len(orgID) > 128 {
			f["organizationId"] = "must be an organisation id"
		}
	}
	if err := f.err(); err != nil {
		return Agent{}, err
	}
	// The default [agents:read] is granted too: a caller without it cannot
	// create an agent that has it.
	if err := mayGrant(caller, "scopes", scopes); err != nil {
		return Agent{}, err
	}
	if orgID != caller.OrgID {
		org, ok := s.orgs.Org(orgID)
		if !ok || org.Status != "active" {
			return Agent{}, httpx.NotFound(CodeOrgNotFound, "organisation not found")
		}
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	id, err := uuid.NewV7()
	if err != nil {
		return Agent{}, httpx.Internal(err)
	}
	a := Agent{
		AgentID: id.String(), Email: email, AgentType: in.AgentType, Version: in.Version,
		Capabilities: in.Capabilities, Owner: in.Owner, DeploymentEnv: in.DeploymentEnv,
		Status: StatusActive, OrganizationID: orgID, Scopes: scopes, DefaultScopes: defaults,
		CreatedAt: now, UpdatedAt: now,
	}
	ev, err := agentEvent(events.AgentCreated, a, "")
	if err != nil {
		return Agent{}, httpx.Internal(err)
	}
	limit := s.orgs.Limits(orgID).MaxAgents
	count, err := s.store.CreateAgent(ctx, a, limit, []events.Envelope{ev})
	switch {
	case errors.Is(err, ErrAgentExists):
		return Agent{}, httpx.Conflict(CodeAgentExists, "an agent with this email already exists")
	case errors.Is(err, ErrAgentLimit):
		return Agent{}, tierLimit(limit)
	case err != nil:
		return Agent{}, httpx.Internal(fmt.Errorf("create agent: %w", err))
	}
	s.notify()
	s.clients.Invalidate(a.AgentID) // drop a cached "unknown client"
	s.publishUsage(ctx, orgID, count)
	return a, nil
}

// GetAgent returns one of the caller's org's agents.
func (s *Service) GetAgent(ctx context.Context, caller authn.Identity, agentID string) (Agent, error) {
	return s.authorizeOn(ctx, caller, agentID, opReadAgent)
}

// AgentPage is a list response.
type AgentPage struct {
	Data []Agent `json:"data"`
	httpx.Pagination
}

// ListAgents lists the caller's org's agents.
func (s *Service) ListAgents(ctx context.Context, caller authn.Identity, flt AgentFilter, page httpx.Page) (AgentPage, error) {
	if err := httpx.RequireScope(caller, ScopeAgentsRead); err != nil {
		return AgentPage{}, err
	}
	f := fieldErrors{}
	if flt.AgentType != "" {
		checkEnum(f, "agentType", flt.AgentType, AgentTypes)
	}
	if flt.Status != "" {
		checkEnum(f, "status", flt.Status, AgentStatuses)
	}
	if len(flt.Owner) > 128 {
		f["owner"] = "must be at most 128 characters"
	}
	if err := f.err(); err != nil {
		return AgentPage{}, err
	}
	agents, total, err := s.store.ListAgents(ctx, caller.OrgID, flt, page.Offset(), page.Limit)
	if err != nil {
		return AgentPage{}, httpx.Internal(fmt.Errorf("list agents: %w", err))
	}
	if agents == nil {
		agents = []Agent{}
	}
	return AgentPage{Data: agents, Pagination: httpx.NewPagination(page, total)}, nil
}

// UpdateAgent applies a partial update. Removing scopes or suspending the
// agent writes an agent watermark: every token the agent was issued before
// the change (and every token delegated from one) is revoked, so no live
// token keeps a scope the agent no longer has.
func (s *Service) UpdateAgent(ctx context.Context, caller authn.Identity, agentID string, in UpdateAgentInput) (Agent, error) {
	target, err := s.authorizeOn(ctx, caller, agentID, opUpdateAgent)
	if err != nil {
		return Agent{}, err
	}
	org := target.OrganizationID
	f := fieldErrors{}
	if in.Version != nil {
		checkVersion(f, *in.Version)
	}
	if in.Capabilities != nil {
		checkCapabilities(f, *in.Capabilities)
	}
	if in.Owner != nil {
		checkOwner(f, *in.Owner)
	}
	if in.DeploymentEnv != nil {
		checkEnum(f, "deploymentEnv", *in.DeploymentEnv, DeploymentEnvs)
	}
	if in.AgentType != nil {
		checkEnum(f, "agentType", *in.AgentType, AgentTypes)
	}
	if in.Status != nil {
		checkEnum(f, "status", *in.Status, []string{StatusActive, StatusSuspended})
	}
	if in.Scopes != nil {
		sc := dedupe(*in.Scopes)
		in.Scopes = &sc
		if len(sc) == 0 {
			f["scopes"] = "must list at least one scope"
		}
		checkScopes(f, "scopes", sc)
	}
	if in.DefaultScopes != nil {
		sc := dedupe(*in.DefaultScopes)
		in.DefaultScopes = &sc
		checkScopes(f, "defaultScopes", sc)
	}
	if err := f.err(); err != nil {
		return Agent{}, err
	}
	if in.Scopes != nil {
		if err := mayGrant(caller, "scopes", *in.Scopes); err != nil {
			return Agent{}, err
		}
	}
	if in.DefaultScopes != nil {
		if err := mayGrant(caller, "defaultScopes", *in.DefaultScopes); err != nil {
			return Agent{}, err
		}
	}
	limit := s.orgs.Limits(org).MaxAgents
	var revs []Revocation
	a, count, err := s.store.UpdateAgent(ctx, org, agentID, func(a *Agent) (AgentChange, error) {
		revs = nil
		ch := AgentChange{MaxAgents: -1}
		// The rule again on the row as locked: a concurrent change may have
		// widened the target since authorizeOn read it.
		if err := mayManage(caller, *a, opUpdateAgent); err != nil {
			return ch, err
		}
		if a.Status == StatusDecommissioned {
			return ch, httpx.Conflict(CodeAgentDecommission, "a decommissioned agent cannot be updated")
		}
		prev := a.Status
		oldScopes := slices.Clone(a.Scopes)
		changed := false
		set := func(dst *string, v *string) {
			if v != nil && *dst != *v {
				*dst, changed = *v, true
			}
		}
		setList := func(dst *[]string, v *[]string) {
			if v != nil && !slices.Equal(*dst, *v) {
				*dst, changed = slices.Clone(*v), true
			}
		}
		set(&a.Version, in.Version)
		setList(&a.Capabilities, in.Capabilities)
		set(&a.Owner, in.Owner)
		set(&a.DeploymentEnv, in.DeploymentEnv)
		set(&a.AgentType, in.AgentType)
		setList(&a.Scopes, in.Scopes)
		if in.Scopes != nil && in.DefaultScopes == nil {
			// Keep defaults within the new scopes.
			kept := []string{}
			for _, d := range a.DefaultScopes {
				if slices.Contains(a.Scopes, d) {
					kept = append(kept, d)
				}
			}
			setList(&a.DefaultScopes, &kept)
		}
		setList(&a.DefaultScopes, in.DefaultScopes)
		if !containsAll(a.Scopes, a.DefaultScopes) {
			return ch, httpx.Validation("invalid request body", map[string]string{"defaultScopes": "must be a subset of scopes"})
		}
		statusChanged := in.Status != nil && *in.Status != prev
		if statusChanged {
			a.Status = *in.Status
		}
		if !changed && !statusChanged {
			ch.Skip = true
			return ch, nil
		}
		a.UpdatedAt = s.now().UTC().Truncate(time.Microsecond)
		if changed {
			ev, err := agentEvent(events.AgentUpdated, *a, "")
			if err != nil {
				return ch, err
			}
			ch.Events = append(ch.Events, ev)
		}
		// Every token the agent holds dies with a suspension or with the
		// removal of any scope (docs/security.md, "Scopes": an agent
		// watermark, not a per-scope entry, so the gateway's check stays
		// what it is); a reactivation leaves the watermark, so they stay
		// dead, and the client simply asks for a new token.
		suspended := statusChanged && a.Status == StatusSuspended
		if suspended || !containsAll(a.Scopes, oldScopes) {
			ch.Revocations = []Revocation{s.watermark(revocation.KindAgent, a.AgentID, a.UpdatedAt)}
			revs = ch.Revocations
		}
		if statusChanged {
			t := events.AgentSuspended
			if a.Status == StatusActive {
				t = events.AgentReactivated
				ch.MaxAgents = limit
			}
			ev, err := agentEvent(t, *a, prev)
			if err != nil {
				return ch, err
			}
			ch.Events = append(ch.Events, ev)
		}
		return ch, nil
	})
	if err != nil {
		return Agent{}, s.mapAgentErr(agentID, err, limit)
	}
	s.notify()
	s.clients.Invalidate(agentID)
	s.revocationsCommitted(ctx, revs)
	if in.Status != nil {
		s.publishUsage(ctx, org, count)
	}
	return a, nil
}

func (s *Service) mapAgentErr(agentID string, err error, limit int64) error {
	var he *httpx.Error
	switch {
	case errors.As(err, &he):
		return he
	case errors.Is(err, ErrNotFound):
		return notFoundAgent()
	case errors.Is(err, ErrAgentLimit):
		return tierLimit(limit)
	case errors.Is(err, ErrDecommissioned):
		return httpx.Conflict(CodeAgentDecommission, "the agent is decommissioned")
	}
	return httpx.Internal(fmt.Errorf("agent %s: %w", agentID, err))
}

// DecommissionAgent soft-deletes the agent and revokes its credentials.
// Decommissioning twice succeeds and changes nothing the second time.
func (s *Service) DecommissionAgent(ctx context.Context, caller authn.Identity, agentID string) error {
	target, err := s.authorizeOn(ctx, caller, agentID, opDecommission)
	if err != nil {
		return err
	}
	org := target.OrganizationID
	var revs []Revocation
	_, count, err := s.store.UpdateAgent(ctx, org, agentID, func(a *Agent) (AgentChange, error) {
		if err := mayManage(caller, *a, opDecommission); err != nil {
			return AgentChange{}, err
		}
		if a.Status == StatusDecommissioned {
			return AgentChange{Skip: true}, nil
		}
		prev := a.Status
		a.Status = StatusDecommissioned
		a.UpdatedAt = s.now().UTC().Truncate(time.Microsecond)
		ev, err := agentEvent(events.AgentDecommissioned, *a, prev)
		if err != nil {
			return AgentChange{}, err
		}
		revs = []Revocation{s.watermark(revocation.KindAgent, a.AgentID, a.UpdatedAt)}
		return AgentChange{Events: []events.Envelope{ev}, MaxAgents: -1, RevokeCredentials: true, Revocations: revs}, nil
	})
	if err != nil {
		return s.mapAgentErr(agentID, err, -1)
	}
	s.notify()
	s.clients.Invalidate(agentID)
	s.revocationsCommitted(ctx, revs)
	s.publishUsage(ctx, org, count)
	return nil
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }
