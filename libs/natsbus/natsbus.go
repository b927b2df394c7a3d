// Package natsbus connects services to NATS JetStream: it sets up the event
// stream, publishes envelopes (synchronously for the outbox relay, through a
// bounded asynchronous buffer for high-rate events such as token.issued),
// runs durable consumers that wait out dependency outages and dead-letter
// only what can never succeed, replays dead letters, watches
// KV read models, and embeds a NATS server for dev mode and tests.
package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Connect dials url with reconnects forever (a service outlives NATS
// restarts) and logs connection state changes.
func Connect(url, name string, logger *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(64 << 20),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { logger.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
		LogErrors(logger),
	}
	nc, err := nats.Connect(url, append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats: %w", err)
	}
	return nc, nil
}

// LogErrors routes the client's asynchronous errors (slow consumer,
// permission violations, JetStream heartbeats missed) through logger.
// Without an error handler nats.go writes them to stderr as plain text.
func LogErrors(logger *slog.Logger) nats.Option {
	return nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
		if sub != nil {
			logger.Warn("nats async error", "subject", sub.Subject, "err", err)
			return
		}
		logger.Warn("nats async error", "err", err)
	})
}

// StreamOptions tune the event stream.
type StreamOptions struct {
	Replicas   int           // 1 in dev, 3 in a production cluster
	MaxAge     time.Duration // how long events stay replayable (default 7 days)
	Duplicates time.Duration // de-duplication window for Nats-Msg-Id (default 10 minutes)
}

// EnsureStreams creates or updates the event stream and the dead-letter
// stream. It is idempotent and safe for several replicas at once.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 7 * 24 * time.Hour
	}
	if o.Duplicates <= 0 {
		o.Duplicates = 10 * time.Minute
	}
	cfgs := []jetstream.StreamConfig{
		{
			Name:        events.StreamName,
			Description: "AgentIdP events",
			Subjects:    []string{events.AllSubjects},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      o.MaxAge,
			Duplicates:  o.Duplicates,
			Replicas:    o.Replicas,
		},
		{
			Name:        events.DeadLetterStream,
			Description: "AgentIdP events that consumers gave up on",
			Subjects:    []string{events.DeadLetterPrefix + ".>"},
			Storage:     jetstream.FileStorage,
			MaxAge:      30 * 24 * time.Hour,
			Replicas:    o.Replicas,
		},
		{
			// A day of de-duplication: replaying the same dead letter
			// twice within it is dropped by JetStream (and consumers are
			// idempotent after that).
			Name:        events.ReplayStream,
			Description: "AgentIdP dead-lettered events replayed to one consumer",
			Subjects:    []string{events.ReplayPrefix + ".>"},
			Storage:     jetstream.FileStorage,
			MaxAge:      7 * 24 * time.Hour,
			Duplicates:  24 * time.Hour,
			Replicas:    o.Replicas,
		},
	}
	for _, cfg := range cfgs {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// EnsureKV creates (or opens) a KV bucket used as a read model.
func EnsureKV(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) (jetstream.KeyValue, error) {
	if replicas <= 0 {
		replicas = 1
	}
	return EnsureKVConfig(ctx, js, jetstream.KeyValueConfig{Bucket: bucket, History: 1, Replicas: replicas, Storage: jetstream.FileStorage})
}

// EnsureKVConfig creates or updates a KV bucket. Several services (and
// replicas) ensure the same buckets at start: when another one creates the
// bucket between our existence check and our create, JetStream answers
// "stream name already in use", and the update is simply retried.
func EnsureKVConfig(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var kv jetstream.KeyValue
		kv, err = js.CreateOrUpdateKeyValue(ctx, cfg)
		if err == nil {
			return kv, nil
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			break
		}
	}
	return nil, fmt.Errorf("ensure kv %s: %w", cfg.Bucket, err)
}

// Message builds the NATS message for an envelope, with Nats-Msg-Id set so
// JetStream drops duplicates.
func Message(e events.Envelope) (*nats.Msg, error) {
	data, err := e.Encode()
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(e.Type.Subject())
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, e.ID)
	return m, nil
}

// PublishRaw publishes already-encoded messages in order and waits for every
// ack. It is the outbox relay's publish function.
func PublishRaw(ctx context.Context, js jetstream.JetStream, msgs []RawMessage) error {
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	for _, rm := range msgs {
		m := nats.NewMsg(rm.Subject)
		m.Data = rm.Data
		m.Header.Set(jetstream.MsgIDHeader, rm.ID)
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			return fmt.Errorf("publish %s: %w", rm.ID, err)
		}
		futures = append(futures, f)
	}
	var errs []error
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs = append(errs, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("publish batch: %d of %d failed: %w", len(errs), len(msgs), errors.Join(errs...))
	}
	return nil
}

// RawMessage is an encoded event ready to publish.
type RawMessage struct {
	ID      string
	Subject string
	Data    []byte
}

// Raw encodes an envelope for PublishRaw or an outbox row.
func Raw(e events.Envelope) (RawMessage, error) {
	data, err := e.Encode()
	if err != nil {
		return RawMessage{}, err
	}
	return RawMessage{ID: e.ID, Subject: e.Type.Subject(), Data: data}, nil
}
