// Package audit is the tamper-evident audit log: every consumed event
// becomes a record of its organisation's keyed chain, and the chain can be
// verified, listed and trimmed by retention behind signed checkpoints.
//
// # Keyed chain (for auditors), chain version 2
//
// Each organisation has its own chain. Records are numbered seq = 1, 2, 3,
// ... without gaps, and each record carries prev_hash, the chain value of
// the record seq-1 ("" for seq 1), the id of the key it was written under
// (key_id) and its chain version (2). The chain value (column hash) of a
// record is
//
//	hex(HMAC-SHA256(key, F("agentidp-audit-record-v2") || F(key_id) ||
//	    F(organization_id) || F(seq) || F(event_id) || F(timestamp) ||
//	    F(action) || F(outcome) || F(agent_id) || F(source) ||
//	    F(metadata) || F(prev_hash)))
//
// where F(s) is the 8-byte big-endian length of s in bytes followed by the
// UTF-8 bytes of s, seq is written in decimal ASCII without leading zeros,
// timestamp is the event time in UTC formatted with Go's RFC3339Nano layout
// (2006-01-02T15:04:05.999999999Z07:00: trailing zero digits of the
// fraction are dropped, "Z" for UTC; times are truncated to microseconds
// before hashing, the precision the database keeps), metadata is the stored
// metadata text byte for byte (compact JSON of the event data), and hashes
// are lowercase hex. Length prefixes make the encoding unambiguous: no two
// different field tuples encode to the same bytes.
//
// The key never lives in the audit database (see Keyring), so a database
// writer who edits a record cannot compute the value it must carry, nor the
// values of the records after it. key_id (KeyID) names the key: verification
// looks it up among the current and previous keys, which is what lets the
// key rotate.
//
// # Version 1 (unkeyed) records and the upgrade anchor
//
// Databases written before the chain was keyed hold version 1 records
// (key_id ""), whose hash is the same encoding without the leading domain
// and key id fields, under plain SHA-256:
//
//	hex(SHA-256(F(organization_id) || F(seq) || ... || F(prev_hash)))
//
// Anyone can recompute those, so they are trusted only up to the upgrade
// anchor: the first start of the keyed code verifies each legacy chain and
// writes once an anchor (organization_id, seq S of its last version 1
// record, hash of that record) signed as
//
//	hex(HMAC-SHA256(key, F("agentidp-audit-anchor-v2") || F(key_id) ||
//	    F(organization_id) || F(S) || F(hash)))
//
// SHA-256 chaining makes hash S commit to every record up to S, so a later
// rewrite of any of them is caught (reported at the anchored record when the
// attacker recomputed the following hashes). A version 1 record after the
// anchor, or without one, fails verification as "unkeyed record".
//
// # Checkpoints
//
// Retention deletes a prefix of a chain (seq <= S). Before it does, it
// writes a checkpoint (organization_id, seq S, chain value of record S,
// key_id, signature) where signature =
//
//	hex(HMAC-SHA256(key, F("agentidp-audit-checkpoint-v2") || F(key_id) ||
//	    F(organization_id) || F(S) || F(hash)))
//
// Verification starts at the latest checkpoint: its signature must match
// under the key it names, and the first remaining record must be S+1 with
// prev_hash equal to the checkpoint's hash. Checkpoints written before the
// upgrade (key_id "", signed as HMAC(key, F(organization_id) || F(S) ||
// F(hash))) are re-signed once by the upgrade and rejected afterwards.
package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// Outcomes of a record.
const (
	OutcomeSuccess = "success"
	OutcomeFailure = "failure"
)

// Record is one audit record.
type Record struct {
	OrganizationID string
	Seq            int64
	EventID        string
	AgentID        string // the envelope subject
	Action         string // the event type
	Outcome        string
	Timestamp      time.Time // event time, UTC, microseconds
	Source         string
	Metadata       string // compact JSON of the event data
	PrevHash       string
	Hash           string // the chain value: an HMAC (version 2) or a SHA-256 hash (version 1)
	// Version is the chain version: 2 keyed (KeyID names the key), 1 the
	// unkeyed records written before the upgrade (KeyID "").
	Version int
	KeyID   string
}

// Chain versions.
const (
	VersionUnkeyed = 1
	VersionKeyed   = 2
)

// Domains of the HMACs, so that no value computed for one purpose is valid
// for another (a record's value is never a checkpoint's signature).
const (
	domainRecord     = "agentidp-audit-record-v2"
	domainCheckpoint = "agentidp-audit-checkpoint-v2"
	domainAnchor     = "agentidp-audit-anchor-v2"
)

// Entry is an event to append to a chain.
type Entry struct {
	EventID   string
	AgentID   string
	Action    string
	Timestamp time.Time
	Source    string
	Data      []byte
}

// OutcomeOf is "failure" for auth.failed and every *.failed event type,
// "success" otherwise.
func OutcomeOf(action string) string {
	if action == "auth.failed" || strings.HasSuffix(action, ".failed") {
		return OutcomeFailure
	}
	return OutcomeSuccess
}

