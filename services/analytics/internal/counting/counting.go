// Package counting is the analytics service's domain: it counts every event
// once per (organisation, UTC day of the event, event type), however often
// the event is delivered, and answers daily series.
package counting

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/agentidp/agentidp/libs/events"
)

// DateLayout is how days are written (and stored).
const DateLayout = "2006-01-02"

// Event is one event to count and audit.
type Event struct {
	ID     string // the envelope id: counting is idempotent per id
	OrgID  string
	Date   string // UTC day of the event time, YYYY-MM-DD
	Metric string // the event type, e.g. "token.issued"
	// Hour is the UTC hour (0..23) of the event time.
	Hour int
	// Time is the event time (UTC). Zero is taken as Date at Hour.
	Time time.Time
	// Subject is the envelope subject (the agent for agent-scoped events).
	Subject string
	// Source is the publishing service.
	Source string
	// Data is the event payload (JSON), kept as the audit metadata.
	Data []byte

	// Read-model changes carried by the event (at most one is set).
	Agent      *AgentUpdate
	DID        *DIDUpdate
	Credential *CredentialUpdate
}

// AgentUpdate is the state of an agent after an agent.* event. The read
// model keeps the state of the latest event time (last writer wins), so
// redelivered or reordered events converge.
type AgentUpdate struct {
	AgentID   string
	Email     string
	AgentType string
	Status    string
	Scopes    []string
	Created   bool // agent.created: At is the creation time
	At        time.Time
}

// DIDUpdate records an agent's DID (did.created).
type DIDUpdate struct {
	AgentID string
	DID     string
	At      time.Time
}

// CredentialUpdate is the state of a credential after a credential.* event.
type CredentialUpdate struct {
	CredentialID string
	AgentID      string
	Status       string
	ExpiresAt    *time.Time
	Issued       bool // generated or rotated at At
	At           time.Time
}

// HourCount is the number of events of one UTC day and hour.
type HourCount struct {
	Date  string
	Hour  int
	Count int64
}

// AgentUsage is one agent's token issuances over a period.
type AgentUsage struct {
	AgentID      string
	Tokens       int64
	LastActiveAt time.Time
}

// Store keeps the counters.
type Store interface {
	// Apply counts, atomically for the whole batch, every event whose ID
	// has not been applied before: its ID is recorded as processed (at now)
	// and the counter (OrgID, Date, Metric) grows by one. Events already
	// applied, by an earlier or a concurrent call or earlier in the same
	// batch, change nothing. On error nothing of the batch is applied.
	//
	// In the same transaction, every new event also:
	//   - adds one to the hourly counter (OrgID, Date, Hour);
	//   - for token.issued with a Subject, adds one to the agent's daily
	//     token counter (OrgID, Date, Subject) and raises its last activity;
	//   - is appended to OrgID's audit hash chain (see package audit), at
	//     most once per ID, with the chain serialised across concurrent
	//     callers (no fork, no gap); within a batch an org's events are
	//     appended in (Time, ID) order;
	//   - applies its Agent/DID/Credential read-model change (last event
	//     time wins).
	Apply(ctx context.Context, batch []Event, now time.Time) error
	// Activity returns orgID's hourly counters for the days from..to
	// (inclusive); hours without events are absent.
	Activity(ctx context.Context, orgID, from, to string) ([]HourCount, error)
	// AgentUsage returns, per agent of orgID, the tokens issued on the days
	// from..to (inclusive) and the time of the latest, by agent id.
	AgentUsage(ctx context.Context, orgID, from, to string) ([]AgentUsage, error)
	// Counts returns the counters of orgID and metric for the days from..to
	// (inclusive, YYYY-MM-DD), keyed by day; days without events are absent.
	Counts(ctx context.Context, orgID, metric, from, to string) (map[string]int64, error)
	// Prune forgets processed event ids recorded before before and returns
	// how many it removed. An event redelivered after that would be
	// counted again, so before must be older than the stream's retention.
	Prune(ctx context.Context, before time.Time) (int64, error)
}

// Service implements the analytics use cases.
type Service struct {
	store  Store
	logger *slog.Logger
	now    func() time.Time
}

// NewService returns the service over store.
func NewService(store Store, logger *slog.Logger) *Service {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Service{store: store, logger: logger, now: func() time.Time { return time.Now().UTC() }}
}

// Count counts a batch of delivered events exactly once each. Events that
// belong to no organisation are skipped (and so acknowledged).
func (s *Service) Count(ctx context.Context, envs []events.Envelope) error {
	batch := make([]Event, 0, len(envs))
	for _, e := range envs {
		if e.OrgID == "" {
			continue
		}
		at := e.Time
		if at.IsZero() {
			at = s.now()
		}
		batch = append(batch, eventOf(e, at.UTC()))
	}
	if len(batch) == 0 {
		return nil
	}
	if err := s.store.Apply(ctx, batch, s.now()); err != nil {
		return fmt.Errorf("count %d events: %w", len(batch), err)
	}
	return nil
}

// DayCount is one day of a series.
type DayCount struct {
	Date  string
	Count int64
}

// Series returns days daily counts of metric for orgID, oldest first,
// ending today (UTC), with zero-count days filled in.
func (s *Service) Series(ctx context.Context, orgID, metric string, days int) ([]DayCount, error) {
	today := s.now().UTC().Truncate(24 * time.Hour)
	first := today.AddDate(0, 0, -(days - 1))
	counts, err := s.store.Counts(ctx, orgID, metric, first.Format(DateLayout), today.Format(DateLayout))
	if err != nil {
		return nil, fmt.Errorf("read %s series: %w", metric, err)
	}
	out := make([]DayCount, 0, days)
	for d := first; !d.After(today); d = d.AddDate(0, 0, 1) {
		day := d.Format(DateLayout)
		out = append(out, DayCount{Date: day, Count: counts[day]})
	}
	return out, nil
}

// Prune forgets processed event ids older than retention.
func (s *Service) Prune(ctx context.Context, retention time.Duration) (int64, error) {
	n, err := s.store.Prune(ctx, s.now().Add(-retention))
	if err != nil {
		return 0, fmt.Errorf("prune processed events: %w", err)
	}
	return n, nil
}
