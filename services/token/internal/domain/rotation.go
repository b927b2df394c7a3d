package domain

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// ErrKeyNotFound is returned for an unknown kid.
var ErrKeyNotFound = fmt.Errorf("signing key %w", ErrNotFound)

// errNeedKey aborts a key-ring transaction whose plan needs a freshly
// generated key: keys are generated and stored in the secrets store
// outside the transaction (RSA generation and Vault writes are slow), then
// the plan runs again.
var errNeedKey = errors.New("key ring: plan needs a new key")

// ringPlan computes the changes of one key-ring transaction from the rows
// as they are in the database and the time now. It is pure: every replica
// that runs it on the same rows at the same time decides the same thing.
type ringPlan struct {
	cfg   *KeyringSettings
	now   time.Time
	keys  []*KeyMeta
	from  map[string]KeyState // previous state of changed keys
	why   map[string]string   // audit reason of changed keys
	fresh *KeyMeta            // a generated, stored key the plan may use
	added *KeyMeta            // fresh, once used
	need  bool                // the plan needs a fresh key it does not have
}

func newPlan(cfg *KeyringSettings, rows []KeyMeta, now time.Time, fresh *KeyMeta) *ringPlan {
	p := &ringPlan{cfg: cfg, now: now, from: map[string]KeyState{}, why: map[string]string{}}
	for i := range rows {
		k := rows[i]
		p.keys = append(p.keys, &k)
	}
	if fresh != nil {
		f := *fresh
		p.fresh = &f
	}
	return p
}

func (p *ringPlan) find(state KeyState) *KeyMeta {
	for _, k := range p.keys {
		if k.State == state {
			return k
		}
	}
	return nil
}

func (p *ringPlan) byKID(kid string) *KeyMeta {
	for _, k := range p.keys {
		if k.KID == kid {
			return k
		}
	}
	return nil
}

func (p *ringPlan) expiry(retire time.Time) time.Time {
	return retire.Add(p.cfg.TokenTTL + p.cfg.ExpiryLeeway)
}

// mark records a change of k (its first previous state is kept).
func (p *ringPlan) mark(k *KeyMeta, prev KeyState, why string) {
	if _, ok := p.from[k.KID]; !ok {
		p.from[k.KID] = prev
	}
	p.why[k.KID] = why
	k.UpdatedAt = p.now
}

func (p *ringPlan) activate(k *KeyMeta, at time.Time, why string) {
	prev := k.State
	k.State, k.ActivateAt = KeyActive, at
	k.RetireAt = at.Add(p.cfg.RotationInterval)
	k.ExpiresAt = p.expiry(k.RetireAt)
	p.mark(k, prev, why)
}

func (p *ringPlan) retire(k *KeyMeta, at time.Time, why string) {
	prev := k.State
	k.State, k.RetireAt, k.ExpiresAt = KeyRetired, at, p.expiry(at)
	p.mark(k, prev, why)
}

// takeFresh uses the fresh key as a new key in state (active at once, or
// next activating at at). Without one it records the need and fails.
func (p *ringPlan) takeFresh(state KeyState, at time.Time, why string) (*KeyMeta, bool) {
	if p.fresh == nil || p.added != nil {
		p.need = true
		return nil, false
	}
	k := p.fresh
	p.from[k.KID] = "" // new: audit "from" is empty
	k.CreatedAt, k.UpdatedAt = p.now, p.now
	k.State, k.ActivateAt = state, at
	k.RetireAt = at.Add(p.cfg.RotationInterval)
	k.ExpiresAt = p.expiry(k.RetireAt)
	p.keys = append(p.keys, k)
	p.added = k
	p.why[k.KID] = why
	return k, true
}

// advance is the scheduled step: a next key whose time has come becomes
// active (the active one retires), a ring without an active key gets one,
// retired keys past their expiry expire, and a next key is created lead
// before the active key's retirement (or at once, activating after lead,
// when the configured algorithm changed). It reports false when it needs a
// fresh key.
func (p *ringPlan) advance() bool {
	active, next := p.find(KeyActive), p.find(KeyNext)
	if next != nil && !next.ActivateAt.After(p.now) {
		if active != nil {
			// Replicas switch to the next key at its ActivateAt (Sign
			// reads the timestamps), so that is when the old one retired.
			p.retire(active, next.ActivateAt, "scheduled rotation")
		}
		p.activate(next, next.ActivateAt, "scheduled rotation")
		active, next = next, nil
	}
	if active == nil {
		if next != nil {
			p.activate(next, p.now, "no active key")
			active, next = next, nil
		} else {
			k, ok := p.takeFresh(KeyActive, p.now, "first key")
			if !ok {
				return false
			}
			active = k
		}
	}
	for _, k := range p.keys {
		if k.State == KeyRetired && !p.now.Before(k.ExpiresAt) {
			prev := k.State
			k.State = KeyExpired
			p.mark(k, prev, "last token expired")
		}
	}
	lead := p.cfg.PublishLead
	algChanged := active.Alg != p.cfg.Alg
	if next == nil && (algChanged || !p.now.Before(active.RetireAt.Add(-lead))) {
		at := active.RetireAt
		if algChanged || at.Before(p.now.Add(lead)) {
			at = p.now.Add(lead)
		}
		why := "scheduled next key"
		if algChanged {
			why = "signing algorithm changed"
		}
		if _, ok := p.takeFresh(KeyNext, at, why); !ok {
			return false
		}
		prev := active.State
		active.RetireAt, active.ExpiresAt = at, p.expiry(at)
		p.mark(active, prev, "retirement scheduled")
	}
	return true
}

