package org

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/agentidp/agentidp/libs/httpx"
)

// tierRank orders the tiers for upgrade/downgrade decisions.
var tierRank = map[string]int{TierFree: 0, TierPro: 1, TierEnterprise: 2}

// BillingPlans applies the billing service's plan changes: upgrades at
// once, downgrades after a grace period (persisted, so restarts keep them).
type BillingPlans struct {
	svc   *Service
	store BillingStore
	grace time.Duration
	now   func() time.Time
}

// NewBillingPlans returns the billing plan applier; tier changes go through
// svc.Update (outbox tier.changed + org.updated, then the KV read model).
func NewBillingPlans(svc *Service, store BillingStore, grace time.Duration) *BillingPlans {
	return &BillingPlans{svc: svc, store: store, grace: grace, now: func() time.Time { return time.Now().UTC() }}
}

// Apply handles one billing.subscription.updated: tier is the
// organisation's effective paid tier since at. Applying the same change
// again is harmless; a change older than the last one applied is ignored.
func (b *BillingPlans) Apply(ctx context.Context, orgID, tier string, at time.Time) error {
	if _, ok := TierLimits(tier); !ok || !validID(orgID) {
		b.svc.logger.WarnContext(ctx, "ignoring billing plan change", "organizationId", orgID, "tier", tier)
		return nil
	}
	at = at.UTC().Truncate(time.Microsecond)
	last, err := b.store.LastBillingPlan(ctx, orgID)
	if err != nil {
		return err
	}
	if at.Before(last) {
		return nil
	}
	o, err := b.svc.Get(ctx, orgID)
	if isNotFound(err) {
		return nil // unknown or deleted organisation: nothing to change
	}
	if err != nil {
		return err
	}
	switch cur := tierRank[o.PlanTier]; {
	case tierRank[tier] > cur:
		if err := b.setTier(ctx, orgID, tier); err != nil {
			return err
		}
		if err := b.store.CancelPending(ctx, orgID); err != nil {
			return err
		}
	case tierRank[tier] == cur:
		if err := b.store.CancelPending(ctx, orgID); err != nil {
			return err
		}
	case !at.Add(b.grace).After(b.now()):
		// The grace period is already over (a late delivery): apply now.
		if err := b.setTier(ctx, orgID, tier); err != nil {
			return err
		}
		if err := b.store.CancelPending(ctx, orgID); err != nil {
			return err
		}
	default:
		if err := b.store.SchedulePending(ctx, PendingChange{OrganizationID: orgID, Tier: tier, ApplyAt: at.Add(b.grace)}); err != nil {
			return err
		}
	}
	return b.store.RecordBillingPlan(ctx, orgID, at)
}

// ApplyDue applies the pending downgrades whose time has come and returns
// how many were applied.
func (b *BillingPlans) ApplyDue(ctx context.Context) (int, error) {
	due, err := b.store.DuePending(ctx, b.now())
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range due {
		if err := b.setTier(ctx, p.OrganizationID, p.Tier); err != nil {
			return n, err
		}
		if err := b.store.DeletePending(ctx, p); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// setTier changes the plan tier through the regular update path; a
// missing organisation is skipped, an unchanged tier writes nothing.
func (b *BillingPlans) setTier(ctx context.Context, orgID, tier string) error {
	o, err := b.svc.Get(ctx, orgID)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if o.PlanTier == tier {
		return nil
	}
	if _, err := b.svc.Update(ctx, orgID, UpdateInput{PlanTier: &tier}); err != nil && !isNotFound(err) {
		return fmt.Errorf("apply billing tier %s to %s: %w", tier, orgID, err)
	}
	b.svc.logger.InfoContext(ctx, "plan tier changed by billing", "organizationId", orgID, "from", o.PlanTier, "to", tier)
	return nil
}

func isNotFound(err error) bool {
	var he *httpx.Error
	return errors.As(err, &he) && he.Code == CodeNotFound
}
