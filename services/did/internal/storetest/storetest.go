// Package storetest is the conformance suite of domain.Store: every
// implementation (PostgreSQL and SQLite through internal/sqlstore) must pass
// it.
package storetest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/services/did/internal/domain"
	"github.com/google/uuid"
)

// Harness is a fresh, empty store and a way to list the ids of the events
// in its outbox.
type Harness struct {
	Store  domain.Store
	Outbox func(t *testing.T) []string
}

// Run runs the suite; newHarness must return an empty store each call.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"ApplyAgentInsertsAndUpdates", testApplyAgent},
		{"ApplyAgentIgnoresOlderEvents", testApplyOlder},
		{"ApplyAgentScopes", testApplyAgentScopes},
		{"DecommissionedIsTerminal", testDecommissionedTerminal},
		{"GetAgentNotFound", testNotFound},
		{"CreateFirstKeyOnce", testCreateFirstKey},
		{"CreateFirstKeyConcurrent", testCreateFirstKeyConcurrent},
		{"RotateKey", testRotate},
		{"RotateWithoutKey", testRotateWithoutKey},
		{"AgentHeldKeys", testAgentHeldKeys},
		{"AgentHeldKeyRevokedFirst", testAgentHeldRevokedFirst},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newHarness(t))
		})
	}
}

var base = time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)

func agent(id string, status string, at time.Time) domain.Agent {
	return domain.Agent{AgentID: id, OrgID: "org-1", Email: "a@example.com", AgentType: "worker", Status: status,
		Capabilities: []string{"agents:read"}, Owner: "team", Version: "1.0.0", DeploymentEnv: "prod", UpdatedAt: at}
}

