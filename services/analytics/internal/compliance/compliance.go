// Package compliance builds the AGNTCY compliance report, the agent cards
// and the SOC 2 control status from the read model the consumer keeps
// (agents, DIDs, credentials), the event counters and the audit chain.
package compliance

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"

	"github.com/agentidp/agentidp/services/analytics/internal/audit"
	"github.com/google/uuid"
)

// Agent is the read model of one agent.
type Agent struct {
	AgentID   string
	Email     string
	AgentType string
	Status    string // "" until an agent.* event was seen (only a DID known)
	Scopes    []string
	CreatedAt time.Time // zero when agent.created was not seen
	DID       string
	DIDAt     time.Time
}

// Credential is the read model of one credential (never its secret).
type Credential struct {
	CredentialID string
	AgentID      string
	Status       string
	ExpiresAt    time.Time // zero = no expiry
	IssuedAt     time.Time // last generated or rotated; zero = unknown
}

// Store reads the compliance read model of one organisation.
type Store interface {
	// Agents returns every agent known for org, by agent id.
	Agents(ctx context.Context, org string) ([]Agent, error)
	// Credentials returns every credential known for org, by id.
	Credentials(ctx context.Context, org string) ([]Credential, error)
}

// Counter reads daily event counters (counting.Service).
type Counter interface {
	Counts(ctx context.Context, orgID, metric, from, to string) (map[string]int64, error)
}

// Verifier verifies an organisation's audit chain (audit.Service).
type Verifier interface {
	Verify(ctx context.Context, org string) (audit.Verification, error)
}

// Cache holds rendered reports (cache.Cache satisfies it).
type Cache interface {
	Get(ctx context.Context, key string) ([]byte, bool, error)
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
}

// Statuses of requirements, sections and reports, worst last.
const (
	StatusPass = "pass"
	StatusWarn = "warn"
	StatusFail = "fail"
)

// SpecVersion is the AGNTCY specification version reported.
const SpecVersion = "1.0.0"

// ReportTTL is how long a report is served from the cache.
const ReportTTL = 5 * time.Minute

// RotationMaxAge is the credential rotation policy checked by AUTH-001.
const RotationMaxAge = 90 * 24 * time.Hour

// Requirement is one checked requirement.
type Requirement struct {
	ID          string    `json:"id"`
	Description string    `json:"description"`
	Status      string    `json:"status"`
	Evidence    string    `json:"evidence"`
	VerifiedAt  time.Time `json:"verifiedAt"`
}

// Section groups requirements.
type Section struct {
	ID           string        `json:"id"`
	Name         string        `json:"name"`
	Status       string        `json:"status"`
	Requirements []Requirement `json:"requirements"`
}

// Report is the AGNTCY compliance report of one organisation.
type Report struct {
	ReportID          string    `json:"reportId"`
	GeneratedAt       time.Time `json:"generatedAt"`
	AgntcySpecVersion string    `json:"agntcySpecVersion"`
	OrganizationID    string    `json:"organizationId"`
	OverallStatus     string    `json:"overallStatus"`
	Sections          []Section `json:"sections"`
}

// AgentCard describes one active agent.
type AgentCard struct {
	DID              string    `json:"did"`
	Name             string    `json:"name"`
	AgentType        string    `json:"agentType"`
	Capabilities     []string  `json:"capabilities"`
	Owner            string    `json:"owner"`
	Version          string    `json:"version"`
	DeploymentEnv    string    `json:"deploymentEnv"`
	IdentityProvider string    `json:"identityProvider"`
	IssuedAt         time.Time `json:"issuedAt"`
}

// Service implements the compliance use cases.
type Service struct {
	store    Store
	counter  Counter
	verifier Verifier
	cache    Cache
	issuer   string
	logger   *slog.Logger
	now      func() time.Time
}

// NewService returns the service; issuer is the identityProvider of the
// agent cards.
func NewService(store Store, counter Counter, verifier Verifier, cache Cache, issuer string, logger *slog.Logger) *Service {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Service{store: store, counter: counter, verifier: verifier, cache: cache, issuer: issuer, logger: logger,
		now: func() time.Time { return time.Now().UTC() }}
}

