package domain

import (
	"encoding/json"
	"log/slog"
	"sync"

	"github.com/agentidp/agentidp/libs/events"
)

// FreeLimits apply to an organisation the read model does not know yet.
var FreeLimits = events.Limits{MaxAgents: 10, MaxCallsPerDay: 10000, MaxTokensPerDay: 1000}

// OrgModel is the in-memory read model of organisations, fed from the NATS
// KV bucket the tier service writes (events.OrgsBucket).
type OrgModel struct {
	mu        sync.RWMutex
	orgs      map[string]events.OrgData
	logger    *slog.Logger
	onDeleted func(events.OrgData)
}

// OnDeleted registers f, called (outside the model's lock) when an entry
// turns to status "deleted" — including deleted organisations found in the
// initial load. Set it before the model is fed.
func (m *OrgModel) OnDeleted(f func(events.OrgData)) { m.onDeleted = f }

// NewOrgModel returns an empty model.
func NewOrgModel(logger *slog.Logger) *OrgModel {
	return &OrgModel{orgs: map[string]events.OrgData{}, logger: logger}
}

// Apply stores one KV entry; a nil value deletes the org.
func (m *OrgModel) Apply(key string, value []byte) {
	if value == nil {
		m.mu.Lock()
		delete(m.orgs, key)
		m.mu.Unlock()
		return
	}
	var d events.OrgData
	if err := json.Unmarshal(value, &d); err != nil {
		m.logger.Warn("ignore malformed org read model entry", "key", key, "err", err)
		return
	}
	if d.OrganizationID == "" {
		d.OrganizationID = key
	}
	m.mu.Lock()
	prev, had := m.orgs[key]
	m.orgs[key] = d
	m.mu.Unlock()
	if m.onDeleted != nil && orgDeleted(d.Status) && (!had || !orgDeleted(prev.Status)) {
		m.onDeleted(d)
	}
}

// Org returns the organisation's data.
func (m *OrgModel) Org(id string) (events.OrgData, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	d, ok := m.orgs[id]
	return d, ok
}

// Limits returns the org's limits, the free tier when it is unknown.
func (m *OrgModel) Limits(id string) events.Limits {
	if d, ok := m.Org(id); ok {
		return d.Limits
	}
	return FreeLimits
}
