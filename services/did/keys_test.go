package did_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/base64"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentidp/agentidp/libs/authn"
	"github.com/agentidp/agentidp/libs/config"
	"github.com/agentidp/agentidp/libs/jose"
	"github.com/agentidp/agentidp/libs/natsbus/natstest"
	"github.com/agentidp/agentidp/libs/secrets"
	"github.com/agentidp/agentidp/libs/secrets/vaulttest"
	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/did"
	"github.com/agentidp/agentidp/services/did/internal/sealedkeys"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
)

// rows returns SELECT COUNT(*) of table (-1 when it does not exist).
func rows(db *sqlstore.DB, table string) int {
	var n int
	if err := db.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM "+table).Scan(&n); err != nil {
		return -1
	}
	return n
}

// vaultKey reads the private key of agentID/kid from Vault and checks that
// it is the P-256 key whose public half the document lists.
func vaultKey(t *testing.T, vs *secrets.Vault, agentID, kid string) {
	t.Helper()
	sec, err := vs.Get(context.Background(), "did/keys/"+agentID+"/"+kid)
	if err != nil {
		t.Fatalf("vault did/keys/%s/%s: %v", agentID, kid, err)
	}
	der, err := base64.StdEncoding.DecodeString(sec.Data["privateKey"])
	if err != nil {
		t.Fatalf("vault privateKey is not base64: %v", err)
	}
	pk, err := jose.ParsePrivateKey(jose.ES256, "", der)
	if err != nil {
		t.Fatalf("vault key: %v; want a PKCS#8 P-256 key", err)
	}
	if _, ok := pk.Signer.(*ecdsa.PrivateKey); !ok || pk.KID != kid {
		t.Errorf("vault key = %T kid %s; want the *ecdsa.PrivateKey of kid %s", pk.Signer, pk.KID, kid)
	}
}

// TestKeysInVault keeps the private keys in Vault (the in-process KV v2
// stand-in: no Vault server can run in CI): creation and rotation write
// did/keys/<agent>/<kid>, and nothing secret is written to the database.
func TestKeysInVault(t *testing.T) {
	t.Parallel()
	v := vaulttest.Start(t)
	vcfg := &secrets.VaultConfig{Address: v.URL, Token: v.RootToken}
	h := newHarnessWith(t, nil, func(cfg *did.Config) {
		cfg.KeyEncryptionKey = nil
		cfg.Vault = vcfg
	})
	vs, err := secrets.NewVault(*vcfg)
	if err != nil {
		t.Fatal(err)
	}
	org := uuid.NewString()
	id, doc := h.createAgent(t, org)
	methods, _ := validateDIDDocument(t, doc.body, "did:web:"+host+":agents:"+id)
	kid := methods[0][strings.LastIndexByte(methods[0], '#')+1:]
	vaultKey(t, vs, id, kid)
	if inst, err := vs.List(context.Background(), "did/keys/instance"); err != nil || len(inst) != 1 {
		t.Errorf("vault instance keys = %v, %v; want one", inst, err)
	}

	r := h.do(t, &authn.Identity{Subject: "s", OrgID: org, Scopes: []string{"agents:read", "agents:write"}}, http.MethodPost, "/api/v1/agents/"+id+"/did/rotate")
	if r.status != http.StatusOK {
		t.Fatalf("POST rotate = %d %s; want 200", r.status, r.raw)
	}
	newKID, _ := r.body["kid"].(string)
	vaultKey(t, vs, id, newKID)
	vaultKey(t, vs, id, kid)
	wrote := false
	for _, req := range v.Requests() {
		if strings.HasSuffix(req, " /v1/secret/data/agentidp/did/keys/"+id+"/"+newKID) && !strings.HasPrefix(req, "GET ") {
			wrote = true
		}
	}
	if !wrote {
		t.Errorf("vault requests = %v; want a write to secret/data/agentidp/did/keys/%s/%s", v.Requests(), id, newKID)
	}
	for _, table := range []string{"secret_versions", "did_sealed_keys"} {
		if n := rows(h.db, table); n > 0 {
			t.Errorf("%s rows = %d; want none with Vault", table, n)
		}
	}
	var ref string
	if err := h.db.QueryRowContext(context.Background(), "SELECT key_ref FROM agent_did_keys WHERE kid = ?", newKID).Scan(&ref); err != nil || ref != "did/keys/"+id+"/"+newKID {
		t.Errorf("key_ref = %q, %v; want did/keys/%s/%s", ref, err, id, newKID)
	}
}

