package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/agentidp/agentidp/services/analytics/internal/audit"
	"github.com/agentidp/agentidp/services/analytics/internal/counting"
)

// unkeyed returns the records of evs as the code before the keyed chain
// wrote them after (headSeq, headHash): version 1, SHA-256 hashes.
func unkeyed(orgID string, headSeq int64, headHash string, evs []counting.Event) []audit.Record {
	entries := make([]audit.Entry, len(evs))
	for i, e := range evs {
		entries[i] = audit.Entry{EventID: e.ID, AgentID: e.Subject, Action: e.Metric, Timestamp: e.Time, Source: e.Source, Data: e.Data}
	}
	recs := audit.Append(Keys.Current(), orgID, headSeq, headHash, entries)
	return rehash(recs, 0, nil)
}

// rehash applies edit to recs[from] and recomputes the links and hashes of
// recs[from:] with the unkeyed algorithm, as an attacker who knows the
// code but not the key does. recs is not modified.
func rehash(recs []audit.Record, from int, edit func(r *audit.Record)) []audit.Record {
	out := append([]audit.Record(nil), recs...)
	if edit != nil {
		edit(&out[from])
	}
	prev := ""
	if from > 0 {
		prev = out[from-1].Hash
	} else if len(out) > 0 {
		prev = out[0].PrevHash
	}
	for i := from; i < len(out); i++ {
		out[i].PrevHash = prev
		out[i].Version, out[i].KeyID = audit.VersionUnkeyed, ""
		out[i].Hash = out[i].ComputeHash()
		prev = out[i].Hash
	}
	return out
}

// AttackRewrite: with direct database access, an attacker rewrites one
// record's payload, recomputes every later hash with the unkeyed algorithm
// and moves the stored head. Verify reports the rewritten record, whether
// the attacker keeps the key id or relabels the records as unkeyed ones.
func AttackRewrite(t *testing.T, newDB NewAuditDB) {
	tests := []struct {
		name      string
		downgrade bool
		reason    string
	}{
		{"KeepKeyID", false, audit.ReasonMACMismatch},
		{"RelabelAsUnkeyed", true, audit.ReasonUnkeyed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := newDB(t, false)
			s := db.Open(Keys)
			apply(t, s, auditEvs(org, 0, 20))
			apply(t, s, auditEvs(other, 0, 5))
			recs := chainOf(t, s, org)
			forged := rehash(recs, 6, func(r *audit.Record) { r.Metadata = `{"n":6,"jti":"forged"}` })
			for _, r := range forged[6:] {
				if tc.downgrade {
					db.Exec(t, `UPDATE audit_events SET metadata = ?, prev_hash = ?, hash = ?, chain_version = 1, key_id = '' WHERE organization_id = ? AND seq = ?`,
						r.Metadata, r.PrevHash, r.Hash, org, r.Seq)
				} else {
					db.Exec(t, `UPDATE audit_events SET metadata = ?, prev_hash = ?, hash = ? WHERE organization_id = ? AND seq = ?`,
						r.Metadata, r.PrevHash, r.Hash, org, r.Seq)
				}
			}
			db.Exec(t, `UPDATE audit_heads SET hash = ? WHERE organization_id = ?`, forged[19].Hash, org)

			v := verify(t, s, org)
			wantBroken(t, v, 7, tc.reason)
			if v.BrokenAt != nil && v.BrokenAt.EventID != recs[6].EventID {
				t.Errorf("Got(brokenAt.eventId) = %q; want %q, the rewritten record", v.BrokenAt.EventID, recs[6].EventID)
			}
			if v.Checked != 6 || v.LastSeq != 6 {
				t.Errorf("Got(checked, lastSeq) = %d, %d; want 6, 6 (the records before the rewrite)", v.Checked, v.LastSeq)
			}
			wantValid(t, verify(t, s, other), 5, 1, 5)
			// Retention does not sign the forgery into a checkpoint.
			if n, err := svc(s).Retain(context.Background(), org, time.Hour); err == nil || n != 0 {
				t.Errorf("Retain(rewritten chain) = %d, %v; want 0 and an error", n, err)
			}
		})
	}
}

