package hook

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MaxRetryAfter caps a Retry-After an endpoint asks for.
const MaxRetryAfter = time.Hour

// Schedule is the retry schedule: Schedule[i] is the base delay before
// attempt i+2, so a delivery gets 1+len(Schedule) attempts before it is
// dead-lettered.
type Schedule []time.Duration

// DefaultSchedule spreads 11 attempts over about 16 hours.
var DefaultSchedule = Schedule{5 * time.Second, 30 * time.Second, 2 * time.Minute, 5 * time.Minute,
	15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour}

// ParseSchedule parses "5s,30s,2m".
func ParseSchedule(s string) (Schedule, error) {
	var out Schedule
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		d, err := time.ParseDuration(p)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%q is not a positive duration", p)
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("schedule is empty")
	}
	return out, nil
}

// String formats the schedule as ParseSchedule reads it.
func (s Schedule) String() string {
	parts := make([]string, len(s))
	for i, d := range s {
		parts[i] = d.String()
	}
	return strings.Join(parts, ",")
}

// MaxJitter is the largest fraction of a scheduled delay added as jitter:
// the delay before a retry is uniform in [base, base·(1+MaxJitter)]. The
// jitter only lengthens a delay, so the schedule is a floor: a delivery is
// retried no sooner than documented and is dead-lettered no sooner than
// the schedule's total (and at most 20% later), while endpoints recovering
// from an outage are still not hit by synchronised waves.
const MaxJitter = 0.2

// Next returns the delay before the next attempt after attempts failed
// attempts, and false when none is left. r is a random value in [0, 1)
// (rand.Float64) choosing the jitter: the delay is base + r·MaxJitter·base.
// retryAfter, when positive, is a floor (capped at MaxRetryAfter).
func (s Schedule) Next(attempts int, retryAfter time.Duration, r float64) (time.Duration, bool) {
	if attempts < 1 || attempts > len(s) {
		return 0, false
	}
	base := s[attempts-1]
	r = min(max(r, 0), 1)
	d := base + time.Duration(r*MaxJitter*float64(base))
	if retryAfter > 0 {
		d = max(d, min(retryAfter, MaxRetryAfter))
	}
	return d, true
}

// Total is the sum of the scheduled delays: the shortest time from a
// delivery's first attempt to its dead letter.
func (s Schedule) Total() time.Duration {
	var t time.Duration
	for _, d := range s {
		t += d
	}
	return t
}

// ParseRetryAfter reads a Retry-After header (delay-seconds or HTTP date)
// relative to now; 0 when absent or malformed. The result is capped at
// MaxRetryAfter.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return max(0, min(d, MaxRetryAfter))
}
