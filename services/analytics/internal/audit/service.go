package audit

import (
	"context"
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
	// Range returns up to limit records of org with afterSeq < seq <= upTo,
	// in seq order.
	Range(ctx context.Context, org string, afterSeq, upTo int64, limit int) ([]Record, error)
	// LatestCheckpoint returns org's checkpoint with the highest seq.
	LatestCheckpoint(ctx context.Context, org string) (Checkpoint, bool, error)
	// Orgs lists the organisations that have a chain.
	Orgs(ctx context.Context) ([]string, error)
	// Purge deletes the longest prefix of org's chain whose records are all
	// older than before, after writing the checkpoint sign(seq, hash) of
	// its last record, atomically. It returns how many records it deleted
	// (0 and no checkpoint when there is nothing to delete).
	Purge(ctx context.Context, org string, before, now time.Time, sign func(seq int64, hash string) string) (int64, error)
}

// Reasons a chain fails verification.
const (
	ReasonHashMismatch      = "hash mismatch"
	ReasonBrokenLink        = "broken link"
	ReasonGap               = "gap"
	ReasonInvalidCheckpoint = "invalid checkpoint"
)

// Broken locates the first failure of a chain: for a gap, Seq is the first
// missing seq; otherwise the record (Seq, EventID) that fails.
type Broken struct {
	Seq     int64  `json:"seq"`
	EventID string `json:"eventId,omitempty"`
	Reason  string `json:"reason"`
}

// CheckpointInfo is the checkpoint a verification started from.
type CheckpointInfo struct {
	Seq       int64     `json:"seq"`
	Hash      string    `json:"hash"`
	CreatedAt time.Time `json:"createdAt"`
}

// Verification is the result of walking a chain.
type Verification struct {
	Valid      bool            `json:"valid"`
	Checked    int64           `json:"checked"`
	FirstSeq   int64           `json:"firstSeq"`
	LastSeq    int64           `json:"lastSeq"`
	BrokenAt   *Broken         `json:"brokenAt,omitempty"`
	Checkpoint *CheckpointInfo `json:"checkpoint,omitempty"`
}

// Service implements the audit use cases.
type Service struct {
	store    Store
	key      []byte
	logger   *slog.Logger
	pageSize int
	now      func() time.Time
}

// NewService returns the service; key signs and checks checkpoints.
func NewService(store Store, key []byte, logger *slog.Logger) *Service {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Service{store: store, key: key, logger: logger, pageSize: 1000, now: func() time.Time { return time.Now().UTC() }}
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
	head, err := s.store.Head(ctx, org)
	if err != nil {
		return Verification{}, fmt.Errorf("verify: read head: %w", err)
	}
	v := Verification{Valid: true}
	next, prev := int64(1), ""
	cp, ok, err := s.store.LatestCheckpoint(ctx, org)
	if err != nil {
		return Verification{}, fmt.Errorf("verify: read checkpoint: %w", err)
	}
	if ok {
		v.Checkpoint = &CheckpointInfo{Seq: cp.Seq, Hash: cp.Hash, CreatedAt: cp.CreatedAt}
		if !ValidCheckpoint(s.key, cp) {
			v.Valid = false
			v.BrokenAt = &Broken{Seq: cp.Seq, Reason: ReasonInvalidCheckpoint}
			return v, nil
		}
		next, prev = cp.Seq+1, cp.Hash
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
			var reason string
			switch {
			case r.Seq != next:
				reason = ReasonGap
			case r.PrevHash != prev:
				reason = ReasonBrokenLink
			case r.ComputeHash() != r.Hash:
				reason = ReasonHashMismatch
			}
			if reason == ReasonGap {
				// Records from next to r.Seq-1 are missing.
				v.Valid = false
				v.BrokenAt = &Broken{Seq: next, Reason: reason}
				return v, nil
			}
			if reason != "" {
				v.Valid = false
				v.BrokenAt = &Broken{Seq: r.Seq, EventID: r.EventID, Reason: reason}
				return v, nil
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
		v.Valid = false
		v.BrokenAt = &Broken{Seq: next, Reason: ReasonGap}
	}
	return v, nil
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
	n, err := s.store.Purge(ctx, org, now.Add(-retention), now, func(seq int64, hash string) string {
		return SignCheckpoint(s.key, org, seq, hash)
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