// rotate makes a new key active now and retires the active one: the
// published next key when there is one (verifiers already hold it), else a
// fresh key (verifiers see an unknown kid and refetch).
func (p *ringPlan) rotate(why string) (*KeyMeta, bool) {
	if !p.advance() {
		return nil, false
	}
	active, next := p.find(KeyActive), p.find(KeyNext)
	k := next
	if k == nil {
		var ok bool
		if k, ok = p.takeFresh(KeyActive, p.now, why); !ok {
			return nil, false
		}
	}
	if active != nil {
		p.retire(active, p.now, why)
	}
	p.activate(k, p.now, why)
	return k, true
}

// withdraw removes kid from the JWKS at once, activating a replacement
// first when it was the active key.
func (p *ringPlan) withdraw(kid string) (*KeyMeta, bool, error) {
	if !p.advance() {
		return nil, false, nil
	}
	k := p.byKID(kid)
	if k == nil {
		return nil, true, ErrKeyNotFound
	}
	if k.State == KeyWithdrawn {
		return k, true, nil
	}
	if k.State == KeyActive {
		if _, ok := p.rotate("replaces withdrawn key"); !ok {
			return nil, false, nil
		}
	}
	prev := k.State
	now := p.now
	k.State, k.WithdrawnAt = KeyWithdrawn, &now
	p.mark(k, prev, "withdrawn")
	return k, true, nil
}

// stateRank orders updates so that the one-active/one-next constraints hold
// after every statement: keys leave active/next before others enter.
func stateRank(s KeyState) int {
	switch s {
	case KeyActive:
		return 1
	case KeyNext:
		return 2
	}
	return 0
}

func (p *ringPlan) changes() KeyChanges {
	var ch KeyChanges
	for _, k := range p.keys {
		if _, ok := p.from[k.KID]; ok && k != p.added {
			ch.Update = append(ch.Update, *k)
		}
	}
	slices.SortStableFunc(ch.Update, func(a, b KeyMeta) int { return stateRank(a.State) - stateRank(b.State) })
	if p.added != nil {
		ch.Insert = append(ch.Insert, *p.added)
	}
	return ch
}

// change runs one key-ring transaction: op edits the plan; a plan that
// needs a fresh key is abandoned, a key is generated and stored, and the
// plan runs again on the then current rows. After a commit it logs the
// audit lines, deletes private keys no longer needed, reloads this replica
// and notifies the others.
func (r *Keyring) change(ctx context.Context, op func(p *ringPlan) error) (*ringPlan, error) {
	var fresh *KeyMeta
	defer func() {
		if fresh != nil { // generated but another replica's change made it unnecessary
			r.dropSecret(context.WithoutCancel(ctx), fresh.KID, "unused")
		}
	}()
	for attempt := 0; attempt < 5; attempt++ {
		var plan *ringPlan
		err := r.repo.ChangeKeys(ctx, func(rows []KeyMeta) (KeyChanges, error) {
			plan = newPlan(&r.cfg, rows, r.cfg.Now().UTC(), fresh)
			if err := op(plan); err != nil {
				return KeyChanges{}, err
			}
			if plan.need {
				return KeyChanges{}, errNeedKey
			}
			return plan.changes(), nil
		})
		switch {
		case errors.Is(err, errNeedKey):
			if fresh != nil {
				return nil, errors.New("key ring: plan needs more than one new key")
			}
			if fresh, err = r.newKey(ctx, r.cfg.Alg); err != nil {
				return nil, err
			}
			continue
		case errors.Is(err, ErrConflict):
			continue // raced another replica on a backend without the lock
		case err != nil:
			return nil, err
		}
		if plan.added != nil {
			fresh = nil
		}
		r.committed(ctx, plan)
		return plan, nil
	}
	return nil, errors.New("key ring: could not converge")
}

