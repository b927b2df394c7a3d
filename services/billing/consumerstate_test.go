package billing_test

import (
	"testing"

	"github.com/agentidp/agentidp/services/billing"
)

// TestConsumerStateIsExposed: the service reports its event consumer's
// state (what /health/detailed shows), named after its durable, healthy
// while nothing fails.
func TestConsumerStateIsExposed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, billing.Config{}, nil, nil)
	st := h.svc.ConsumerState()
	if st.Durable != billing.UsageDurable || st.Retrying || st.ConsecutiveFailures != 0 {
		t.Errorf("ConsumerState() = %+v; want %s, healthy", st, billing.UsageDurable)
	}
}
