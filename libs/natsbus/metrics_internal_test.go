package natsbus

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestConsumerMetricsSurviveRestart(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	first := newConsumerMetrics(reg, "same")
	first.processed.Add(2)
	second := newConsumerMetrics(reg, "same")
	second.processed.Add(3)
	if got := testutil.ToFloat64(second.processed); got != 5 {
		t.Errorf("processed after restart = %v; want 5 (the same series)", got)
	}
}
