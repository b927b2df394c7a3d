package hook

import (
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

func TestScheduleNext(t *testing.T) {
	t.Parallel()
	s, err := ParseSchedule("1s, 2m")
	if err != nil || len(s) != 2 || s[1] != 2*time.Minute {
		t.Fatalf("ParseSchedule = %v, %v", s, err)
	}
	for range 100 {
		if d, ok := s.Next(2, 0); !ok || d < 0 || d > 2*time.Minute {
			t.Fatalf("Next(2) = %v, %v; want within [0, 2m]", d, ok)
		}
		if d, ok := s.Next(1, 10*time.Second); !ok || d < 10*time.Second {
			t.Fatalf("Next(1, Retry-After 10s) = %v, %v; want at least 10s", d, ok)
		}
	}
	if _, ok := s.Next(3, 0); ok {
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
