package org

import (
	"context"
	"errors"
	"time"

	"github.com/agentidp/agentidp/libs/events"
)

// Errors a Store returns (possibly wrapped).
var (
	ErrNotFound      = errors.New("organization not found")
	ErrSlugTaken     = errors.New("organization slug already exists")
	ErrAlreadyMember = errors.New("agent is already a member")
)

// Store persists organisations. Every method that changes state writes the
// given events to the outbox in the same transaction, so an event is
// published if and only if its change committed.
type Store interface {
	// Create inserts o (o.ID set by the caller) and evs. It returns
	// ErrSlugTaken when another organisation, of any status, has o.Slug.
	Create(ctx context.Context, o Organization, evs []events.Envelope) error
	// Get returns the organisation with id, whatever its status, or
	// ErrNotFound.
	Get(ctx context.Context, id string) (Organization, error)
	// GetBySlug returns the organisation with slug, whatever its status, or
	// ErrNotFound.
	GetBySlug(ctx context.Context, slug string) (Organization, error)
	// List returns a page of the organisations that are not deleted, ordered
	// by creation time then id (stable across pages), and their total count.
	List(ctx context.Context, offset, limit int) ([]Organization, int64, error)
	// All returns every organisation, deleted ones included (the read-model
	// reconciliation needs them so readers keep rejecting deleted ids).
	All(ctx context.Context) ([]Organization, error)
	// Update loads the organisation with id inside a transaction (locking it
	// on PostgreSQL), lets change modify it and name the events to write,
	// then saves every field except ID, Slug and CreatedAt together with
	// the events. An error from change aborts and is returned as is.
	// Returns ErrNotFound when id does not exist.
	Update(ctx context.Context, id string, change func(o *Organization) ([]events.Envelope, error)) (Organization, error)
	// AddMember inserts m and evs. Returns ErrNotFound when the organisation
	// does not exist or is deleted, ErrAlreadyMember when the agent already
	// belongs to it.
	AddMember(ctx context.Context, m Member, evs []events.Envelope) error
}

// ReadModel publishes an organisation to the NATS KV read model that the
// gateway and the token service watch.
type ReadModel interface {
	Put(ctx context.Context, o events.OrgData) error
}

// UsageReader reads an organisation's usage figures for the UTC day of day.
// Missing figures are zero.
type UsageReader interface {
	Usage(ctx context.Context, orgID string, day time.Time) (Usage, error)
}

// PendingChange is a downgrade ordered by billing that takes effect at
// ApplyAt.
type PendingChange struct {
	OrganizationID string
	Tier           string
	ApplyAt        time.Time
}

// BillingStore persists what the billing consumer needs.
type BillingStore interface {
	// SchedulePending stores p, replacing the organisation's pending
	// change, unless one with the same tier is already pending (its
	// earlier ApplyAt is kept).
	SchedulePending(ctx context.Context, p PendingChange) error
	// CancelPending deletes the organisation's pending change, if any.
	CancelPending(ctx context.Context, orgID string) error
	// DuePending returns the changes with ApplyAt <= now, oldest first.
	DuePending(ctx context.Context, now time.Time) ([]PendingChange, error)
	// DeletePending deletes the change if it is still exactly p.
	DeletePending(ctx context.Context, p PendingChange) error
	// LastBillingPlan returns the effectiveAt recorded for orgID (zero
	// when none).
	LastBillingPlan(ctx context.Context, orgID string) (time.Time, error)
	// RecordBillingPlan records at for orgID unless a later one is stored.
	RecordBillingPlan(ctx context.Context, orgID string, at time.Time) error
}
