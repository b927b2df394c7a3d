// Package authntest builds requests that carry the gateway's signed
// internal context, for tests of services behind the gateway.
package authntest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
)

// Request is an httptest request for method and path with body (JSON, when
// not empty) and, when id is not nil, the internal context for id signed by
// codec, valid for an hour and bound to the request's method and path (as
// the gateway binds it).
func Request(t testing.TB, codec *authn.Codec, id *authn.Identity, method, path, body string) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if id != nil {
		cp := *id
		cp.ExpiresAt = time.Now().Add(time.Hour).Unix()
		cp.Method, cp.Path = req.Method, req.URL.Path
		v, err := codec.Sign(cp)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(authn.Header, v)
	}
	return req
}
