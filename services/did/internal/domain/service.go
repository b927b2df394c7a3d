package domain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/libs/jose"
	"github.com/google/uuid"
)

var errInvalidBase = errors.New("base URL must be an absolute http(s) URL")

// Scopes the API checks.
const (
	ScopeAgentsRead  = "agents:read"
	ScopeAgentsWrite = "agents:write"
	ScopeAdminOrgs   = "admin:orgs"
)

// Options configure the Service.
type Options struct {
	WebHost    string        // did:web host, port percent-encoded
	BaseURL    string        // public https base of the IdP (no trailing slash)
	RetiredTTL time.Duration // how long a retired key stays listed
	CacheSize  int           // documents kept in memory
	CacheTTL   time.Duration // bound on staleness across replicas
	Logger     *slog.Logger
	Notify     func() // called after a commit that wrote events (outbox relay)
	Now        func() time.Time
}

// Service issues DID keys and renders DID documents.
type Service struct {
	store  Store
	keys   KeyStore
	o      Options
	cache  *docCache
	instMu sync.Mutex
}

// NewService returns the service; zero options take defaults.
func NewService(store Store, keys KeyStore, o Options) *Service {
	if o.RetiredTTL <= 0 {
		o.RetiredTTL = 24 * time.Hour
	}
	if o.CacheSize <= 0 {
		o.CacheSize = 10000
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Notify == nil {
		o.Notify = func() {}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.BaseURL = strings.TrimRight(o.BaseURL, "/")
	return &Service{store: store, keys: keys, o: o, cache: newDocCache(o.CacheSize, o.CacheTTL, o.Now)}
}

// InstanceDID is the IdP's own DID (did:web:<host>).
func (s *Service) InstanceDID() string { return "did:web:" + s.o.WebHost }

// AgentDID is the DID of an agent: did:web:<host>:agents:<id>, which a
// did:web resolver fetches from https://<host>/agents/<id>/did.json.
func (s *Service) AgentDID(agentID string) string {
	return "did:web:" + s.o.WebHost + ":agents:" + agentID
}

// validAgentID reports whether id can name an agent; anything else is a 404.
func validAgentID(id string) bool {
	_, err := uuid.Parse(id)
	return err == nil && len(id) == 36
}

func notFound() *httpx.Error { return httpx.NotFound(CodeAgentNotFound, "agent not found") }

// Gone is the 410 for a decommissioned agent's DID.
func Gone() *httpx.Error {
	return &httpx.Error{Status: 410, Code: CodeAgentDecommissioned, Message: "the agent is decommissioned and its DID deactivated"}
}

// agentPayload is events.AgentData plus the optional descriptive fields the
// token service may add (capabilities, owner, version, deploymentEnv); they
// flow into agent cards when present.
type agentPayload struct {
	events.AgentData
	Capabilities  []string `json:"capabilities,omitempty"`
	Owner         string   `json:"owner,omitempty"`
	Version       string   `json:"version,omitempty"`
	DeploymentEnv string   `json:"deploymentEnv,omitempty"`
}

// HandleEvent applies one agent.* event: it updates the read model and, for
// an agent that is not decommissioned, makes sure it has a DID key (so the
// first event of any kind heals a missed agent.created). credential.generated
// and credential.revoked of agent-held keys add and remove verification
// methods (see handleCredential). It is idempotent. Malformed events are
// skipped (logged), not retried.
func (s *Service) HandleEvent(ctx context.Context, e events.Envelope) error {
	switch e.Type {
	case events.AgentCreated, events.AgentUpdated, events.AgentSuspended, events.AgentReactivated, events.AgentDecommissioned:
	case events.CredentialGenerated, events.CredentialRevoked:
		return s.handleCredential(ctx, e)
	default:
		return nil
	}
	var p agentPayload
	if err := e.DecodeData(&p); err != nil || !validAgentID(p.AgentID) || p.OrganizationID == "" {
		s.o.Logger.Warn("skipping malformed agent event", "event", e.ID, "type", e.Type)
		return nil
	}
	at := p.At
	if at.IsZero() {
		at = e.Time
	}
	status := p.Status
	if e.Type == events.AgentDecommissioned {
		status = StatusDecommissioned
	}
	if status == "" {
		status = StatusActive
	}
	caps := p.Capabilities
	if caps == nil {
		caps = []string{}
	}
	// The key comes first so that the document never appears without one.
	if status != StatusDecommissioned {
		if err := s.ensureKey(ctx, p.AgentID, p.OrganizationID); err != nil {
			return err
		}
	}
	a, err := s.store.ApplyAgent(ctx, Agent{
		AgentID: p.AgentID, OrgID: p.OrganizationID, Email: p.Email, AgentType: p.AgentType, Status: status,
		Capabilities: caps, Owner: p.Owner, Version: p.Version, DeploymentEnv: p.DeploymentEnv, Scopes: p.Scopes, UpdatedAt: at.UTC(),
	})
	if err != nil {
		return fmt.Errorf("apply %s for agent %s: %w", e.Type, p.AgentID, err)
	}
	s.cache.invalidate(a.AgentID)
	return nil
}

// Invalidate drops the cached document of subject (called from the
// replica-wide invalidation subscription).
func (s *Service) Invalidate(subject string) { s.cache.invalidate(subject) }

// ensureKey creates the first key of subject unless it has one.
func (s *Service) ensureKey(ctx context.Context, subject, orgID string) error {
	keys, err := s.store.Keys(ctx, subject)
	if err != nil {
		return err
	}
	if len(keys) > 0 {
		return nil
	}
	k, err := s.newKey(ctx, subject)
	if err != nil {
		return err
	}
	var evs []events.Envelope
	if subject != InstanceSubject {
		ev, err := events.New(events.DIDCreated, Source, orgID, subject, DIDData{
			AgentID: subject, DID: s.AgentDID(subject), KID: k.KID, At: k.CreatedAt,
		})
		if err != nil {
			return err
		}
		evs = append(evs, ev)
	}
	err = s.store.CreateFirstKey(ctx, k, evs)
	if errors.Is(err, ErrKeyExists) {
		return nil // another replica or a redelivery won; its key stands
	}
	if err != nil {
		return fmt.Errorf("create DID key for %s: %w", subject, err)
	}
	s.cache.invalidate(subject)
	if len(evs) > 0 {
		s.o.Notify()
	}
	return nil
}

// newKey generates an EC P-256 key, stores its private half in the key
// store and returns the public record (not yet saved).
func (s *Service) newKey(ctx context.Context, subject string) (Key, error) {
	pk, err := jose.GenerateKey(jose.ES256)
	if err != nil {
		return Key{}, err
	}
	der, err := jose.MarshalPrivateKey(pk)
	if err != nil {
		return Key{}, err
	}
	jwk, err := pk.PublicJWK()
	if err != nil {
		return Key{}, err
	}
	jwk.Use = "sig"
	ref := KeyRef(subject, pk.KID)
	if err := s.keys.Put(ctx, ref, der); err != nil {
		return Key{}, fmt.Errorf("store DID private key: %w", err)
	}
	return Key{Subject: subject, KID: pk.KID, PublicJWK: jwk, KeyRef: ref, Status: KeyActive,
		CreatedAt: s.o.Now().UTC().Truncate(time.Microsecond)}, nil
}

// EnsureInstanceKey creates the IdP instance DID's key if it has none.
func (s *Service) EnsureInstanceKey(ctx context.Context) error {
	s.instMu.Lock()
	defer s.instMu.Unlock()
	return s.ensureKey(ctx, InstanceSubject, "")
}

// View is an agent with its rendered DID document.
type View struct {
	Agent    Agent
	Document Document
	Meta     DocumentMetadata
}

// AgentView returns the agent's DID document (cached). Unknown agents are
// a 404; decommissioned ones are returned with Meta.Deactivated set, and
// the caller decides between 410 and a resolution result.
func (s *Service) AgentView(ctx context.Context, agentID string) (View, error) {
	if !validAgentID(agentID) {
		return View{}, notFound()
	}
	if v, ok := s.cache.get(agentID); ok {
		return v, nil
	}
	a, err := s.store.GetAgent(ctx, agentID)
	if errors.Is(err, ErrNotFound) {
		return View{}, notFound()
	}
	if err != nil {
		return View{}, httpx.Unavailable("agent store unavailable", err)
	}
	keys, err := s.store.Keys(ctx, agentID)
	if err != nil {
		return View{}, httpx.Unavailable("key store unavailable", err)
	}
	allHeld, err := s.store.AgentHeldKeys(ctx, agentID)
	if err != nil {
		return View{}, httpx.Unavailable("key store unavailable", err)
	}
	allHeld = slices.DeleteFunc(allHeld, func(k AgentHeldKey) bool { return k.OrgID != a.OrgID })
	held := listedHeldKeys(allHeld)
	did := s.AgentDID(agentID)
	services := []ServiceEndpoint{
		{ID: did + "#oauth2-token", Type: "OAuth2TokenEndpoint", ServiceEndpoint: s.o.BaseURL + "/oauth2/token"},
		{ID: did + "#agent-card", Type: "AgentCard", ServiceEndpoint: s.o.BaseURL + "/api/v1/agents/" + agentID + "/did/card"},
	}
	v := View{
		Agent:    a,
		Document: document(did, s.InstanceDID(), keys, held, services, s.o.Now(), s.o.RetiredTTL),
		Meta:     metadata(a.CreatedAt, a.UpdatedAt, keys, allHeld),
	}
	v.Meta.AgentHeldKeys = heldMethodIDs(v.Document, did, held)
	v.Meta.Deactivated = a.Status == StatusDecommissioned
	if a.Status != StatusActive {
		v.Meta.AgentStatus = a.Status
	}
	if v.Meta.Deactivated {
		v.Document = Document{}
	}
	s.cache.put(agentID, v)
	return v, nil
}

func metadata(created, updated time.Time, keys []Key, held []AgentHeldKey) DocumentMetadata {
	m := DocumentMetadata{Created: created, Updated: updated}
	for _, k := range keys {
		if k.CreatedAt.Before(m.Created) || m.Created.IsZero() {
			m.Created = k.CreatedAt
		}
		if k.CreatedAt.After(m.Updated) {
			m.Updated = k.CreatedAt
		}
	}
	// Adding or revoking an agent-held key changes the document too.
	for _, k := range held {
		if k.PublicJWK.Kty != "" && k.CreatedAt.After(m.Updated) {
			m.Updated = k.CreatedAt
		}
		if k.RevokedAt != nil && k.RevokedAt.After(m.Updated) {
			m.Updated = *k.RevokedAt
		}
	}
	return m
}

// heldMethodIDs are the ids of the listed verification methods that are
// agent-held (nil when none), for the resolution metadata.
func heldMethodIDs(d Document, did string, held []AgentHeldKey) []string {
	listed := map[string]bool{}
	for _, vm := range d.VerificationMethod {
		listed[vm.ID] = true
	}
	var out []string
	for _, k := range held {
		if id := did + "#" + k.KID; listed[id] && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// InstanceDocument returns the IdP's own DID document.
func (s *Service) InstanceDocument(ctx context.Context) (Document, error) {
	if v, ok := s.cache.get(InstanceSubject); ok {
		return v.Document, nil
	}
	keys, err := s.store.Keys(ctx, InstanceSubject)
	if err != nil {
		return Document{}, httpx.Unavailable("key store unavailable", err)
	}
	did := s.InstanceDID()
	services := []ServiceEndpoint{
		{ID: did + "#oauth2-token", Type: "OAuth2TokenEndpoint", ServiceEndpoint: s.o.BaseURL + "/oauth2/token"},
		{ID: did + "#jwks", Type: "JsonWebKeySet", ServiceEndpoint: s.o.BaseURL + "/.well-known/jwks.json"},
		{ID: did + "#openid-configuration", Type: "OpenIdConfiguration", ServiceEndpoint: s.o.BaseURL + "/.well-known/openid-configuration"},
	}
	d := document(did, did, keys, nil, services, s.o.Now(), s.o.RetiredTTL)
	s.cache.put(InstanceSubject, View{Document: d})
	return d, nil
}

// Resolve returns the W3C DID Resolution result for an agent.
func (s *Service) Resolve(ctx context.Context, agentID string) (Resolution, error) {
	v, err := s.AgentView(ctx, agentID)
	if err != nil {
		return Resolution{}, err
	}
	r := Resolution{
		Context:               "https://w3id.org/did-resolution/v1",
		DIDResolutionMetadata: ResolutionMetadata{ContentType: "application/did+ld+json"},
		DIDDocumentMetadata:   v.Meta,
	}
	if !v.Meta.Deactivated {
		d := v.Document
		r.DIDDocument = &d
	}
	return r, nil
}

// Card returns the agent card; decommissioned agents are a 410.
func (s *Service) Card(ctx context.Context, agentID string) (Card, error) {
	v, err := s.AgentView(ctx, agentID)
	if err != nil {
		return Card{}, err
	}
	if v.Meta.Deactivated {
		return Card{}, Gone()
	}
	a := v.Agent
	return Card{
		DID: s.AgentDID(a.AgentID), Name: a.Email, AgentType: a.AgentType, Capabilities: a.Capabilities,
		Owner: a.Owner, Version: a.Version, DeploymentEnv: a.DeploymentEnv, Status: a.Status,
		IdentityProvider: s.InstanceDID(), IssuedAt: v.Meta.Created,
	}, nil
}

// Rotation is the result of a key rotation.
type Rotation struct {
	DID         string    `json:"did"`
	KID         string    `json:"kid"`
	PreviousKID string    `json:"previousKid"`
	RotatedAt   time.Time `json:"rotatedAt"`
	DIDDocument Document  `json:"didDocument"`
}

// Rotate gives the agent a new active key; the previous one is retired but
// stays listed for RetiredTTL. The caller needs agents:write in the agent's
// organisation and the privilege rule must allow it (mayRotate), or
// admin:orgs.
func (s *Service) Rotate(ctx context.Context, caller authn.Identity, agentID string) (Rotation, error) {
	if err := httpx.RequireScope(caller, ScopeAgentsWrite, ScopeAdminOrgs); err != nil {
		return Rotation{}, err
	}
	if !validAgentID(agentID) {
		return Rotation{}, notFound()
	}
	a, err := s.store.GetAgent(ctx, agentID)
	if errors.Is(err, ErrNotFound) || (err == nil && a.OrgID != caller.OrgID && !caller.HasScope(ScopeAdminOrgs)) {
		return Rotation{}, notFound()
	}
	if err != nil {
		return Rotation{}, httpx.Unavailable("agent store unavailable", err)
	}
	if err := mayRotate(caller, a); err != nil {
		return Rotation{}, err
	}
	if a.Status == StatusDecommissioned {
		return Rotation{}, Gone()
	}
	k, err := s.newKey(ctx, agentID)
	if err != nil {
		return Rotation{}, httpx.Internal(err)
	}
	did := s.AgentDID(agentID)
	old, err := s.store.RotateKey(ctx, k, func(old Key) ([]events.Envelope, error) {
		ev, err := events.New(events.DIDKeyRotated, Source, a.OrgID, agentID,
			DIDData{AgentID: agentID, DID: did, KID: k.KID, PreviousKID: old.KID, At: k.CreatedAt})
		return []events.Envelope{ev}, err
	})
	if errors.Is(err, ErrNoActiveKey) {
		// The agent's created event has not been processed yet: the new
		// key becomes its first.
		ev, evErr := events.New(events.DIDCreated, Source, a.OrgID, agentID, DIDData{AgentID: agentID, DID: did, KID: k.KID, At: k.CreatedAt})
		if evErr != nil {
			return Rotation{}, httpx.Internal(evErr)
		}
		err = s.store.CreateFirstKey(ctx, k, []events.Envelope{ev})
		if errors.Is(err, ErrKeyExists) {
			return Rotation{}, httpx.Conflict("DID_ROTATION_CONFLICT", "a concurrent key change happened; retry")
		}
	}
	if err != nil {
		return Rotation{}, httpx.Internal(err)
	}
	s.o.Notify()
	s.cache.invalidate(agentID)
	v, err := s.AgentView(ctx, agentID)
	if err != nil {
		return Rotation{}, err
	}
	return Rotation{DID: did, KID: k.KID, PreviousKID: old.KID, RotatedAt: k.CreatedAt, DIDDocument: v.Document}, nil
}

// mayRotate applies the privilege rule of docs/security.md ("Privilege
// model") to a DID key rotation, with the token service's refusal: the
// caller may rotate the key of an agent whose scopes are a subset of its
// token's (authn.MayManage, the one definition of the rule); admin:orgs
// rotates everyone's. The scopes come from this service's read model, fed
// by agent events; while they are unknown (an agent whose last event
// predates the did service keeping them) it fails closed: 403 for
// everyone but a platform operator, since an empty list would let any
// agents:write holder through.
func mayRotate(caller authn.Identity, a Agent) error {
	if caller.HasScope(ScopeAdminOrgs) {
		return nil
	}
	if a.Scopes == nil {
		return httpx.Forbidden("cannot rotate the DID key of this agent: its scopes are not known to the did service yet " +
			"(they arrive with the agent's next event), and an agent may only manage agents whose scopes are a subset of its own " +
			"(only admin:orgs manages everyone)")
	}
	if !authn.MayManage(caller, a.Scopes) {
		return httpx.Forbidden("cannot rotate the DID key of this agent: it holds scopes the caller does not, " +
			"and an agent may only manage agents whose scopes are a subset of its own (only admin:orgs manages everyone)")
	}
	return nil
}
