package org

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/google/uuid"
)

// Error codes of this domain (the seed's names).
const (
	CodeNotFound       = "ORGANIZATION_NOT_FOUND"
	CodeAlreadyExists  = "ORGANIZATION_ALREADY_EXISTS"
	CodeHasAgents      = "ORGANIZATION_HAS_ACTIVE_AGENTS"
	CodeAlreadyMember  = "ALREADY_MEMBER"
	eventSource        = "tier"
	maxPositiveLimitOK = int64(1) << 53 // keeps numbers exact in JSON clients
)

var slugPattern = regexp.MustCompile(`^[a-z0-9-]+$`)

// Service implements the organisation and tier use cases.
type Service struct {
	store  Store
	model  ReadModel
	usage  UsageReader
	notify func()
	logger *slog.Logger
	now    func() time.Time
}

// NewService builds the domain service. notify wakes the outbox relay after
// a commit (may be nil); usage may be nil when only Bootstrap is needed.
func NewService(store Store, model ReadModel, usage UsageReader, notify func(), logger *slog.Logger) *Service {
	if notify == nil {
		notify = func() {}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Service{store: store, model: model, usage: usage, notify: notify, logger: logger, now: func() time.Time { return time.Now().UTC() }}
}

// CreateInput is a new organisation as requested.
type CreateInput struct {
	Name              string
	Slug              string
	PlanTier          *string
	MaxAgents         *int64
	MaxTokensPerMonth *int64
}

// UpdateInput is a partial update; nil fields are left unchanged.
type UpdateInput struct {
	Name              *string
	PlanTier          *string
	MaxAgents         *int64
	MaxTokensPerMonth *int64
	Status            *string
}

// fieldErrors collects validation problems per field.
type fieldErrors map[string]string

func (f fieldErrors) err() error {
	if len(f) == 0 {
		return nil
	}
	return httpx.Validation("invalid organization", map[string]string(f))
}

func validateName(f fieldErrors, name string) {
	if n := utf8.RuneCountInString(name); n < 2 || n > 100 || strings.TrimSpace(name) != name {
		f["name"] = "must be 2-100 characters without leading or trailing spaces"
	}
}

func validateTier(f fieldErrors, tier string) {
	if _, ok := TierLimits(tier); !ok {
		f["planTier"] = "must be one of free, pro, enterprise"
	}
}

func validateLimit(f fieldErrors, field string, v *int64) {
	if v != nil && (*v < 1 || *v > maxPositiveLimitOK) {
		f[field] = "must be a positive integer"
	}
}

// validateMaxAgents checks that a cap only lowers the tier's agent limit.
func validateMaxAgents(f fieldErrors, tier string, v *int64) {
	if v == nil || f["maxAgents"] != "" || f["planTier"] != "" {
		return
	}
	if l, _ := TierLimits(tier); l.MaxAgents != Unlimited && *v > l.MaxAgents {
		f["maxAgents"] = fmt.Sprintf("may not exceed the %s tier's limit of %d", tier, l.MaxAgents)
	}
}

// Create validates in and creates the organisation (event org.created).
func (s *Service) Create(ctx context.Context, in CreateInput) (Organization, error) {
	f := fieldErrors{}
	validateName(f, in.Name)
	if n := len(in.Slug); n < 2 || n > 50 || !slugPattern.MatchString(in.Slug) {
		f["slug"] = "must be 2-50 characters of a-z, 0-9 and -"
	}
	tier := TierFree
	if in.PlanTier != nil {
		tier = *in.PlanTier
	}
	validateTier(f, tier)
	validateLimit(f, "maxAgents", in.MaxAgents)
	validateLimit(f, "maxTokensPerMonth", in.MaxTokensPerMonth)
	validateMaxAgents(f, tier, in.MaxAgents)
	if err := f.err(); err != nil {
		return Organization{}, err
	}
	return s.create(ctx, in.Name, in.Slug, tier, in.MaxAgents, in.MaxTokensPerMonth)
}

func (s *Service) create(ctx context.Context, name, slug, tier string, maxAgents, maxTokens *int64) (Organization, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Organization{}, fmt.Errorf("new organization id: %w", err)
	}
	now := s.now().Truncate(time.Microsecond)
	o := Organization{ID: id.String(), Name: name, Slug: slug, PlanTier: tier, MaxAgents: maxAgents,
		MaxTokensPerMonth: maxTokens, Status: StatusActive, CreatedAt: now, UpdatedAt: now}
	ev, err := events.New(events.OrgCreated, eventSource, o.ID, "", o.Data())
	if err != nil {
		return Organization{}, err
	}
	if err := s.store.Create(ctx, o, []events.Envelope{ev}); err != nil {
		if errors.Is(err, ErrSlugTaken) {
			return Organization{}, httpx.Conflict(CodeAlreadyExists, "an organization with this slug already exists")
		}
		return Organization{}, fmt.Errorf("create organization: %w", err)
	}
	s.committed(ctx, o)
	return o, nil
}

