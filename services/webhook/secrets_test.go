package webhook_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/agentidp/agentidp/libs/secrets"
	"github.com/agentidp/agentidp/libs/secrets/vaulttest"
	whstore "github.com/agentidp/agentidp/services/webhook/internal/sqlstore"
)

// count returns SELECT COUNT(*) of a table (-1 when it does not exist).
func count(t *testing.T, e *env, table string) int {
	t.Helper()
	var n int
	if err := e.db.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
		return -1
	}
	return n
}

// TestDeliveryWithVaultSecrets keeps the signing secret in Vault (the
// in-process KV v2 stand-in: no Vault server can run in CI): it is written
// at secret/data/agentidp/webhook/secrets/<id>, nothing secret reaches the
// database, and deliveries are signed with it, also after a rotation.
func TestDeliveryWithVaultSecrets(t *testing.T) {
	t.Parallel()
	v := vaulttest.Start(t)
	e := newEnv(t)
	cfg := testConfig()
	cfg.SecretKey = nil // not needed with Vault
	cfg.Vault = &secrets.VaultConfig{Address: v.URL, Token: v.RootToken}
	h := e.service(t, cfg, true)
	rc := newReceiver(t, nil)
	id, secret := e.create(t, h, rc.URL+"/hook", "agent.created")

	vs, err := secrets.NewVault(*cfg.Vault)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := vs.Get(context.Background(), "webhook/secrets/"+id)
	if err != nil || sec.Data["current"] != secret {
		t.Fatalf("vault secret = %v, %v; want current = the secret shown at creation", sec.Data, err)
	}
	wrote := false
	for _, r := range v.Requests() {
		if strings.HasSuffix(r, " /v1/secret/data/agentidp/webhook/secrets/"+id) && !strings.HasPrefix(r, "GET ") {
			wrote = true
		}
	}
	if !wrote {
		t.Errorf("vault requests = %v; want a write to secret/data/agentidp/webhook/secrets/%s", v.Requests(), id)
	}
	for _, table := range []string{"secret_versions", "webhook_secrets"} {
		if n := count(t, e, table); n > 0 {
			t.Errorf("%s rows = %d; want none with Vault", table, n)
		}
	}

	e.publish(t, events.AgentCreated)
	waitFor(t, 5*time.Second, "a delivery", func() bool { return len(rc.requests()) >= 1 })
	if req := rc.requests()[0]; !verifySignature(secret, req.header, req.body) {
		t.Errorf("signature %q does not verify with the Vault-kept secret", req.header.Get("webhook-signature"))
	}

	r := do(t, h, e.codec, e.rw(), http.MethodPost, "/api/v1/webhooks/"+id+"/rotate-secret", "")
	newSecret, _ := r.body["signingSecret"].(string)
	if r.status != http.StatusOK || newSecret == "" {
		t.Fatalf("rotate = %d %s", r.status, r.raw)
	}
	if sec, err := vs.Get(context.Background(), "webhook/secrets/"+id); err != nil || sec.Data["current"] != newSecret || sec.Data["previous"] != secret || sec.Version != 2 {
		t.Errorf("vault secret after rotation = v%d, %v; want v2 with current = new, previous = old", sec.Version, err)
	}
	e.publish(t, events.AgentCreated)
	waitFor(t, 5*time.Second, "a second delivery", func() bool { return len(rc.requests()) >= 2 })
	if req := rc.requests()[1]; !verifySignature(newSecret, req.header, req.body) {
		t.Error("the delivery after rotation does not verify with the new secret")
	}

	r = do(t, h, e.codec, e.rw(), http.MethodDelete, "/api/v1/webhooks/"+id, "")
	if r.status != http.StatusNoContent {
		t.Fatalf("DELETE = %d %s", r.status, r.raw)
	}
	if _, err := vs.Get(context.Background(), "webhook/secrets/"+id); err == nil {
		t.Error("vault secret still there after the webhook was deleted")
	}
}

// TestLegacySecretsMigrated starts the service over a database whose
// secret still sits in the pre-secrets-port table: it is moved into the
// secrets store (Vault here) at start, the row is deleted, the subscription
// repointed, and deliveries still verify with the original secret.
func TestLegacySecretsMigrated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	v := vaulttest.Start(t)
	e := newEnv(t)
	cfg := testConfig()
	h := e.service(t, cfg, false)
	rc := newReceiver(t, nil)
	id, secret := e.create(t, h, rc.URL, "*")

	// Rewind to the legacy layout: the secret sealed in webhook_secrets at
	// webhooks/<id>, nothing in the secrets store.
	legacy, err := whstore.NewSealedSecrets(e.db, cfg.SecretKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := legacy.Put(ctx, "webhooks/"+id, map[string]string{"current": secret}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.ExecContext(ctx, "UPDATE webhook_subscriptions SET secret_path = ?", "webhooks/"+id); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.ExecContext(ctx, "DELETE FROM secret_versions"); err != nil {
		t.Fatal(err)
	}

	vcfg := cfg
	vcfg.SecretKey = nil
	vcfg.Vault = &secrets.VaultConfig{Address: v.URL, Token: v.RootToken}
	if _, err := e.tryService(vcfg); err == nil || !strings.Contains(err.Error(), "WEBHOOK_SECRET_KEY") {
		t.Errorf("New(Vault, no key, legacy rows) = %v; want an error asking for WEBHOOK_SECRET_KEY", err)
	}

	vcfg.SecretKey = cfg.SecretKey
	h = e.service(t, vcfg, true)
	if n := count(t, e, "webhook_secrets"); n != 0 {
		t.Errorf("webhook_secrets rows after start = %d; want 0", n)
	}
	var path string
	if err := e.db.QueryRowContext(ctx, "SELECT secret_path FROM webhook_subscriptions WHERE id = ?", id).Scan(&path); err != nil || path != "webhook/secrets/"+id {
		t.Errorf("secret_path = %q, %v; want webhook/secrets/%s", path, err, id)
	}
	vs, _ := secrets.NewVault(*vcfg.Vault)
	if sec, err := vs.Get(ctx, "webhook/secrets/"+id); err != nil || sec.Data["current"] != secret {
		t.Errorf("vault secret = %v; want the legacy secret", err)
	}
	e.publish(t, events.AgentCreated)
	waitFor(t, 5*time.Second, "a delivery", func() bool { return len(rc.requests()) >= 1 })
	if req := rc.requests()[0]; !verifySignature(secret, req.header, req.body) {
		t.Error("the delivery after migration does not verify with the original secret")
	}
	_ = h
}
