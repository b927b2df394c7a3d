package token

import (
	"context"
	"errors"
	"fmt"
	"github.com/agentidp/agentidp/libs/events"
	"time"

	"github.com/agentidp/agentidp/libs/secrets"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/token/internal/domain"
	"github.com/agentidp/agentidp/services/token/internal/sqlstore"
	"github.com/nats-io/nats.go"
)

// KeysChangedSubject is the core NATS subject published after every change
// of the signing-key ring. Token replicas reload their keys on it; gateways
// refresh their JWKS on it (so a withdrawn key stops verifying within
// milliseconds, not at the next periodic refresh). It deliberately lies
// outside "agentidp.>": the event stream captures that, and this is a
// notification, not an event.
const KeysChangedSubject = events.KeysChangedSubject

// Key-ring loop timing: the rotation step is cheap and idempotent, the
// version poll is one aggregate over a tiny table.
var (
	keyAdvanceEvery = 30 * time.Second
	keyPollEvery    = 5 * time.Second
)

// secretsAdapter fits the secrets port to the domain's SecretStore.
type secretsAdapter struct{ s secrets.Store }

func (a secretsAdapter) Put(ctx context.Context, path string, data map[string]string) error {
	_, err := a.s.Put(ctx, path, data)
	return err
}

func (a secretsAdapter) Get(ctx context.Context, path string) (map[string]string, error) {
	sec, err := a.s.Get(ctx, path)
	return sec.Data, err
}

func (a secretsAdapter) Delete(ctx context.Context, path string) error { return a.s.Delete(ctx, path) }

// openSecrets returns the secrets store for signing keys: Vault when
// cfg.Vault is set, else the local store sealed with the key encryption key
// in the service's database.
func openSecrets(ctx context.Context, cfg Config, d *svcrun.Deps) (secrets.Store, error) {
	if cfg.Vault != nil {
		return secrets.NewVault(*cfg.Vault)
	}
	l, err := secrets.NewLocal(d.DB, cfg.KeyEncryptionKey)
	if err != nil {
		return nil, err
	}
	if err := l.Migrate(ctx); err != nil {
		return nil, err
	}
	return l, nil
}

// newKeyring opens the secrets store and the key ring (migrating legacy
// sealed keys, creating the first key when there is none).
func newKeyring(ctx context.Context, cfg Config, d *svcrun.Deps) (*domain.Keyring, error) {
	store, err := openSecrets(ctx, cfg, d)
	if err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	def := DefaultConfig()
	if cfg.KeyRotationInterval <= 0 {
		cfg.KeyRotationInterval = def.KeyRotationInterval
	}
	if cfg.KeyPublishLead <= 0 {
		cfg.KeyPublishLead = def.KeyPublishLead
	}
	nc := d.NATS
	return domain.NewKeyring(ctx, domain.KeyringSettings{
		Alg: cfg.SigningAlg, TokenTTL: cfg.TokenTTL, RotationInterval: cfg.KeyRotationInterval,
		PublishLead: cfg.KeyPublishLead, Logger: d.Logger,
		Changed: func() {
			// Best effort: the other replicas also poll the table.
			if err := nc.Publish(KeysChangedSubject, []byte(`{"source":"token"}`)); err != nil {
				d.Logger.Warn("publish signing keys changed", "err", err)
			}
		},
	}, sqlstore.NewKeyRing(d.DB), secretsAdapter{store}, cfg.KeyEncryptionKey)
}

// startKeys subscribes to key-ring notifications and runs the rotation
// loop until ctx ends.
func (s *Service) startKeys(ctx context.Context) error {
	ring := s.svc.Keyring()
	if ring == nil {
		return errors.New("token: no key ring")
	}
	sub, err := s.d.NATS.Subscribe(KeysChangedSubject, func(*nats.Msg) { ring.Kick() })
	if err != nil {
		return fmt.Errorf("subscribe %s: %w", KeysChangedSubject, err)
	}
	go func() {
		<-ctx.Done()
		_ = sub.Unsubscribe()
	}()
	go ring.Run(ctx, keyAdvanceEvery, keyPollEvery)
	return nil
}