// committed runs the after-commit duties of a plan.
func (r *Keyring) committed(ctx context.Context, p *ringPlan) {
	if len(p.why) == 0 {
		return
	}
	for _, k := range p.keys {
		why, ok := p.why[k.KID]
		if !ok {
			continue
		}
		from := p.from[k.KID]
		r.cfg.Logger.InfoContext(ctx, "signing key changed", "kid", k.KID, "alg", string(k.Alg),
			"from", string(from), "to", string(k.State), "reason", why,
			"activate_at", k.ActivateAt, "retire_at", k.RetireAt, "expires_at", k.ExpiresAt)
		if (k.State == KeyExpired || k.State == KeyWithdrawn) && from != k.State && from != KeyExpired {
			r.dropSecret(ctx, k.KID, string(k.State))
		}
	}
	if err := r.Reload(ctx, true); err != nil {
		r.cfg.Logger.ErrorContext(ctx, "reload signing keys", "err", err)
	}
	r.cfg.Changed()
}

// Advance runs the scheduled rotation step (see ringPlan.advance). Every
// replica calls it periodically; the ring's lock makes them take turns and
// the plan makes the later ones no-ops.
func (r *Keyring) Advance(ctx context.Context) error {
	_, err := r.change(ctx, func(p *ringPlan) error {
		p.advance()
		return nil
	})
	return err
}

// Rotate is the emergency rotation: a new key signs at once and the active
// one retires (it stays published until its tokens expire). It returns the
// new active key.
func (r *Keyring) Rotate(ctx context.Context) (KeyMeta, error) {
	var out KeyMeta
	_, err := r.change(ctx, func(p *ringPlan) error {
		if k, ok := p.rotate("emergency rotation"); ok {
			out = *k
		}
		return nil
	})
	return out, err
}

// Withdraw removes a key from the JWKS at once (compromise): tokens it
// signed fail verification as soon as verifiers refresh their key set. An
// active key is replaced first. It returns the withdrawn key.
func (r *Keyring) Withdraw(ctx context.Context, kid string) (KeyMeta, error) {
	var out KeyMeta
	_, err := r.change(ctx, func(p *ringPlan) error {
		k, ok, err := p.withdraw(kid)
		if err != nil {
			return err
		}
		if ok {
			out = *k
		}
		return nil
	})
	return out, err
}

// migrateLegacy moves keys of the pre-secrets-store table (sealed under
// kek) into the secrets store and the key ring, then deletes their rows.
// The legacy active key stays active when the ring has none.
func (r *Keyring) migrateLegacy(ctx context.Context, kek []byte) error {
	rows, err := r.repo.LegacyKeys(ctx)
	if err != nil {
		return fmt.Errorf("legacy signing keys: %w", err)
	}
	if len(rows) == 0 {
		return nil
	}
	sealed, err := NewSealedKeyStore(nil, kek)
	if err != nil {
		r.cfg.Logger.WarnContext(ctx, "legacy signing keys present but no key encryption key to open them; not migrated", "count", len(rows))
		return nil
	}
	var metas []KeyMeta
	for _, row := range rows {
		pk, err := sealed.open(row)
		if err != nil {
			return err
		}
		pub, err := pk.PublicJWK()
		if err != nil {
			return err
		}
		if err := r.storeKey(ctx, pk); err != nil {
			return err
		}
		metas = append(metas, KeyMeta{KID: pk.KID, Alg: pk.Alg, PublicJWK: pub, State: KeyState(row.Status), CreatedAt: row.CreatedAt.UTC()})
	}
	err = r.repo.ChangeKeys(ctx, func(existing []KeyMeta) (KeyChanges, error) {
		now := r.cfg.Now().UTC()
		p := newPlan(&r.cfg, existing, now, nil)
		hasActive := p.find(KeyActive) != nil
		var ch KeyChanges
		for _, m := range metas {
			if p.byKID(m.KID) != nil {
				continue
			}
			m.UpdatedAt = now
			if m.State == KeyActive && !hasActive {
				hasActive = true
				m.ActivateAt = m.CreatedAt
				m.RetireAt = m.CreatedAt.Add(r.cfg.RotationInterval)
			} else {
				m.State, m.ActivateAt, m.RetireAt = KeyRetired, m.CreatedAt, now
			}
			m.ExpiresAt = p.expiry(m.RetireAt)
			ch.Insert = append(ch.Insert, m)
			r.cfg.Logger.InfoContext(ctx, "signing key migrated to the secrets store", "kid", m.KID, "alg", string(m.Alg), "state", string(m.State))
		}
		return ch, nil
	})
	if err != nil {
		return fmt.Errorf("migrate legacy signing keys: %w", err)
	}
	for _, m := range metas {
		if err := r.repo.DeleteLegacyKey(ctx, m.KID); err != nil {
			return fmt.Errorf("migrate legacy signing keys: %w", err)
		}
	}
	return nil
}
