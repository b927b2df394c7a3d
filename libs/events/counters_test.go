package events

import (
	"testing"
	"time"
)

// The counter keys are read and written by different services: their
// spelling is a contract, pinned here.
func TestCounterKeys(t *testing.T) {
	t.Parallel()
	day := time.Date(2026, 1, 3, 23, 30, 0, 0, time.FixedZone("UTC-2", -2*3600)) // 01:30 UTC on Jan 4
	for _, tc := range []struct{ name, got, want string }{
		{"day stamp is the UTC day", DayStamp(day), "20260104"},
		{"agents", AgentsCounterKey("o1"), "usage:agents:o1"},
		{"calls", CallsCounterKey("o1", DayStamp(day)), "usage:calls:o1:20260104"},
		{"tokens", TokensCounterKey("o1", DayStamp(day)), "usage:tokens:o1:20260104"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: Got(%q); want %q", tc.name, tc.got, tc.want)
		}
	}
}
