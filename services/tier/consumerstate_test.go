package tier_test

import (
	"testing"

	"github.com/agentidp/agentidp/services/tier"
)

// TestConsumerStateIsExposed: the service reports its event consumer's
// state (what /health/detailed shows), named after its durable, healthy
// while nothing fails.
func TestConsumerStateIsExposed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	st := h.svc.ConsumerState()
	if st.Durable != tier.BillingDurable || st.Retrying || st.ConsecutiveFailures != 0 {
		t.Errorf("ConsumerState() = %+v; want %s, healthy", st, tier.BillingDurable)
	}
}
