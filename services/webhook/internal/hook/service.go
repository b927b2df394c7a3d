package hook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/libs/safehttp"
	"github.com/google/uuid"
)

// Options configure the API side of the domain.
type Options struct {
	// AllowPrivate lists ranges endpoints may point at despite the SSRF rules.
	AllowPrivate []netip.Prefix
	// RequireHTTPS refuses http:// endpoints.
	RequireHTTPS bool
	// RotationOverlap is how long the previous secret keeps signing after a
	// rotation.
	RotationOverlap time.Duration
	// Notify wakes the delivery dispatcher (after a redelivery).
	Notify func()
	Logger *slog.Logger
	Now    func() time.Time
}

// Service implements the webhook API operations. Every method takes the
// caller's organisation and never touches another's data.
type Service struct {
	store   Store
	secrets SecretStore
	o       Options
}

// NewService returns the API service.
func NewService(store Store, secrets SecretStore, o Options) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Notify == nil {
		o.Notify = func() {}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{store: store, secrets: secrets, o: o}
}

func (s *Service) now() time.Time { return s.o.Now().UTC().Truncate(time.Microsecond) }

// CreateInput is the body of POST /webhooks.
type CreateInput struct {
	Name   string
	URL    string
	Events []string
}

// UpdateInput is the body of PATCH /webhooks/{id}; nil fields are kept.
type UpdateInput struct {
	Name   *string
	URL    *string
	Events *[]string
	Active *bool
}

type fieldErrors map[string]string

func (f fieldErrors) err() error {
	if len(f) == 0 {
		return nil
	}
	return httpx.Validation("invalid webhook", map[string]string(f))
}

func validateName(f fieldErrors, name string) {
	n := utf8.RuneCountInString(name)
	if !utf8.ValidString(name) || strings.TrimSpace(name) == "" || n > maxNameLen {
		f["name"] = "must be 1 to 100 characters"
	}
}

// validateURL refuses, with a message naming the rule, any URL the delivery
// dialer would refuse (safehttp.CheckURL applies the dialer's rules and
// allow-list), so an endpoint in disguise is never stored.
func (s *Service) validateURL(ctx context.Context, f fieldErrors, raw string) {
	if err := safehttp.CheckURL(ctx, raw, safehttp.CheckOptions{Allow: s.o.AllowPrivate, RequireHTTPS: s.o.RequireHTTPS}); err != nil {
		f["url"] = err.Error()
	}
}

