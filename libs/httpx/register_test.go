package httpx

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRegisterSharesTheCollectorAlreadyRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "agentidp_test_total", Help: "test"}
	first := Register(reg, prometheus.NewCounter(opts))
	second := Register(reg, prometheus.NewCounter(opts))
	second.Inc()
	if got := testutil.ToFloat64(first); got != 1 {
		t.Fatalf("first collector = %v after incrementing the second; want 1 (the same collector)", got)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a conflicting registration did not panic")
		}
	}()
	// Same name, different help: not the same collector, a programming error.
	Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "agentidp_test_total", Help: "other"}))
}