// AttackKeyMismatch: records verify only under the key they name. A
// verifier without it reports them; after a rotation the previous key
// still verifies its records; a record claiming the current key id but
// computed under a guessed key is reported.
func AttackKeyMismatch(t *testing.T, newDB NewAuditDB) {
	ctx := context.Background()
	db := newDB(t, false)
	s := db.Open(Keys)
	apply(t, s, auditEvs(org, 0, 10))
	newKey := []byte("rotated audit key, 32 bytes long")
	onlyNew := mustKeyring(newKey)
	v, err := audit.NewService(s, onlyNew, nil).Verify(ctx, org)
	if err != nil {
		t.Fatal(err)
	}
	wantBroken(t, v, 1, audit.ReasonUnknownKey)

	rotated := mustKeyring(newKey, key)
	s2 := db.Open(rotated)
	apply(t, s2, auditEvs(org, 10, 15))
	a := audit.NewService(s2, rotated, nil)
	v, err = a.Verify(ctx, org)
	if err != nil {
		t.Fatal(err)
	}
	wantValid(t, v, 15, 1, 15)
	if v.KeyID != audit.KeyID(newKey) {
		t.Errorf("Got(keyId) = %q; want the rotated key's %q", v.KeyID, audit.KeyID(newKey))
	}
	recs, err := s2.Range(ctx, org, 0, 100, 100)
	if err != nil || len(recs) != 15 {
		t.Fatalf("Range = %d records, %v; want 15", len(recs), err)
	}
	if recs[9].KeyID != Keys.Current().ID || recs[10].KeyID != audit.KeyID(newKey) {
		t.Errorf("Got(key ids of records 10, 11) = %q, %q; want %q, %q", recs[9].KeyID, recs[10].KeyID, Keys.Current().ID, audit.KeyID(newKey))
	}

	guessed := audit.Key{ID: rotated.Current().ID, Secret: []byte("guessed audit key, 32 bytes long")}
	r := recs[14]
	r.Metadata = `{"n":14,"jti":"forged"}`
	r.Hash = r.ComputeMAC(guessed)
	db.Exec(t, `UPDATE audit_events SET metadata = ?, hash = ? WHERE organization_id = ? AND seq = 15`, r.Metadata, r.Hash, org)
	db.Exec(t, `UPDATE audit_heads SET hash = ? WHERE organization_id = ?`, r.Hash, org)
	v, err = a.Verify(ctx, org)
	if err != nil {
		t.Fatal(err)
	}
	wantBroken(t, v, 15, audit.ReasonMACMismatch)
}

