package domain

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentidp/agentidp/libs/jose"
)

// KeyState is a signing key's place in its life cycle:
// next → active → retired → expired, or withdrawn from any of them.
type KeyState string

// Key states.
const (
	// KeyNext is published in the JWKS but does not sign yet.
	KeyNext KeyState = "next"
	// KeyActive signs new tokens.
	KeyActive KeyState = "active"
	// KeyRetired no longer signs and stays published until ExpiresAt.
	KeyRetired KeyState = "retired"
	// KeyExpired is no longer published; its private key is deleted.
	KeyExpired KeyState = "expired"
	// KeyWithdrawn was removed from the JWKS at once (compromise); its
	// private key is deleted.
	KeyWithdrawn KeyState = "withdrawn"
)

// SigningKeySecretPrefix is where private keys live in the secrets store:
// SigningKeySecretPrefix + kid.
const SigningKeySecretPrefix = "token/signing-keys/"

// KeyMeta is a signing key's metadata row. It never holds private material
// (PublicJWK is the public half, published anyway).
type KeyMeta struct {
	KID   string
	Alg   jose.Alg
	State KeyState
	// PublicJWK is the key's public JWK, kept beside the metadata so that
	// building the JWKS needs no secrets-store reads.
	PublicJWK jose.JWK
	CreatedAt time.Time
	// ActivateAt is when the key starts (started) signing.
	ActivateAt time.Time
	// RetireAt is when the key stops (stopped) signing.
	RetireAt time.Time
	// ExpiresAt is RetireAt + token TTL + leeway: the last token the key
	// signed has expired and it leaves the JWKS.
	ExpiresAt   time.Time
	WithdrawnAt *time.Time
	UpdatedAt   time.Time
}

// published reports whether the key belongs in the JWKS at now.
func (k *KeyMeta) published(now time.Time) bool {
	switch k.State {
	case KeyNext, KeyActive:
		return true
	case KeyRetired:
		return now.Before(k.ExpiresAt)
	}
	return false
}

// KeyChanges are the rows a key-ring transaction writes.
type KeyChanges struct {
	Insert []KeyMeta
	Update []KeyMeta
}

// KeyRepo keeps signing-key metadata (the private keys are in a
// SecretStore). Implementations must let several replicas share one ring.
type KeyRepo interface {
	// ListKeys returns every key, oldest first.
	ListKeys(ctx context.Context) ([]KeyMeta, error)
	// KeysVersion returns a value that changes whenever any key row is
	// inserted or updated (cheap: polled every few seconds).
	KeysVersion(ctx context.Context) (string, error)
	// ChangeKeys runs fn in one transaction that holds the ring's lock
	// (concurrent ChangeKeys calls on any replica run one after the
	// other), with every key, oldest first, and writes what fn returns
	// (Update rewrites state and timestamps by kid). A second next or
	// active key, or a duplicate kid, fails with ErrConflict and writes
	// nothing; fn's error is returned as is and nothing is written.
	ChangeKeys(ctx context.Context, fn func(keys []KeyMeta) (KeyChanges, error)) error
	// LegacyKeys returns the sealed keys of the pre-secrets-store table.
	LegacyKeys(ctx context.Context) ([]SealedKey, error)
	// DeleteLegacyKey removes a migrated row from the legacy table.
	DeleteLegacyKey(ctx context.Context, kid string) error
}

// SecretStore is the slice of the secrets port (libs/secrets.Store) the
// key ring uses; the assembly adapts the port to it.
type SecretStore interface {
	// Put writes a new version of the secret at path.
	Put(ctx context.Context, path string, data map[string]string) error
	// Get returns the latest version's data.
	Get(ctx context.Context, path string) (map[string]string, error)
	// Delete removes the secret and every version (missing is no error).
	Delete(ctx context.Context, path string) error
}

// KeyringSettings configure a Keyring.
type KeyringSettings struct {
	// Alg is the algorithm of keys the ring creates.
	Alg jose.Alg
	// TokenTTL is the longest lifetime of a token the keys sign.
	TokenTTL time.Duration
	// RotationInterval is how long a key signs before the next takes over.
	RotationInterval time.Duration
	// PublishLead is how long a next key is published before it signs;
	// it must exceed the verifiers' JWKS refresh interval.
	PublishLead time.Duration
	// ExpiryLeeway is added to RetireAt + TokenTTL before a retired key
	// leaves the JWKS (verifier clock skew and replicas that switch late).
	ExpiryLeeway time.Duration
	// Now is the clock (tests inject one).
	Now func() time.Time
	// Logger receives the audit lines of key changes (never key material).
	Logger *slog.Logger
	// Changed is called after every committed change (publishes the
	// cluster notification).
	Changed func()
}

// DefaultExpiryLeeway is KeyringSettings.ExpiryLeeway's default: well above
// the gateway's clock-skew leeway (30 s) plus a replica's reload lag.
const DefaultExpiryLeeway = 5 * time.Minute

