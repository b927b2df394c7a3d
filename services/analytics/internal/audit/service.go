package audit

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// ErrNotFound is returned by Store.Get for a missing record.
var ErrNotFound = errors.New("audit record not found")

// Filter narrows a listing; empty fields do not filter. From and To are
// inclusive bounds on the event time (zero = open).
type Filter struct {
	AgentID string
	Action  string
	Outcome string
	From    time.Time
	To      time.Time
}

// Store reads audit chains and trims them. Records are appended by the
// consumer's batch (counting.Store.Apply) in the same transaction as the
// counters.
type Store interface {
	// List returns a page of org's records matching f, newest first
	// (timestamp desc, seq desc), and the total number of matches.
	List(ctx context.Context, org string, f Filter, offset, limit int) ([]Record, int64, error)
	// Get returns org's record for eventID or ErrNotFound (also when the
	// event belongs to another organisation).
	Get(ctx context.Context, org, eventID string) (Record, error)
	// Head returns the seq of org's last appended record (0 = none).
	Head(ctx context.Context, org string) (int64, error)
	// Heads returns the (seq, chain value) of the heads of orgs that have
	// a chain.
	Heads(ctx context.Context, orgs []string) (map[string]ChainHead, error)
	// Range returns up to limit records of org with afterSeq < seq <= upTo,
	// in seq order.
	Range(ctx context.Context, org string, afterSeq, upTo int64, limit int) ([]Record, error)
	// LatestCheckpoint returns org's checkpoint with the highest seq.
	LatestCheckpoint(ctx context.Context, org string) (Checkpoint, bool, error)
	// Anchor returns org's upgrade anchor, if it has one.
	Anchor(ctx context.Context, org string) (Anchor, bool, error)
	// Unanchored lists the organisations whose chain has neither an
	// upgrade anchor nor a version 2 record (the upgrade's candidates), in
	// one query however many chains there are.
	Unanchored(ctx context.Context) ([]string, error)
	// Legacy describes what of org's chain predates the keyed chain.
	Legacy(ctx context.Context, org string) (Legacy, error)
	// WriteAnchor, atomically with the appends to org's chain, writes the
	// upgrade anchor a (when not nil) and re-signs the checkpoint resign
	// (when not nil: its KeyID and Signature replace those of org's
	// checkpoint at resign.Seq that has no key id), but only while org has
	// no anchor and no version 2 record and, when a is not nil, a.Seq is
	// still its last version 1 record. It reports whether it wrote.
	WriteAnchor(ctx context.Context, org string, a *Anchor, resign *Checkpoint) (bool, error)
	// Orgs lists the organisations that have a chain.
	Orgs(ctx context.Context) ([]string, error)
	// Purge deletes the longest prefix of org's chain whose records are all
	// older than before, after writing the checkpoint sign(seq, hash) of
	// its last record, atomically; sign returns the key id and signature.
	// It returns how many records it deleted (0 and no checkpoint when
	// there is nothing to delete).
	Purge(ctx context.Context, org string, before, now time.Time, sign func(seq int64, hash string) (keyID, signature string)) (int64, error)
}

// ChainHead is the last record of a chain: its seq and chain value.
type ChainHead struct {
	Seq   int64
	Value string
}

// HeadLedger keeps each chain's latest head outside the database (a NATS
// KV bucket in production), so that deleting the newest records and
// lowering the stored head is caught.
type HeadLedger interface {
	// Get returns org's recorded head (ok false when none).
	Get(ctx context.Context, org string) (seq int64, value string, ok bool, err error)
	// Advance records (seq, value) unless the recorded head is at seq or
	// later; check sees the recorded head before it is replaced and may
	// refuse with an error.
	Advance(ctx context.Context, org string, seq int64, value string, check func(seq int64, value string) error) error
}

// Legacy is what of a chain predates the keyed chain.
type Legacy struct {
	// LastUnkeyed is the seq of the last version 1 record (0 = none).
	LastUnkeyed int64
	// Keyed reports whether a version 2 record exists.
	Keyed bool
	// Anchored reports whether the chain has an upgrade anchor.
	Anchored bool
}