// Bootstrap creates the organisation with slug unless it exists; created
// reports which. It skips the request validation so the operator's
// configured names are used as given, and uses the enterprise tier so the
// operator is not limited.
func (s *Service) Bootstrap(ctx context.Context, name, slug string) (o Organization, created bool, err error) {
	o, err = s.store.GetBySlug(ctx, slug)
	if err == nil {
		return o, false, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return Organization{}, false, fmt.Errorf("bootstrap organization %q: %w", slug, err)
	}
	o, err = s.create(ctx, name, slug, TierEnterprise, nil, nil)
	var he *httpx.Error
	if errors.As(err, &he) && he.Code == CodeAlreadyExists {
		// Created concurrently by another replica: return that one.
		o, err = s.store.GetBySlug(ctx, slug)
		return o, false, err
	}
	if err != nil {
		return Organization{}, false, fmt.Errorf("bootstrap organization %q: %w", slug, err)
	}
	return o, true, nil
}

// Get returns a live (not deleted) organisation.
func (s *Service) Get(ctx context.Context, id string) (Organization, error) {
	if !validID(id) {
		return Organization{}, notFound()
	}
	o, err := s.store.Get(ctx, id)
	if errors.Is(err, ErrNotFound) || (err == nil && o.Status == StatusDeleted) {
		return Organization{}, notFound()
	}
	if err != nil {
		return Organization{}, fmt.Errorf("get organization: %w", err)
	}
	return o, nil
}

// List returns a page of live organisations and their total.
func (s *Service) List(ctx context.Context, offset, limit int) ([]Organization, int64, error) {
	list, total, err := s.store.List(ctx, offset, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("list organizations: %w", err)
	}
	return list, total, nil
}

// Update applies in (events org.updated, and tier.changed when the tier
// changes).
func (s *Service) Update(ctx context.Context, id string, in UpdateInput) (Organization, error) {
	if !validID(id) {
		return Organization{}, notFound()
	}
	f := fieldErrors{}
	if in.Name == nil && in.PlanTier == nil && in.MaxAgents == nil && in.MaxTokensPerMonth == nil && in.Status == nil {
		return Organization{}, httpx.Validation("nothing to update", nil)
	}
	if in.Name != nil {
		validateName(f, *in.Name)
	}
	if in.PlanTier != nil {
		validateTier(f, *in.PlanTier)
	}
	if in.Status != nil && *in.Status != StatusActive && *in.Status != StatusSuspended {
		f["status"] = "must be active or suspended"
	}
	validateLimit(f, "maxAgents", in.MaxAgents)
	validateLimit(f, "maxTokensPerMonth", in.MaxTokensPerMonth)
	if err := f.err(); err != nil {
		return Organization{}, err
	}
	o, err := s.store.Update(ctx, id, func(o *Organization) ([]events.Envelope, error) {
		if o.Status == StatusDeleted {
			return nil, ErrNotFound
		}
		prevTier := o.PlanTier
		if in.Name != nil {
			o.Name = *in.Name
		}
		if in.PlanTier != nil {
			o.PlanTier = *in.PlanTier
		}
		if in.MaxAgents != nil {
			f := fieldErrors{}
			validateMaxAgents(f, o.PlanTier, in.MaxAgents)
			if err := f.err(); err != nil {
				return nil, err
			}
			o.MaxAgents = in.MaxAgents
		}
		if in.MaxTokensPerMonth != nil {
			o.MaxTokensPerMonth = in.MaxTokensPerMonth
		}
		if in.Status != nil {
			o.Status = *in.Status
		}
		o.UpdatedAt = s.now().Truncate(time.Microsecond)
		upd, err := events.New(events.OrgUpdated, eventSource, o.ID, "", o.Data())
		if err != nil {
			return nil, err
		}
		evs := []events.Envelope{upd}
		if o.PlanTier != prevTier {
			tc, err := events.New(events.TierChanged, eventSource, o.ID, "", events.TierChangedData{
				OrganizationID: o.ID, From: prevTier, To: o.PlanTier, Limits: o.Limits(), At: o.UpdatedAt,
			})
			if err != nil {
				return nil, err
			}
			evs = append(evs, tc)
		}
		return evs, nil
	})
	if err != nil {
		return Organization{}, s.mapErr("update organization", err)
	}
	s.committed(ctx, o)
	return o, nil
}

