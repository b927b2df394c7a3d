package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/agentidp/agentidp/libs/natsbus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const eventsUsage = `Usage:
  agentidp events replay --consumer NAME [--nats URL] [--data DIR] [--since T] [--until T] [--id EVENT_ID] [--dry-run]
      Republish the dead-lettered events of one consumer (analytics,
      webhook, billing-usage, ...) to that consumer alone, through the
      AGENTIDP_REPLAY stream; other consumers do not see them again.
      Idempotent: the same dead letter replayed twice within a day is
      dropped by JetStream, and consumers are idempotent beyond that.
      --since/--until select by dead-letter time (RFC 3339, or a duration
      meaning "ago", e.g. 2h). --nats defaults to NATS_URL; its user and
      password may be in the URL, or --data DIR takes them from an agentidp
      dev data directory (DIR/nats-credentials.json).
`

// runEvents runs the event-stream maintenance commands.
func runEvents(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, eventsUsage)
		return errors.New("events: missing command")
	}
	switch args[0] {
	case "replay":
		return runReplay(ctx, args[1:], getenv, stdout)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, eventsUsage)
		return nil
	}
	fmt.Fprint(stdout, eventsUsage)
	return fmt.Errorf("events: unknown command %q", args[0])
}

func runReplay(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	flags := flag.NewFlagSet("events replay", flag.ContinueOnError)
	flags.SetOutput(stdout)
	natsURL := flags.String("nats", getenv("NATS_URL"), "NATS URL(s), comma-separated (default $NATS_URL)")
	dataDir := flags.String("data", "", "agentidp dev data directory whose nats-credentials.json to use")
	consumer := flags.String("consumer", "", "durable consumer whose dead letters to replay (required)")
	since := flags.String("since", "", "only dead letters from this time (RFC 3339, or a duration ago)")
	until := flags.String("until", "", "only dead letters up to this time (RFC 3339, or a duration ago)")
	id := flags.String("id", "", "only this event id")
	dryRun := flags.Bool("dry-run", false, "count what would be replayed; publish nothing")
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	now := time.Now()
	o := natsbus.ReplayOptions{Consumer: *consumer, EventID: *id, DryRun: *dryRun}
	var errs []error
	if *consumer == "" {
		errs = append(errs, errors.New("--consumer is required"))
	}
	if *natsURL == "" {
		errs = append(errs, errors.New("--nats (or NATS_URL) is required"))
	}
	var err error
	if o.Since, err = parseWhen(*since, now); err != nil {
		errs = append(errs, fmt.Errorf("--since: %w", err))
	}
	if o.Until, err = parseWhen(*until, now); err != nil {
		errs = append(errs, fmt.Errorf("--until: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("events replay: %w", err)
	}
	opts := []nats.Option{nats.Name("agentidp events replay")}
	if *dataDir != "" {
		user, pass, err := readNATSCredentials(*dataDir)
		if err != nil {
			return err
		}
		opts = append(opts, nats.UserInfo(user, pass))
	}
	nc, err := nats.Connect(*natsURL, opts...)
	if err != nil {
		return fmt.Errorf("events replay: connect to nats: %s", redactPasswords(err.Error(), *natsURL))
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("events replay: %w", err)
	}
	verb := "replayed"
	if o.DryRun {
		verb = "would replay"
	}
	o.Progress = func(r natsbus.ReplayResult) {
		fmt.Fprintf(stdout, "... %d dead letters read, %d %s\n", r.Scanned, r.Replayed, verb)
	}
	fmt.Fprintf(stdout, "replaying dead letters of consumer %q\n", o.Consumer)
	res, err := natsbus.Replay(ctx, js, o)
	fmt.Fprintf(stdout, "%s %d, already replayed (dropped as duplicates) %d, not selected %d, of %d dead letters of %q\n",
		verb, res.Replayed, res.Duplicates, res.Skipped, res.Scanned, o.Consumer)
	if err != nil {
		return fmt.Errorf("events replay: %w", err)
	}
	return nil
}

// redactPasswords removes the passwords of the comma-separated URLs in
// urls from msg: a malformed URL's parse error quotes it whole.
func redactPasswords(msg, urls string) string {
	for _, raw := range strings.Split(urls, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || u.User == nil {
			// Unparseable: drop whatever follows "user:" up to "@".
			if at := strings.LastIndex(raw, "@"); at > 0 {
				if colon := strings.LastIndex(raw[:at], ":"); colon > 0 && colon+1 < at {
					msg = strings.ReplaceAll(msg, raw[colon+1:at], "xxxxx")
				}
			}
			continue
		}
		if p, ok := u.User.Password(); ok && p != "" {
			msg = strings.ReplaceAll(msg, p, "xxxxx")
		}
	}
	return msg
}

// parseWhen reads a time as RFC 3339 or as a duration before now; empty
// is the zero time (no bound).
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(s, "-")); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration", s)
}

// readNATSCredentials reads the user and password agentidp dev wrote for
// its NATS listener; unlike the dev command it never creates them.
func readNATSCredentials(dataDir string) (string, string, error) {
	path := filepath.Join(dataDir, natsCredentialsFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", fmt.Errorf("events replay: read %s: %w", path, err)
	}
	var c devNATSCredentials
	if err := json.Unmarshal(b, &c); err != nil || c.User == "" || c.Password == "" {
		return "", "", fmt.Errorf("events replay: %s is unreadable", path)
	}
	return c.User, c.Password, nil
}