func key(t *testing.T, subject string, at time.Time) domain.Key {
	t.Helper()
	pk, err := jose.GenerateKey(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := pk.PublicJWK()
	if err != nil {
		t.Fatal(err)
	}
	return domain.Key{Subject: subject, KID: pk.KID, PublicJWK: jwk, KeyRef: domain.KeyRef(subject, pk.KID), Status: domain.KeyActive, CreatedAt: at}
}

func event(t *testing.T, typ events.Type, subject string) events.Envelope {
	t.Helper()
	e, err := events.New(typ, "test", "org-1", subject, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func testApplyAgent(t *testing.T, h Harness) {
	ctx := context.Background()
	id := uuid.NewString()
	got, err := h.Store.ApplyAgent(ctx, agent(id, domain.StatusActive, base))
	if err != nil {
		t.Fatalf("ApplyAgent = %v", err)
	}
	want := agent(id, domain.StatusActive, base)
	want.CreatedAt = base
	if !equalAgent(got, want) {
		t.Errorf("Got(ApplyAgent) = %+v; want %+v", got, want)
	}
	upd := agent(id, domain.StatusSuspended, base.Add(time.Minute))
	upd.Email, upd.Capabilities = "b@example.com", nil
	got, err = h.Store.ApplyAgent(ctx, upd)
	if err != nil {
		t.Fatalf("ApplyAgent(update) = %v", err)
	}
	if got.Status != domain.StatusSuspended || got.Email != "b@example.com" || !got.CreatedAt.Equal(base) ||
		!got.UpdatedAt.Equal(base.Add(time.Minute)) || len(got.Capabilities) != 0 || got.Capabilities == nil {
		t.Errorf("Got(updated) = %+v; want suspended, new email, created kept, empty capabilities", got)
	}
	read, err := h.Store.GetAgent(ctx, id)
	if err != nil || !equalAgent(read, got) {
		t.Errorf("GetAgent = %+v, %v; want %+v", read, err, got)
	}
}

// testApplyAgentScopes: scopes are unknown (nil) until an event carries
// them, an event without them keeps the known ones, a later event's replace
// them (an empty list stays distinct from unknown), an older event's
// change nothing.
func testApplyAgentScopes(t *testing.T, h Harness) {
	ctx := context.Background()
	id := uuid.NewString()
	apply := func(step string, at time.Time, scopes []string, want []string) {
		t.Helper()
		a := agent(id, domain.StatusActive, at)
		a.Scopes = scopes
		got, err := h.Store.ApplyAgent(ctx, a)
		if err != nil {
			t.Fatalf("%s: ApplyAgent = %v", step, err)
		}
		read, err := h.Store.GetAgent(ctx, id)
		if err != nil {
			t.Fatalf("%s: GetAgent = %v", step, err)
		}
		for _, g := range [][]string{got.Scopes, read.Scopes} {
			if (g == nil) != (want == nil) || !slices.Equal(g, want) {
				t.Errorf("%s: Got(scopes) = %#v (ApplyAgent), %#v (GetAgent); want %#v", step, got.Scopes, read.Scopes, want)
				break
			}
		}
	}
	apply("created without scopes", base, nil, nil)
	apply("first scopes", base.Add(time.Second), []string{"agents:read", "agents:write"}, []string{"agents:read", "agents:write"})
	apply("event without scopes", base.Add(2*time.Second), nil, []string{"agents:read", "agents:write"})
	apply("scopes reduced", base.Add(3*time.Second), []string{"agents:read"}, []string{"agents:read"})
	apply("older event", base.Add(time.Second), []string{"admin:orgs"}, []string{"agents:read"})
	apply("empty list", base.Add(4*time.Second), []string{}, []string{})

	other := uuid.NewString()
	a := agent(other, domain.StatusActive, base)
	a.Scopes = []string{"admin:orgs", "agents:read"}
	got, err := h.Store.ApplyAgent(ctx, a)
	if err != nil || !slices.Equal(got.Scopes, a.Scopes) {
		t.Errorf("Got(ApplyAgent(new agent with scopes)) = %#v, %v; want %#v", got.Scopes, err, a.Scopes)
	}
}

func testApplyOlder(t *testing.T, h Harness) {
	ctx := context.Background()
	id := uuid.NewString()
	if _, err := h.Store.ApplyAgent(ctx, agent(id, domain.StatusSuspended, base)); err != nil {
		t.Fatal(err)
	}
	got, err := h.Store.ApplyAgent(ctx, agent(id, domain.StatusActive, base.Add(-time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != domain.StatusSuspended || !got.UpdatedAt.Equal(base) {
		t.Errorf("Got(after older event) = %s at %v; want suspended at %v", got.Status, got.UpdatedAt, base)
	}
}

func testDecommissionedTerminal(t *testing.T, h Harness) {
	ctx := context.Background()
	id := uuid.NewString()
	if _, err := h.Store.ApplyAgent(ctx, agent(id, domain.StatusDecommissioned, base)); err != nil {
		t.Fatal(err)
	}
	got, err := h.Store.ApplyAgent(ctx, agent(id, domain.StatusActive, base.Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != domain.StatusDecommissioned {
		t.Errorf("Got(status) = %s; want decommissioned (terminal)", got.Status)
	}
}

func testNotFound(t *testing.T, h Harness) {
	_, err := h.Store.GetAgent(context.Background(), uuid.NewString())
	if !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("GetAgent(unknown) = %v; want ErrNotFound", err)
	}
	keys, err := h.Store.Keys(context.Background(), uuid.NewString())
	if err != nil || keys == nil || len(keys) != 0 {
		t.Errorf("Keys(unknown) = %v, %v; want empty, nil", keys, err)
	}
}

func testCreateFirstKey(t *testing.T, h Harness) {
	ctx := context.Background()
	id := uuid.NewString()
	k := key(t, id, base)
	ev := event(t, events.DIDCreated, id)
	if err := h.Store.CreateFirstKey(ctx, k, []events.Envelope{ev}); err != nil {
		t.Fatalf("CreateFirstKey = %v", err)
	}
	second := event(t, events.DIDCreated, id)
	if err := h.Store.CreateFirstKey(ctx, key(t, id, base.Add(time.Second)), []events.Envelope{second}); !errors.Is(err, domain.ErrKeyExists) {
		t.Errorf("CreateFirstKey(again) = %v; want ErrKeyExists", err)
	}
	keys, err := h.Store.Keys(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].KID != k.KID || keys[0].Status != domain.KeyActive || keys[0].PublicJWK != k.PublicJWK ||
		keys[0].KeyRef != k.KeyRef || !keys[0].CreatedAt.Equal(base) || keys[0].RetiredAt != nil {
		t.Errorf("Got(Keys) = %+v; want exactly %+v", keys, k)
	}
	if got := h.Outbox(t); !slices.Equal(got, []string{ev.ID}) {
		t.Errorf("Got(outbox) = %v; want only %s", got, ev.ID)
	}
}

func testCreateFirstKeyConcurrent(t *testing.T, h Harness) {
	ctx := context.Background()
	id := uuid.NewString()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		k := key(t, id, base)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.Store.CreateFirstKey(ctx, k, nil)
		}()
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, domain.ErrKeyExists):
			t.Errorf("CreateFirstKey(concurrent) = %v; want nil or ErrKeyExists", err)
		}
	}
	keys, _ := h.Store.Keys(ctx, id)
	if wins != 1 || len(keys) != 1 {
		t.Errorf("Got(wins, keys) = %d, %d; want 1, 1", wins, len(keys))
	}
}

func testRotate(t *testing.T, h Harness) {
	ctx := context.Background()
	id := uuid.NewString()
	first := key(t, id, base)
	if err := h.Store.CreateFirstKey(ctx, first, nil); err != nil {
		t.Fatal(err)
	}
	next := key(t, id, base.Add(time.Hour))
	var ev events.Envelope
	old, err := h.Store.RotateKey(ctx, next, func(retired domain.Key) ([]events.Envelope, error) {
		if retired.KID != first.KID {
			t.Errorf("Got(retired passed to mkEvents) = %s; want %s", retired.KID, first.KID)
		}
		ev = event(t, events.DIDKeyRotated, id)
		return []events.Envelope{ev}, nil
	})
	if err != nil {
		t.Fatalf("RotateKey = %v", err)
	}
	if old.KID != first.KID || old.Status != domain.KeyRetired || old.RetiredAt == nil || !old.RetiredAt.Equal(next.CreatedAt) {
		t.Errorf("Got(retired) = %+v; want %s retired at %v", old, first.KID, next.CreatedAt)
	}
	keys, err := h.Store.Keys(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].KID != first.KID || keys[0].Status != domain.KeyRetired || keys[0].RetiredAt == nil ||
		keys[1].KID != next.KID || keys[1].Status != domain.KeyActive {
		t.Errorf("Got(Keys after rotation) = %+v; want [retired first, active next]", keys)
	}
	if got := h.Outbox(t); !slices.Equal(got, []string{ev.ID}) {
		t.Errorf("Got(outbox) = %v; want [%s]", got, ev.ID)
	}
	boom := errors.New("boom")
	if _, err := h.Store.RotateKey(ctx, key(t, id, base.Add(2*time.Hour)), func(domain.Key) ([]events.Envelope, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Errorf("RotateKey(mkEvents fails) = %v; want boom", err)
	}
	if keys, _ := h.Store.Keys(ctx, id); len(keys) != 2 {
		t.Errorf("Got(len(Keys) after aborted rotation) = %d; want 2", len(keys))
	}
}

func testRotateWithoutKey(t *testing.T, h Harness) {
	id := uuid.NewString()
	_, err := h.Store.RotateKey(context.Background(), key(t, id, base), func(domain.Key) ([]events.Envelope, error) {
		return []events.Envelope{event(t, events.DIDKeyRotated, id)}, nil
	})
	if !errors.Is(err, domain.ErrNoActiveKey) {
		t.Errorf("RotateKey(no key) = %v; want ErrNoActiveKey", err)
	}
	if keys, _ := h.Store.Keys(context.Background(), id); len(keys) != 0 {
		t.Errorf("Got(Keys) = %v; want none", keys)
	}
	if got := h.Outbox(t); len(got) != 0 {
		t.Errorf("Got(outbox) = %v; want empty", got)
	}
}

func equalAgent(a, b domain.Agent) bool {
	return a.AgentID == b.AgentID && a.OrgID == b.OrgID && a.Email == b.Email && a.AgentType == b.AgentType &&
		a.Status == b.Status && slices.Equal(a.Capabilities, b.Capabilities) && a.Owner == b.Owner && a.Version == b.Version &&
		a.DeploymentEnv == b.DeploymentEnv && (a.Scopes == nil) == (b.Scopes == nil) && slices.Equal(a.Scopes, b.Scopes) &&
		a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt)
}
