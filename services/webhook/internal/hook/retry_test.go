package hook

import (
	"math/rand/v2"
	"net/http"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name, in string
		want     time.Duration
	}{
		{"empty", "", 0},
		{"seconds", "30", 30 * time.Second},
		{"zero", "0", 0},
		{"negative", "-5", 0},
		{"capped seconds", "86400", time.Hour},
		{"http date", now.Add(2 * time.Minute).Format(http.TimeFormat), 2 * time.Minute},
		{"past date", now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"capped date", now.Add(5 * time.Hour).Format(http.TimeFormat), time.Hour},
		{"garbage", "soon", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParseRetryAfter(tc.in, now); got != tc.want {
				t.Errorf("ParseRetryAfter(%q) = %v; want %v", tc.in, got, tc.want)
			}
		})
	}
}

// TestRetriesNeverComeEarlierThanTheSchedule stops the fault where
// full jitter (a delay drawn from [0, base]) dead-lettered a delivery long
// before the documented schedule's total: the jitter only lengthens a
// delay, by at most MaxJitter.
func TestRetriesNeverComeEarlierThanTheSchedule(t *testing.T) {
	t.Parallel()
	s, err := ParseSchedule("1s, 2m")
	if err != nil || len(s) != 2 || s[1] != 2*time.Minute || s.Total() != 2*time.Minute+time.Second {
		t.Fatalf("ParseSchedule = %v, %v", s, err)
	}
	tests := []struct {
		name       string
		attempts   int
		retryAfter time.Duration
		r          float64
		want       time.Duration
	}{
		{"no jitter", 2, 0, 0, 2 * time.Minute},
		{"half jitter", 2, 0, 0.5, 2*time.Minute + 12*time.Second},
		{"most jitter", 1, 0, 0.999999, time.Second + 199999800*time.Nanosecond},
		{"out of range random is clamped", 1, 0, 7, 1200 * time.Millisecond},
		{"retry-after is a floor", 1, 10 * time.Second, 0.5, 10 * time.Second},
		{"retry-after below the delay", 2, 10 * time.Second, 0, 2 * time.Minute},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, ok := s.Next(tc.attempts, tc.retryAfter, tc.r); !ok || got != tc.want {
				t.Errorf("Next(%d, %v, %v) = %v, %v; want %v", tc.attempts, tc.retryAfter, tc.r, got, ok, tc.want)
			}
		})
	}
	var total time.Duration
	for i := range 1000 {
		d, ok := DefaultSchedule.Next(i%len(DefaultSchedule)+1, 0, rand.Float64())
		b := DefaultSchedule[i%len(DefaultSchedule)]
		if !ok || d < b || d > b+b/5 {
			t.Fatalf("Next(%d) = %v, %v; want within [%v, %v]", i%len(DefaultSchedule)+1, d, ok, b, b+b/5)
		}
		total += d
	}
	if min := 100 * DefaultSchedule.Total(); total < min {
		t.Errorf("100 schedules took %v; want at least %v", total, min)
	}
	if _, ok := s.Next(3, 0, 0.5); ok {
		t.Error("Next(3) with a schedule of 2 = ok; want dead letter")
	}
	for _, bad := range []string{"", "5s,x", "-1s", "0s"} {
		if _, err := ParseSchedule(bad); err == nil {
			t.Errorf("ParseSchedule(%q) = nil error", bad)
		}
	}
}

func TestSigningSecretsOverlap(t *testing.T) {
	t.Parallel()
	now := time.Now()
	data := map[string]string{"current": "new", "previous": "old", "previous_until": now.Add(time.Hour).Format(time.RFC3339Nano)}
	if got := SigningSecrets(data, now); len(got) != 2 || got[0] != "new" || got[1] != "old" {
		t.Errorf("SigningSecrets(during overlap) = %v; want [new old]", got)
	}
	if got := SigningSecrets(data, now.Add(2*time.Hour)); len(got) != 1 || got[0] != "new" {
		t.Errorf("SigningSecrets(after overlap) = %v; want [new]", got)
	}
}
