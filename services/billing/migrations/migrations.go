// Package migrations embeds the billing service's schema migrations in the
// layout sqlstore.DB.Migrate expects (postgres/NNNN_x.sql, sqlite/NNNN_x.sql).
package migrations

import "embed"

// FS holds the migrations.
//
//go:embed postgres/*.sql sqlite/*.sql
var FS embed.FS
