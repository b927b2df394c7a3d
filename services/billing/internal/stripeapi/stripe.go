// Package stripeapi is the billing service's payment provider: Stripe
// through stripe-go (Checkout, customer portal, meter events) and the
// verification and decoding of Stripe webhooks.
package stripeapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/agentidp/agentidp/services/billing/internal/subscription"
	"github.com/stripe/stripe-go/v82"
	"github.com/stripe/stripe-go/v82/webhook"
)

// MaxWebhookClockSkew is how far in the future a Stripe webhook's signed
// timestamp may be. Stripe signs when it sends, so a genuine timestamp is
// never ahead of our clock by more than the two clocks disagree; the past
// side is bounded by Options.Tolerance. The future bound is the smaller of
// the two.
const MaxWebhookClockSkew = 60 * time.Second

// ErrFutureTimestamp is returned (wrapped with subscription.ErrBadSignature)
// for a signature whose timestamp is too far in the future.
var ErrFutureTimestamp = errors.New("timestamp is in the future beyond the allowed clock skew")

// Options configure the client.
type Options struct {
	SecretKey     string
	APIBase       string // e.g. http://127.0.0.1:12111 for stripe-mock; empty: api.stripe.com
	WebhookSecret string
	Tolerance     time.Duration // webhook timestamp tolerance
	MeterEvent    string        // meter event name for usage
	HTTPClient    *http.Client
	Now           func() time.Time // default time.Now; only the future bound uses it (stripe-go reads the clock for the past one)
}

// Client implements subscription.Provider.
type Client struct {
	sc   *stripe.Client
	opts Options
}

var _ subscription.Provider = (*Client)(nil)

// New returns a Stripe client.
func New(o Options) *Client {
	hc := o.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 20 * time.Second}
	}
	cfg := &stripe.BackendConfig{HTTPClient: hc, MaxNetworkRetries: stripe.Int64(2)}
	if o.APIBase != "" {
		cfg.URL = stripe.String(o.APIBase)
	}
	backends := &stripe.Backends{
		API:         stripe.GetBackendWithConfig(stripe.APIBackend, cfg),
		Connect:     stripe.GetBackendWithConfig(stripe.ConnectBackend, cfg),
		Uploads:     stripe.GetBackendWithConfig(stripe.UploadsBackend, cfg),
		MeterEvents: stripe.GetBackendWithConfig(stripe.MeterEventsBackend, cfg),
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Client{sc: stripe.NewClient(o.SecretKey, stripe.WithBackends(backends)), opts: o}
}

// CreateCheckoutSession implements subscription.Provider.
func (c *Client) CreateCheckoutSession(ctx context.Context, r subscription.CheckoutRequest) (subscription.CheckoutSession, error) {
	meta := map[string]string{"organizationId": r.OrganizationID, "tier": r.Tier}
	p := &stripe.CheckoutSessionCreateParams{
		Mode:              stripe.String(string(stripe.CheckoutSessionModeSubscription)),
		LineItems:         []*stripe.CheckoutSessionCreateLineItemParams{{Price: stripe.String(r.PriceID), Quantity: stripe.Int64(1)}},
		ClientReferenceID: stripe.String(r.OrganizationID),
		SuccessURL:        stripe.String(r.SuccessURL),
		CancelURL:         stripe.String(r.CancelURL),
		SubscriptionData:  &stripe.CheckoutSessionCreateSubscriptionDataParams{Metadata: meta},
	}
	p.Metadata = meta
	if r.CustomerID != "" {
		p.Customer = stripe.String(r.CustomerID)
	}
	s, err := c.sc.V1CheckoutSessions.Create(ctx, p)
	if err != nil {
		return subscription.CheckoutSession{}, fmt.Errorf("stripe checkout session: %w", err)
	}
	return subscription.CheckoutSession{ID: s.ID, URL: s.URL}, nil
}

// CreatePortalSession implements subscription.Provider.
func (c *Client) CreatePortalSession(ctx context.Context, customerID, returnURL string) (string, error) {
	p := &stripe.BillingPortalSessionCreateParams{Customer: stripe.String(customerID)}
	if returnURL != "" {
		p.ReturnURL = stripe.String(returnURL)
	}
	s, err := c.sc.V1BillingPortalSessions.Create(ctx, p)
	if err != nil {
		return "", fmt.Errorf("stripe portal session: %w", err)
	}
	return s.URL, nil
}

// ReportUsage implements subscription.Provider with a billing meter event.
func (c *Client) ReportUsage(ctx context.Context, m subscription.MeterEvent) error {
	_, err := c.sc.V1BillingMeterEvents.Create(ctx, &stripe.BillingMeterEventCreateParams{
		EventName:  stripe.String(c.opts.MeterEvent),
		Identifier: stripe.String(m.Identifier),
		Timestamp:  stripe.Int64(m.Timestamp.Unix()),
		Payload:    map[string]string{"stripe_customer_id": m.CustomerID, "value": strconv.FormatInt(m.Value, 10)},
	})
	if err != nil {
		return fmt.Errorf("stripe meter event: %w", err)
	}
	return nil
}

