package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// tokenServer checks a client-credentials request and answers with status
// and body; any protocol violation yields 400 with a description.
func tokenServer(t *testing.T, id, secret, scope string, status int, body string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fail := func(msg string) { http.Error(w, msg, http.StatusBadRequest) }
		if r.Method != http.MethodPost {
			fail("method " + r.Method)
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
			fail("content-type " + ct)
			return
		}
		u, p, ok := r.BasicAuth()
		if !ok || u != id || p != secret {
			fail("basic auth " + u + ":" + p)
			return
		}
		if err := r.ParseForm(); err != nil {
			fail("form: " + err.Error())
			return
		}
		if g := r.PostForm.Get("grant_type"); g != "client_credentials" {
			fail("grant_type " + g)
			return
		}
		if s := r.PostForm.Get("scope"); s != scope {
			fail("scope " + s)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestFetchToken(t *testing.T) {
	const okBody = `{"access_token":"at-123","token_type":"Bearer","expires_in":3600}`
	tests := []struct {
		name      string
		req       TokenRequest // URL filled in from the server
		srvScope  string       // scope the server expects
		status    int
		body      string
		want      string
		wantErrIn string
	}{
		{name: "ok with scope", req: TokenRequest{ClientID: "agent-1", ClientSecret: "s3cret", Scope: "agents:read"}, srvScope: "agents:read", status: 200, body: okBody, want: "at-123"},
		{name: "ok without scope", req: TokenRequest{ClientID: "agent-1", ClientSecret: "s3cret"}, status: 200, body: okBody, want: "at-123"},
		{name: "lowercase bearer", req: TokenRequest{ClientID: "agent-1", ClientSecret: "s3cret"}, status: 200, body: `{"access_token":"x","token_type":"bearer"}`, want: "x"},
		{name: "wrong secret", req: TokenRequest{ClientID: "agent-1", ClientSecret: "nope"}, status: 200, body: okBody, wantErrIn: "status 400"},
		{name: "wrong scope", req: TokenRequest{ClientID: "agent-1", ClientSecret: "s3cret", Scope: "admin"}, srvScope: "agents:read", status: 200, body: okBody, wantErrIn: "scope admin"},
		{name: "server 401", req: TokenRequest{ClientID: "agent-1", ClientSecret: "s3cret"}, status: 401, body: `{"error":"invalid_client"}`, wantErrIn: "invalid_client"},
		{name: "no access_token", req: TokenRequest{ClientID: "agent-1", ClientSecret: "s3cret"}, status: 200, body: `{"token_type":"Bearer"}`, wantErrIn: "no access_token"},
		{name: "not json", req: TokenRequest{ClientID: "agent-1", ClientSecret: "s3cret"}, status: 200, body: `<html>`, wantErrIn: "decode"},
		{name: "mac token", req: TokenRequest{ClientID: "agent-1", ClientSecret: "s3cret"}, status: 200, body: `{"access_token":"x","token_type":"mac"}`, wantErrIn: "token_type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := tokenServer(t, "agent-1", "s3cret", tt.srvScope, tt.status, tt.body)
			req := tt.req
			req.URL = srv.URL + "/oauth2/token"
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			got, err := FetchToken(ctx, srv.Client(), req)
			if tt.wantErrIn != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErrIn) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErrIn)
				}
				return
			}
			if err != nil {
				t.Fatalf("FetchToken: %v", err)
			}
			if got != tt.want {
				t.Errorf("token = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFetchTokenRequiresURLAndClientID(t *testing.T) {
	for _, tr := range []TokenRequest{{ClientID: "a"}, {URL: "http://127.0.0.1:1/"}} {
		if _, err := FetchToken(context.Background(), http.DefaultClient, tr); err == nil {
			t.Errorf("FetchToken(%+v) succeeded", tr)
		}
	}
}
