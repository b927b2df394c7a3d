package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/agentidp/agentidp/libs/config"
	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/services/token"
)

const adminUsage = `Usage:
  agentidp admin reset-credentials [--data DIR] [--admin-email EMAIL | --agent ID]
      Offline recovery of a lost admin secret: revoke every credential of the
      admin agent, create a new one and print its secret once. The change is
      audited (credential.revoked and credential.generated through the
      outbox). With --data it works on an agentidp dev data directory (stop
      agentidp dev first); without it, on the production token database
      (DATABASE_URL, TOKEN_DATABASE_SCHEMA, TOKEN_SECRET_PEPPER), after which
      restart the token service so that it mirrors the revocations.
`

// runAdmin runs the offline administration commands.
func runAdmin(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, adminUsage)
		return errors.New("admin: missing command")
	}
	switch args[0] {
	case "reset-credentials":
		return runResetCredentials(ctx, args[1:], getenv, stdout)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, adminUsage)
		return nil
	}
	fmt.Fprint(stdout, adminUsage)
	return fmt.Errorf("admin: unknown command %q", args[0])
}

func runResetCredentials(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	flags := flag.NewFlagSet("admin reset-credentials", flag.ContinueOnError)
	flags.SetOutput(stdout)
	dataDir := flags.String("data", "", "agentidp dev data directory (default: the production database of DATABASE_URL)")
	email := flags.String("admin-email", "admin@agentidp.local", "email of the admin agent")
	agentID := flags.String("agent", "", "id of the agent to reset (instead of --admin-email)")
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	var (
		db     *sqlstore.DB
		pepper []byte
		err    error
	)
	if *dataDir != "" {
		path := filepath.Join(*dataDir, "token.db")
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s does not exist: %s is not an agentidp dev data directory", path, *dataDir)
		}
		s, err := readSecrets(*dataDir)
		if err != nil {
			return err
		}
		pepper = mustHex(s.SecretPepper)
		if db, err = sqlstore.Open(ctx, sqlstore.Config{Driver: sqlstore.SQLite, URL: path}); err != nil {
			return fmt.Errorf("open %s: %w", path, err)
		}
	} else {
		env := config.New(getenv)
		url := env.Required("DATABASE_URL")
		schema := env.String("TOKEN_DATABASE_SCHEMA", "token")
		pepper = env.Key("TOKEN_SECRET_PEPPER", 32, true)
		if err := env.Err(); err != nil {
			return fmt.Errorf("configuration (or give --data DIR for an agentidp dev data directory):\n%w", err)
		}
		if db, err = openMigrated(ctx, url, schema, token.Migrations); err != nil {
			return fmt.Errorf("token database: %w", err)
		}
	}
	defer db.Close()
	res, err := token.ResetAdminCredentials(ctx, db, pepper, *agentID, *email)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked %d credential(s) of agent %s (organisation %s); the new credentials are shown once:\n",
		res.Revoked, res.AgentID, res.OrganizationID)
	fmt.Fprintf(stdout, "  client_id:     %s\n  client_secret: %s\n", res.AgentID, res.ClientSecret)
	return nil
}

// parseFlags parses args; -h/--help prints the usage and is not an error.
func parseFlags(flags *flag.FlagSet, args []string) error {
	err := flags.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		return errHelp
	}
	return err
}

// errHelp ends a command that printed its usage because it was asked to;
// run turns it into success.
var errHelp = errors.New("help requested")
