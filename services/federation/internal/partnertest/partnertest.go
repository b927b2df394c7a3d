// Package partnertest plays a partner identity provider in tests: an HTTP
// server publishing a JWKS from its own jose keys, whose answers can be
// switched (down, empty, garbage), counting requests and TCP connections.
package partnertest

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/jose"
)

// Modes of the JWKS endpoint.
const (
	ModeOK      = "ok"
	ModeDown    = "down"    // 503
	ModeEmpty   = "empty"   // {"keys":[]}
	ModeGarbage = "garbage" // not JSON
)

// IdP is a fake partner identity provider.
type IdP struct {
	Server   *httptest.Server
	Issuer   string
	JWKSURI  string
	requests atomic.Int64
	conns    atomic.Int64

	mu   sync.Mutex
	keys []*jose.PrivateKey
	mode string
}

// Start runs a partner with one ES256 key.
func Start(t *testing.T) *IdP {
	t.Helper()
	p := &IdP{mode: ModeOK}
	p.AddKey(t, jose.ES256)
	p.Server = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.Server.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			p.conns.Add(1)
		}
	}
	p.Server.Start()
	t.Cleanup(p.Server.Close)
	p.Issuer = p.Server.URL
	p.JWKSURI = p.Server.URL + "/jwks.json"
	return p
}

func (p *IdP) serve(w http.ResponseWriter, r *http.Request) {
	p.requests.Add(1)
	p.mu.Lock()
	mode := p.mode
	set := jose.JWKS{Keys: []jose.JWK{}}
	for _, k := range p.keys {
		j, _ := k.PublicJWK()
		set.Keys = append(set.Keys, j)
	}
	p.mu.Unlock()
	switch mode {
	case ModeDown:
		http.Error(w, "down", http.StatusServiceUnavailable)
	case ModeGarbage:
		_, _ = w.Write([]byte("<html>not a key set"))
	case ModeEmpty:
		_, _ = w.Write([]byte(`{"keys":[]}`))
	default:
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_ = json.NewEncoder(w).Encode(set)
	}
}

// AddKey publishes a new key (a rotation) and returns it.
func (p *IdP) AddKey(t *testing.T, alg jose.Alg) *jose.PrivateKey {
	t.Helper()
	k, err := jose.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	p.keys = append(p.keys, k)
	p.mu.Unlock()
	return k
}

// Key returns the i-th key.
func (p *IdP) Key(i int) *jose.PrivateKey {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keys[i]
}

// SetMode switches the JWKS endpoint's answer.
func (p *IdP) SetMode(m string) {
	p.mu.Lock()
	p.mode = m
	p.mu.Unlock()
}

// Requests is the number of HTTP requests served.
func (p *IdP) Requests() int64 { return p.requests.Load() }

// Conns is the number of TCP connections accepted.
func (p *IdP) Conns() int64 { return p.conns.Load() }

// Sign signs claims with key k; exp defaults to one hour from now.
func Sign(t *testing.T, k *jose.PrivateKey, claims map[string]any) string {
	t.Helper()
	if _, ok := claims["exp"]; !ok {
		claims["exp"] = time.Now().Add(time.Hour).Unix()
	}
	s, err := jose.NewSigner(k, "JWT")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Token signs standard claims (iss, aud, sub, exp) with the partner's
// first key.
func (p *IdP) Token(t *testing.T, aud, sub string) string {
	t.Helper()
	return Sign(t, p.Key(0), map[string]any{"iss": p.Issuer, "aud": aud, "sub": sub, "iat": time.Now().Unix()})
}
