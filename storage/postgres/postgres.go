// Package postgres is Keygate's PostgreSQL backend, for gateways that
// share one store. It only stores records; the rules are the keystore's
// (package storage). Changes are announced to other nodes with NOTIFY
// inside their transaction and followed with LISTEN. Its Caddy module is
// apikeys.storage.postgres.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
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

// Close closes the connection pool.
func (b *Backend) Close() error {
	b.pool.Close()
	return nil
}

// maxAttempts bounds the runs of one Update that PostgreSQL aborts for a
// deadlock or a serialization failure.
const maxAttempts = 5

// roundTripTimeout bounds each round trip of a transaction to the server:
// taking a pooled connection and BEGIN, each statement, COMMIT. A network
// path that dies silently (a dropped NAT entry, a pulled cable) answers
// nothing and fails nothing, and a pooled connection on it would hold an
// admin request forever; past the bound the round trip fails as
// storage.ErrUnavailable (503 with Retry-After), pgx closes the
// connection, and the next transaction gets a fresh one. The bound is per
// round trip, not per transaction, so a long export or a large cascade
// still completes; the request path has its own, shorter, bound
// (cache.DefaultLookupTimeout).
const roundTripTimeout = 5 * time.Second

// Update implements storage.Backend. Reads in fn lock the rows they find
// (SELECT … FOR UPDATE), so Updates that read the same record run one
// after the other; one that PostgreSQL aborts for a deadlock runs again.
func (b *Backend) Update(ctx context.Context, fn func(storage.Tx) error) error {
	var err error
	for range maxAttempts {
		err = b.inTx(ctx, pgx.TxOptions{}, " FOR UPDATE", fn)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || (pgErr.Code != "40P01" && pgErr.Code != "40001") {
			break
		}
	}
	return wrapErr("writing", err)
}

// View implements storage.Backend: one read-only snapshot.
func (b *Backend) View(ctx context.Context, fn func(storage.Tx) error) error {
	err := b.inTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, "", fn)
	return wrapErr("reading", err)
}

// inTx runs fn in one transaction, committed when fn returns nil, each
// round trip bounded by roundTripTimeout. lock ends every SELECT.
func (b *Backend) inTx(ctx context.Context, opts pgx.TxOptions, lock string, fn func(storage.Tx) error) error {
	beginCtx, cancel := context.WithTimeout(ctx, roundTripTimeout)
	ptx, err := b.pool.BeginTx(beginCtx, opts)
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		// A no-op after Commit; after a failure, the connection goes back
		// clean (or, if it is dead, is closed) even when ctx is done.
		rollbackCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), roundTripTimeout)
		defer cancel()
		_ = ptx.Rollback(rollbackCtx)
	}()
	if err := fn(&tx{ctx: ctx, tx: ptx, lock: lock, schema: b.schema}); err != nil {
		return err
	}
	commitCtx, cancel := context.WithTimeout(ctx, roundTripTimeout)
	defer cancel()
	return ptx.Commit(commitCtx)
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
