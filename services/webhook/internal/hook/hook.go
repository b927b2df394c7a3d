// Package hook is the webhook domain: subscriptions (endpoints an
// organisation registers), deliveries (one per event and matching
// subscription), the Standard Webhooks signature, the retry policy, and the
// ports the service consumes (Store, SecretStore).
package hook

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/agentidp/agentidp/libs/events"
)

// Error codes of the webhook API.
const (
	CodeNotFound          = "WEBHOOK_NOT_FOUND"
	CodeDeliveryNotFound  = "DELIVERY_NOT_FOUND"
	CodeNotRedeliverable  = "DELIVERY_NOT_REDELIVERABLE"
	WildcardEvent         = "*"
	IDPrefix              = "wh_"
	DeliveryIDPrefix      = "whd_"
	SecretPrefix          = "whsec_"
	maxNameLen            = 100
	maxEventsPerEndpoint  = 64
	secretKeyCurrent      = "current"
	secretKeyPrevious     = "previous"
	secretKeyPreviousTill = "previous_until"
)

// SecretPathPrefix is where signing secrets live in the SecretStore:
// SecretPathPrefix + webhook id (Vault KV v2:
// <mount>/data/<prefix>/webhook/secrets/<id>).
const SecretPathPrefix = "webhook/secrets/"

// LegacySecretPathPrefix is the prefix of secret paths written before the
// secrets port (rows of the old webhook_secrets table); they are moved to
// SecretPathPrefix at start-up.
const LegacySecretPathPrefix = "webhooks/"

// Delivery statuses.
const (
	StatusPending    = "pending"     // waiting for its first (or a redelivered) attempt
	StatusDelivered  = "delivered"   // the endpoint answered 2xx
	StatusFailed     = "failed"      // the last attempt failed; another is scheduled
	StatusDeadLetter = "dead_letter" // attempts exhausted (or the endpoint is gone); redeliverable
	// StatusSkippedDisabled is an event the endpoint was not sent because
	// the endpoint is disabled (by a 410, by failing too long, or by its
	// organisation): recorded so that no event to a disabled endpoint goes
	// unaccounted; redeliverable once the endpoint is active again.
	StatusSkippedDisabled = "skipped_disabled"
)

// SkippedDisabledError is the last_error of a StatusSkippedDisabled
// delivery.
const SkippedDisabledError = "not sent: endpoint disabled"

// Errors a Store returns (possibly wrapped).
var (
	ErrNotFound         = errors.New("not found")
	ErrNotRedeliverable = errors.New("delivery is not failed, dead-lettered or skipped")
)

// Subscription is an endpoint registered by an organisation.
type Subscription struct {
	ID             string
	OrganizationID string
	Name           string
	URL            string
	Events         []string // event types, or "*" for all
	Active         bool
	SecretPath     string // where the signing secret lives in the SecretStore
	FailureCount   int    // consecutive failed attempts, reset on success
	FailingSince   *time.Time
	CreatedAt      time.Time
	UpdatedAt      time.Time
}

// Matches reports whether the subscription wants events of type t.
func (s Subscription) Matches(t events.Type) bool {
	return slices.Contains(s.Events, WildcardEvent) || slices.Contains(s.Events, string(t))
}

// Delivery is one event to be sent to one subscription.
type Delivery struct {
	ID             string
	SubscriptionID string
	OrganizationID string
	EventID        string
	EventType      string
	Payload        []byte // the event envelope as JSON, sent as is on every attempt
	Status         string
	Attempts       int
	LastStatusCode *int
	LastError      string
	NextAttemptAt  *time.Time
	CreatedAt      time.Time
	DeliveredAt    *time.Time
}

// Claimed is a delivery leased to a worker, with what it needs to send it.
type Claimed struct {
	Delivery
	URL        string
	SecretPath string
}

// Outcome is the result of one attempt, recorded by Store.Complete.
type Outcome struct {
	Status        string     // delivered, failed or dead_letter
	StatusCode    *int       // nil when no response arrived
	Error         string     // empty on success
	NextAttemptAt *time.Time // for failed
	At            time.Time
	// Disable deactivates the subscription (410 Gone, or failing for too
	// long); DisableAfter, when positive, disables it if it has been failing
	// continuously for at least that long (decided inside the store's
	// transaction, from failing_since).
	Disable      bool
	DisableAfter time.Duration
	// Events are written to the outbox with the update. EndpointDisabled is
	// called when the subscription is being disabled by this attempt (so
	// exactly once), and returns the event to add.
	Events           []events.Envelope
	EndpointDisabled func(sub Subscription, reason string) (events.Envelope, error)
}