// object is the union of the fields billing reads from the event's object
// (checkout session, subscription or invoice), across API versions: the
// period end moved into subscription items and the invoice's subscription
// into parent.subscription_details in 2025.
type object struct {
	ID                string            `json:"id"`
	Object            string            `json:"object"`
	ClientReferenceID string            `json:"client_reference_id"`
	Metadata          map[string]string `json:"metadata"`
	Customer          json.RawMessage   `json:"customer"`
	Subscription      json.RawMessage   `json:"subscription"`
	Status            string            `json:"status"`
	PaymentStatus     string            `json:"payment_status"`
	CurrentPeriodEnd  int64             `json:"current_period_end"`
	CancelAtPeriodEnd bool              `json:"cancel_at_period_end"`
	Items             *struct {
		Data []struct {
			CurrentPeriodEnd int64 `json:"current_period_end"`
			Price            *struct {
				ID string `json:"id"`
			} `json:"price"`
		} `json:"data"`
	} `json:"items"`
	Parent *struct {
		SubscriptionDetails *struct {
			Metadata     map[string]string `json:"metadata"`
			Subscription json.RawMessage   `json:"subscription"`
		} `json:"subscription_details"`
	} `json:"parent"`
}

// idOf reads an id that may be a string or an expanded object.
func idOf(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var o struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(raw, &o)
	return o.ID
}

// signedTimestamp reads the t= of a Stripe-Signature header the way
// stripe-go does (the last t= is the one the signature was checked with).
func signedTimestamp(header string) (time.Time, bool) {
	var ts time.Time
	found := false
	for _, pair := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(pair, "=")
		if !ok || k != "t" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return time.Time{}, false
		}
		ts, found = time.Unix(n, 0), true
	}
	return ts, found
}

// ParseWebhook implements subscription.Provider.
func (c *Client) ParseWebhook(payload []byte, signature string) (subscription.WebhookEvent, error) {
	ev, err := webhook.ConstructEventWithOptions(payload, signature, c.opts.WebhookSecret, webhook.ConstructEventOptions{
		Tolerance: c.opts.Tolerance, IgnoreAPIVersionMismatch: true,
	})
	if err != nil {
		for _, e := range []error{webhook.ErrNotSigned, webhook.ErrInvalidHeader, webhook.ErrNoValidSignature, webhook.ErrTooOld} {
			if errors.Is(err, e) {
				return subscription.WebhookEvent{}, fmt.Errorf("%w: %v", subscription.ErrBadSignature, err)
			}
		}
		return subscription.WebhookEvent{}, fmt.Errorf("decode stripe event: %w", err)
	}
	// stripe-go bounds only the age of the timestamp; a signature dated
	// ahead would stay valid for as long as it is ahead plus the tolerance.
	tolerance := c.opts.Tolerance
	if tolerance <= 0 {
		tolerance = webhook.DefaultTolerance // what stripe-go applied
	}
	if ts, ok := signedTimestamp(signature); !ok || ts.Sub(c.opts.Now()) > min(tolerance, MaxWebhookClockSkew) {
		return subscription.WebhookEvent{}, fmt.Errorf("%w: %w", subscription.ErrBadSignature, ErrFutureTimestamp)
	}
	out := subscription.WebhookEvent{ID: ev.ID, Type: string(ev.Type), Created: ev.Created}
	if ev.Data == nil || len(ev.Data.Raw) == 0 {
		return out, nil
	}
	var o object
	if err := json.Unmarshal(ev.Data.Raw, &o); err != nil {
		return subscription.WebhookEvent{}, fmt.Errorf("decode stripe event object: %w", err)
	}
	meta := o.Metadata
	out.CustomerID = idOf(o.Customer)
	out.Status = o.Status
	out.PaymentStatus = o.PaymentStatus
	out.CancelAtPeriodEnd = o.CancelAtPeriodEnd
	out.CurrentPeriodEnd = o.CurrentPeriodEnd
	switch o.Object {
	case "subscription":
		out.SubscriptionID = o.ID
		if o.Items != nil {
			for _, it := range o.Items.Data {
				if it.Price != nil && it.Price.ID != "" {
					out.PriceIDs = append(out.PriceIDs, it.Price.ID)
				}
				out.CurrentPeriodEnd = max(out.CurrentPeriodEnd, it.CurrentPeriodEnd)
			}
		}
	default:
		out.SubscriptionID = idOf(o.Subscription)
		if o.Parent != nil && o.Parent.SubscriptionDetails != nil {
			if out.SubscriptionID == "" {
				out.SubscriptionID = idOf(o.Parent.SubscriptionDetails.Subscription)
			}
			if len(meta) == 0 {
				meta = o.Parent.SubscriptionDetails.Metadata
			}
		}
	}
	out.OrganizationID = o.ClientReferenceID
	if out.OrganizationID == "" {
		out.OrganizationID = meta["organizationId"]
	}
	out.MetadataTier = meta["tier"]
	return out, nil
}