// Reasons a chain fails verification.
const (
	// ReasonMACMismatch: a keyed record's chain value is not its HMAC under
	// the key it names (its content, seq or link was changed).
	ReasonMACMismatch = "mac mismatch"
	// ReasonHashMismatch: an unkeyed (version 1) record's hash is wrong.
	ReasonHashMismatch = "hash mismatch"
	// ReasonBrokenLink: a record's prev_hash is not the previous record's
	// chain value (or the checkpoint's hash).
	ReasonBrokenLink = "broken link"
	// ReasonGap: records are missing inside the chain; Seq is the first.
	ReasonGap = "gap"
	// ReasonTruncated: records at the end of the chain are missing (the
	// head says more were appended); Seq is the first missing one.
	ReasonTruncated = "truncated head"
	// ReasonLedgerMismatch: the record at the head recorded outside the
	// database (the head ledger) is not the one recorded: records up to it
	// were rewritten (by someone holding the key), or the chain was cut
	// back and grew again.
	ReasonLedgerMismatch = "ledger mismatch"
	// ReasonInvalidCheckpoint: the checkpoint verification starts from is
	// not signed by a known key.
	ReasonInvalidCheckpoint = "invalid checkpoint"
	// ReasonUnknownKey: a keyed record names a key that is not configured.
	ReasonUnknownKey = "unknown key"
	// ReasonUnkeyed: an unkeyed record that no upgrade anchor vouches for
	// (after the anchor, or in a chain without one).
	ReasonUnkeyed = "unkeyed record"
	// ReasonInvalidAnchor: the upgrade anchor is not signed by a known key.
	ReasonInvalidAnchor = "invalid anchor"
	// ReasonAnchorMismatch: the record the upgrade anchor vouches for has
	// another hash: it or a record before it was rewritten.
	ReasonAnchorMismatch = "anchor mismatch"
	// ReasonUnknownVersion: a record of a chain version this code does
	// not know.
	ReasonUnknownVersion = "unknown chain version"
)

// Broken locates the first failure of a chain: for a gap, Seq is the first
// missing seq; otherwise the record (Seq, EventID) that fails.
type Broken struct {
	Seq     int64  `json:"seq"`
	EventID string `json:"eventId,omitempty"`
	Reason  string `json:"reason"`
}

// CheckpointInfo is the checkpoint a verification started from, or the
// upgrade anchor it checked.
type CheckpointInfo struct {
	Seq       int64     `json:"seq"`
	Hash      string    `json:"hash"`
	CreatedAt time.Time `json:"createdAt"`
	KeyID     string    `json:"keyId,omitempty"`
}

// Verification is the result of walking a chain.
type Verification struct {
	Valid      bool            `json:"valid"`
	Checked    int64           `json:"checked"`
	FirstSeq   int64           `json:"firstSeq"`
	LastSeq    int64           `json:"lastSeq"`
	BrokenAt   *Broken         `json:"brokenAt,omitempty"`
	Checkpoint *CheckpointInfo `json:"checkpoint,omitempty"`
	// Anchor is the upgrade anchor of the chain's unkeyed records.
	Anchor *CheckpointInfo `json:"upgradeAnchor,omitempty"`
	// KeyID is the id of the key new records are written under.
	KeyID string `json:"keyId"`
	// HeadLedger says whether the head kept outside the database was
	// checked: "checked", "none" (nothing recorded for the chain yet) or
	// "unavailable" (the ledger could not be read: truncation of the
	// newest records would not have been seen). Empty without a ledger.
	HeadLedger string `json:"headLedger,omitempty"`
}

// Service implements the audit use cases.
type Service struct {
	store    Store
	ledger   HeadLedger // nil: heads are not anchored outside the database
	keys     *Keyring
	logger   *slog.Logger
	pageSize int
	now      func() time.Time
}

// NewService returns the service; keys verify records, checkpoints and
// anchors, and the current key signs new checkpoints.
func NewService(store Store, keys *Keyring, logger *slog.Logger) *Service {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Service{store: store, keys: keys, logger: logger, pageSize: 1000, now: func() time.Time { return time.Now().UTC() }}
}

// UseLedger makes the service record chain heads in l (RecordHeads) and
// check them on verify.
func (s *Service) UseLedger(l HeadLedger) { s.ledger = l }

