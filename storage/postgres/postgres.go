// Package postgres is Keygate's PostgreSQL backend, for gateways that
// share one store. It only stores records; the rules are the keystore's
// (package storage). Changes are announced to other nodes with NOTIFY
// inside their transaction and followed with LISTEN. Its Caddy module is
// apikeys.storage.postgres.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/token"
)

// DefaultSchema is the PostgreSQL schema Keygate uses when none is set.
const DefaultSchema = "keygate"

// NotifyChannel is the PostgreSQL channel on which every committed change
// is announced, with a JSON payload naming the schema and what changed.
const NotifyChannel = "keygate"

//go:embed migrations/*.sql
var migrationFiles embed.FS

var schemaPattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ValidateSchema reports whether name is a usable PostgreSQL schema name.
func ValidateSchema(name string) error {
	if !schemaPattern.MatchString(name) || strings.HasPrefix(name, "pg_") {
		return fmt.Errorf("schema %q: must match [a-z_][a-z0-9_]{0,62} and not start with pg_", name)
	}
	return nil
}

// Backend is the store on a PostgreSQL database.
type Backend struct {
	pool   *pgxpool.Pool
	schema string
}

// Open connects to the database at dsn, applies pending migrations to
// schema under an advisory lock, and returns the backend.
func Open(ctx context.Context, dsn, schema string) (*Backend, error) {
	if err := ValidateSchema(schema); err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx errors may echo the DSN with its password; keep only the gist.
		return nil, fmt.Errorf("parsing postgres connection string: %w", redactDSNError(err))
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.ConnConfig.RuntimeParams["application_name"] = "keygate"
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to postgres: %w", err)
	}
	b := &Backend{pool: pool, schema: schema}
	if err := b.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return b, nil
}

func redactDSNError(err error) error {
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		return errors.New("invalid connection string (details withheld: it may hold a password)")
	}
	return err
}

