package audit

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
)

// Upgrade anchors, once, the chains written before the chain was keyed:
// for each organisation whose chain has version 1 records (or a checkpoint
// without a key id) and neither an anchor nor a version 2 record, it checks
// the unkeyed chain from its checkpoint (whose legacy signature must match
// one of legacyKeys) to its last version 1 record, then signs an anchor of
// that record and re-signs the checkpoint under the current key. A chain
// that does not verify is left unanchored, so the upgrade never launders
// tampering into a signature; verify then reports it.
//
// It runs at start, before this replica appends. Old replicas still
// appending unkeyed records after it has run make their chains fail with
// "unkeyed record": stop them before the upgrade (docs/operations.md).
func (s *Service) Upgrade(ctx context.Context, legacyKeys [][]byte) error {
	orgs, err := s.store.Unanchored(ctx)
	if err != nil {
		return fmt.Errorf("upgrade audit chains: %w", err)
	}
	var errs []error
	for _, org := range orgs {
		if err := s.upgrade(ctx, org, legacyKeys); err != nil {
			errs = append(errs, fmt.Errorf("upgrade audit chain of %s: %w", org, err))
		}
	}
	return errors.Join(errs...)
}

func (s *Service) upgrade(ctx context.Context, org string, legacyKeys [][]byte) error {
	st, err := s.store.Legacy(ctx, org)
	if err != nil {
		return err
	}
	// Once a chain has a keyed record or an anchor it was upgraded: a
	// missing anchor is then a deletion, which verify must report, not
	// something to sign again.
	if st.Keyed || st.Anchored {
		return nil
	}
	cp, hasCP, err := s.store.LatestCheckpoint(ctx, org)
	if err != nil {
		return err
	}
	k := s.keys.Current()
	next, prev := int64(1), ""
	var resign *Checkpoint
	if hasCP {
		if cp.KeyID == "" {
			if !validLegacyCheckpoint(legacyKeys, cp) {
				return fmt.Errorf("checkpoint at seq %d does not verify: chain left unanchored", cp.Seq)
			}
			c := cp
			c.KeyID, c.Signature = k.ID, SignCheckpoint(k, org, cp.Seq, cp.Hash)
			resign = &c
		}
		next, prev = cp.Seq+1, cp.Hash
	}
	if st.LastUnkeyed < next && resign == nil {
		return nil
	}
	var anchor *Anchor
	if st.LastUnkeyed >= next {
		last, err := s.walkUnkeyed(ctx, org, next, prev, st.LastUnkeyed)
		if err != nil {
			return err
		}
		anchor = &Anchor{OrganizationID: org, Seq: last.Seq, Hash: last.Hash, CreatedAt: s.now(), KeyID: k.ID,
			Signature: SignAnchor(k, org, last.Seq, last.Hash)}
	}
	wrote, err := s.store.WriteAnchor(ctx, org, anchor, resign)
	if err != nil {
		return fmt.Errorf("write anchor: %w", err)
	}
	if wrote {
		s.logger.Info("audit chain anchored under the audit key", "organization_id", org, "unkeyed_records", st.LastUnkeyed, "key_id", k.ID)
	}
	return nil
}

// walkUnkeyed checks the version 1 records next..upTo of org, linked from
// prev, and returns the last.
func (s *Service) walkUnkeyed(ctx context.Context, org string, next int64, prev string, upTo int64) (Record, error) {
	var last Record
	for after := next - 1; after < upTo; {
		page, err := s.store.Range(ctx, org, after, upTo, s.pageSize)
		if err != nil {
			return Record{}, err
		}
		if len(page) == 0 {
			break
		}
		for _, r := range page {
			if r.Seq != next || r.PrevHash != prev || r.Version != VersionUnkeyed || r.ComputeHash() != r.Hash {
				return Record{}, fmt.Errorf("unkeyed record %d does not verify: chain left unanchored", next)
			}
			last, next, prev = r, r.Seq+1, r.Hash
		}
		after = page[len(page)-1].Seq
	}
	if last.Seq != upTo {
		return Record{}, fmt.Errorf("unkeyed records missing from seq %d: chain left unanchored", next)
	}
	return last, nil
}

func validLegacyCheckpoint(keys [][]byte, c Checkpoint) bool {
	for _, k := range keys {
		if hmac.Equal([]byte(SignLegacyCheckpoint(k, c.OrganizationID, c.Seq, c.Hash)), []byte(c.Signature)) {
			return true
		}
	}
	return false
}
