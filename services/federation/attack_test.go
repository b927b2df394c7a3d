package federation_test

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// disguisedURLs name loopback, private or metadata addresses in forms a
// naive check does not recognise as addresses.
var disguisedURLs = []string{
	"http://2130706433/jwks",
	"http://0x7f000001/jwks",
	"http://0177.0.0.1/jwks",
	"http://127.1/jwks",
	"http://localhost./jwks",
	"http://10.1/jwks",
	"http://0xa9.0xfe.0xa9.0xfe/jwks",
	"http://[::ffff:7f00:1]/jwks",
	"http://[::127.0.0.1]/jwks",
	"http://evil.localhost/jwks",
	"http://evil@127.0.0.1/jwks",
	"http://１２７.０.０.１/jwks",
}

// TestAttackPartnerURLInDisguise registers a partner whose JWKS URI or
// issuer is an address in disguise: each is a 400 VALIDATION_ERROR naming
// the field, and no partner is stored.
func TestAttackPartnerURLInDisguise(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	for _, u := range disguisedURLs {
		for _, field := range []string{"jwksUri", "issuer"} {
			body := map[string]any{"name": "Disguised", "issuer": "https://partner.example", "jwksUri": "https://partner.example/jwks"}
			body[field] = u
			r := h.do(t, adminID, http.MethodPost, "/api/v1/federation/trust", jsonBody(t, body))
			details, _ := r.body["details"].(map[string]any)
			if r.status != http.StatusBadRequest || r.body["code"] != "VALIDATION_ERROR" || details[field] == nil {
				t.Errorf("POST trust with %s %q = %d %s; want 400 VALIDATION_ERROR naming %s", field, u, r.status, r.raw, field)
			}
		}
	}
	if r := h.do(t, adminID, http.MethodGet, "/api/v1/federation/partners", ""); r.body["total"] != 0.0 {
		t.Errorf("Got(partners after disguised registrations) = %v; want 0", r.body["total"])
	}
}

var addressOrPort = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+|\[[0-9a-fA-F:]+\]|:\d+`)

// TestAttackPartnerJWKSErrorRevealsNoInternalAddress registers partners
// whose JWKS cannot be fetched, on a DNS failure (whose raw error names our
// resolver) and a refused connection (whose raw error names the address and
// port): the 400 says what failed and names no address or port.
func TestAttackPartnerJWKSErrorRevealsNoInternalAddress(t *testing.T) {
	t.Parallel()
	h := newHarness(t, loopback)
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL + "/jwks"
	closed.Close()
	for uri, want := range map[string]string{
		"http://no-such-host.invalid/jwks": "DNS lookup failed",
		closedURL:                          "connection refused",
	} {
		body := map[string]any{"name": "Unreachable", "issuer": "https://partner.example", "jwksUri": uri}
		r := h.do(t, adminID, http.MethodPost, "/api/v1/federation/trust", jsonBody(t, body))
		msg, _ := r.body["message"].(string)
		if r.status != http.StatusBadRequest || r.body["code"] != "VALIDATION_ERROR" || !strings.Contains(msg, want) {
			t.Errorf("POST trust with jwksUri %s = %d %s; want 400 VALIDATION_ERROR saying %q", uri, r.status, r.raw, want)
		}
		for _, field := range []string{"message", "detail"} {
			text, _ := r.body[field].(string)
			if m := addressOrPort.FindString(text); m != "" {
				t.Errorf("POST trust with jwksUri %s: %s = %q; it names %q", uri, field, text, m)
			}
		}
	}
}