// NormalizeTime is the form timestamps are hashed and stored in: UTC,
// truncated to microseconds (PostgreSQL's precision).
func NormalizeTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// NormalizeMetadata returns the compact JSON text of data ("{}" when empty
// or not JSON, which events never are).
func NormalizeMetadata(data []byte) string {
	if len(bytes.TrimSpace(data)) == 0 {
		return "{}"
	}
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		return "{}"
	}
	if b.String() == "null" {
		return "{}"
	}
	return b.String()
}

func field(h interface{ Write([]byte) (int, error) }, s string) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(s)))
	_, _ = h.Write(n[:])
	_, _ = h.Write([]byte(s))
}

// writeFields writes the record's fields from organization_id to
// prev_hash in the documented order.
func (r Record) writeFields(h interface{ Write([]byte) (int, error) }) {
	field(h, r.OrganizationID)
	field(h, strconv.FormatInt(r.Seq, 10))
	field(h, r.EventID)
	field(h, NormalizeTime(r.Timestamp).Format(time.RFC3339Nano))
	field(h, r.Action)
	field(h, r.Outcome)
	field(h, r.AgentID)
	field(h, r.Source)
	field(h, r.Metadata)
	field(h, r.PrevHash)
}

// ComputeHash returns the unkeyed version 1 hash of r as documented in the
// package comment (r.Hash itself is not an input). It is what the code
// before the keyed chain wrote, and what anyone can recompute.
func (r Record) ComputeHash() string {
	h := sha256.New()
	r.writeFields(h)
	return hex.EncodeToString(h.Sum(nil))
}

// ComputeMAC returns the version 2 chain value of r under k (r.KeyID is
// ignored: k.ID is what is bound in).
func (r Record) ComputeMAC(k Key) string {
	m := hmac.New(sha256.New, k.Secret)
	field(m, domainRecord)
	field(m, k.ID)
	r.writeFields(m)
	return hex.EncodeToString(m.Sum(nil))
}

// Append chains entries (in order) after the head (headSeq, headHash) of
// org's chain as version 2 records under k and returns them; the last one
// is the new head.
func Append(k Key, org string, headSeq int64, headHash string, entries []Entry) []Record {
	out := make([]Record, len(entries))
	prev := headHash
	for i, e := range entries {
		r := Record{
			OrganizationID: org,
			Seq:            headSeq + int64(i) + 1,
			EventID:        e.EventID,
			AgentID:        e.AgentID,
			Action:         e.Action,
			Outcome:        OutcomeOf(e.Action),
			Timestamp:      NormalizeTime(e.Timestamp),
			Source:         e.Source,
			Metadata:       NormalizeMetadata(e.Data),
			PrevHash:       prev,
			Version:        VersionKeyed,
			KeyID:          k.ID,
		}
		r.Hash = r.ComputeMAC(k)
		prev = r.Hash
		out[i] = r
	}
	return out
}

// Checkpoint vouches for a deleted prefix of a chain: Seq is the last
// deleted record and Hash its chain value. KeyID names the key of the
// signature ("" for a checkpoint written before the upgrade).
type Checkpoint struct {
	OrganizationID string
	Seq            int64
	Hash           string
	CreatedAt      time.Time
	KeyID          string
	Signature      string
}

// Anchor vouches, under the key, for the version 1 records of a chain
// written before the upgrade: Seq is the last of them and Hash its hash.
type Anchor struct {
	OrganizationID string
	Seq            int64
	Hash           string
	CreatedAt      time.Time
	KeyID          string
	Signature      string
}

func sign(k Key, domain, org string, seq int64, hash string) string {
	m := hmac.New(sha256.New, k.Secret)
	field(m, domain)
	field(m, k.ID)
	field(m, org)
	field(m, strconv.FormatInt(seq, 10))
	field(m, hash)
	return hex.EncodeToString(m.Sum(nil))
}

// SignCheckpoint returns the version 2 checkpoint signature documented in
// the package comment.
func SignCheckpoint(k Key, org string, seq int64, hash string) string {
	return sign(k, domainCheckpoint, org, seq, hash)
}

// SignAnchor returns the upgrade anchor signature documented in the package
// comment.
func SignAnchor(k Key, org string, seq int64, hash string) string {
	return sign(k, domainAnchor, org, seq, hash)
}

// SignLegacyCheckpoint returns the signature of checkpoints written before
// the upgrade (no domain, no key id). Only the upgrade checks it.
func SignLegacyCheckpoint(secret []byte, org string, seq int64, hash string) string {
	m := hmac.New(sha256.New, secret)
	field(m, org)
	field(m, strconv.FormatInt(seq, 10))
	field(m, hash)
	return hex.EncodeToString(m.Sum(nil))
}

// ValidCheckpoint reports whether c's signature is right under the key it
// names in ring; a checkpoint without a key id never is.
func ValidCheckpoint(ring *Keyring, c Checkpoint) bool {
	k, ok := ring.Lookup(c.KeyID)
	if !ok {
		return false
	}
	return hmac.Equal([]byte(SignCheckpoint(k, c.OrganizationID, c.Seq, c.Hash)), []byte(c.Signature))
}

// ValidAnchor reports whether a's signature is right under the key it
// names in ring.
func ValidAnchor(ring *Keyring, a Anchor) bool {
	k, ok := ring.Lookup(a.KeyID)
	if !ok {
		return false
	}
	return hmac.Equal([]byte(SignAnchor(k, a.OrganizationID, a.Seq, a.Hash)), []byte(a.Signature))
}
