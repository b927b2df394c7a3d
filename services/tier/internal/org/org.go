// Package org is the tier service's domain: organisations, their plan tier
// and limits, membership, and the usage figures other services write. It
// imports no adapter; storage, the NATS KV read model and the usage counters
// are reached through the small interfaces declared here.
package org

import (
	"time"

	"github.com/agentidp/agentidp/libs/events"
)

// Plan tiers.
const (
	TierFree       = "free"
	TierPro        = "pro"
	TierEnterprise = "enterprise"
)

// Unlimited is the limit value meaning "no limit".
const Unlimited = -1

// tierLimits is the constant tier table: enforcement (gateway, token
// service) needs no database lookup, only the organisation's tier.
var tierLimits = map[string]events.Limits{
	TierFree:       {MaxAgents: 10, MaxCallsPerDay: 1000, MaxTokensPerDay: 1000},
	TierPro:        {MaxAgents: 100, MaxCallsPerDay: 50000, MaxTokensPerDay: 50000},
	TierEnterprise: {MaxAgents: Unlimited, MaxCallsPerDay: Unlimited, MaxTokensPerDay: Unlimited},
}

// TierLimits returns the limits of a plan tier and whether the tier exists.
func TierLimits(tier string) (events.Limits, bool) {
	l, ok := tierLimits[tier]
	return l, ok
}

// Organisation statuses.
const (
	StatusActive    = "active"
	StatusSuspended = "suspended"
	StatusDeleted   = "deleted"
)

// Member roles.
const (
	RoleMember = "member"
	RoleAdmin  = "admin"
)

// Organization is a tenant.
type Organization struct {
	ID       string
	Name     string
	Slug     string
	PlanTier string
	// MaxAgents is the operator's per-organisation cap; nil means the
	// tier's limit. It can only lower the tier's limit (see Limits).
	MaxAgents *int64
	// MaxTokensPerMonth is informational (billing); nil when unset.
	MaxTokensPerMonth *int64
	Status            string
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

// Limits are the effective limits: the tier's, with MaxAgents lowered to the
// organisation's own cap when it has one. A cap above the tier's limit (left
// over from a downgrade) never raises it.
func (o Organization) Limits() events.Limits {
	l, _ := TierLimits(o.PlanTier)
	if o.MaxAgents != nil && (l.MaxAgents == Unlimited || *o.MaxAgents < l.MaxAgents) {
		l.MaxAgents = *o.MaxAgents
	}
	return l
}

// Data is the organisation as published in events and in the KV read model.
func (o Organization) Data() events.OrgData {
	return events.OrgData{
		OrganizationID: o.ID,
		Name:           o.Name,
		Slug:           o.Slug,
		PlanTier:       o.PlanTier,
		Status:         o.Status,
		Limits:         o.Limits(),
		UpdatedAt:      o.UpdatedAt,
	}
}

// Member is an agent's membership of an organisation.
type Member struct {
	OrganizationID string
	AgentID        string
	Role           string
	CreatedAt      time.Time
}

// Usage is what an organisation consumed: agents now, calls and token
// issuances today (UTC).
type Usage struct {
	AgentCount  int64
	CallsToday  int64
	TokensToday int64
}

// Cache keys of the usage figures: other services write them; their one
// definition is in libs/events (counters.go).

// AgentsKey holds the organisation's active agent count as a decimal string
// (written by the token service).
func AgentsKey(orgID string) string { return events.AgentsCounterKey(orgID) }

// CallsKey is the counter of API calls of the organisation on the UTC day of
// day (incremented by the gateway).
func CallsKey(orgID string, day time.Time) string {
	return events.CallsCounterKey(orgID, events.DayStamp(day))
}

// TokensKey is the counter of tokens issued to the organisation on the UTC
// day of day (incremented by the token service).
func TokensKey(orgID string, day time.Time) string {
	return events.TokensCounterKey(orgID, events.DayStamp(day))
}