// AttackUpgradedRewrite: a database written by the code before the keyed
// chain (unkeyed records, a checkpoint in the old format) keeps verifying
// after the upgrade anchors it, new records are keyed, and a later rewrite
// of an old record, or the deletion of the anchor, is reported. A legacy
// chain already broken at the upgrade is not anchored.
func AttackUpgradedRewrite(t *testing.T, newDB NewAuditDB) {
	ctx := context.Background()
	db := newDB(t, true)
	// The old code wrote records 1..12 of org; retention purged 1..4
	// behind a checkpoint signed with the same key in the old format.
	old := unkeyed(org, 0, "", auditEvs(org, 0, 12))
	insertOld := func(orgID string, recs []audit.Record) {
		for _, r := range recs {
			db.Exec(t, `INSERT INTO audit_events (organization_id, seq, event_id, agent_id, action, outcome, timestamp, source, metadata, prev_hash, hash)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				r.OrganizationID, r.Seq, r.EventID, r.AgentID, r.Action, r.Outcome, r.Timestamp, r.Source, r.Metadata, r.PrevHash, r.Hash)
		}
		last := recs[len(recs)-1]
		db.Exec(t, `INSERT INTO audit_heads (organization_id, seq, hash) VALUES (?, ?, ?)`, orgID, last.Seq, last.Hash)
	}
	insertOld(org, old[4:])
	db.Exec(t, `INSERT INTO audit_checkpoints (organization_id, seq, hash, created_at, signature) VALUES (?, 4, ?, ?, ?)`,
		org, old[3].Hash, now, audit.SignLegacyCheckpoint(key, org, 4, old[3].Hash))
	// other's old chain was already rewritten (without recomputing) before
	// the upgrade.
	broken := unkeyed(other, 0, "", auditEvs(other, 0, 5))
	broken[2].AgentID = "someone-else"
	insertOld(other, broken)

	s := db.Open(Keys)
	a := svc(s)
	if err := a.Upgrade(ctx, Keys.Secrets()); err == nil {
		t.Error("Upgrade(with a broken legacy chain) = nil; want the error naming it")
	}
	v := verify(t, s, org)
	wantValid(t, v, 8, 5, 12)
	if v.Anchor == nil || v.Anchor.Seq != 12 || v.Anchor.Hash != old[11].Hash || v.Checkpoint == nil || v.Checkpoint.KeyID != Keys.Current().ID {
		t.Errorf("Got(anchor, checkpoint) = %+v, %+v; want anchor at 12, checkpoint re-signed under %s", v.Anchor, v.Checkpoint, Keys.Current().ID)
	}
	wantBroken(t, verify(t, s, other), 1, audit.ReasonUnkeyed)

	// New records are keyed and chain on from the old head.
	apply(t, s, auditEvs(org, 12, 17))
	wantValid(t, verify(t, s, org), 13, 5, 17)
	recs, err := s.Range(ctx, org, 0, 100, 100)
	if err != nil || len(recs) != 13 || recs[7].Version != audit.VersionUnkeyed || recs[8].Version != audit.VersionKeyed || recs[8].PrevHash != old[11].Hash {
		t.Fatalf("Range = %d records, %v; want 8 unkeyed then keyed ones linked to the old head", len(recs), err)
	}
	// A restart does not anchor again.
	_ = a.Upgrade(ctx, Keys.Secrets())
	wantValid(t, verify(t, s, org), 13, 5, 17)

	// An old record edited in place fails its hash.
	db.Exec(t, `UPDATE audit_events SET agent_id = 'someone-else' WHERE organization_id = ? AND seq = 6`, org)
	wantBroken(t, verify(t, s, org), 6, audit.ReasonHashMismatch)
	db.Exec(t, `UPDATE audit_events SET agent_id = ? WHERE organization_id = ? AND seq = 6`, old[5].AgentID, org)
	wantValid(t, verify(t, s, org), 13, 5, 17)

	// An old record rewritten with every later unkeyed hash recomputed no
	// longer matches the anchor; a restart does not anchor the forgery.
	forged := rehash(old, 6, func(r *audit.Record) { r.Metadata = `{"n":6,"jti":"forged"}` })
	for _, r := range forged[6:] {
		db.Exec(t, `UPDATE audit_events SET metadata = ?, prev_hash = ?, hash = ? WHERE organization_id = ? AND seq = ?`, r.Metadata, r.PrevHash, r.Hash, org, r.Seq)
	}
	db.Exec(t, `UPDATE audit_events SET prev_hash = ? WHERE organization_id = ? AND seq = 13`, forged[11].Hash, org)
	wantBroken(t, verify(t, s, org), 12, audit.ReasonAnchorMismatch)
	db.Exec(t, `DELETE FROM audit_anchors WHERE organization_id = ?`, org)
	_ = a.Upgrade(ctx, Keys.Secrets())
	v = verify(t, s, org)
	wantBroken(t, v, 5, audit.ReasonUnkeyed)
	if v.Anchor != nil {
		t.Errorf("Got(anchor after deletion and restart) = %+v; want none: the upgrade anchors once", v.Anchor)
	}
	if _, err := a.Retain(ctx, org, time.Hour); err == nil || errors.Is(err, context.Canceled) {
		t.Errorf("Retain(rewritten chain) = %v; want an error", err)
	}
}