// normalizeEvents validates and de-duplicates event types, keeping order.
func normalizeEvents(f fieldErrors, in []string) []string {
	if len(in) == 0 {
		f["events"] = "must list at least one event type (or \"*\")"
		return nil
	}
	if len(in) > maxEventsPerEndpoint {
		f["events"] = fmt.Sprintf("must list at most %d event types", maxEventsPerEndpoint)
		return nil
	}
	out := make([]string, 0, len(in))
	for _, e := range in {
		if e != WildcardEvent && !slices.Contains(events.Types, events.Type(e)) {
			f["events"] = fmt.Sprintf("unknown event type %q", e)
			return nil
		}
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out
}

// Create registers an endpoint and returns it with its signing secret,
// which is shown only here and on rotation.
func (s *Service) Create(ctx context.Context, orgID string, in CreateInput) (Subscription, string, error) {
	f := fieldErrors{}
	validateName(f, in.Name)
	s.validateURL(ctx, f, in.URL)
	evs := normalizeEvents(f, in.Events)
	if err := f.err(); err != nil {
		return Subscription{}, "", err
	}
	secret, err := NewSecret()
	if err != nil {
		return Subscription{}, "", httpx.Internal(err)
	}
	now := s.now()
	sub := Subscription{ID: IDPrefix + uuid.NewString(), OrganizationID: orgID, Name: in.Name, URL: in.URL,
		Events: evs, Active: true, CreatedAt: now, UpdatedAt: now}
	sub.SecretPath = SecretPathPrefix + sub.ID
	// The secret is written first: a subscription row never exists without
	// its secret. A failed insert leaves an orphan we delete best-effort.
	if _, err := s.secrets.Put(ctx, sub.SecretPath, map[string]string{secretKeyCurrent: secret}); err != nil {
		return Subscription{}, "", httpx.Unavailable("secret store unavailable", err)
	}
	if err := s.store.CreateSubscription(ctx, sub); err != nil {
		if derr := s.secrets.Delete(context.WithoutCancel(ctx), sub.SecretPath); derr != nil {
			s.o.Logger.Warn("delete orphaned webhook secret", "webhook_id", sub.ID, "err", derr)
		}
		return Subscription{}, "", mapErr(fmt.Errorf("create webhook: %w", err))
	}
	return sub, secret, nil
}

// Get returns orgID's subscription id.
func (s *Service) Get(ctx context.Context, orgID, id string) (Subscription, error) {
	sub, err := s.store.GetSubscription(ctx, orgID, id)
	return sub, mapErr(err)
}

// List returns a page of orgID's subscriptions.
func (s *Service) List(ctx context.Context, orgID string, offset, limit int) ([]Subscription, int64, error) {
	list, total, err := s.store.ListSubscriptions(ctx, orgID, offset, limit)
	return list, total, mapErr(err)
}

// Update changes name, url, events or active. Re-activating an endpoint
// clears its failure streak.
func (s *Service) Update(ctx context.Context, orgID, id string, in UpdateInput) (Subscription, error) {
	if in.Name == nil && in.URL == nil && in.Events == nil && in.Active == nil {
		return Subscription{}, httpx.Validation("nothing to update", nil)
	}
	f := fieldErrors{}
	if in.Name != nil {
		validateName(f, *in.Name)
	}
	if in.URL != nil {
		s.validateURL(ctx, f, *in.URL)
	}
	var evs []string
	if in.Events != nil {
		evs = normalizeEvents(f, *in.Events)
	}
	if err := f.err(); err != nil {
		return Subscription{}, err
	}
	// Validation happens before the transaction: ValidateURL may resolve DNS.
	sub, err := s.store.UpdateSubscription(ctx, orgID, id, func(sub *Subscription) error {
		if in.Name != nil {
			sub.Name = *in.Name
		}
		if in.URL != nil {
			sub.URL = *in.URL
		}
		if in.Events != nil {
			sub.Events = evs
		}
		if in.Active != nil {
			if *in.Active && !sub.Active {
				sub.FailureCount, sub.FailingSince = 0, nil
			}
			sub.Active = *in.Active
		}
		sub.UpdatedAt = s.now()
		return nil
	})
	if err != nil {
		return Subscription{}, mapErr(err)
	}
	if in.Active != nil && *in.Active {
		s.o.Notify()
	}
	return sub, nil
}

// Delete removes orgID's subscription id, its deliveries and its secret.
func (s *Service) Delete(ctx context.Context, orgID, id string) error {
	sub, err := s.store.DeleteSubscription(ctx, orgID, id)
	if err != nil {
		return mapErr(err)
	}
	if err := s.secrets.Delete(ctx, sub.SecretPath); err != nil {
		s.o.Logger.Warn("delete webhook secret", "webhook_id", sub.ID, "err", err)
	}
	return nil
}

// RotateSecret issues a new signing secret; the previous one keeps signing
// (alongside) for RotationOverlap. It returns the new secret.
func (s *Service) RotateSecret(ctx context.Context, orgID, id string) (Subscription, string, error) {
	sub, err := s.store.GetSubscription(ctx, orgID, id)
	if err != nil {
		return Subscription{}, "", mapErr(err)
	}
	cur, err := s.secrets.Get(ctx, sub.SecretPath)
	if err != nil {
		return Subscription{}, "", httpx.Unavailable("secret store unavailable", err)
	}
	secret, err := NewSecret()
	if err != nil {
		return Subscription{}, "", httpx.Internal(err)
	}
	data := map[string]string{secretKeyCurrent: secret}
	if s.o.RotationOverlap > 0 && cur[secretKeyCurrent] != "" {
		data[secretKeyPrevious] = cur[secretKeyCurrent]
		data[secretKeyPreviousTill] = s.now().Add(s.o.RotationOverlap).Format(time.RFC3339Nano)
	}
	if _, err := s.secrets.Put(ctx, sub.SecretPath, data); err != nil {
		return Subscription{}, "", httpx.Unavailable("secret store unavailable", err)
	}
	sub, err = s.store.UpdateSubscription(ctx, orgID, id, func(sub *Subscription) error {
		sub.UpdatedAt = s.now()
		return nil
	})
	if err != nil {
		return Subscription{}, "", mapErr(err)
	}
	return sub, secret, nil
}

// SigningSecrets returns the secrets a message is signed with at now: the
// current one, plus the previous one while its overlap lasts.
func SigningSecrets(data map[string]string, now time.Time) []string {
	out := []string{data[secretKeyCurrent]}
	if prev := data[secretKeyPrevious]; prev != "" {
		if until, err := time.Parse(time.RFC3339Nano, data[secretKeyPreviousTill]); err == nil && now.Before(until) {
			out = append(out, prev)
		}
	}
	return out
}

// Deliveries returns a page of the deliveries of orgID's subscription id.
func (s *Service) Deliveries(ctx context.Context, orgID, id string, offset, limit int) ([]Delivery, int64, error) {
	list, total, err := s.store.ListDeliveries(ctx, orgID, id, offset, limit)
	return list, total, mapErr(err)
}

// Redeliver queues a failed or dead-lettered delivery again.
func (s *Service) Redeliver(ctx context.Context, orgID, id, deliveryID string) (Delivery, error) {
	d, err := s.store.Redeliver(ctx, orgID, id, deliveryID, s.now())
	switch {
	case errors.Is(err, ErrNotFound):
		if _, gerr := s.store.GetSubscription(ctx, orgID, id); errors.Is(gerr, ErrNotFound) {
			return Delivery{}, notFound()
		}
		return Delivery{}, httpx.NotFound(CodeDeliveryNotFound, "delivery not found")
	case errors.Is(err, ErrNotRedeliverable):
		return Delivery{}, httpx.Conflict(CodeNotRedeliverable, "only failed or dead-lettered deliveries can be redelivered")
	case err != nil:
		return Delivery{}, mapErr(err)
	}
	s.o.Notify()
	return d, nil
}

func notFound() error { return httpx.NotFound(CodeNotFound, "webhook not found") }

func mapErr(err error) error {
	if err == nil {
		return nil
	}
	var he *httpx.Error
	if errors.As(err, &he) {
		return he
	}
	if errors.Is(err, ErrNotFound) {
		return notFound()
	}
	return httpx.Internal(err)
}
