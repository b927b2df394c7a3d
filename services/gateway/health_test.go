package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/httpx"
)

// The seed served /health/detailed publicly. Through the gateway it must
// not map the deployment for an attacker (no addresses, error texts,
// latencies or check names) nor let one hammer the dependencies: the
// probes run at most once a second whatever the request rate.
func TestAttackPublicHealthCannotMapOrHammerTheDeployment(t *testing.T) {
	t.Parallel()
	h := httpx.NewHealth(nil)
	var probes atomic.Int64
	h.AddDependency("cache", func(context.Context) error {
		probes.Add(1)
		return errors.New("dial tcp 10.1.2.3:6379: connect: connection refused")
	})
	h.AddDependency("nats", func(context.Context) error { return nil })
	e := newEnv(t, envOptions{health: h})

	start := time.Now()
	for i := range 20 {
		resp := e.do(t, http.MethodGet, "/health/detailed", "", nil)
		if resp.status != http.StatusMultiStatus {
			t.Fatalf("Got(GET /health/detailed #%d) = %d %s; want 207", i, resp.status, resp.body)
		}
		var got httpx.PublicReport
		if err := json.Unmarshal([]byte(resp.body), &got); err != nil {
			t.Fatalf("decode %s: %v", resp.body, err)
		}
		if got.Status != httpx.StatusDegraded || got.Dependencies["cache"] != httpx.StateUnreachable ||
			got.Dependencies["nats"] != httpx.StateHealthy || len(got.Dependencies) != 2 {
			t.Errorf("Got(public report) = %+v; want degraded, cache unreachable, nats healthy", got)
		}
		for _, leak := range []string{"10.1.2.3", "6379", "refused", "latency", "checks", "jwks"} {
			if strings.Contains(resp.body, leak) {
				t.Errorf("Got(public body) = %s; contains %q", resp.body, leak)
			}
		}
	}
	// One probe per started second at most (1 on any machine that serves
	// 20 requests within a second).
	if n, most := probes.Load(), 1+int64(time.Since(start)/time.Second); n < 1 || n > most {
		t.Errorf("Got(probes for 20 requests) = %d; want between 1 and %d", n, most)
	}
}