func worst(a, b string) string {
	rank := map[string]int{StatusPass: 0, StatusWarn: 1, StatusFail: 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// CacheKey is the cache key of org's report.
func CacheKey(org string) string { return "compliance:report:" + org }

// Report returns org's report, from the cache when one younger than
// ReportTTL exists. A cache failure only costs a rebuild.
func (s *Service) Report(ctx context.Context, org string) (Report, error) {
	key := CacheKey(org)
	if raw, ok, err := s.cache.Get(ctx, key); err != nil {
		s.logger.Warn("compliance cache get", "err", err)
	} else if ok {
		var r Report
		if json.Unmarshal(raw, &r) == nil {
			return r, nil
		}
	}
	r, err := s.build(ctx, org)
	if err != nil {
		return Report{}, err
	}
	if raw, err := json.Marshal(r); err == nil {
		if err := s.cache.Set(ctx, key, raw, ReportTTL); err != nil {
			s.logger.Warn("compliance cache set", "err", err)
		}
	}
	return r, nil
}

func (s *Service) build(ctx context.Context, org string) (Report, error) {
	now := s.now()
	agents, err := s.store.Agents(ctx, org)
	if err != nil {
		return Report{}, fmt.Errorf("compliance report: %w", err)
	}
	creds, err := s.store.Credentials(ctx, org)
	if err != nil {
		return Report{}, fmt.Errorf("compliance report: %w", err)
	}
	v, err := s.verifier.Verify(ctx, org)
	if err != nil {
		return Report{}, fmt.Errorf("compliance report: %w", err)
	}
	from := now.AddDate(0, 0, -7).Format("2006-01-02")
	failed, err := s.counter.Counts(ctx, org, "auth.failed", from, now.Format("2006-01-02"))
	if err != nil {
		return Report{}, fmt.Errorf("compliance report: %w", err)
	}
	req := func(id, desc, status, evidence string) Requirement {
		return Requirement{ID: id, Description: desc, Status: status, Evidence: evidence, VerifiedAt: now}
	}

	var active []Agent
	for _, a := range agents {
		if a.Status == "active" {
			active = append(active, a)
		}
	}
	noDID := 0
	for _, a := range active {
		if a.DID == "" {
			noDID++
		}
	}
	activeCred := map[string]bool{}
	stale, expired := 0, 0
	for _, c := range creds {
		if c.Status != "active" {
			continue
		}
		activeCred[c.AgentID] = true
		if !c.ExpiresAt.IsZero() && c.ExpiresAt.Before(now) {
			expired++
		}
		if c.IssuedAt.IsZero() || now.Sub(c.IssuedAt) > RotationMaxAge {
			stale++
		}
	}
	noCred := 0
	for _, a := range active {
		if !activeCred[a.AgentID] {
			noCred++
		}
	}

	ai1 := req("AI-001", "Every active agent has a decentralised identifier (DID)", StatusPass, fmt.Sprintf("%d of %d active agents have a DID", len(active)-noDID, len(active)))
	if noDID > 0 {
		ai1.Status = StatusFail
	}
	ai2 := req("AI-002", "Every active agent has an active credential", StatusPass, fmt.Sprintf("%d of %d active agents have an active credential", len(active)-noCred, len(active)))
	if noCred > 0 {
		ai2.Status = StatusWarn
	}
	auth1 := req("AUTH-001", "Active credentials were issued or rotated within the last 90 days", StatusPass, fmt.Sprintf("%d active credentials older than 90 days", stale))
	if stale > 0 {
		auth1.Status = StatusWarn
	}
	auth2 := req("AUTH-002", "No active credential is past its expiry", StatusPass, fmt.Sprintf("%d active credentials past expiry", expired))
	if expired > 0 {
		auth2.Status = StatusFail
	}
	today := failed[now.Format("2006-01-02")]
	var prior int64
	for day, n := range failed {
		if day != now.Format("2006-01-02") {
			prior += n
		}
	}
	avg := float64(prior) / 7
	auth3 := req("AUTH-003", "No spike of failed authentications (today at most 3x the 7-day daily average, or at most 10)", StatusPass,
		fmt.Sprintf("%d failed authentications today; 7-day daily average %.1f", today, avg))
	if today > 10 && float64(today) > 3*avg {
		auth3.Status = StatusWarn
	}
	at1 := req("AT-001", "The keyed audit chain verifies from its latest signed checkpoint", StatusPass,
		fmt.Sprintf("%d records verified (seq %d..%d)", v.Checked, v.FirstSeq, v.LastSeq))
	if !v.Valid {
		at1.Status = StatusFail
		at1.Evidence = fmt.Sprintf("chain broken at seq %d: %s", v.BrokenAt.Seq, v.BrokenAt.Reason)
	}

	sections := []Section{
		{ID: "agent-identity", Name: "Agent Identity", Requirements: []Requirement{ai1, ai2}},
		{ID: "authentication", Name: "Authentication", Requirements: []Requirement{auth1, auth2, auth3}},
		{ID: "audit-trail", Name: "Audit Trail", Requirements: []Requirement{at1}},
	}
	overall := StatusPass
	for i := range sections {
		st := StatusPass
		for _, r := range sections[i].Requirements {
			st = worst(st, r.Status)
		}
		sections[i].Status = st
		overall = worst(overall, st)
	}
	return Report{ReportID: uuid.NewString(), GeneratedAt: now, AgntcySpecVersion: SpecVersion, OrganizationID: org,
		OverallStatus: overall, Sections: sections}, nil
}

// AgentCards returns a card per active agent of org, by agent id.
// Capabilities are the agent's scopes (the events carry no capability
// list); owner, version and deploymentEnv are not in the events and stay
// empty.
func (s *Service) AgentCards(ctx context.Context, org string) ([]AgentCard, error) {
	agents, err := s.store.Agents(ctx, org)
	if err != nil {
		return nil, fmt.Errorf("agent cards: %w", err)
	}
	out := []AgentCard{}
	for _, a := range agents {
		if a.Status != "active" {
			continue
		}
		issued := a.DIDAt
		if issued.IsZero() {
			issued = a.CreatedAt
		}
		caps := a.Scopes
		if caps == nil {
			caps = []string{}
		}
		out = append(out, AgentCard{DID: a.DID, Name: a.Email, AgentType: a.AgentType, Capabilities: caps,
			IdentityProvider: s.issuer, IssuedAt: issued})
	}
	return out, nil
}

// Control is the status of one SOC 2 control.
type Control struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Status      string `json:"status"`
	Description string `json:"description"`
}

// Controls returns the SOC 2 controls in scope. integrity is the result of
// the last background chain verification (known false before the first).
func Controls(integrity, known bool) []Control {
	audit := Control{ID: "CC7.2", Name: "Audit log integrity", Status: StatusPass,
		Description: "Every event is recorded in a per-organisation HMAC chain under a key kept outside the database, verified hourly; retention trims behind signed checkpoints."}
	switch {
	case !known:
		audit.Status = StatusWarn
		audit.Description += " No verification has completed yet."
	case !integrity:
		audit.Status = StatusFail
		audit.Description += " The last verification found a broken chain."
	}
	return []Control{
		{ID: "CC6.7", Name: "Transmission encryption", Status: StatusPass,
			Description: "External traffic terminates TLS at the gateway; internal calls carry a signed, expiring context."},
		audit,
		{ID: "CC9.2", Name: "Secrets rotation", Status: StatusPass,
			Description: "Client credentials are rotatable and expire; rotation age is reported per organisation (AUTH-001)."},
		{ID: "ENC-REST", Name: "Encryption at rest", Status: StatusPass,
			Description: "Secrets are stored only as digests or in the secrets backend; databases run on encrypted volumes."},
		{ID: "ALERT", Name: "Alerting", Status: StatusPass,
			Description: "Prometheus metrics (including agentidp_audit_chain_integrity) back the alerting rules."},
	}
}
