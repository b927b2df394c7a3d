package natsbus_test

import (
	"context"
	"testing"

	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/agentidp/agentidp/libs/natsbus/natstest"
)

func TestReplicasCountsLiveReplicasOfOneService(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := natstest.Start(t)
	_, js := s.Connect(t)
	open := func(service string) *natsbus.Replicas {
		t.Helper()
		r, err := natsbus.OpenReplicas(ctx, js, natsbus.ReplicasOptions{Service: service})
		if err != nil {
			t.Fatalf("OpenReplicas(%s) = %v", service, err)
		}
		return r
	}
	gws := []*natsbus.Replicas{open("gateway"), open("gateway"), open("gateway")}
	tok := open("token")
	if got := gws[0].Live(); got != 1 {
		t.Fatalf("Live() before any heartbeat = %d; want 1 (itself)", got)
	}
	for _, r := range append(gws, tok) {
		if err := r.Beat(ctx); err != nil {
			t.Fatalf("Beat() = %v", err)
		}
	}
	// The last to beat saw everyone; the others recount on their next beat.
	if err := gws[0].Beat(ctx); err != nil {
		t.Fatal(err)
	}
	if got := gws[0].Live(); got != 3 {
		t.Fatalf("gateway Live() = %d; want 3", got)
	}
	if got := tok.Live(); got != 1 {
		t.Fatalf("token Live() = %d; want 1", got)
	}
}
