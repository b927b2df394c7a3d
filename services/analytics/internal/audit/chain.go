// Package audit is the tamper-evident audit log: every consumed event
// becomes a record of its organisation's hash chain, and the chain can be
// verified, listed and trimmed by retention behind signed checkpoints.
//
// # Hash chain (for auditors)
//
// Each organisation has its own chain. Records are numbered seq = 1, 2, 3,
// ... without gaps, and each record carries prev_hash, the hash of the
// record seq-1 ("" for seq 1). The hash of a record is
//
//	hex(SHA-256(F(organization_id) || F(seq) || F(event_id) ||
//	            F(timestamp) || F(action) || F(outcome) || F(agent_id) ||
//	            F(source) || F(metadata) || F(prev_hash)))
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
// # Checkpoints
//
// Retention deletes a prefix of a chain (seq <= S). Before it does, it
// writes a checkpoint (organization_id, seq S, hash of record S, signature)
// where signature = hex(HMAC-SHA256(key, F(organization_id) || F(S) ||
// F(hash))). Verification starts at the latest checkpoint: its signature
// must match, and the first remaining record must be S+1 with prev_hash
// equal to the checkpoint's hash.
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
	Hash           string
}

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

// ComputeHash returns the hash of r as documented in the package comment
// (r.Hash itself is not an input).
func (r Record) ComputeHash() string {
	h := sha256.New()
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
	return hex.EncodeToString(h.Sum(nil))
}

// Append chains entries (in order) after the head (headSeq, headHash) of
// org's chain and returns the new records; the last one is the new head.
func Append(org string, headSeq int64, headHash string, entries []Entry) []Record {
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
		}
		r.Hash = r.ComputeHash()
		prev = r.Hash
		out[i] = r
	}
	return out
}

// Checkpoint vouches for a deleted prefix of a chain: Seq is the last
// deleted record and Hash its hash.
type Checkpoint struct {
	OrganizationID string
	Seq            int64
	Hash           string
	CreatedAt      time.Time
	Signature      string
}

// SignCheckpoint returns the checkpoint signature documented in the
// package comment.
func SignCheckpoint(key []byte, org string, seq int64, hash string) string {
	m := hmac.New(sha256.New, key)
	field(m, org)
	field(m, strconv.FormatInt(seq, 10))
	field(m, hash)
	return hex.EncodeToString(m.Sum(nil))
}

// ValidCheckpoint reports whether c's signature is right under key.
func ValidCheckpoint(key []byte, c Checkpoint) bool {
	want := SignCheckpoint(key, c.OrganizationID, c.Seq, c.Hash)
	return hmac.Equal([]byte(want), []byte(c.Signature))
}
