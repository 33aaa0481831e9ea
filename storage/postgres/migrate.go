package postgres

import (
	"context"
	"embed"
	"fmt"
	"hash/fnv"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one embedded schema migration.
type migration struct {
	version int
	name    string // the file name, as schema_migrations records it
	sql     []byte
}

// migrations returns the embedded migrations in version order.
func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	out := make([]migration, 0, len(names))
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		version, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return nil, fmt.Errorf("migration %s: name must start with its version number", base)
		}
		sql, err := migrationFiles.ReadFile(name)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: version, name: base, sql: sql})
	}
	return out, nil
}

// SchemaVersion is the schema version this build migrates to: the version
// of its last migration. A schema recorded at a higher version was
// migrated by a newer release, and Open refuses it.
func SchemaVersion() int {
	ms, err := migrations()
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// migrate applies the embedded migrations not yet recorded in
// schema_migrations. A session-level advisory lock per schema makes
// gateways that start together apply each migration exactly once. It
// creates the schema and the schema_migrations table only when they are
// missing: PostgreSQL checks the CREATE privilege (on the database, on the
// schema) for CREATE … IF NOT EXISTS even when the object exists, and a
// role given a schema of its own need not hold CREATE on the database. It
// refuses a schema migrated by a newer release, which this one may not
// read or write correctly.
func (b *Backend) migrate(ctx context.Context) error {
	all, err := migrations()
	if err != nil {
		return err
	}
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("connecting to postgres: %w", err)
	}
	defer conn.Release()

	h := fnv.New64a()
	h.Write([]byte("keygate migrations " + b.schema))
	lockID := int64(h.Sum64())
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockID); err != nil {
		return fmt.Errorf("taking migration lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockID) //nolint:errcheck // the lock also ends with the session

	ident := pgx.Identifier{b.schema}.Sanitize()
	var schemaExists, tableExists bool
	if err := conn.QueryRow(ctx, `SELECT
		EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1),
		to_regclass(quote_ident($1) || '.schema_migrations') IS NOT NULL`, b.schema).Scan(&schemaExists, &tableExists); err != nil {
		return fmt.Errorf("looking for schema %s: %w", b.schema, err)
	}
	if !schemaExists {
		if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+ident); err != nil {
			return fmt.Errorf("creating schema %s (the role needs CREATE on the database, or a schema made for it beforehand): %w", b.schema, err)
		}
	}
	if !tableExists {
		if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+ident+`.schema_migrations (
			version    integer PRIMARY KEY,
			name       text NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("creating %s.schema_migrations: %w", b.schema, err)
		}
	}
	var current int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+ident+".schema_migrations").Scan(&current); err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	}
	if latest := SchemaVersion(); current > latest {
		return fmt.Errorf("schema %s is at version %d, newer than version %d, the latest this Keygate knows: "+
			"a newer release migrated it; run that release (or a later one), or restore a backup taken before the upgrade",
			b.schema, current, latest)
	}

	for _, m := range all {
		if m.version <= current {
			continue
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+ident); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, string(m.sql)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO "+ident+".schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name)
			return err
		})
		if err != nil {
			return fmt.Errorf("applying migration %s to schema %s: %w", m.name, b.schema, err)
		}
	}
	return nil
}
