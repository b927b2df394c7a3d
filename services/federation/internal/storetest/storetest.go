// Package storetest is the conformance suite of domain.Store: every
// implementation (PostgreSQL and SQLite through internal/sqlstore) must pass
// it.
package storetest

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/services/federation/internal/domain"
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
		{"CreateAndGet", testCreateAndGet},
		{"DuplicateIssuer", testDuplicateIssuer},
		{"NotFound", testNotFound},
		{"ListPagesStably", testList},
		{"Update", testUpdate},
		{"UpdateAborts", testUpdateAborts},
		{"Delete", testDelete},
		{"AgentReadModel", testAgents},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newHarness(t))
		})
	}
}

var base = time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)

func partner(issuer string, at time.Time) domain.Partner {
	exp := at.Add(24 * time.Hour)
	return domain.Partner{ID: uuid.NewString(), Name: "Partner " + issuer, Issuer: issuer, JWKSURI: issuer + "/jwks",
		Audience: "https://idp.example.com", AllowedOrganizations: []string{uuid.NewString()},
		ClaimMapping: domain.ClaimMapping{SubjectClaim: "sub", AgentMap: map[string]string{"x": uuid.NewString()}},
		Status:       domain.StatusActive, ExpiresAt: &exp, CreatedAt: at, UpdatedAt: at}
}

func event(t *testing.T, typ events.Type, id string) events.Envelope {
	t.Helper()
	e, err := events.New(typ, "test", "", id, map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func same(t *testing.T, got, want domain.Partner) {
	t.Helper()
	ok := got.ID == want.ID && got.Name == want.Name && got.Issuer == want.Issuer && got.JWKSURI == want.JWKSURI &&
		got.Audience == want.Audience && slices.Equal(got.AllowedOrganizations, want.AllowedOrganizations) &&
		reflect.DeepEqual(got.ClaimMapping, want.ClaimMapping) && got.Status == want.Status &&
		(got.ExpiresAt == nil) == (want.ExpiresAt == nil) && (got.ExpiresAt == nil || got.ExpiresAt.Equal(*want.ExpiresAt)) &&
		got.CreatedAt.Equal(want.CreatedAt) && got.UpdatedAt.Equal(want.UpdatedAt)
	if !ok {
		t.Errorf("Got(partner) = %+v; want %+v", got, want)
	}
}

func testCreateAndGet(t *testing.T, h Harness) {
	ctx := context.Background()
	p := partner("https://a.example", base)
	ev := event(t, events.FederationPartnerAdded, p.ID)
	if err := h.Store.Create(ctx, p, []events.Envelope{ev}); err != nil {
		t.Fatalf("Create = %v", err)
	}
	got, err := h.Store.Get(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	same(t, got, p)
	got, err = h.Store.GetByIssuer(ctx, p.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	same(t, got, p)
	if ids := h.Outbox(t); !slices.Equal(ids, []string{ev.ID}) {
		t.Errorf("Got(outbox) = %v; want [%s]", ids, ev.ID)
	}
}

func testDuplicateIssuer(t *testing.T, h Harness) {
	ctx := context.Background()
	if err := h.Store.Create(ctx, partner("https://a.example", base), nil); err != nil {
		t.Fatal(err)
	}
	ev := event(t, events.FederationPartnerAdded, "x")
	if err := h.Store.Create(ctx, partner("https://a.example", base), []events.Envelope{ev}); !errors.Is(err, domain.ErrIssuerTaken) {
		t.Errorf("Create(duplicate issuer) = %v; want ErrIssuerTaken", err)
	}
	if ids := h.Outbox(t); len(ids) != 0 {
		t.Errorf("Got(outbox) = %v; want empty", ids)
	}
}

func testNotFound(t *testing.T, h Harness) {
	ctx := context.Background()
	if _, err := h.Store.Get(ctx, uuid.NewString()); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("Get(unknown) = %v; want ErrNotFound", err)
	}
	if _, err := h.Store.GetByIssuer(ctx, "https://nobody"); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("GetByIssuer(unknown) = %v; want ErrNotFound", err)
	}
	if _, err := h.Store.Update(ctx, uuid.NewString(), func(*domain.Partner) ([]events.Envelope, error) { return nil, nil }); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("Update(unknown) = %v; want ErrNotFound", err)
	}
	if err := h.Store.Delete(ctx, uuid.NewString(), nil); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("Delete(unknown) = %v; want ErrNotFound", err)
	}
}

