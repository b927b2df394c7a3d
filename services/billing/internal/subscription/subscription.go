// Package subscription is the billing service's domain: an organisation's
// paid plan as Stripe reports it, the Stripe events that change it (applied
// exactly once and in order), and the usage counted from suite events. It
// imports no adapter; storage and Stripe are reached through the interfaces
// declared here.
package subscription

import (
	"context"
	"errors"
	"time"

	"github.com/agentidp/agentidp/libs/events"
)

// Plan tiers (the tier service's names).
const (
	TierFree       = "free"
	TierPro        = "pro"
	TierEnterprise = "enterprise"
)

// Subscription statuses: Stripe's, plus StatusNone for an organisation that
// never subscribed.
const (
	StatusNone              = "none"
	StatusActive            = "active"
	StatusTrialing          = "trialing"
	StatusPastDue           = "past_due"
	StatusCanceled          = "canceled"
	StatusUnpaid            = "unpaid"
	StatusIncomplete        = "incomplete"
	StatusIncompleteExpired = "incomplete_expired"
	StatusPaused            = "paused"
)

// Usage metrics counted into the daily table.
const (
	MetricTokensIssued     = "tokens_issued"
	MetricAgentsRegistered = "agents_registered"
)

// Subscription is an organisation's billing state.
type Subscription struct {
	OrganizationID       string
	Tier                 string // the subscribed plan (may not be in effect, see EffectiveTier)
	Status               string
	StripeCustomerID     string
	StripeSubscriptionID string
	CurrentPeriodEnd     *time.Time
	CancelAtPeriodEnd    bool
	// StripeEventCreated is the creation time (Unix seconds) of the last
	// Stripe event applied to the subscription's state; older events for
	// the same subscription are ignored.
	StripeEventCreated int64
	UpdatedAt          time.Time
}

// EffectiveTier is the plan the organisation is entitled to: the subscribed
// tier while the subscription is active, trialing or past due (Stripe is
// still retrying the payment), free otherwise.
func (s Subscription) EffectiveTier() string {
	switch s.Status {
	case StatusActive, StatusTrialing, StatusPastDue:
		if validTier(s.Tier) {
			return s.Tier
		}
	}
	return TierFree
}

// live reports whether the subscription still bills (not ended).
func (s Subscription) live() bool {
	switch s.Status {
	case StatusActive, StatusTrialing, StatusPastDue, StatusIncomplete, StatusUnpaid, StatusPaused:
		return true
	}
	return false
}

func validTier(t string) bool { return t == TierFree || t == TierPro || t == TierEnterprise }

// UpdatedData is the payload of billing.subscription.updated, published on
// every change of the effective plan (tier or status).
type UpdatedData struct {
	OrganizationID string    `json:"organizationId"`
	Tier           string    `json:"tier"` // the effective tier
	Status         string    `json:"status"`
	PreviousTier   string    `json:"previousTier"`
	EffectiveAt    time.Time `json:"effectiveAt"`
}

// UsageDay is one counter row.
type UsageDay struct {
	OrganizationID string
	Day            string // YYYY-MM-DD (UTC)
	Metric         string
	Count          int64
	Reported       int64 // how much of Count was reported to Stripe
}

// UsageEvent is one suite event to count.
type UsageEvent struct {
	ID             string
	OrganizationID string
	Day            string // YYYY-MM-DD (UTC)
	Metric         string
}

// Errors a Store returns (possibly wrapped).
var ErrNotFound = errors.New("subscription not found")

// Lookup says how a Stripe event names its organisation; the first
// non-empty field that matches a stored subscription wins, in the order
// OrganizationID, SubscriptionID, CustomerID.
type Lookup struct {
	OrganizationID string
	SubscriptionID string
	CustomerID     string
}

// Change decides the effect of a Stripe event on the current state (found
// false: none stored, cur is zero). It returns the state to save (nil:
// nothing to write) and the events to write to the outbox with it.
type Change func(cur Subscription, found bool) (*Subscription, []events.Envelope, error)