// Store persists subscriptions and deliveries. Every query is scoped by
// organisation where an organisation is given: a subscription of another
// organisation is ErrNotFound.
type Store interface {
	// CreateSubscription inserts s (ID set by the caller).
	CreateSubscription(ctx context.Context, s Subscription) error
	// GetSubscription returns orgID's subscription id or ErrNotFound.
	GetSubscription(ctx context.Context, orgID, id string) (Subscription, error)
	// ListSubscriptions returns a page of orgID's subscriptions ordered by
	// creation time then id, and their total.
	ListSubscriptions(ctx context.Context, orgID string, offset, limit int) ([]Subscription, int64, error)
	// UpdateSubscription loads orgID's subscription id in a transaction
	// (locked on PostgreSQL), lets change modify it, and saves Name, URL,
	// Events, Active, FailureCount, FailingSince and UpdatedAt. An error from
	// change aborts and is returned as is. ErrNotFound when missing.
	UpdateSubscription(ctx context.Context, orgID, id string, change func(s *Subscription) error) (Subscription, error)
	// DeleteSubscription removes orgID's subscription id and its
	// deliveries, returning what was deleted, or ErrNotFound.
	DeleteSubscription(ctx context.Context, orgID, id string) (Subscription, error)

	// Enqueue creates, in one transaction, one delivery per event and
	// subscription of the event's organisation that Matches the event type
	// and that skip does not reject: pending (due at now) for an active
	// subscription, StatusSkippedDisabled (never due) for an inactive one.
	// It is idempotent: an existing (subscription, event) pair is left
	// alone. It returns how many pending deliveries were created.
	Enqueue(ctx context.Context, evs []events.Envelope, now time.Time, skip func(Subscription, events.Envelope) bool) (int, error)
	// Claim leases up to limit due deliveries (pending or failed, next
	// attempt at or before now, not leased, subscription active) until
	// leaseUntil, taking no more per subscription than maxPerEndpoint minus
	// the deliveries of that subscription already leased. Concurrent claims
	// never return the same delivery. It commits before returning: no
	// transaction stays open while the caller sends.
	Claim(ctx context.Context, now, leaseUntil time.Time, limit, maxPerEndpoint int) ([]Claimed, error)
	// Complete records an attempt on a leased delivery: attempts+1, the
	// outcome, the lease released, the subscription's failure_count and
	// failing_since updated (reset on delivered), the subscription disabled
	// when the outcome says so, and the outcome's events written to the
	// outbox, all in one transaction. When the subscription is disabled by
	// this attempt, its other deliveries waiting for an attempt (pending or
	// failed, not leased) become StatusSkippedDisabled; an attempt that
	// fails on a subscription already inactive is recorded as
	// StatusSkippedDisabled rather than scheduled again.
	Complete(ctx context.Context, deliveryID string, o Outcome) error
	// ListDeliveries returns a page of the deliveries of orgID's
	// subscription id, newest first, and their total; ErrNotFound when the
	// subscription is not orgID's.
	ListDeliveries(ctx context.Context, orgID, subscriptionID string, offset, limit int) ([]Delivery, int64, error)
	// Redeliver makes a failed, dead-lettered or skipped delivery of orgID's
	// subscription pending again, due at now, with attempts reset.
	// ErrNotFound when either is missing (or another organisation's),
	// ErrNotRedeliverable for other statuses.
	Redeliver(ctx context.Context, orgID, subscriptionID, deliveryID string, now time.Time) (Delivery, error)
	// CountPending counts deliveries not yet delivered nor dead-lettered.
	CountPending(ctx context.Context) (int64, error)
}

// ErrSecretNotFound is returned by SecretStore.Get for a missing path.
var ErrSecretNotFound = errors.New("secret not found")

// SecretStore keeps signing secrets outside the subscription table. It is
// the subset of libs/secrets.Store the service needs; internal/secretstore
// adapts the secrets port (Vault KV v2 when configured, else the local
// sealed store in the service's database) to it.
type SecretStore interface {
	// Put writes a new version of the secret at path and returns it.
	Put(ctx context.Context, path string, data map[string]string) (int, error)
	// Get returns the latest version's data or ErrSecretNotFound.
	Get(ctx context.Context, path string) (map[string]string, error)
	// Delete removes every version at path (missing is not an error).
	Delete(ctx context.Context, path string) error
}

// DeliveryFailedData is the payload of webhook.delivery.failed.
type DeliveryFailedData struct {
	WebhookID      string `json:"webhook_id"`
	DeliveryID     string `json:"delivery_id"`
	EventID        string `json:"event_id"`
	EventType      string `json:"event_type"`
	Attempts       int    `json:"attempts"`
	LastStatusCode *int   `json:"last_status_code,omitempty"`
	LastError      string `json:"last_error,omitempty"`
}

// EndpointDisabledData is the payload of webhook.endpoint.disabled.
type EndpointDisabledData struct {
	WebhookID    string `json:"webhook_id"`
	URL          string `json:"url"`
	Reason       string `json:"reason"`
	FailureCount int    `json:"failure_count"`
}

// EncodeEvents is the stored form of Subscription.Events.
func EncodeEvents(evs []string) string {
	b, _ := json.Marshal(evs)
	return string(b)
}

// DecodeEvents parses the stored form of Subscription.Events.
func DecodeEvents(s string) ([]string, error) {
	var out []string
	if err := json.Unmarshal([]byte(s), &out); err != nil {
		return nil, err
	}
	return out, nil
}
