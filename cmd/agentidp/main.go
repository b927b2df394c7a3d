// Command agentidp is the all-in-one AgentIdP binary: `agentidp dev` runs
// every service in one process on embedded defaults, `agentidp bootstrap`
// creates the first organisation and admin agent in a production database,
// `agentidp context` signs an internal context for benchmarks, and
// `agentidp events replay` replays dead-lettered events.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "agentidp:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if err := dispatch(ctx, args, getenv, stdout, stderr); !errors.Is(err, errHelp) {
		return err
	}
	return nil
}

func dispatch(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) < 2 {
		usage(stdout)
		return fmt.Errorf("missing command")
	}
	switch args[1] {
	case "dev":
		return runDev(ctx, args[2:], stdout, stderr)
	case "bootstrap":
		return runBootstrap(ctx, args[2:], getenv, stdout)
	case "admin":
		return runAdmin(ctx, args[2:], getenv, stdout)
	case "context":
		return runContext(args[2:], getenv, stdout)
	case "events":
		return runEvents(ctx, args[2:], getenv, stdout)
	case "version", "--version":
		fmt.Fprintln(stdout, "agentidp", version)
		return nil
	case "help", "-h", "--help":
		usage(stdout)
		return nil
	}
	usage(stdout)
	return fmt.Errorf("unknown command %q", args[1])
}

func usage(w io.Writer) {
	fmt.Fprint(w, `agentidp — identity provider for AI agents

Usage:
  agentidp dev [--data DIR] [--addr HOST:PORT] [--internal-addr HOST:PORT] [--nats-listen HOST:PORT [--nats-no-auth]]
      Run every service in one process on embedded defaults (NATS, SQLite,
      in-process cache, local sealed secrets). State lives in DIR and survives
      restarts; the first start creates an organisation and an admin agent and
      prints its credentials once. --nats-listen exposes NATS (loopback unless
      a host is named) with the user and password of DIR/nats-credentials.json.
  agentidp bootstrap [--org-name NAME] [--org-slug SLUG] [--admin-email EMAIL]
      Create the first organisation and admin agent in the production
      databases (DATABASE_URL, TOKEN_DATABASE_SCHEMA, TIER_DATABASE_SCHEMA,
      TOKEN_SECRET_PEPPER). Idempotent: prints the secret only when it creates.
  agentidp admin reset-credentials [--data DIR] [--admin-email EMAIL | --agent ID]
      Offline recovery of a lost admin secret: revoke the admin agent's
      credentials, print a new secret once (audited). --data for a dev data
      directory, else DATABASE_URL, TOKEN_DATABASE_SCHEMA, TOKEN_SECRET_PEPPER.
  agentidp context --sub AGENT --org ORG --path /api/v1/agents [--method GET] [--scopes a,b] [--ttl 1h]
      Print a signed internal context header (AGENTIDP_INTERNAL_KEY) for
      calling a service directly in benchmarks.
  agentidp events replay --consumer NAME [--nats URL] [--data DIR] [--since T] [--until T] [--id EVENT_ID] [--dry-run]
      Republish a consumer's dead-lettered events to that consumer alone
      (idempotently), after the cause is fixed. See docs/operations.md.
  agentidp version
`)
}
