// Package storetest is the conformance suite of org.Store: every
// implementation (PostgreSQL and SQLite through internal/sqlstore) must pass
// it.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/services/tier/internal/org"
	"github.com/google/uuid"
)

// Harness is a fresh, empty store and a way to list the ids of the events
// in its outbox.
type Harness struct {
	Store  org.Store
	Outbox func(t *testing.T) []string
}

// Run runs the suite; newHarness must return an empty store each call.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	tests := []struct {
		name string
		fn   func(t *testing.T, h Harness)
	}{
		{"CreateAndGet", testCreateAndGet},
		{"DuplicateSlug", testDuplicateSlug},
		{"NotFound", testNotFound},
		{"ListPagesStably", testList},
		{"Update", testUpdate},
		{"UpdateAborts", testUpdateAborts},
		{"AddMember", testAddMember},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newHarness(t))
		})
	}
}

var base = time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)

func newOrg(t *testing.T, slug string, at time.Time) org.Organization {
	t.Helper()
	return org.Organization{ID: uuid.NewString(), Name: "Org " + slug, Slug: slug, PlanTier: org.TierFree,
		Status: org.StatusActive, CreatedAt: at, UpdatedAt: at}
}

func event(t *testing.T, typ events.Type, orgID string) events.Envelope {
	t.Helper()
	e, err := events.New(typ, "test", orgID, "", map[string]string{"k": "v"})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func mustCreate(t *testing.T, s org.Store, o org.Organization, evs ...events.Envelope) {
	t.Helper()
	if err := s.Create(context.Background(), o, evs); err != nil {
		t.Fatalf("Create(%q) = %v; want nil", o.Slug, err)
	}
}

func equalOrg(t *testing.T, got, want org.Organization) {
	t.Helper()
	render := func(o org.Organization) string {
		return fmt.Sprintf("{%s %q %s %s maxAgents=%v maxTokens=%v %s created=%s updated=%s}",
			o.ID, o.Name, o.Slug, o.PlanTier, deref(o.MaxAgents), deref(o.MaxTokensPerMonth), o.Status,
			o.CreatedAt.Format(time.RFC3339Nano), o.UpdatedAt.Format(time.RFC3339Nano))
	}
	if g, w := render(got), render(want); g != w {
		t.Errorf("Got(org) = %s; want %s", g, w)
	}
	if got.CreatedAt.Location() != time.UTC || got.UpdatedAt.Location() != time.UTC {
		t.Errorf("Got(time zone) = %v; want UTC", got.CreatedAt.Location())
	}
}

func deref(p *int64) any {
	if p == nil {
		return nil
	}
	return *p
}

func testCreateAndGet(t *testing.T, h Harness) {
	ctx := context.Background()
	o := newOrg(t, "acme", base)
	n := int64(5)
	o.MaxAgents = &n
	ev := event(t, events.OrgCreated, o.ID)
	mustCreate(t, h.Store, o, ev)
	got, err := h.Store.Get(ctx, o.ID)
	if err != nil {
		t.Fatalf("Get(%q) = %v; want nil", o.ID, err)
	}
	equalOrg(t, got, o)
	got, err = h.Store.GetBySlug(ctx, "acme")
	if err != nil {
		t.Fatalf("GetBySlug(%q) = %v; want nil", "acme", err)
	}
	equalOrg(t, got, o)
	if ids := h.Outbox(t); !slices.Contains(ids, ev.ID) {
		t.Errorf("Got outbox %v; want it to contain %s", ids, ev.ID)
	}
}

func testDuplicateSlug(t *testing.T, h Harness) {
	mustCreate(t, h.Store, newOrg(t, "dup", base))
	o := newOrg(t, "dup", base)
	ev := event(t, events.OrgCreated, o.ID)
	if err := h.Store.Create(context.Background(), o, []events.Envelope{ev}); !errors.Is(err, org.ErrSlugTaken) {
		t.Fatalf("Create(duplicate slug) = %v; want ErrSlugTaken", err)
	}
	if _, err := h.Store.Get(context.Background(), o.ID); !errors.Is(err, org.ErrNotFound) {
		t.Errorf("Get(rejected org) = %v; want ErrNotFound", err)
	}
	if ids := h.Outbox(t); slices.Contains(ids, ev.ID) {
		t.Errorf("Got outbox %v; want no event of the rejected create", ids)
	}
}

func testNotFound(t *testing.T, h Harness) {
	ctx := context.Background()
	if _, err := h.Store.Get(ctx, uuid.NewString()); !errors.Is(err, org.ErrNotFound) {
		t.Errorf("Get(unknown) = %v; want ErrNotFound", err)
	}
	if _, err := h.Store.GetBySlug(ctx, "nope"); !errors.Is(err, org.ErrNotFound) {
		t.Errorf("GetBySlug(unknown) = %v; want ErrNotFound", err)
	}
	_, err := h.Store.Update(ctx, uuid.NewString(), func(*org.Organization) ([]events.Envelope, error) { return nil, nil })
	if !errors.Is(err, org.ErrNotFound) {
		t.Errorf("Update(unknown) = %v; want ErrNotFound", err)
	}
	err = h.Store.AddMember(ctx, org.Member{OrganizationID: uuid.NewString(), AgentID: uuid.NewString(), Role: "member", CreatedAt: base}, nil)
	if !errors.Is(err, org.ErrNotFound) {
		t.Errorf("AddMember(unknown org) = %v; want ErrNotFound", err)
	}
}

func testList(t *testing.T, h Harness) {
	ctx := context.Background()
	var live []org.Organization
	for i := range 5 {
		o := newOrg(t, fmt.Sprintf("org-%d", i), base.Add(time.Duration(i%2)*time.Hour)) // ties on created_at
		mustCreate(t, h.Store, o)
		live = append(live, o)
	}
	slices.SortFunc(live, func(a, b org.Organization) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	var want []string
	for _, o := range live {
		want = append(want, o.ID)
	}
	deleted := newOrg(t, "gone", base)
	deleted.Status = org.StatusDeleted
	mustCreate(t, h.Store, deleted)

	var got []string
	for offset := 0; ; offset += 2 {
		page, total, err := h.Store.List(ctx, offset, 2)
		if err != nil {
			t.Fatalf("List(%d, 2) = %v", offset, err)
		}
		if total != 5 {
			t.Errorf("Got(total) = %d; want 5", total)
		}
		for _, o := range page {
			got = append(got, o.ID)
		}
		if len(page) < 2 {
			break
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("Got(list) = %v; want %v (created_at, id order, deleted excluded)", got, want)
	}
	all, err := h.Store.All(ctx)
	if err != nil || len(all) != 6 {
		t.Errorf("All() = %d orgs, %v; want 6 including the deleted one", len(all), err)
	}
}

func testUpdate(t *testing.T, h Harness) {
	ctx := context.Background()
	o := newOrg(t, "upd", base)
	mustCreate(t, h.Store, o)
	n := int64(42)
	later := base.Add(time.Minute)
	ev := event(t, events.TierChanged, o.ID)
	got, err := h.Store.Update(ctx, o.ID, func(o *org.Organization) ([]events.Envelope, error) {
		o.Name, o.PlanTier, o.MaxTokensPerMonth, o.Status, o.UpdatedAt = "Renamed", org.TierPro, &n, org.StatusSuspended, later
		o.Slug = "ignored"
		return []events.Envelope{ev}, nil
	})
	if err != nil {
		t.Fatalf("Update = %v; want nil", err)
	}
	want := o
	want.Name, want.PlanTier, want.MaxTokensPerMonth, want.Status, want.UpdatedAt = "Renamed", org.TierPro, &n, org.StatusSuspended, later
	loaded, err := h.Store.Get(ctx, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	equalOrg(t, loaded, want)
	if got.ID != o.ID {
		t.Errorf("Got(id) = %q; want %q", got.ID, o.ID)
	}
	if ids := h.Outbox(t); !slices.Contains(ids, ev.ID) {
		t.Errorf("Got outbox %v; want it to contain %s", ids, ev.ID)
	}
}

func testUpdateAborts(t *testing.T, h Harness) {
	ctx := context.Background()
	o := newOrg(t, "abort", base)
	mustCreate(t, h.Store, o)
	boom := errors.New("boom")
	_, err := h.Store.Update(ctx, o.ID, func(o *org.Organization) ([]events.Envelope, error) {
		o.Name = "changed"
		return nil, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v; want the change's error", err)
	}
	loaded, err := h.Store.Get(ctx, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	equalOrg(t, loaded, o)
}

func testAddMember(t *testing.T, h Harness) {
	ctx := context.Background()
	o := newOrg(t, "members", base)
	mustCreate(t, h.Store, o)
	m := org.Member{OrganizationID: o.ID, AgentID: uuid.NewString(), Role: org.RoleAdmin, CreatedAt: base}
	ev := event(t, events.OrgMemberAdded, o.ID)
	if err := h.Store.AddMember(ctx, m, []events.Envelope{ev}); err != nil {
		t.Fatalf("AddMember = %v; want nil", err)
	}
	ev2 := event(t, events.OrgMemberAdded, o.ID)
	if err := h.Store.AddMember(ctx, m, []events.Envelope{ev2}); !errors.Is(err, org.ErrAlreadyMember) {
		t.Errorf("AddMember(again) = %v; want ErrAlreadyMember", err)
	}
	ids := h.Outbox(t)
	if !slices.Contains(ids, ev.ID) || slices.Contains(ids, ev2.ID) {
		t.Errorf("Got outbox %v; want %s and not %s", ids, ev.ID, ev2.ID)
	}
	gone := newOrg(t, "gone-members", base)
	gone.Status = org.StatusDeleted
	mustCreate(t, h.Store, gone)
	err := h.Store.AddMember(ctx, org.Member{OrganizationID: gone.ID, AgentID: m.AgentID, Role: org.RoleMember, CreatedAt: base}, nil)
	if !errors.Is(err, org.ErrNotFound) {
		t.Errorf("AddMember(deleted org) = %v; want ErrNotFound", err)
	}
}
