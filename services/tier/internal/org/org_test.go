package org

import (
	"testing"

	"github.com/agentidp/agentidp/libs/events"
)

func TestLimits(t *testing.T) {
	t.Parallel()
	n := func(v int64) *int64 { return &v }
	tests := []struct {
		name      string
		tier      string
		maxAgents *int64
		want      events.Limits
	}{
		{"free", TierFree, nil, events.Limits{MaxAgents: 10, MaxCallsPerDay: 1000, MaxTokensPerDay: 1000}},
		{"pro", TierPro, nil, events.Limits{MaxAgents: 100, MaxCallsPerDay: 50000, MaxTokensPerDay: 50000}},
		{"enterprise unlimited", TierEnterprise, nil, events.Limits{MaxAgents: -1, MaxCallsPerDay: -1, MaxTokensPerDay: -1}},
		{"cap lowers", TierPro, n(20), events.Limits{MaxAgents: 20, MaxCallsPerDay: 50000, MaxTokensPerDay: 50000}},
		{"cap on unlimited", TierEnterprise, n(500), events.Limits{MaxAgents: 500, MaxCallsPerDay: -1, MaxTokensPerDay: -1}},
		{"cap above tier after downgrade never raises", TierFree, n(50), events.Limits{MaxAgents: 10, MaxCallsPerDay: 1000, MaxTokensPerDay: 1000}},
	}
	for _, tc := range tests {
		o := Organization{PlanTier: tc.tier, MaxAgents: tc.maxAgents}
		if got := o.Limits(); got != tc.want {
			t.Errorf("Got(Limits(%s)) = %+v; want %+v", tc.name, got, tc.want)
		}
	}
}
