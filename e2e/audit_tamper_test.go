package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentidp/agentidp/libs/natsbus/natstest"
	"github.com/agentidp/agentidp/libs/testkit"
	"github.com/jackc/pgx/v5"
)

// unkeyedHash is the audit record hash of the code before the chain was
// keyed (services/analytics/internal/audit, version 1): what an attacker
// who knows the code, but not the key, can compute.
func unkeyedHash(fields ...string) string {
	var buf []byte
	for _, f := range fields {
		buf = binary.BigEndian.AppendUint64(buf, uint64(len(f)))
		buf = append(buf, f...)
	}
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:])
}

// TestAuditTamperWithDatabaseAccessReportedThroughGateway runs the
// production wiring over PostgreSQL; an attacker with write access to the
// analytics schema rewrites one audit record, recomputes every later hash
// and the stored head; GET /api/v1/audit/verify through the gateway
// reports the rewritten record.
func TestAuditTamperWithDatabaseAccessReportedThroughGateway(t *testing.T) {
	pgURL := testkit.PostgresURL(t)
	redisURL := testkit.RedisURL(t)
	bin := binaries(t)
	nats := natstest.Start(t)
	prefix := "e2e_" + strings.ToLower(testkit.RandomSuffix(6)) + "_"
	t.Cleanup(func() { dropSchemas(t, pgURL, prefix) })

	gatewayAddr := freeAddr(t)
	issuer := "http://" + gatewayAddr
	adminID, adminSecret := bootstrapAdmin(t, bin, pgURL, prefix, issuer)
	addrs := map[string]string{"token": freeAddr(t), "tier": freeAddr(t), "analytics": freeAddr(t), "gateway": gatewayAddr}
	envFor := map[string][]string{
		"token":     append([]string{"DATABASE_URL=" + pgURL, "DATABASE_SCHEMA=" + prefix + "token", "REDIS_URL=" + redisURL}, tokenServiceEnv(issuer)...),
		"tier":      {"DATABASE_URL=" + pgURL, "DATABASE_SCHEMA=" + prefix + "tier", "REDIS_URL=" + redisURL},
		"analytics": {"DATABASE_URL=" + pgURL, "DATABASE_SCHEMA=" + prefix + "analytics", "REDIS_URL=" + redisURL, "ANALYTICS_CHECKPOINT_KEY=" + hexKey("checkpoint-key")},
		"gateway": {"REDIS_URL=" + redisURL, "GATEWAY_ISSUER=" + issuer, "TOKEN_SERVICE_URL=http://" + addrs["token"],
			"TIER_SERVICE_URL=http://" + addrs["tier"], "ANALYTICS_SERVICE_URL=http://" + addrs["analytics"]},
	}
	for _, name := range []string{"token", "tier", "analytics", "gateway"} {
		internal := freeAddr(t)
		env := append([]string{"HTTP_ADDR=" + addrs[name], "INTERNAL_ADDR=" + internal, "NATS_URL=" + nats.URL(),
			"AGENTIDP_INTERNAL_KEY=" + hexKey(testKey), "LOG_LEVEL=info"}, envFor[name]...)
		waitReady(t, start(t, name, bin+"/"+name, env), "http://"+internal+"/health/ready")
	}

	c := newClient(t, issuer)
	var auditor string
	for range 4 { // each issuance is a token.issued record of the admin's organisation
		var r response
		auditor, r = c.token(adminID, adminSecret, "audit:read")
		c.mustStatus(r, http.StatusOK, "admin token with audit:read")
	}
	type verification struct {
		Valid    bool  `json:"valid"`
		Checked  int64 `json:"checked"`
		BrokenAt *struct {
			Seq     int64  `json:"seq"`
			EventID string `json:"eventId"`
			Reason  string `json:"reason"`
		} `json:"brokenAt"`
	}
	verify := func() (verification, response) {
		r := c.do(http.MethodGet, "/api/v1/audit/verify", auditor, nil)
		var v verification
		if r.Status == http.StatusOK {
			r.decode(t, &v)
		}
		return v, r
	}
	var last response
	eventually(t, 30*time.Second, func() bool {
		v, r := verify()
		last = r
		return r.Status == http.StatusOK && v.Valid && v.Checked >= 4
	}, func() string {
		return "GET /api/v1/audit/verify = " + strconv.Itoa(last.Status) + " " + string(last.Body) + "; want valid with 4+ records"
	})

	// The attacker: direct SQL on the analytics schema.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	schema := pgx.Identifier{prefix + "analytics"}.Sanitize()
	var org string
	if err := tx.QueryRow(ctx, `SELECT organization_id FROM `+schema+`.audit_heads WHERE seq >= 4 ORDER BY seq DESC LIMIT 1 FOR UPDATE`).Scan(&org); err != nil {
		t.Fatalf("find the admin's chain: %v", err)
	}
	rows, err := tx.Query(ctx, `SELECT seq, event_id, agent_id, action, outcome, timestamp, source, metadata FROM `+schema+`.audit_events
		WHERE organization_id = $1 ORDER BY seq`, org)
	if err != nil {
		t.Fatal(err)
	}
	type rec struct {
		seq                                                 int64
		eventID, agentID, action, outcome, source, metadata string
		at                                                  time.Time
	}
	recs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (rec, error) {
		var r rec
		err := row.Scan(&r.seq, &r.eventID, &r.agentID, &r.action, &r.outcome, &r.at, &r.source, &r.metadata)
		return r, err
	})
	if err != nil || len(recs) < 4 || recs[0].seq != 1 {
		t.Fatalf("read chain = %d records, %v; want 4+ from seq 1", len(recs), err)
	}
	recs[1].metadata = `{"forged":true}`
	var prev string
	if err := tx.QueryRow(ctx, `SELECT hash FROM `+schema+`.audit_events WHERE organization_id = $1 AND seq = 1`, org).Scan(&prev); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs[1:] {
		h := unkeyedHash(org, strconv.FormatInt(r.seq, 10), r.eventID, r.at.UTC().Format(time.RFC3339Nano), r.action, r.outcome, r.agentID, r.source, r.metadata, prev)
		if _, err := tx.Exec(ctx, `UPDATE `+schema+`.audit_events SET metadata = $1, prev_hash = $2, hash = $3 WHERE organization_id = $4 AND seq = $5`,
			r.metadata, prev, h, org, r.seq); err != nil {
			t.Fatal(err)
		}
		prev = h
	}
	if _, err := tx.Exec(ctx, `UPDATE `+schema+`.audit_heads SET seq = $1, hash = $2 WHERE organization_id = $3`, recs[len(recs)-1].seq, prev, org); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	v, r := verify()
	c.mustStatus(r, http.StatusOK, "GET /api/v1/audit/verify after the rewrite")
	if v.Valid || v.BrokenAt == nil || v.BrokenAt.Seq != 2 || v.BrokenAt.EventID != recs[1].eventID || v.BrokenAt.Reason != "mac mismatch" {
		t.Errorf("GET /api/v1/audit/verify = %s; want invalid, brokenAt seq 2 (%s): mac mismatch", r.Body, recs[1].eventID)
	}
}
