package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/libs/testkit"
)

// TestAdminResetCredentialsProductionDatabase: the same recovery against
// the production databases (DATABASE_URL, as `agentidp bootstrap`): the old
// credential is revoked with a watermark, a new one is active, and both
// changes are in the outbox.
func TestAdminResetCredentialsProductionDatabase(t *testing.T) {
	url, tokenSchema := testkit.PostgresSchema(t)
	_, tierSchema := testkit.PostgresSchema(t)
	env := map[string]string{"DATABASE_URL": url, "TOKEN_DATABASE_SCHEMA": tokenSchema, "TIER_DATABASE_SCHEMA": tierSchema,
		"TOKEN_SECRET_PEPPER": strings.Repeat("ab", 32)}
	getenv := func(k string) string { return env[k] }
	ctx := context.Background()

	var out bytes.Buffer
	if err := run(ctx, []string{"agentidp", "bootstrap"}, getenv, &out, &out); err != nil {
		t.Fatalf("bootstrap: %v\n%s", err, &out)
	}
	id, oldSecret := adminCredentials(t, out.String())
	out.Reset()
	if err := run(ctx, []string{"agentidp", "admin", "reset-credentials"}, getenv, &out, &out); err != nil {
		t.Fatalf("reset-credentials: %v\n%s", err, &out)
	}
	newID, newSecret := adminCredentials(t, out.String())
	if newID != id || newSecret == oldSecret || !strings.Contains(out.String(), "revoked 1 credential(s)") {
		t.Fatalf("reset output:\n%s\nwant agent %s with one credential revoked and a new secret", &out, id)
	}

	cfg, err := svcrun.DBConfig(url, tokenSchema, 2)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sqlstore.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func(q string, args ...any) int {
		t.Helper()
		var n int
		if err := db.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	if n := count("SELECT count(*) FROM credentials WHERE agent_id = ? AND status = 'active'", id); n != 1 {
		t.Errorf("%d active credentials, want 1 (the new one)", n)
	}
	if n := count("SELECT count(*) FROM credentials WHERE agent_id = ? AND status = 'revoked'", id); n != 1 {
		t.Errorf("%d revoked credentials, want 1 (the lost one)", n)
	}
	if n := count("SELECT count(*) FROM revocations WHERE kind = 'credential'"); n != 1 {
		t.Errorf("%d credential revocation watermarks, want 1", n)
	}
	if n := count("SELECT count(*) FROM outbox WHERE subject = 'agentidp.credential.revoked.v1'"); n != 1 {
		t.Errorf("%d credential.revoked events in the outbox, want 1", n)
	}
	if n := count("SELECT count(*) FROM outbox WHERE subject = 'agentidp.credential.generated.v1'"); n != 2 {
		t.Errorf("%d credential.generated events in the outbox, want 2 (bootstrap and reset)", n)
	}

	// Without DATABASE_URL and without --data: a configuration error.
	if err := run(ctx, []string{"agentidp", "admin", "reset-credentials"}, noEnv, &out, &out); err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Errorf("no configuration: %v", err)
	}
}