// RecordHeads records the current heads of orgs' chains in the ledger,
// after an append batch committed. The ledger only moves forward, and only
// when the record it holds is still in the chain with the same value:
// otherwise the chain was truncated or rewritten, the ledger keeps the
// evidence and the error says so.
func (s *Service) RecordHeads(ctx context.Context, orgs []string) error {
	if s.ledger == nil || len(orgs) == 0 {
		return nil
	}
	heads, err := s.store.Heads(ctx, orgs)
	if err != nil {
		return fmt.Errorf("record audit heads: %w", err)
	}
	var errs []error
	for _, org := range orgs {
		h, ok := heads[org]
		if !ok {
			continue
		}
		err := s.ledger.Advance(ctx, org, h.Seq, h.Value, func(seq int64, value string) error {
			return s.stillInChain(ctx, org, seq, value)
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// errLedgerMismatch: the record the ledger points at is gone or changed.
var errLedgerMismatch = errors.New("audit chain no longer holds the head recorded outside the database")

// stillInChain checks that org's record seq has the chain value value, or
// was deleted by retention behind a checkpoint.
func (s *Service) stillInChain(ctx context.Context, org string, seq int64, value string) error {
	recs, err := s.store.Range(ctx, org, seq-1, seq, 1)
	if err != nil {
		return fmt.Errorf("check recorded audit head of %s: %w", org, err)
	}
	if len(recs) == 1 && recs[0].Hash == value {
		return nil
	}
	if len(recs) == 0 {
		cp, ok, err := s.store.LatestCheckpoint(ctx, org)
		if err != nil {
			return fmt.Errorf("check recorded audit head of %s: %w", org, err)
		}
		if ok && cp.Seq >= seq {
			return nil
		}
	}
	return fmt.Errorf("%s at seq %d: %w", org, seq, errLedgerMismatch)
}

// List returns a page of org's records and the total.
func (s *Service) List(ctx context.Context, org string, f Filter, offset, limit int) ([]Record, int64, error) {
	recs, total, err := s.store.List(ctx, org, f, offset, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("list audit records: %w", err)
	}
	return recs, total, nil
}

// Get returns one record of org (ErrNotFound when absent).
func (s *Service) Get(ctx context.Context, org, eventID string) (Record, error) {
	r, err := s.store.Get(ctx, org, eventID)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Record{}, fmt.Errorf("get audit record: %w", err)
	}
	return r, err
}

// Verify walks org's chain from its latest checkpoint (or seq 1) to the
// head as of the start, page by page. A retention run that deletes records
// between reading the checkpoint and the first page looks like a gap, so a
// failed walk is repeated once before it is reported.
func (s *Service) Verify(ctx context.Context, org string) (Verification, error) {
	v, err := s.verify(ctx, org)
	if err == nil && !v.Valid {
		v, err = s.verify(ctx, org)
	}
	return v, err
}

func (s *Service) verify(ctx context.Context, org string) (Verification, error) {
	v := Verification{Valid: true, KeyID: s.keys.Current().ID}
	// The ledger is read before the database head: it is written after
	// the database commits, so it can only be behind the head read later,
	// never ahead of it, unless records were deleted.
	var ledgerSeq int64
	var ledgerValue string
	if s.ledger != nil {
		seq, value, ok, err := s.ledger.Get(ctx, org)
		switch {
		case err != nil:
			s.logger.Warn("audit head ledger unavailable", "organization_id", org, "err", err)
			v.HeadLedger = "unavailable"
		case !ok:
			v.HeadLedger = "none"
		default:
			v.HeadLedger, ledgerSeq, ledgerValue = "checked", seq, value
		}
	}
	head, err := s.store.Head(ctx, org)
	if err != nil {
		return Verification{}, fmt.Errorf("verify: read head: %w", err)
	}
	broken := func(seq int64, eventID, reason string) (Verification, error) {
		v.Valid = false
		v.BrokenAt = &Broken{Seq: seq, EventID: eventID, Reason: reason}
		return v, nil
	}
	next, prev := int64(1), ""
	cp, ok, err := s.store.LatestCheckpoint(ctx, org)
	if err != nil {
		return Verification{}, fmt.Errorf("verify: read checkpoint: %w", err)
	}
	if ok {
		v.Checkpoint = &CheckpointInfo{Seq: cp.Seq, Hash: cp.Hash, CreatedAt: cp.CreatedAt, KeyID: cp.KeyID}
		if !ValidCheckpoint(s.keys, cp) {
			return broken(cp.Seq, "", ReasonInvalidCheckpoint)
		}
		next, prev = cp.Seq+1, cp.Hash
	}
	anchor, anchored, err := s.store.Anchor(ctx, org)
	if err != nil {
		return Verification{}, fmt.Errorf("verify: read anchor: %w", err)
	}
	if anchored {
		v.Anchor = &CheckpointInfo{Seq: anchor.Seq, Hash: anchor.Hash, CreatedAt: anchor.CreatedAt, KeyID: anchor.KeyID}
		if !ValidAnchor(s.keys, anchor) {
			return broken(anchor.Seq, "", ReasonInvalidAnchor)
		}
	}
	after := next - 1
	for after < head {
		page, err := s.store.Range(ctx, org, after, head, s.pageSize)
		if err != nil {
			return Verification{}, fmt.Errorf("verify: read records: %w", err)
		}
		if len(page) == 0 {
			break
		}
		for _, r := range page {
			if r.Seq != next {
				// Records from next to r.Seq-1 are missing.
				return broken(next, "", ReasonGap)
			}
			if reason := s.check(r, prev, anchor, anchored); reason != "" {
				return broken(r.Seq, r.EventID, reason)
			}
			if r.Seq == ledgerSeq && r.Hash != ledgerValue {
				// The record the ledger recorded was replaced.
				return broken(r.Seq, r.EventID, ReasonLedgerMismatch)
			}
			if v.Checked == 0 {
				v.FirstSeq = r.Seq
			}
			v.Checked++
			v.LastSeq = r.Seq
			next, prev = r.Seq+1, r.Hash
		}
		after = page[len(page)-1].Seq
	}
	if next <= head {
		// Records at the end of the chain are missing (the head says
		// more were appended).
		return broken(next, "", ReasonTruncated)
	}
	if ledgerSeq >= next {
		// The ledger saw records the database no longer has, and the
		// stored head was lowered to hide it.
		return broken(next, "", ReasonTruncated)
	}
	return v, nil
}

// check returns why record r, which follows the chain value prev, fails
// verification ("" when it does not).
func (s *Service) check(r Record, prev string, anchor Anchor, anchored bool) string {
	if r.PrevHash != prev {
		return ReasonBrokenLink
	}
	switch r.Version {
	case VersionKeyed:
		k, ok := s.keys.Lookup(r.KeyID)
		if !ok {
			return ReasonUnknownKey
		}
		if !hmac.Equal([]byte(r.ComputeMAC(k)), []byte(r.Hash)) {
			return ReasonMACMismatch
		}
	case VersionUnkeyed:
		// Anyone can recompute an unkeyed hash: only the anchor, signed
		// at the upgrade, makes these records evidence.
		if !anchored || r.Seq > anchor.Seq {
			return ReasonUnkeyed
		}
		if r.ComputeHash() != r.Hash {
			return ReasonHashMismatch
		}
	default:
		return ReasonUnknownVersion
	}
	if anchored && r.Seq == anchor.Seq && r.Hash != anchor.Hash {
		return ReasonAnchorMismatch
	}
	return ""
}

// Retain applies retention to org: records older than retention are
// deleted behind a signed checkpoint. retention 0 keeps everything. A
// chain that does not verify is left untouched, so that retention never
// launders evidence of tampering into a signed checkpoint.
func (s *Service) Retain(ctx context.Context, org string, retention time.Duration) (int64, error) {
	if retention <= 0 {
		return 0, nil
	}
	v, err := s.Verify(ctx, org)
	if err != nil {
		return 0, err
	}
	if !v.Valid {
		return 0, fmt.Errorf("retention of %s skipped: chain broken at seq %d (%s)", org, v.BrokenAt.Seq, v.BrokenAt.Reason)
	}
	now := s.now()
	k := s.keys.Current()
	n, err := s.store.Purge(ctx, org, now.Add(-retention), now, func(seq int64, hash string) (string, string) {
		return k.ID, SignCheckpoint(k, org, seq, hash)
	})
	if err != nil {
		return 0, fmt.Errorf("purge audit records of %s: %w", org, err)
	}
	return n, nil
}

// Orgs lists the organisations that have a chain.
func (s *Service) Orgs(ctx context.Context) ([]string, error) {
	orgs, err := s.store.Orgs(ctx)
	if err != nil {
		return nil, fmt.Errorf("list audit chains: %w", err)
	}
	return orgs, nil
}
