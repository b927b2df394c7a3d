package domain

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/jose"
)

// TestClientKeyEventCarriesThePublicKey checks that credential.generated
// for an agent-held key carries the public JWK (the did service lists it in
// the agent's DID document) and nothing private.
func TestClientKeyEventCarriesThePublicKey(t *testing.T) {
	t.Parallel()
	k, err := jose.GenerateKey(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := k.PublicJWK()
	if err != nil {
		t.Fatal(err)
	}
	ev, err := clientKeyEvent(events.CredentialGenerated, "org-1", ClientKey{KeyID: k.KID, AgentID: "agent-1", Alg: "ES256", JWK: pub, Status: ClientKeyActive}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var d ClientKeyData
	if err := ev.DecodeData(&d); err != nil {
		t.Fatal(err)
	}
	if d.JWK == nil || d.JWK.Kid != k.KID || d.JWK.Kty != "EC" || d.KeyID != k.KID {
		t.Errorf("Got(event data) = %+v; want the public JWK with kid %s", d, k.KID)
	}
	var raw map[string]any
	_ = json.Unmarshal(ev.Data, &raw)
	if jwk, _ := raw["jwk"].(map[string]any); jwk == nil || jwk["d"] != nil || strings.Contains(string(ev.Data), `"d":`) {
		t.Errorf("Got(event data) = %s; want a public JWK and no private member", ev.Data)
	}
}
