package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// TestAttackSpoofedForwardedForThroughGateway runs `agentidp dev` and
// attacks the token endpoint through the gateway as a client would:
// rotating X-Forwarded-For (and X-Real-Ip) on every wrong guess resets
// neither the per-client nor the per-address count of failed
// authentications, and the right secret is refused once the client id is
// blocked.
func TestAttackSpoofedForwardedForThroughGateway(t *testing.T) {
	dev := startDev(t, nil)
	c, adminID, adminSecret := dev.c, dev.adminID, dev.adminSecret
	guess := func(i int, clientID, secret string) response {
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret}}
		req, _ := http.NewRequest(http.MethodPost, c.base+"/oauth2/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", fmt.Sprintf("198.51.100.%d", i%250+1))
		req.Header.Set("X-Real-Ip", fmt.Sprintf("198.51.100.%d", i%250+1))
		return c.send(req)
	}
	// Per client id: 10 wrong secrets, then the right one is refused.
	for i := range 10 {
		c.mustStatus(guess(i, adminID, "ais_wrong"), http.StatusUnauthorized, fmt.Sprintf("wrong secret %d", i+1))
	}
	r := guess(10, adminID, adminSecret)
	c.mustStatus(r, http.StatusTooManyRequests, "right secret after 10 failures")
	if r.Header.Get("Retry-After") == "" || !strings.Contains(string(r.Body), `"slow_down"`) {
		t.Errorf("Got(429) = Retry-After %q %s; want a Retry-After and slow_down", r.Header.Get("Retry-After"), r.Body)
	}
	// Per address: 90 more failures over fresh client ids reach the 100
	// of 127.0.0.1, whatever the forwarding headers said.
	for i := range 90 {
		c.mustStatus(guess(i, uuid.NewString(), "ais_wrong"), http.StatusUnauthorized, fmt.Sprintf("unknown client %d", i+1))
	}
	c.mustStatus(guess(7, uuid.NewString(), "ais_wrong"), http.StatusTooManyRequests, "any client id from a blocked address")
}