func testList(t *testing.T, h Harness) {
	ctx := context.Background()
	var want []string
	for i := range 5 {
		p := partner("https://p"+string(rune('a'+i))+".example", base.Add(time.Duration(i%2)*time.Second))
		if err := h.Store.Create(ctx, p, nil); err != nil {
			t.Fatal(err)
		}
		want = append(want, p.ID)
	}
	var got []string
	for off := 0; off < 6; off += 2 {
		page, total, err := h.Store.List(ctx, off, 2)
		if err != nil || total != 5 {
			t.Fatalf("List(%d) = %v, total %d; want total 5", off, err, total)
		}
		for _, p := range page {
			got = append(got, p.ID)
		}
	}
	all, _, _ := h.Store.List(ctx, 0, 10)
	var ordered []string
	for _, p := range all {
		ordered = append(ordered, p.ID)
	}
	slices.Sort(want)
	sortedGot := slices.Clone(got)
	slices.Sort(sortedGot)
	if !slices.Equal(got, ordered) || !slices.Equal(sortedGot, want) {
		t.Errorf("Got(pages) = %v; want every partner once in the order %v", got, ordered)
	}
	if !slices.IsSortedFunc(all, func(a, b domain.Partner) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return compare(a.ID, b.ID)
	}) {
		t.Errorf("List not ordered by created_at, id")
	}
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func testUpdate(t *testing.T, h Harness) {
	ctx := context.Background()
	p := partner("https://a.example", base)
	if err := h.Store.Create(ctx, p, nil); err != nil {
		t.Fatal(err)
	}
	ev := event(t, events.FederationPartnerUpdated, p.ID)
	got, err := h.Store.Update(ctx, p.ID, func(q *domain.Partner) ([]events.Envelope, error) {
		q.Name, q.Status, q.ExpiresAt, q.AllowedOrganizations = "Renamed", domain.StatusSuspended, nil, []string{}
		q.Issuer = "https://ignored.example" // not updatable
		q.UpdatedAt = base.Add(time.Hour)
		return []events.Envelope{ev}, nil
	})
	if err != nil {
		t.Fatalf("Update = %v", err)
	}
	want := p
	want.Name, want.Status, want.ExpiresAt, want.AllowedOrganizations, want.UpdatedAt = "Renamed", domain.StatusSuspended, nil, []string{}, base.Add(time.Hour)
	same(t, got, want)
	if ids := h.Outbox(t); !slices.Equal(ids, []string{ev.ID}) {
		t.Errorf("Got(outbox) = %v; want [%s]", ids, ev.ID)
	}
}

func testUpdateAborts(t *testing.T, h Harness) {
	ctx := context.Background()
	p := partner("https://a.example", base)
	if err := h.Store.Create(ctx, p, nil); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if _, err := h.Store.Update(ctx, p.ID, func(q *domain.Partner) ([]events.Envelope, error) {
		q.Name = "Changed"
		return nil, boom
	}); !errors.Is(err, boom) {
		t.Errorf("Update(aborting) = %v; want boom", err)
	}
	got, _ := h.Store.Get(ctx, p.ID)
	same(t, got, p)
}

func testDelete(t *testing.T, h Harness) {
	ctx := context.Background()
	p := partner("https://a.example", base)
	if err := h.Store.Create(ctx, p, nil); err != nil {
		t.Fatal(err)
	}
	ev := event(t, events.FederationPartnerRemoved, p.ID)
	if err := h.Store.Delete(ctx, p.ID, []events.Envelope{ev}); err != nil {
		t.Fatalf("Delete = %v", err)
	}
	if _, err := h.Store.Get(ctx, p.ID); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("Get(deleted) = %v; want ErrNotFound", err)
	}
	if ids := h.Outbox(t); !slices.Equal(ids, []string{ev.ID}) {
		t.Errorf("Got(outbox) = %v; want [%s]", ids, ev.ID)
	}
	// The issuer is free again.
	if err := h.Store.Create(ctx, partner("https://a.example", base), nil); err != nil {
		t.Errorf("Create(after delete) = %v; want nil", err)
	}
}

func testAgents(t *testing.T, h Harness) {
	ctx := context.Background()
	id := uuid.NewString()
	steps := []struct {
		name       string
		in         domain.AgentRef
		wantStatus string
	}{
		{"insert", domain.AgentRef{AgentID: id, OrgID: "o1", Status: "active", UpdatedAt: base}, "active"},
		{"newer", domain.AgentRef{AgentID: id, OrgID: "o1", Status: "suspended", UpdatedAt: base.Add(time.Minute)}, "suspended"},
		{"older ignored", domain.AgentRef{AgentID: id, OrgID: "o1", Status: "active", UpdatedAt: base}, "suspended"},
		{"decommissioned", domain.AgentRef{AgentID: id, OrgID: "o1", Status: "decommissioned", UpdatedAt: base.Add(2 * time.Minute)}, "decommissioned"},
		{"terminal", domain.AgentRef{AgentID: id, OrgID: "o1", Status: "active", UpdatedAt: base.Add(3 * time.Minute)}, "decommissioned"},
	}
	for _, s := range steps {
		if err := h.Store.ApplyAgent(ctx, s.in); err != nil {
			t.Fatalf("%s: ApplyAgent = %v", s.name, err)
		}
		got, err := h.Store.GetAgent(ctx, id)
		if err != nil || got.Status != s.wantStatus || got.OrgID != "o1" {
			t.Errorf("%s: GetAgent = %+v, %v; want status %s", s.name, got, err, s.wantStatus)
		}
	}
	if _, err := h.Store.GetAgent(ctx, uuid.NewString()); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("GetAgent(unknown) = %v; want ErrNotFound", err)
	}
}
