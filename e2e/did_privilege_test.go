package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestAttackAgentsWriteCannotRotateAdminDIDThroughGateway: against
// `agentidp dev`, through the gateway, an agents:write holder of the
// bootstrap organisation cannot rotate the DID key of the admin agent
// (403 FORBIDDEN, the admin's DID keys unchanged), while it rotates the key
// of an agent its token covers and the operator rotates the admin's.
func TestAttackAgentsWriteCannotRotateAdminDIDThroughGateway(t *testing.T) {
	dev := startDev(t, nil)
	c, adminID, adminSecret := dev.c, dev.adminID, dev.adminSecret
	admin, r := c.token(adminID, adminSecret, "admin:orgs agents:read agents:write")
	c.mustStatus(r, http.StatusOK, "admin token")

	newAgent := func(name string, scopes []string) (id, token string) {
		t.Helper()
		id, _, token = c.bootstrapAgent(t, admin, name, scopes)
		return id, token
	}
	// authentication methods of the agent's DID document, once the did
	// service has learned the agent from its events.
	didAuth := func(id string) []string {
		t.Helper()
		var doc struct {
			Authentication []string `json:"authentication"`
		}
		var last response
		eventually(t, 30*time.Second, func() bool {
			last = c.do(http.MethodGet, "/agents/"+id+"/did.json", "", nil)
			return last.Status == http.StatusOK
		}, func() string { return "DID document of " + id + ": " + string(last.Body) })
		last.decode(t, &doc)
		return doc.Authentication
	}

	_, writer := newAgent("did-writer", []string{"agents:read", "agents:write"})
	narrow, _ := newAgent("did-narrow", []string{"agents:read"})
	adminKeys := didAuth(adminID)
	didAuth(narrow)

	r = c.do(http.MethodPost, "/api/v1/agents/"+adminID+"/did/rotate", writer, nil)
	expectProblem(t, r, http.StatusForbidden, "FORBIDDEN", "agents:write holder rotates the admin's DID key")
	if got := didAuth(adminID); strings.Join(got, ",") != strings.Join(adminKeys, ",") {
		t.Errorf("admin DID authentication after the attack = %v; want unchanged %v", got, adminKeys)
	}

	r = c.do(http.MethodPost, "/api/v1/agents/"+narrow+"/did/rotate", writer, nil)
	c.mustStatus(r, http.StatusOK, "agents:write holder rotates a narrower agent's DID key")
	r = c.do(http.MethodPost, "/api/v1/agents/"+adminID+"/did/rotate", admin, nil)
	c.mustStatus(r, http.StatusOK, "operator rotates the admin's DID key")
}
