package httpx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
)

func TestErrorCategory(t *testing.T) {
	t.Parallel()
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: &net.OpError{Err: syscall.ECONNREFUSED}}
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"refused", fmt.Errorf("ping 10.0.0.1:6379: %w", refused), "connection_refused"},
		{"deadline", fmt.Errorf("ping: %w", context.DeadlineExceeded), "timeout"},
		{"dns", &net.DNSError{Err: "no such host", Name: "db.internal"}, "dns"},
		{"categorized", Categorize("reconnecting", errors.New("nats RECONNECTING")), "reconnecting"},
		{"other", errors.New("password authentication failed for user admin"), "error"},
	}
	for _, c := range cases {
		if got := ErrorCategory(c.err); got != c.want {
			t.Errorf("Got(ErrorCategory(%s)) = %q; want %q", c.name, got, c.want)
		}
	}
}

type unavailableErr struct{}

func (unavailableErr) Error() string     { return "db down" }
func (unavailableErr) Unavailable() bool { return true }

func TestAsErrorMapsUnavailableTo503(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		err  error
		want int
	}{
		{"classified", fmt.Errorf("load agent: %w", unavailableErr{}), 503},
		{"dial failure", fmt.Errorf("load agent: %w", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}), 503},
		{"bug", errors.New("nil map"), 500},
		{"client left", context.Canceled, 500},
	}
	for _, c := range cases {
		got := AsError(c.err)
		if got.Status != c.want {
			t.Errorf("Got(AsError(%s).Status) = %d; want %d", c.name, got.Status, c.want)
		}
		if c.want == 503 && (got.Code != CodeUnavailable || got.RetryAfter <= 0) {
			t.Errorf("Got(AsError(%s)) = %s, Retry-After %v; want %s with Retry-After", c.name, got.Code, got.RetryAfter, CodeUnavailable)
		}
	}
}

func TestNilHealthIgnoresRegistrations(t *testing.T) {
	t.Parallel()
	var h *Health
	h.AddReady("x", func(context.Context) error { return nil })
	h.AddDependency("x", func(context.Context) error { return nil })
	h.AddDetail("x", func(context.Context) (any, error) { return nil, nil })
	h.SetDraining()
	if h.Draining() {
		t.Error("Got(nil Health draining) = true; want false")
	}
}