// TestLegacyKeysMigrated starts the service over a database whose keys sit
// in the pre-secrets-port table: they move into the secrets store at start
// (Vault here), the sealed rows are deleted, the public rows repointed, and
// the documents are unchanged.
func TestLegacyKeysMigrated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, sqlstore.Config{Driver: sqlstore.SQLite, URL: filepath.Join(t.TempDir(), "did.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	kek := bytes.Repeat([]byte{1}, 32)
	h := newHarnessWith(t, db, nil) // local store sealed with kek
	org := uuid.NewString()
	id, before := h.createAgent(t, org)

	// Rewind to the legacy layout: every key sealed in did_sealed_keys at
	// did/<subject>/<kid>, nothing in the secrets store.
	legacy, err := sealedkeys.New(db, kek)
	if err != nil {
		t.Fatal(err)
	}
	res, err := db.QueryContext(ctx, "SELECT agent_id, kid FROM agent_did_keys")
	if err != nil {
		t.Fatal(err)
	}
	var keys [][2]string
	for res.Next() {
		var k [2]string
		if err := res.Scan(&k[0], &k[1]); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	res.Close()
	for _, k := range keys {
		ref := "did/keys/" + k[0] + "/" + k[1]
		l, _ := secrets.NewLocal(db, kek)
		sec, err := l.Get(ctx, ref)
		if err != nil {
			t.Fatalf("local key %s: %v", ref, err)
		}
		der, _ := base64.StdEncoding.DecodeString(sec.Data["privateKey"])
		old := "did/" + k[0] + "/" + k[1]
		if err := legacy.Put(ctx, old, der); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, "UPDATE agent_did_keys SET key_ref = ? WHERE key_ref = ?", old, ref); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.ExecContext(ctx, "DELETE FROM secret_versions"); err != nil {
		t.Fatal(err)
	}

	v := vaulttest.Start(t)
	vcfg := &secrets.VaultConfig{Address: v.URL, Token: v.RootToken}
	h2 := newHarnessWith(t, db, func(cfg *did.Config) { cfg.Vault = vcfg })
	if n := rows(db, "did_sealed_keys"); n != 0 {
		t.Errorf("did_sealed_keys rows after start = %d; want 0", n)
	}
	var stale int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM agent_did_keys WHERE key_ref NOT LIKE 'did/keys/%'").Scan(&stale); err != nil || stale != 0 {
		t.Errorf("legacy key_refs left = %d, %v; want 0", stale, err)
	}
	vs, _ := secrets.NewVault(*vcfg)
	for _, k := range keys {
		vaultKey(t, vs, k[0], k[1])
	}
	after := h2.do(t, nil, http.MethodGet, "/agents/"+id+"/did.json")
	if after.status != http.StatusOK || after.raw != before.raw {
		t.Errorf("document after migration = %d %s; want unchanged %s", after.status, after.raw, before.raw)
	}
}

// TestLegacyKeysNeedTheKey: with Vault but without DID_KEY_ENCRYPTION_KEY,
// legacy sealed keys stop the start with a clear message.
func TestLegacyKeysNeedTheKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, sqlstore.Config{Driver: sqlstore.SQLite, URL: filepath.Join(t.TempDir(), "did.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx, did.Migrations); err != nil {
		t.Fatal(err)
	}
	legacy, _ := sealedkeys.New(db, bytes.Repeat([]byte{1}, 32))
	if err := legacy.Put(ctx, "did/instance/k1", []byte("der")); err != nil {
		t.Fatal(err)
	}
	v := vaulttest.Start(t)
	cfg := did.DefaultConfig()
	cfg.Vault = &secrets.VaultConfig{Address: v.URL, Token: v.RootToken}
	codec, _ := authn.NewCodec(bytes.Repeat([]byte("k"), 32))
	_, err = did.New(ctx, cfg, depsFor(t, db, codec))
	if err == nil || !strings.Contains(err.Error(), "DID_KEY_ENCRYPTION_KEY") {
		t.Errorf("New(Vault, no key, legacy rows) = %v; want an error naming DID_KEY_ENCRYPTION_KEY", err)
	}
}

// depsFor returns service dependencies over db with a fresh NATS server.
func depsFor(t *testing.T, db *sqlstore.DB, codec *authn.Codec) *svcrun.Deps {
	t.Helper()
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	return &svcrun.Deps{Service: "did", Registry: prometheus.NewRegistry(), DB: db, NATS: nc, JS: js, Codec: codec}
}

func TestConfigFromEnvVault(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		vars    map[string]string
		vault   bool
		wantErr string
	}{
		{"local needs the key", map[string]string{}, false, "DID_KEY_ENCRYPTION_KEY"},
		{"vault without key", map[string]string{"VAULT_ADDR": "https://vault:8200", "VAULT_TOKEN": "hvs.x"}, true, ""},
		{"vault with a short key", map[string]string{"VAULT_ADDR": "https://vault:8200", "VAULT_TOKEN": "hvs.x", "DID_KEY_ENCRYPTION_KEY": strings.Repeat("ab", 40)}, true, "DID_KEY_ENCRYPTION_KEY"},
		{"vault without credentials", map[string]string{"VAULT_ADDR": "https://vault:8200"}, true, "VAULT_TOKEN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := config.New(func(k string) string { return tc.vars[k] })
			cfg := did.ConfigFromEnv(env)
			err := env.Err()
			if (cfg.Vault != nil) != tc.vault {
				t.Errorf("Got(cfg.Vault) = %+v; want set = %v", cfg.Vault, tc.vault)
			}
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Got(ConfigFromEnv error) = %v; want %q", err, tc.wantErr)
			}
		})
	}
}
