package did_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/google/uuid"
)

// The privilege rule of docs/security.md ("Privilege model") on
// POST /api/v1/agents/{id}/did/rotate: the caller rotates the DID key of an
// agent whose scopes are a subset of its token's, or holds admin:orgs.

var adminScopes = []string{"admin:orgs", "agents:read", "agents:write"}

// createAgentScopes publishes agent.created for an agent allowed scopes
// (nil: the event does not carry them) and waits for its DID document.
func (h *harness) createAgentScopes(t *testing.T, orgID string, scopes []string) string {
	t.Helper()
	id := uuid.NewString()
	h.publish(t, agentEventScopes(t, events.AgentCreated, id, orgID, "active", time.Now().UTC(), scopes))
	h.waitStatus(t, "/agents/"+id+"/did.json", http.StatusOK)
	return id
}

// storedScopes reads the agent's scopes column (nil: NULL, unknown).
func (h *harness) storedScopes(t *testing.T, id string) []string {
	t.Helper()
	var raw sql.NullString
	if err := h.db.QueryRowContext(context.Background(), "SELECT scopes FROM agents WHERE agent_id = ?", id).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if !raw.Valid {
		return nil
	}
	var out []string
	if err := json.Unmarshal([]byte(raw.String), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitScopes waits until the read model holds want for the agent (events
// are asynchronous).
func (h *harness) waitScopes(t *testing.T, id string, want []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := h.storedScopes(t, id)
		if slices.Equal(got, want) && got != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Got(stored scopes of %s) = %#v; want %#v", id, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// didKeys returns the kids of the agent's DID keys, oldest first.
func (h *harness) didKeys(t *testing.T, id string) []string {
	t.Helper()
	rows, err := h.db.QueryContext(context.Background(), "SELECT kid FROM agent_did_keys WHERE agent_id = ? ORDER BY created_at, kid", id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var kids []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		kids = append(kids, k)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return kids
}

func (h *harness) rotatedEvents(t *testing.T) int {
	t.Helper()
	var n int
	if err := h.db.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM outbox WHERE subject = ?", events.DIDKeyRotated.Subject()).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// expectRefused asserts a 403 FORBIDDEN naming the rule that changed
// neither the agent's DID keys nor the outbox.
func expectRefused(t *testing.T, h *harness, name string, caller *authn.Identity, id, wantMessage string) {
	t.Helper()
	keys, rotated := h.didKeys(t, id), h.rotatedEvents(t)
	r := h.do(t, caller, http.MethodPost, "/api/v1/agents/"+id+"/did/rotate")
	msg, _ := r.body["message"].(string)
	if r.status != http.StatusForbidden || r.body["code"] != "FORBIDDEN" || !strings.Contains(msg, wantMessage) ||
		!strings.Contains(msg, "an agent may only manage agents whose scopes are a subset of its own") {
		t.Errorf("%s: POST rotate = %d %s; want 403 FORBIDDEN %q", name, r.status, r.raw, wantMessage)
	}
	if got := h.didKeys(t, id); !slices.Equal(got, keys) {
		t.Errorf("%s: Got(DID keys) = %v; want unchanged %v", name, got, keys)
	}
	if got := h.rotatedEvents(t); got != rotated {
		t.Errorf("%s: Got(did.key_rotated events) = %d; want unchanged %d", name, got, rotated)
	}
}

func expectRotated(t *testing.T, h *harness, name string, caller *authn.Identity, id string) {
	t.Helper()
	before := h.didKeys(t, id)
	r := h.do(t, caller, http.MethodPost, "/api/v1/agents/"+id+"/did/rotate")
	if r.status != http.StatusOK {
		t.Errorf("%s: POST rotate = %d %s; want 200", name, r.status, r.raw)
		return
	}
	if got := h.didKeys(t, id); len(got) != len(before)+1 || !slices.Contains(got, r.body["kid"].(string)) {
		t.Errorf("%s: Got(DID keys) = %v; want %v and the new key %v", name, got, before, r.body["kid"])
	}
}

const holdsMore = "cannot rotate the DID key of this agent: it holds scopes the caller does not"

// TestAttackAgentsWriteCannotRotateAdminDID: an agents:write holder of the
// bootstrap organisation tries to rotate the DID key of the admin agent
// (admin:orgs) and of an agent holding a scope it lacks: 403, the keys and
// the outbox unchanged.
func TestAttackAgentsWriteCannotRotateAdminDID(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	org := uuid.NewString()
	admin := h.createAgentScopes(t, org, adminScopes)
	wider := h.createAgentScopes(t, org, []string{"agents:read", "agents:write", "tokens:read"})

	writer := &authn.Identity{Subject: uuid.NewString(), OrgID: org, Scopes: []string{"agents:read", "agents:write"}}
	expectRefused(t, h, "agents:write on the admin agent", writer, admin, holdsMore)
	expectRefused(t, h, "agents:write on an agent holding tokens:read", writer, wider, holdsMore)
	// The admin agent's own token, narrowed to agents:write, cannot either.
	narrowSelf := &authn.Identity{Subject: admin, OrgID: org, Scopes: []string{"agents:write"}}
	expectRefused(t, h, "the admin agent's narrowed token", narrowSelf, admin, holdsMore)
	// Holding every scope but admin:orgs is still not enough.
	almost := &authn.Identity{Subject: uuid.NewString(), OrgID: org, Scopes: []string{"agents:read", "agents:write", "tokens:read"}}
	expectRefused(t, h, "all but admin:orgs on the admin agent", almost, admin, holdsMore)
	if got := len(h.didKeys(t, admin)); got != 1 {
		t.Errorf("Got(DID keys of the admin agent) = %d; want 1", got)
	}
}

// TestRotationPrivilegeAllowed: the platform operator rotates anyone's key,
// in any organisation; a caller rotates the key of an agent whose scopes
// its token covers, equal or narrower, itself included.
func TestRotationPrivilegeAllowed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	org := uuid.NewString()
	admin := h.createAgentScopes(t, org, adminScopes)
	narrow := h.createAgentScopes(t, org, []string{"agents:read"})
	equal := h.createAgentScopes(t, org, []string{"agents:read", "agents:write", "tokens:read"})

	operator := &authn.Identity{Subject: uuid.NewString(), OrgID: uuid.NewString(), Scopes: []string{"admin:orgs"}}
	expectRotated(t, h, "operator on the admin agent", operator, admin)
	expectRotated(t, h, "operator on another organisation's agent", operator, narrow)
	writer := &authn.Identity{Subject: uuid.NewString(), OrgID: org, Scopes: []string{"agents:read", "agents:write", "tokens:read"}}
	expectRotated(t, h, "caller covering the target", writer, narrow)
	expectRotated(t, h, "caller equal to the target", writer, equal)
	self := &authn.Identity{Subject: equal, OrgID: org, Scopes: []string{"agents:read", "agents:write", "tokens:read"}}
	expectRotated(t, h, "agent on itself", self, equal)
	// Another organisation stays a 404, whatever the scopes.
	stranger := &authn.Identity{Subject: uuid.NewString(), OrgID: uuid.NewString(), Scopes: adminScopes[1:]}
	if r := h.do(t, stranger, http.MethodPost, "/api/v1/agents/"+narrow+"/did/rotate"); r.status != http.StatusNotFound {
		t.Errorf("other organisation: POST rotate = %d %s; want 404", r.status, r.raw)
	}
}

// TestRotationUnknownScopesFailsClosed: an agent whose events did not carry
// its scopes (its row predates the scopes column) can be rotated only by a
// platform operator until an event tells its scopes; an agent.updated that
// widens the scopes makes a caller it used to cover refused.
func TestRotationUnknownScopesFailsClosed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	org := uuid.NewString()
	id := h.createAgentScopes(t, org, nil)
	if got := h.storedScopes(t, id); got != nil {
		t.Fatalf("Got(stored scopes) = %#v; want unknown (NULL)", got)
	}
	writer := &authn.Identity{Subject: uuid.NewString(), OrgID: org, Scopes: []string{"agents:read", "agents:write"}}
	expectRefused(t, h, "unknown scopes", writer, id, "its scopes are not known to the did service yet")
	operator := &authn.Identity{Subject: uuid.NewString(), OrgID: uuid.NewString(), Scopes: []string{"admin:orgs"}}
	expectRotated(t, h, "operator on unknown scopes", operator, id)

	// agent.updated carries the scopes: the writer now covers the agent.
	h.publish(t, agentEventScopes(t, events.AgentUpdated, id, org, "active", time.Now().UTC(), []string{"agents:read"}))
	h.waitScopes(t, id, []string{"agents:read"})
	expectRotated(t, h, "known scopes covered", writer, id)

	// A widening reaches the read model the same way, and the rule follows.
	h.publish(t, agentEventScopes(t, events.AgentUpdated, id, org, "active", time.Now().UTC(), []string{"agents:read", "tokens:read"}))
	h.waitScopes(t, id, []string{"agents:read", "tokens:read"})
	expectRefused(t, h, "widened target", writer, id, holdsMore)
	// An event without scopes (a suspension from an older publisher) keeps them.
	h.publish(t, agentEventScopes(t, events.AgentSuspended, id, org, "suspended", time.Now().UTC(), nil))
	h.waitStatus(t, "/api/v1/agents/"+id+"/did/card", http.StatusOK)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var status string
		if err := h.db.QueryRowContext(context.Background(), "SELECT status FROM agents WHERE agent_id = ?", id).Scan(&status); err != nil {
			t.Fatal(err)
		}
		if status == "suspended" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Got(status) = %s; want suspended", status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := h.storedScopes(t, id); !slices.Equal(got, []string{"agents:read", "tokens:read"}) {
		t.Errorf("Got(stored scopes after an event without them) = %#v; want kept", got)
	}
	expectRefused(t, h, "widened target, suspended", writer, id, holdsMore)
}
