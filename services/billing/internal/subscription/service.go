package subscription

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/google/uuid"
)

// Error codes of this domain.
const (
	CodeNoCustomer         = "BILLING_CUSTOMER_NOT_FOUND"
	CodeSubscriptionExists = "SUBSCRIPTION_EXISTS"
	eventSource            = "billing"
)

// DisabledMessage is the 503 message of every Stripe-dependent call when no
// Stripe key is configured.
const DisabledMessage = "billing is disabled: STRIPE_SECRET_KEY is not set"

// Options configure the domain service.
type Options struct {
	// Prices maps a tier to its Stripe price id (pro, enterprise).
	Prices map[string]string
	// SuccessURL and CancelURL are the checkout defaults; PortalReturnURL
	// is where the customer portal returns (defaults to SuccessURL).
	SuccessURL, CancelURL, PortalReturnURL string
	// MeterEventName is the Stripe meter event name usage is reported as.
	MeterEventName string
}

// Service implements the billing use cases.
type Service struct {
	store    Store
	provider Provider // nil: billing disabled
	calls    CallCounter
	opts     Options
	tierOf   map[string]string // price id → tier
	notify   func()
	logger   *slog.Logger
	now      func() time.Time
}

// NewService builds the domain service. provider nil means billing is
// disabled (Stripe-dependent calls answer 503); notify wakes the outbox
// relay after a commit (may be nil).
func NewService(store Store, provider Provider, calls CallCounter, opts Options, notify func(), logger *slog.Logger) *Service {
	if notify == nil {
		notify = func() {}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	tierOf := map[string]string{}
	for t, p := range opts.Prices {
		if p != "" {
			tierOf[p] = t
		}
	}
	if opts.PortalReturnURL == "" {
		opts.PortalReturnURL = opts.SuccessURL
	}
	return &Service{store: store, provider: provider, calls: calls, opts: opts, tierOf: tierOf, notify: notify, logger: logger,
		now: func() time.Time { return time.Now().UTC() }}
}

// Enabled reports whether Stripe is configured.
func (s *Service) Enabled() bool { return s.provider != nil }

func (s *Service) requireProvider() error {
	if s.provider == nil {
		return httpx.Unavailable(DisabledMessage, nil)
	}
	return nil
}

// CheckoutInput is a checkout request as received.
type CheckoutInput struct {
	Tier       string
	SuccessURL *string
	CancelURL  *string
}

// ValidURL reports whether u is an absolute http(s) URL with a host.
func ValidURL(u string) bool {
	p, err := url.Parse(u)
	return err == nil && (p.Scheme == "http" || p.Scheme == "https") && p.Host != "" && p.User == nil && len(u) <= 2048
}

// Checkout creates a Stripe Checkout Session for orgID to subscribe to
// in.Tier, reusing the organisation's Stripe customer when it has one.
func (s *Service) Checkout(ctx context.Context, orgID string, in CheckoutInput) (CheckoutSession, error) {
	f := map[string]string{}
	if in.Tier != TierPro && in.Tier != TierEnterprise {
		f["tier"] = "must be pro or enterprise"
	}
	success, cancel := s.opts.SuccessURL, s.opts.CancelURL
	if in.SuccessURL != nil {
		success = *in.SuccessURL
		if !ValidURL(success) {
			f["successUrl"] = "must be an absolute http(s) URL"
		}
	}
	if in.CancelURL != nil {
		cancel = *in.CancelURL
		if !ValidURL(cancel) {
			f["cancelUrl"] = "must be an absolute http(s) URL"
		}
	}
	if len(f) > 0 {
		return CheckoutSession{}, httpx.Validation("invalid checkout request", f)
	}
	if err := s.requireProvider(); err != nil {
		return CheckoutSession{}, err
	}
	price := s.opts.Prices[in.Tier]
	if price == "" {
		return CheckoutSession{}, httpx.Unavailable("no Stripe price is configured for the "+in.Tier+" tier", nil)
	}
	cur, err := s.store.Get(ctx, orgID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return CheckoutSession{}, fmt.Errorf("load subscription: %w", err)
	}
	if err == nil && cur.StripeSubscriptionID != "" && cur.live() {
		return CheckoutSession{}, httpx.Conflict(CodeSubscriptionExists, "the organization already has a subscription; change the plan in the billing portal")
	}
	sess, err := s.provider.CreateCheckoutSession(ctx, CheckoutRequest{
		OrganizationID: orgID, Tier: in.Tier, PriceID: price, CustomerID: cur.StripeCustomerID, SuccessURL: success, CancelURL: cancel,
	})
	if err != nil {
		return CheckoutSession{}, httpx.Unavailable("payment provider unavailable", err)
	}
	return sess, nil
}

// Portal returns a Stripe customer portal URL for the organisation's
// customer (404 when it has none).
func (s *Service) Portal(ctx context.Context, orgID string) (string, error) {
	if err := s.requireProvider(); err != nil {
		return "", err
	}
	cur, err := s.store.Get(ctx, orgID)
	if errors.Is(err, ErrNotFound) || (err == nil && cur.StripeCustomerID == "") {
		return "", httpx.NotFound(CodeNoCustomer, "the organization has no billing customer yet")
	}
	if err != nil {
		return "", fmt.Errorf("load subscription: %w", err)
	}
	u, err := s.provider.CreatePortalSession(ctx, cur.StripeCustomerID, s.opts.PortalReturnURL)
	if err != nil {
		return "", httpx.Unavailable("payment provider unavailable", err)
	}
	return u, nil
}

// Get returns the organisation's billing state; an organisation that never
// subscribed is on free with status none.
func (s *Service) Get(ctx context.Context, orgID string) (Subscription, error) {
	cur, err := s.store.Get(ctx, orgID)
	if errors.Is(err, ErrNotFound) {
		return Subscription{OrganizationID: orgID, Tier: TierFree, Status: StatusNone}, nil
	}
	if err != nil {
		return Subscription{}, fmt.Errorf("load subscription: %w", err)
	}
	return cur, nil
}

// Usage is an organisation's usage today and this month (UTC).
type Usage struct {
	Date                      string
	Month                     string
	TokensToday               int64
	AgentsRegisteredToday     int64
	CallsToday                int64
	TokensThisMonth           int64
	AgentsRegisteredThisMonth int64
}

// Usage returns today's and month-to-date usage.
func (s *Service) Usage(ctx context.Context, orgID string) (Usage, error) {
	now := s.now()
	today := now.Format(time.DateOnly)
	first := now.Format("2006-01") + "-01"
	rows, err := s.store.Usage(ctx, orgID, first, today)
	if err != nil {
		return Usage{}, fmt.Errorf("load usage: %w", err)
	}
	u := Usage{Date: today, Month: now.Format("2006-01")}
	for _, r := range rows {
		switch r.Metric {
		case MetricTokensIssued:
			u.TokensThisMonth += r.Count
			if r.Day == today {
				u.TokensToday = r.Count
			}
		case MetricAgentsRegistered:
			u.AgentsRegisteredThisMonth += r.Count
			if r.Day == today {
				u.AgentsRegisteredToday = r.Count
			}
		}
	}
	if s.calls != nil {
		n, err := s.calls.CallsToday(ctx, orgID, now)
		if err != nil {
			return Usage{}, httpx.Unavailable("usage counters unavailable", err)
		}
		u.CallsToday = n
	}
	return u, nil
}

// CountUsage counts suite events (token.issued, agent.created) exactly once.
func (s *Service) CountUsage(ctx context.Context, evs []events.Envelope) error {
	batch := make([]UsageEvent, 0, len(evs))
	for _, e := range evs {
		var metric string
		switch e.Type {
		case events.TokenIssued:
			metric = MetricTokensIssued
		case events.AgentCreated:
			metric = MetricAgentsRegistered
		default:
			continue
		}
		if e.OrgID == "" {
			continue // nothing to bill
		}
		at := e.Time
		if at.IsZero() {
			at = s.now()
		}
		batch = append(batch, UsageEvent{ID: e.ID, OrganizationID: e.OrgID, Day: at.UTC().Format(time.DateOnly), Metric: metric})
	}
	if len(batch) == 0 {
		return nil
	}
	return s.store.CountUsage(ctx, batch, s.now())
}

// ReportUsage sends unreported token usage to Stripe as meter events (the
// delta since the last report, idempotent at Stripe by identifier) and
// marks it reported. It returns how many counters were reported.
func (s *Service) ReportUsage(ctx context.Context) (int, error) {
	if s.provider == nil {
		return 0, nil
	}
	rows, err := s.store.Unreported(ctx, MetricTokensIssued, 500)
	if err != nil {
		return 0, fmt.Errorf("load unreported usage: %w", err)
	}
	n := 0
	for _, r := range rows {
		day, err := time.Parse(time.DateOnly, r.Day)
		if err != nil {
			return n, fmt.Errorf("usage day %q: %w", r.Day, err)
		}
		ts := day.Add(12 * time.Hour)
		if now := s.now(); ts.After(now) {
			ts = now
		}
		m := MeterEvent{CustomerID: r.StripeCustomerID, Value: r.Count - r.Reported, Timestamp: ts,
			Identifier: fmt.Sprintf("%s-%s-%s-%d", r.OrganizationID, r.Day, r.Metric, r.Count)}
		if err := s.provider.ReportUsage(ctx, m); err != nil {
			return n, fmt.Errorf("report usage of %s on %s: %w", r.OrganizationID, r.Day, err)
		}
		if err := s.store.MarkReported(ctx, r.OrganizationID, r.Day, r.Metric, r.Count); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// PruneUsageEvents forgets counted event ids older than age.
func (s *Service) PruneUsageEvents(ctx context.Context, age time.Duration) (int64, error) {
	return s.store.PruneUsageEvents(ctx, s.now().Add(-age))
}

// Webhook verifies and applies one Stripe webhook delivery. A bad
// signature is a 400 that changes nothing; every verified event is
// recorded once, and its effect applied in the same transaction.
func (s *Service) Webhook(ctx context.Context, payload []byte, signature string) error {
	if err := s.requireProvider(); err != nil {
		return err
	}
	ev, err := s.provider.ParseWebhook(payload, signature)
	if errors.Is(err, ErrBadSignature) {
		return httpx.Validation("invalid Stripe-Signature", nil)
	}
	if err != nil {
		return httpx.Validation("invalid webhook payload", nil)
	}
	if ev.ID == "" || ev.Type == "" {
		return httpx.Validation("invalid webhook payload: id and type are required", nil)
	}
	lookup, change := s.plan(ev)
	var changed bool
	dup, err := s.store.ApplyStripeEvent(ctx, ev.ID, ev.Type, s.now(), lookup, func(cur Subscription, found bool) (*Subscription, []events.Envelope, error) {
		if change == nil {
			return nil, nil, nil
		}
		next := change(cur, found)
		if next == nil {
			return nil, nil, nil
		}
		next.UpdatedAt = s.now().Truncate(time.Microsecond)
		prevTier, prevStatus := TierFree, StatusNone
		if found {
			prevTier, prevStatus = cur.EffectiveTier(), cur.Status
		}
		if next.EffectiveTier() == prevTier && next.Status == prevStatus {
			return next, nil, nil
		}
		changed = true
		e, err := events.New(events.BillingSubscriptionUpdated, eventSource, next.OrganizationID, next.StripeSubscriptionID, UpdatedData{
			OrganizationID: next.OrganizationID, Tier: next.EffectiveTier(), Status: next.Status, PreviousTier: prevTier, EffectiveAt: next.UpdatedAt,
		})
		if err != nil {
			return nil, nil, err
		}
		return next, []events.Envelope{e}, nil
	})
	if err != nil {
		return fmt.Errorf("apply stripe event %s: %w", ev.ID, err)
	}
	if changed && !dup {
		s.notify()
	}
	s.logger.InfoContext(ctx, "stripe event", "eventId", ev.ID, "type", ev.Type, "duplicate", dup, "planChanged", changed && !dup)
	return nil
}

// plan maps a Stripe event to how its organisation is found and what it
// changes (nil: recorded only).
func (s *Service) plan(ev WebhookEvent) (Lookup, func(cur Subscription, found bool) *Subscription) {
	org := ""
	if validOrgID(ev.OrganizationID) {
		org = ev.OrganizationID
	}
	lookup := Lookup{OrganizationID: org, SubscriptionID: ev.SubscriptionID, CustomerID: ev.CustomerID}
	switch ev.Type {
	case "checkout.session.completed":
		if org == "" {
			return lookup, nil
		}
		return lookup, func(cur Subscription, found bool) *Subscription {
			next := cur
			next.OrganizationID = org
			if !found {
				next.Tier, next.Status = TierFree, StatusNone
			}
			if ev.CustomerID != "" {
				next.StripeCustomerID = ev.CustomerID
			}
			// A subscription event already applied for this subscription
			// is more precise than the session: only link ids then.
			if ev.SubscriptionID != "" && (cur.StripeSubscriptionID != ev.SubscriptionID || cur.StripeEventCreated == 0) {
				next.StripeSubscriptionID = ev.SubscriptionID
				if validTier(ev.MetadataTier) && (ev.PaymentStatus == "paid" || ev.PaymentStatus == "no_payment_required") {
					next.Tier, next.Status = ev.MetadataTier, StatusActive
				}
			}
			return &next
		}
	case "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted":
		return lookup, func(cur Subscription, found bool) *Subscription {
			if !found && org == "" {
				return nil // unknown organisation: recorded only
			}
			if found && cur.StripeSubscriptionID == ev.SubscriptionID {
				if ev.Created < cur.StripeEventCreated || cur.Status == StatusCanceled {
					return nil // older than the state applied, or ended for good
				}
			}
			status := ev.Status
			if ev.Type == "customer.subscription.deleted" {
				status = StatusCanceled
			}
			if found && cur.StripeSubscriptionID != "" && cur.StripeSubscriptionID != ev.SubscriptionID && cur.live() {
				// Another subscription is current: an old one ending must
				// not clobber it; a live new one replaces it.
				if status == StatusCanceled || status == StatusIncompleteExpired {
					return nil
				}
			}
			next := cur
			if !found {
				next = Subscription{OrganizationID: org, Tier: TierFree}
			}
			next.StripeSubscriptionID = ev.SubscriptionID
			if ev.CustomerID != "" {
				next.StripeCustomerID = ev.CustomerID
			}
			next.Status = status
			next.Tier = s.tierFor(ev, next.Tier)
			next.CancelAtPeriodEnd = ev.CancelAtPeriodEnd
			if ev.CurrentPeriodEnd > 0 {
				t := time.Unix(ev.CurrentPeriodEnd, 0).UTC()
				next.CurrentPeriodEnd = &t
			}
			next.StripeEventCreated = ev.Created
			return &next
		}
	case "invoice.paid", "invoice.payment_failed":
		return lookup, func(cur Subscription, found bool) *Subscription {
			if !found || cur.Status == StatusCanceled || ev.Created < cur.StripeEventCreated {
				return nil
			}
			if ev.SubscriptionID != "" && cur.StripeSubscriptionID != "" && ev.SubscriptionID != cur.StripeSubscriptionID {
				return nil // an invoice of another (old) subscription
			}
			next := cur
			next.Status = StatusActive
			if ev.Type == "invoice.payment_failed" {
				next.Status = StatusPastDue
			}
			next.StripeEventCreated = ev.Created
			return &next
		}
	}
	return lookup, nil
}

// tierFor maps the subscription's price to a tier; an unknown price falls
// back to the subscription's metadata, then to the current tier.
func (s *Service) tierFor(ev WebhookEvent, cur string) string {
	for _, p := range ev.PriceIDs {
		if t, ok := s.tierOf[p]; ok {
			return t
		}
	}
	if validTier(ev.MetadataTier) {
		return ev.MetadataTier
	}
	if len(ev.PriceIDs) > 0 {
		s.logger.Warn("stripe subscription with an unknown price; tier unchanged", "subscription", ev.SubscriptionID, "prices", ev.PriceIDs)
	}
	return cur
}

func validOrgID(id string) bool {
	_, err := uuid.Parse(id)
	return err == nil && len(id) == 36
}