// Delete soft-deletes the organisation (event org.deleted) unless it still
// has active agents according to the token service's agent counter.
func (s *Service) Delete(ctx context.Context, id string) error {
	if _, err := s.Get(ctx, id); err != nil {
		return err
	}
	if s.usage == nil {
		return errors.New("delete organization: no usage reader configured")
	}
	u, err := s.usage.Usage(ctx, id, s.now())
	if err != nil {
		return httpx.Unavailable("usage figures unavailable", err)
	}
	if u.AgentCount > 0 {
		return httpx.Conflict(CodeHasAgents, fmt.Sprintf("organization has %d active agents", u.AgentCount))
	}
	o, err := s.store.Update(ctx, id, func(o *Organization) ([]events.Envelope, error) {
		if o.Status == StatusDeleted {
			return nil, ErrNotFound
		}
		o.Status = StatusDeleted
		o.UpdatedAt = s.now().Truncate(time.Microsecond)
		ev, err := events.New(events.OrgDeleted, eventSource, o.ID, "", o.Data())
		return []events.Envelope{ev}, err
	})
	if err != nil {
		return s.mapErr("delete organization", err)
	}
	s.committed(ctx, o)
	return nil
}

// AddMember adds an agent to a live organisation (event org.member_added).
// The agent's existence is the token service's business; tier records the
// membership as asked.
func (s *Service) AddMember(ctx context.Context, orgID, agentID, role string) (Member, error) {
	if !validID(orgID) {
		return Member{}, notFound()
	}
	f := fieldErrors{}
	if _, err := uuid.Parse(agentID); err != nil || len(agentID) != 36 {
		f["agentId"] = "must be a UUID"
	}
	if role != RoleMember && role != RoleAdmin {
		f["role"] = "must be member or admin"
	}
	if err := f.err(); err != nil {
		return Member{}, err
	}
	m := Member{OrganizationID: orgID, AgentID: strings.ToLower(agentID), Role: role, CreatedAt: s.now().Truncate(time.Microsecond)}
	ev, err := events.New(events.OrgMemberAdded, eventSource, orgID, m.AgentID, events.OrgMemberData{
		OrganizationID: orgID, AgentID: m.AgentID, Role: role, At: m.CreatedAt,
	})
	if err != nil {
		return Member{}, err
	}
	if err := s.store.AddMember(ctx, m, []events.Envelope{ev}); err != nil {
		if errors.Is(err, ErrAlreadyMember) {
			return Member{}, httpx.Conflict(CodeAlreadyMember, "agent is already a member of this organization")
		}
		return Member{}, s.mapErr("add member", err)
	}
	s.notify()
	return m, nil
}

// Status is an organisation's tier, limits and usage today.
type Status struct {
	Tier   string
	Limits events.Limits
	Usage  Usage
}

// TierStatus returns the caller's organisation's tier status.
func (s *Service) TierStatus(ctx context.Context, orgID string) (Status, error) {
	o, err := s.Get(ctx, orgID)
	if err != nil {
		return Status{}, err
	}
	u, err := s.usage.Usage(ctx, o.ID, s.now())
	if err != nil {
		return Status{}, httpx.Unavailable("usage figures unavailable", err)
	}
	return Status{Tier: o.PlanTier, Limits: o.Limits(), Usage: u}, nil
}

// Reconcile writes every organisation from the database into the read
// model, healing any KV put lost between a commit and its Put.
func (s *Service) Reconcile(ctx context.Context) error {
	all, err := s.store.All(ctx)
	if err != nil {
		return fmt.Errorf("reconcile read model: %w", err)
	}
	var errs []error
	for _, o := range all {
		if err := s.model.Put(ctx, o.Data()); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("reconcile read model: %d of %d puts failed: %w", len(errs), len(all), errors.Join(errs...))
	}
	return nil
}

// committed runs after a successful commit: wake the relay and update the
// read model. A failed Put is logged only: the periodic reconciliation
// heals it, and the change itself is already durable.
func (s *Service) committed(ctx context.Context, o Organization) {
	s.notify()
	if s.model == nil {
		return
	}
	if err := s.model.Put(ctx, o.Data()); err != nil {
		s.logger.WarnContext(ctx, "update organization read model; reconciliation will retry", "organizationId", o.ID, "err", err)
	}
}

func (s *Service) mapErr(op string, err error) error {
	var he *httpx.Error
	switch {
	case errors.As(err, &he):
		return he
	case errors.Is(err, ErrNotFound):
		return notFound()
	}
	return fmt.Errorf("%s: %w", op, err)
}

func notFound() error {
	return httpx.NotFound(CodeNotFound, "organization not found")
}

// validID reports whether id is a canonical lower-case UUID (the form this
// service issues); anything else cannot name an organisation and is answered
// like a missing one.
func validID(id string) bool {
	if len(id) != 36 || strings.ToLower(id) != id {
		return false
	}
	_, err := uuid.Parse(id)
	return err == nil
}