// Keyring holds the signing keys: it signs with the active key, serves the
// JWKS and drives rotation. Sign and JWKS are lock-free (one atomic load).
type Keyring struct {
	cfg     KeyringSettings
	repo    KeyRepo
	secrets SecretStore

	snap atomic.Pointer[keySnapshot]

	mu      sync.Mutex // serialises reloads
	version string
	metas   []KeyMeta
	signers map[string]*jose.Signer
	kick    chan struct{}
}

// keySnapshot is what signing and the JWKS handler read.
type keySnapshot struct {
	signer *jose.Signer
	// upcoming takes over at switchAt (a next key whose time has come
	// before the rotation loop persisted it), so every replica switches at
	// the same instant, from the database's timestamps.
	upcoming *jose.Signer
	switchAt time.Time
	jwks     []byte
	algs     []string
	kids     []string
}

// NewKeyring migrates legacy keys (sealed under legacyKEK, may be nil),
// makes sure there is an active key (replicas racing converge on one) and
// loads it.
func NewKeyring(ctx context.Context, cfg KeyringSettings, repo KeyRepo, secrets SecretStore, legacyKEK []byte) (*Keyring, error) {
	if !slices.Contains([]jose.Alg{jose.ES256, jose.EdDSA, jose.RS256}, cfg.Alg) {
		return nil, fmt.Errorf("signing alg %q: want ES256, EdDSA or RS256", cfg.Alg)
	}
	if cfg.TokenTTL <= 0 || cfg.RotationInterval <= 0 || cfg.PublishLead <= 0 {
		return nil, errors.New("key ring: token TTL, rotation interval and publish lead must be positive")
	}
	if cfg.PublishLead >= cfg.RotationInterval {
		return nil, errors.New("key ring: publish lead must be shorter than the rotation interval")
	}
	if cfg.ExpiryLeeway <= 0 {
		cfg.ExpiryLeeway = DefaultExpiryLeeway
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Changed == nil {
		cfg.Changed = func() {}
	}
	r := &Keyring{cfg: cfg, repo: repo, secrets: secrets, signers: map[string]*jose.Signer{}, kick: make(chan struct{}, 1)}
	if err := r.migrateLegacy(ctx, legacyKEK); err != nil {
		return nil, err
	}
	if err := r.Advance(ctx); err != nil {
		return nil, err
	}
	if err := r.Reload(ctx, true); err != nil {
		return nil, err
	}
	return r, nil
}

// Sign signs claims with the key that is active now.
func (r *Keyring) Sign(claims any) (string, error) {
	s := r.snap.Load()
	if s.upcoming != nil && !r.cfg.Now().Before(s.switchAt) {
		return s.upcoming.Sign(claims)
	}
	return s.signer.Sign(claims)
}

// JWKS returns the encoded key set of every published key.
func (r *Keyring) JWKS() []byte { return r.snap.Load().jwks }

// Algs returns the algorithms of the published keys, sorted.
func (r *Keyring) Algs() []string { return slices.Clone(r.snap.Load().algs) }

// PublishedKIDs returns the kids in the JWKS.
func (r *Keyring) PublishedKIDs() []string { return slices.Clone(r.snap.Load().kids) }

// Keys returns every key's metadata, newest first, read from the database.
func (r *Keyring) Keys(ctx context.Context) ([]KeyMeta, error) {
	ks, err := r.repo.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	slices.Reverse(ks)
	return ks, nil
}

// Kick asks Run to reload at once (another replica changed the ring).
func (r *Keyring) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run advances the ring every advanceEvery and checks the database for
// changes every pollEvery (and whenever Kick is called), until ctx ends.
// Failures are logged and retried on the next tick: the keys in memory
// keep working.
func (r *Keyring) Run(ctx context.Context, advanceEvery, pollEvery time.Duration) {
	adv := time.NewTicker(advanceEvery)
	defer adv.Stop()
	poll := time.NewTicker(pollEvery)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-adv.C:
			if err := r.Advance(ctx); err != nil && ctx.Err() == nil {
				r.cfg.Logger.ErrorContext(ctx, "advance signing keys", "err", err)
			}
		case <-poll.C:
		case <-r.kick:
		}
		if err := r.Reload(ctx, false); err != nil && ctx.Err() == nil {
			r.cfg.Logger.ErrorContext(ctx, "reload signing keys", "err", err)
		}
	}
}

// Reload re-reads the key table when it changed (always when force) and
// rebuilds what Sign and JWKS serve; with the table unchanged it only
// re-evaluates the time-dependent parts (which retired keys are still
// published). A key whose private half cannot be loaded keeps the
// previous snapshot.
func (r *Keyring) Reload(ctx context.Context, force bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, err := r.repo.KeysVersion(ctx)
	if err != nil {
		return fmt.Errorf("signing keys version: %w", err)
	}
	if force || v != r.version || r.metas == nil {
		metas, err := r.repo.ListKeys(ctx)
		if err != nil {
			return fmt.Errorf("list signing keys: %w", err)
		}
		r.metas, r.version = metas, v
	}
	snap, err := r.build(ctx, r.cfg.Now())
	if err != nil {
		return err
	}
	r.snap.Store(snap)
	return nil
}

