package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"

	"github.com/agentidp/agentidp/libs/config"
	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/svcrun"
	"github.com/agentidp/agentidp/services/tier"
	"github.com/agentidp/agentidp/services/token"
)

// bootstrapOptions name the first organisation and its admin agent.
type bootstrapOptions struct {
	OrgName, OrgSlug, AdminEmail string
}

func (o *bootstrapOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.OrgName, "org-name", "Default Organization", "name of the first organisation")
	fs.StringVar(&o.OrgSlug, "org-slug", "default", "slug of the first organisation")
	fs.StringVar(&o.AdminEmail, "admin-email", "admin@agentidp.local", "email of the admin agent")
}

// runBootstrap creates the first organisation and admin agent directly in
// the tier and token databases (migrating them first). The events go
// through each service's outbox, so the services publish them when they run.
func runBootstrap(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	flags := flag.NewFlagSet("bootstrap", flag.ContinueOnError)
	var o bootstrapOptions
	o.register(flags)
	flags.SetOutput(stdout)
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	env := config.New(getenv)
	url := env.Required("DATABASE_URL")
	tokenSchema := env.String("TOKEN_DATABASE_SCHEMA", "token")
	tierSchema := env.String("TIER_DATABASE_SCHEMA", "tier")
	pepper := env.Key("TOKEN_SECRET_PEPPER", 32, true)
	if err := env.Err(); err != nil {
		return fmt.Errorf("configuration:\n%w", err)
	}
	tierDB, err := openMigrated(ctx, url, tierSchema, tier.Migrations)
	if err != nil {
		return fmt.Errorf("tier database: %w", err)
	}
	defer tierDB.Close()
	tokenDB, err := openMigrated(ctx, url, tokenSchema, token.Migrations)
	if err != nil {
		return fmt.Errorf("token database: %w", err)
	}
	defer tokenDB.Close()
	return bootstrap(ctx, tierDB, tokenDB, pepper, o, stdout)
}

func openMigrated(ctx context.Context, url, schema string, migrations fs.FS) (*sqlstore.DB, error) {
	cfg, err := svcrun.DBConfig(url, schema, 4)
	if err != nil {
		return nil, err
	}
	db, err := sqlstore.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx, migrations); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// bootstrap is shared by `agentidp bootstrap` and the first start of
// `agentidp dev`. It prints the secret only when it creates the agent.
func bootstrap(ctx context.Context, tierDB, tokenDB *sqlstore.DB, pepper []byte, o bootstrapOptions, stdout io.Writer) error {
	org, orgCreated, err := tier.Bootstrap(ctx, tierDB, o.OrgName, o.OrgSlug)
	if err != nil {
		return fmt.Errorf("bootstrap organisation: %w", err)
	}
	agentID, secret, created, err := token.Bootstrap(ctx, tokenDB, pepper, org.ID, o.AdminEmail)
	if err != nil {
		return fmt.Errorf("bootstrap admin agent: %w", err)
	}
	if orgCreated {
		fmt.Fprintf(stdout, "created organisation %q (%s)\n", o.OrgSlug, org.ID)
	} else {
		fmt.Fprintf(stdout, "organisation %q exists (%s)\n", o.OrgSlug, org.ID)
	}
	if !created {
		fmt.Fprintf(stdout, "admin agent %s exists (%s); its secret was shown when it was created — rotate its credential to get a new one\n", o.AdminEmail, agentID)
		return nil
	}
	fmt.Fprintf(stdout, "created admin agent %s with every admin scope. Its credentials are shown once:\n", o.AdminEmail)
	fmt.Fprintf(stdout, "  client_id:     %s\n  client_secret: %s\n", agentID, secret)
	return nil
}
