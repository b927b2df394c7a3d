package webhook_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/services/webhook"
)

// TestConsumerStateShowsDatabaseOutage: while the database is away the
// event consumer keeps retrying (it never dead-letters), and the service's
// ConsumerState says so, naming the consumer and the error's category.
func TestConsumerStateShowsDatabaseOutage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	svc, err := e.tryService(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if st := svc.ConsumerState(); st.Durable != webhook.Name || st.Retrying {
		t.Errorf("ConsumerState() before Run = %+v; want %s, healthy", st, webhook.Name)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = svc.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	e.db.Close() // the database goes away
	e.publish(t, events.AgentCreated)
	waitFor(t, 10*time.Second, "the consumer retrying", func() bool { return svc.ConsumerState().Retrying })
	if st := svc.ConsumerState(); st.Durable != webhook.Name || st.LastErrorCategory == "" || st.Since.IsZero() || st.ConsecutiveFailures < 1 {
		t.Errorf("ConsumerState() during the outage = %+v; want retrying since a time, with a category", st)
	}
}