// Store persists subscriptions, processed Stripe events and usage counters.
type Store interface {
	// ApplyStripeEvent records eventID (with typ and receivedAt) in
	// stripe_events and, only when it was not recorded before, loads the
	// subscription found by lookup (locked on PostgreSQL), calls change
	// and saves its result and events: all in one transaction, so the
	// effect happens exactly once however often (and however
	// concurrently) the event is delivered. duplicate reports an event
	// already recorded (change was not called). An error from change
	// aborts everything (the event stays unrecorded) and is returned.
	ApplyStripeEvent(ctx context.Context, eventID, typ string, receivedAt time.Time, lookup Lookup, change Change) (duplicate bool, err error)
	// Get returns the organisation's subscription or ErrNotFound.
	Get(ctx context.Context, orgID string) (Subscription, error)
	// CountUsage adds each event whose id was not counted before to its
	// (organisation, day, metric) counter, atomically; repeated ids (in
	// the batch or from earlier batches) count once.
	CountUsage(ctx context.Context, batch []UsageEvent, now time.Time) error
	// Usage returns the organisation's counters for days from..to
	// (inclusive, YYYY-MM-DD), ordered by day then metric.
	Usage(ctx context.Context, orgID, from, to string) ([]UsageDay, error)
	// Unreported returns up to limit counters of metric with Count >
	// Reported whose organisation has a Stripe customer, with that
	// customer id, ordered by day, organisation.
	Unreported(ctx context.Context, metric string, limit int) ([]UnreportedUsage, error)
	// MarkReported sets Reported = count on the counter, unless it is
	// already at least count.
	MarkReported(ctx context.Context, orgID, day, metric string, count int64) error
	// PruneUsageEvents forgets counted event ids older than before.
	PruneUsageEvents(ctx context.Context, before time.Time) (int64, error)
}

// UnreportedUsage is a counter with usage not yet reported to Stripe.
type UnreportedUsage struct {
	UsageDay
	StripeCustomerID string
}

// CheckoutRequest is a Stripe Checkout Session to create.
type CheckoutRequest struct {
	OrganizationID string
	Tier           string
	PriceID        string
	CustomerID     string // reused when the organisation has one
	SuccessURL     string
	CancelURL      string
}

// CheckoutSession is a created Checkout Session.
type CheckoutSession struct {
	ID  string
	URL string
}

// MeterEvent is usage reported to Stripe.
type MeterEvent struct {
	CustomerID string
	Value      int64
	Identifier string // idempotency key at Stripe
	Timestamp  time.Time
}

// WebhookEvent is a verified Stripe event, reduced to what billing uses.
type WebhookEvent struct {
	ID      string
	Type    string
	Created int64 // Unix seconds
	// OrganizationID comes from client_reference_id or metadata.
	OrganizationID string
	// MetadataTier is metadata.tier (checkout sessions, subscriptions).
	MetadataTier      string
	CustomerID        string
	SubscriptionID    string
	Status            string   // subscription status (subscription events)
	PaymentStatus     string   // checkout sessions
	PriceIDs          []string // subscription items' prices
	CurrentPeriodEnd  int64
	CancelAtPeriodEnd bool
}

// ErrBadSignature is returned by Provider.ParseWebhook for a payload whose
// signature, timestamp or body does not verify.
var ErrBadSignature = errors.New("invalid stripe webhook signature")

// Provider is the payment provider (Stripe).
type Provider interface {
	CreateCheckoutSession(ctx context.Context, r CheckoutRequest) (CheckoutSession, error)
	// CreatePortalSession returns a customer portal URL.
	CreatePortalSession(ctx context.Context, customerID, returnURL string) (string, error)
	ReportUsage(ctx context.Context, m MeterEvent) error
	// ParseWebhook verifies the Stripe-Signature header and decodes the
	// event (ErrBadSignature when verification fails).
	ParseWebhook(payload []byte, signature string) (WebhookEvent, error)
}

// CallCounter reads the gateway's API call counter of an organisation for
// the UTC day of day.
type CallCounter interface {
	CallsToday(ctx context.Context, orgID string, day time.Time) (int64, error)
}
