package did_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/jose"
	"github.com/google/uuid"
)

// clientKeyData mirrors the token service's ClientKeyData (credential
// fields plus keyId, alg and the JWK); JWK is raw so tests can send
// private members.
type clientKeyData struct {
	events.CredentialData
	KeyID string `json:"keyId,omitempty"`
	Alg   string `json:"alg,omitempty"`
	JWK   any    `json:"jwk,omitempty"`
}

func credentialEvent(t *testing.T, typ events.Type, agentID, orgID string, d clientKeyData) events.Envelope {
	t.Helper()
	d.AgentID, d.At = agentID, time.Now().UTC()
	if d.CredentialID == "" {
		d.CredentialID = d.KeyID
	}
	if d.Status == "" {
		d.Status = "active"
	}
	e, err := events.New(typ, "token", orgID, agentID, d)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// agentKey generates an agent-held key pair and returns its public JWK as
// the token service publishes it (kid = RFC 7638 thumbprint, alg, use sig).
func agentKey(t *testing.T, alg jose.Alg) jose.JWK {
	t.Helper()
	pk, err := jose.GenerateKey(alg)
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := pk.PublicJWK()
	if err != nil {
		t.Fatal(err)
	}
	return jwk
}

// lockedBuffer is a log sink the test can read while the service writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitMethods polls the agent's document until it lists n verification
// methods and returns it.
func (h *harness) waitMethods(t *testing.T, agentID string, n int) response {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := h.do(t, nil, http.MethodGet, "/agents/"+agentID+"/did.json")
		vms, _ := r.body["verificationMethod"].([]any)
		if len(vms) == n {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET did.json = %d %s; want %d verification methods", r.status, r.raw, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func strs(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// TestAgentHeldKeys goes through the bus (embedded NATS, durable consumer)
// and SQLite: keys the agent registered become authentication methods of
// its DID document, client secrets, redeliveries and private JWKs change
// nothing, and revocation removes the key.
func TestAgentHeldKeys(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	h := newHarnessLogged(t, nil, nil, slog.New(slog.NewTextHandler(logs, nil)))
	org := uuid.NewString()
	id, before := h.createAgent(t, org)
	agentDID := "did:web:" + host + ":agents:" + id
	custodial, _ := validateDIDDocument(t, before.body, agentDID)

	ecKey, edKey := agentKey(t, jose.ES256), agentKey(t, jose.EdDSA)
	// The Ed25519 JWK comes without kid and alg: the event's keyId and alg
	// fill them in.
	edBare := edKey
	edBare.Kid, edBare.Alg = "", ""
	privKey := agentKey(t, jose.ES256)
	privMembers := map[string]string{"kty": "EC", "crv": "P-256", "x": privKey.X, "y": privKey.Y, "kid": privKey.Kid,
		"alg": "ES256", "d": "c2VjcmV0LXByaXZhdGUta2V5LW1hdGVyaWFsLWRvLW5vdC1sb2c"}
	ecGenerated := credentialEvent(t, events.CredentialGenerated, id, org, clientKeyData{KeyID: ecKey.Kid, Alg: "ES256", JWK: ecKey})
	edGenerated := credentialEvent(t, events.CredentialGenerated, id, org, clientKeyData{KeyID: edKey.Kid, Alg: "EdDSA", JWK: edBare})

	// Refused and ignored events first: once the valid keys (published
	// after them on the same consumer) show, these have been handled.
	h.publish(t,
		credentialEvent(t, events.CredentialGenerated, id, org, clientKeyData{KeyID: privKey.Kid, Alg: "ES256", JWK: privMembers}),
		credentialEvent(t, events.CredentialGenerated, id, org, clientKeyData{CredentialData: events.CredentialData{CredentialID: uuid.NewString()}}),
		credentialEvent(t, events.CredentialGenerated, id, org, clientKeyData{KeyID: agentKey(t, jose.ES256).Kid, Alg: "ES256",
			JWK: agentKey(t, jose.ES256)}), // JWK kid ≠ keyId
		ecGenerated, edGenerated)
	r := h.waitMethods(t, id, len(custodial)+2)
	methods, auth := validateDIDDocument(t, r.body, agentDID)
	ecID, edID := agentDID+"#"+ecKey.Kid, agentDID+"#"+edKey.Kid
	wantMethods := append(slices.Clone(custodial), ecID, edID)
	if !slices.Equal(methods, wantMethods) || !slices.Equal(auth, wantMethods) {
		t.Errorf("Got(methods, authentication) = %v, %v; want %v for both", methods, auth, wantMethods)
	}
	if got := strs(r.body["assertionMethod"]); !slices.Equal(got, custodial) {
		t.Errorf("Got(assertionMethod) = %v; want only the IdP-custodial %v", got, custodial)
	}
	for _, raw := range r.body["verificationMethod"].([]any) {
		vm := raw.(map[string]any)
		jwk := vm["publicKeyJwk"].(map[string]any)
		if vm["controller"] != agentDID {
			t.Errorf("Got(%v controller) = %v; want the agent's DID", vm["id"], vm["controller"])
		}
		if vm["id"] == edID && (jwk["kty"] != "OKP" || jwk["kid"] != edKey.Kid || jwk["alg"] != "EdDSA" || jwk["x"] != edKey.X) {
			t.Errorf("Got(Ed25519 method JWK) = %v; want the registered key with kid and alg filled in", jwk)
		}
		if vm["id"] == ecID && (jwk["x"] != ecKey.X || jwk["y"] != ecKey.Y) {
			t.Errorf("Got(EC method JWK) = %v; want the registered key", jwk)
		}
	}
	if strings.Contains(r.raw, privKey.X) {
		t.Errorf("Got(document) lists the key sent with private members; want it refused")
	}
	if l := logs.String(); !strings.Contains(l, "refusing agent-held key") || !strings.Contains(l, privKey.Kid) || strings.Contains(l, privMembers["d"]) {
		t.Errorf("Got(logs) = %s; want the refused key logged by kid, without its private member", l)
	}

	reader := &authn.Identity{Subject: uuid.NewString(), OrgID: org, Scopes: []string{"agents:read"}}
	res := h.do(t, reader, http.MethodGet, "/api/v1/agents/"+id+"/did/resolve")
	meta, _ := res.body["didDocumentMetadata"].(map[string]any)
	if got := strs(meta["agentHeldKeys"]); !slices.Equal(got, []string{ecID, edID}) {
		t.Errorf("Got(didDocumentMetadata.agentHeldKeys) = %v; want [%s %s]", got, ecID, edID)
	}

	// Redelivery: the same event again (directly and as a bus copy under a
	// new message id) adds nothing.
	for range 2 {
		if err := h.svc.HandleEvent(context.Background(), ecGenerated); err != nil {
			t.Fatalf("HandleEvent(redelivered) = %v", err)
		}
	}
	dup := ecGenerated
	dup.ID = uuid.NewString()
	h.publish(t, dup, credentialEvent(t, events.CredentialRevoked, id, org, clientKeyData{KeyID: edKey.Kid, Alg: "EdDSA", JWK: edKey, CredentialData: events.CredentialData{Status: "revoked"}}))
	r = h.waitMethods(t, id, len(custodial)+1)
	methods, auth = validateDIDDocument(t, r.body, agentDID)
	wantMethods = append(slices.Clone(custodial), ecID)
	if !slices.Equal(methods, wantMethods) || !slices.Equal(auth, wantMethods) {
		t.Errorf("Got(methods, authentication after revocation) = %v, %v; want %v", methods, auth, wantMethods)
	}
	var rows int
	if err := h.db.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM agent_held_keys WHERE agent_id = ?", id).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 2 {
		t.Errorf("Got(agent_held_keys rows) = %d; want 2 (EC active, Ed25519 revoked; nothing for the refused, secret or mismatched events)", rows)
	}
	// A late redelivery of the revoked key's generation does not bring it back.
	if err := h.svc.HandleEvent(context.Background(), edGenerated); err != nil {
		t.Fatalf("HandleEvent(late generation) = %v", err)
	}
	if r := h.do(t, nil, http.MethodGet, "/agents/"+id+"/did.json"); strings.Contains(r.raw, edID) {
		t.Errorf("Got(document after late generation) lists %s; want it to stay revoked", edID)
	}
}