// build computes the snapshot at now from r.metas; r.mu is held.
func (r *Keyring) build(ctx context.Context, now time.Time) (*keySnapshot, error) {
	var signing, upcoming *KeyMeta
	set := jose.JWKS{Keys: []jose.JWK{}}
	snap := &keySnapshot{}
	for i := range r.metas {
		k := &r.metas[i]
		if !k.published(now) {
			continue
		}
		set.Keys = append(set.Keys, k.PublicJWK)
		snap.kids = append(snap.kids, k.KID)
		if !slices.Contains(snap.algs, string(k.Alg)) {
			snap.algs = append(snap.algs, string(k.Alg))
		}
		if k.State != KeyActive && k.State != KeyNext {
			continue
		}
		if !k.ActivateAt.After(now) {
			if signing == nil || k.ActivateAt.After(signing.ActivateAt) {
				signing = k
			}
		} else if k.State == KeyNext {
			upcoming = k
		}
	}
	if signing == nil {
		// Only possible if the active key's ActivateAt lies ahead (clock
		// skew between replicas): sign with it anyway.
		for i := range r.metas {
			if r.metas[i].State == KeyActive {
				signing = &r.metas[i]
			}
		}
	}
	if signing == nil {
		return nil, errors.New("signing keys: no active key")
	}
	slices.Sort(snap.algs)
	var err error
	keep := map[string]*jose.Signer{}
	if snap.signer, err = r.loadSigner(ctx, signing); err != nil {
		return nil, err
	}
	keep[signing.KID] = snap.signer
	if upcoming != nil {
		// Loaded ahead of time so that the switch needs no secrets-store
		// round trip; failing now is retried on the next reload.
		if snap.upcoming, err = r.loadSigner(ctx, upcoming); err != nil {
			r.cfg.Logger.WarnContext(ctx, "preload next signing key", "kid", upcoming.KID, "err", err)
			snap.upcoming = nil
		} else {
			snap.switchAt = upcoming.ActivateAt
			keep[upcoming.KID] = snap.upcoming
		}
	}
	r.signers = keep
	if snap.jwks, err = json.Marshal(set); err != nil {
		return nil, fmt.Errorf("encode jwks: %w", err)
	}
	return snap, nil
}

// loadSigner returns the cached signer for k or reads its private key.
func (r *Keyring) loadSigner(ctx context.Context, k *KeyMeta) (*jose.Signer, error) {
	if s, ok := r.signers[k.KID]; ok {
		return s, nil
	}
	data, err := r.secrets.Get(ctx, SigningKeySecretPrefix+k.KID)
	if err != nil {
		return nil, fmt.Errorf("load signing key %s: %w", k.KID, err)
	}
	der, err := base64.StdEncoding.DecodeString(data["pkcs8"])
	if err != nil {
		return nil, fmt.Errorf("signing key %s: malformed stored key", k.KID)
	}
	pk, err := jose.ParsePrivateKey(k.Alg, k.KID, der)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", k.KID, err)
	}
	return jose.NewSigner(pk, "at+jwt")
}

// storeKey writes a fresh key's private half to the secrets store.
func (r *Keyring) storeKey(ctx context.Context, k *jose.PrivateKey) error {
	der, err := jose.MarshalPrivateKey(k)
	if err != nil {
		return err
	}
	err = r.secrets.Put(ctx, SigningKeySecretPrefix+k.KID, map[string]string{
		"kid": k.KID, "alg": string(k.Alg), "pkcs8": base64.StdEncoding.EncodeToString(der),
	})
	if err != nil {
		return fmt.Errorf("store signing key %s: %w", k.KID, err)
	}
	return nil
}

// newKey generates a key of alg, stores its private half and returns its
// metadata (state and times are set by the plan that uses it).
func (r *Keyring) newKey(ctx context.Context, alg jose.Alg) (*KeyMeta, error) {
	k, err := jose.GenerateKey(alg)
	if err != nil {
		return nil, err
	}
	pub, err := k.PublicJWK()
	if err != nil {
		return nil, err
	}
	if err := r.storeKey(ctx, k); err != nil {
		return nil, err
	}
	return &KeyMeta{KID: k.KID, Alg: alg, PublicJWK: pub}, nil
}

// dropSecret deletes a private key that is no longer needed; a failure is
// logged (the key is unpublished either way) for the operator to clean up.
func (r *Keyring) dropSecret(ctx context.Context, kid, why string) {
	if err := r.secrets.Delete(ctx, SigningKeySecretPrefix+kid); err != nil {
		r.cfg.Logger.ErrorContext(ctx, "delete signing key material; remove it by hand",
			"kid", kid, "reason", why, "path", SigningKeySecretPrefix+kid, "err", err)
	}
}
