package natsbus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/agentidp/agentidp/libs/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ReplayOptions select the dead letters of one consumer to replay.
type ReplayOptions struct {
	Consumer string    // durable name, e.g. "analytics" (required)
	Since    time.Time // dead-lettered at or after (zero: from the first)
	Until    time.Time // dead-lettered at or before (zero: up to the last)
	EventID  string    // only this event (empty: every event)
	DryRun   bool      // count what would be replayed, publish nothing
	// Progress, if set, is called every ProgressEvery scanned dead letters
	// (default 1000) and once at the end.
	Progress      func(ReplayResult)
	ProgressEvery int
}

// ReplayResult counts what a replay did.
type ReplayResult struct {
	Scanned    int // dead letters of the consumer read
	Replayed   int // republished (or, in a dry run, would be)
	Duplicates int // already replayed within the replay stream's de-duplication window: dropped by JetStream
	Skipped    int // outside the time range or another event id
}

// Replay republishes the selected dead letters of o.Consumer to
// ReplaySubject(o.Consumer), which only that consumer reads, unchanged.
// Each republication carries Nats-Msg-Id "dlq-<dead-letter sequence>", so
// replaying the same dead letter twice within a day is dropped by
// JetStream, while an event that was dead-lettered again (a new dead
// letter) can be replayed again; past that, consumers are idempotent.
// Dead letters are kept (the stream is the record of what failed).
func Replay(ctx context.Context, js jetstream.JetStream, o ReplayOptions) (ReplayResult, error) {
	var res ReplayResult
	if o.Consumer == "" {
		return res, errors.New("replay: a consumer name is required")
	}
	if !o.Until.IsZero() && !o.Since.IsZero() && o.Until.Before(o.Since) {
		return res, errors.New("replay: until is before since")
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 1000
	}
	subject := events.DeadLetterPrefix + "." + o.Consumer
	dlq, err := js.Stream(ctx, events.DeadLetterStream)
	if err != nil {
		return res, fmt.Errorf("replay: open %s: %w", events.DeadLetterStream, err)
	}
	last, err := dlq.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return res, nil // nothing dead-lettered for this consumer
	}
	if err != nil {
		return res, fmt.Errorf("replay: last dead letter of %s: %w", o.Consumer, err)
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if !o.Since.IsZero() {
		since := o.Since
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
	}
	cons, err := dlq.OrderedConsumer(ctx, cfg)
	if err != nil {
		return res, fmt.Errorf("replay: read dead letters of %s: %w", o.Consumer, err)
	}
	report := func() {
		if o.Progress != nil {
			o.Progress(res)
		}
	}
	for {
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return res, fmt.Errorf("replay: fetch dead letters: %w", err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			meta, err := msg.Metadata()
			if err != nil {
				return res, fmt.Errorf("replay: dead letter metadata: %w", err)
			}
			done := meta.Sequence.Stream >= last.Sequence
			if !o.Until.IsZero() && meta.Timestamp.After(o.Until) {
				// Ordered by time: nothing later can match.
				report()
				return res, nil
			}
			res.Scanned++
			if err := replayOne(ctx, js, o, msg, meta.Sequence.Stream, &res); err != nil {
				return res, err
			}
			if res.Scanned%o.ProgressEvery == 0 {
				report()
			}
			if done {
				report()
				return res, nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			return res, fmt.Errorf("replay: read dead letters: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if n == 0 {
			// Since lies after the last dead letter, or the stream was
			// trimmed under us: there is nothing more to read.
			report()
			return res, nil
		}
	}
}

func replayOne(ctx context.Context, js jetstream.JetStream, o ReplayOptions, msg jetstream.Msg, seq uint64, res *ReplayResult) error {
	h := msg.Headers()
	eventID := h.Get(HeaderEventID)
	if eventID == "" { // dead letters written before the header existed
		if env, err := events.Decode(msg.Data()); err == nil {
			eventID = env.ID
		}
	}
	if o.EventID != "" && eventID != o.EventID {
		res.Skipped++
		return nil
	}
	if o.DryRun {
		res.Replayed++
		return nil
	}
	m := nats.NewMsg(ReplaySubject(o.Consumer))
	m.Data = msg.Data()
	m.Header.Set(jetstream.MsgIDHeader, "dlq-"+strconv.FormatUint(seq, 10))
	m.Header.Set(HeaderOriginalSubject, h.Get(HeaderOriginalSubject))
	m.Header.Set(HeaderEventID, eventID)
	ack, err := js.PublishMsg(ctx, m)
	if err != nil {
		return fmt.Errorf("replay: republish dead letter %d (event %s): %w", seq, eventID, err)
	}
	if ack.Duplicate {
		res.Duplicates++
		return nil
	}
	res.Replayed++
	return nil
}