// migrate applies the embedded migrations not yet recorded in
// schema_migrations. A session-level advisory lock per schema makes
// gateways that start together apply each migration exactly once.
func (b *Backend) migrate(ctx context.Context) error {
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
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+ident); err != nil {
		return fmt.Errorf("creating schema %s: %w", b.schema, err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+ident+`.schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("creating schema_migrations: %w", err)
	}
	var current int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+ident+".schema_migrations").Scan(&current); err != nil {
		return fmt.Errorf("reading schema version: %w", err)
	}

	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		version, err := strconv.Atoi(strings.SplitN(base, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migration %s: name must start with its version number", base)
		}
		if version <= current {
			continue
		}
		sql, err := migrationFiles.ReadFile(name)
		if err != nil {
			return err
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+ident); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, string(sql)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO "+ident+".schema_migrations (version, name) VALUES ($1, $2)", version, base)
			return err
		})
		if err != nil {
			return fmt.Errorf("applying migration %s to schema %s: %w", base, b.schema, err)
		}
	}
	return nil
}

// Close closes the connection pool.
func (b *Backend) Close() error {
	b.pool.Close()
	return nil
}

// maxAttempts bounds the runs of one Update that PostgreSQL aborts for a
// deadlock or a serialization failure.
const maxAttempts = 5

// Update implements storage.Backend. Reads in fn lock the rows they find
// (SELECT … FOR UPDATE), so Updates that read the same record run one
// after the other; one that PostgreSQL aborts for a deadlock runs again.
func (b *Backend) Update(ctx context.Context, fn func(storage.Tx) error) error {
	var err error
	for range maxAttempts {
		err = pgx.BeginFunc(ctx, b.pool, func(ptx pgx.Tx) error {
			return fn(&tx{ctx: ctx, tx: ptx, lock: " FOR UPDATE", schema: b.schema})
		})
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || (pgErr.Code != "40P01" && pgErr.Code != "40001") {
			break
		}
	}
	return wrapErr("writing", err)
}

// View implements storage.Backend: one read-only snapshot.
func (b *Backend) View(ctx context.Context, fn func(storage.Tx) error) error {
	err := pgx.BeginTxFunc(ctx, b.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(ptx pgx.Tx) error { return fn(&tx{ctx: ctx, tx: ptx, schema: b.schema}) })
	return wrapErr("reading", err)
}

const lookupTokenSQL = `
SELECT t.id, t.expires_at, k.id, k.scopes, k.limits, k.allowed_ips,
	a.id, a.name, a.team, a.scopes, a.disabled, a.limits, a.allowed_ips,
	c.key_id, c.remaining, c.refill_amount, c.refill_interval, c.refill_day, c.next_refill, c.epoch
FROM tokens t
JOIN keys k ON k.id = t.key_id
JOIN accounts a ON a.id = k.account_id
LEFT JOIN credits c ON c.key_id = k.id
WHERE t.hash = $1`

// LookupToken implements storage.Backend with one query. A failure that
// looks like a dropped connection is retried once: after a database
// restart, the first query on each stale pooled connection fails.
func (b *Backend) LookupToken(ctx context.Context, hash token.Hash) (*storage.Lookup, error) {
	l, err := b.lookupToken(ctx, hash)
	if err != nil && !errors.Is(err, storage.ErrNotFound) && ctx.Err() == nil {
		l, err = b.lookupToken(ctx, hash)
	}
	return l, err
}

func (b *Backend) lookupToken(ctx context.Context, hash token.Hash) (*storage.Lookup, error) {
	var l storage.Lookup
	a := &l.Account
	var keyLimits, accountLimits []windowJSON
	var keyIPs, accountIPs []netip.Prefix
	var credits balanceScan
	err := b.pool.QueryRow(ctx, lookupTokenSQL, hash[:]).Scan(append([]any{
		&l.TokenID, &l.ExpiresAt, &l.KeyID, &l.KeyScopes, &keyLimits, &keyIPs,
		&a.ID, &a.Name, &a.Team, &a.Scopes, &a.Disabled, &accountLimits, &accountIPs}, credits.dest()...)...)
	if err != nil {
		return nil, wrapErr("looking up token", err)
	}
	l.ExpiresAt = utcPtr(l.ExpiresAt)
	l.KeyPolicy, a.Policy = policyFrom(keyLimits, keyIPs), policyFrom(accountLimits, accountIPs)
	l.Credits = credits.balance()
	return &l, nil
}

// RecordUse implements storage.Backend, in one statement.
func (b *Backend) RecordUse(ctx context.Context, uses map[string]time.Time) error {
	ids := make([]string, 0, len(uses))
	ats := make([]time.Time, 0, len(uses))
	for id, at := range uses {
		ids = append(ids, id)
		ats = append(ats, at)
	}
	_, err := b.pool.Exec(ctx, `UPDATE tokens t SET last_used_at = u.at
		FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at)
		WHERE t.id = u.id AND (t.last_used_at IS NULL OR t.last_used_at < u.at)`, ids, ats)
	return wrapErr("recording token use", err)
}

// wrapErr maps driver errors to the storage errors, with context.
func wrapErr(what string, err error) error {
	if err == nil {
		return nil
	}
	if isWrapped(err) {
		return err
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, storage.ErrNotFound)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505": // unique_violation
			return fmt.Errorf("%s: %w", what, storage.ErrConflict)
		case "23503": // foreign_key_violation
			return fmt.Errorf("%s: %w", what, storage.ErrNotFound)
		}
		if strings.HasPrefix(pgErr.Code, "22") { // data exception: bad bytes, out of range
			return fmt.Errorf("%s: %w", what, storage.ErrInvalid)
		}
		if strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57") {
			return fmt.Errorf("%s: %w: %v", what, storage.ErrUnavailable, err)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	var netErr net.Error
	if errors.As(err, &netErr) || pgconn.SafeToRetry(err) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.ErrUnexpectedEOF) || // the connection dropped mid-message
		strings.Contains(err.Error(), "connect") || strings.Contains(err.Error(), "closed") {
		return fmt.Errorf("%s: %w: %v", what, storage.ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// isWrapped reports whether err already says what kind it is, such as a
// rule's answer from inside a transaction.
func isWrapped(err error) bool {
	var e *storage.Error
	return errors.As(err, &e) || errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrConflict) ||
		errors.Is(err, storage.ErrUnavailable) || errors.Is(err, storage.ErrInvalid) || errors.Is(err, storage.ErrForbidden)
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// Interface guards
var (
	_ storage.Backend  = (*Backend)(nil)
	_ storage.Listener = (*Backend)(nil)
)
