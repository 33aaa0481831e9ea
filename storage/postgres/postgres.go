package storage

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/keygate/keygate/internal/scope"
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

// Postgres is the Store on a PostgreSQL database.
type Postgres struct {
	pool   *pgxpool.Pool
	schema string

	mu       sync.RWMutex
	onChange []func(Invalidation)
}

// OpenPostgres connects to the database at dsn, applies pending migrations
// to schema under an advisory lock, and returns the store.
func OpenPostgres(ctx context.Context, dsn, schema string) (*Postgres, error) {
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
	s := &Postgres{pool: pool, schema: schema}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
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
func (s *Postgres) migrate(ctx context.Context) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("connecting to postgres: %w", err)
	}
	defer conn.Release()

	h := fnv.New64a()
	h.Write([]byte("keygate migrations " + s.schema))
	lockID := int64(h.Sum64())
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockID); err != nil {
		return fmt.Errorf("taking migration lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockID) //nolint:errcheck // the lock also ends with the session

	ident := pgx.Identifier{s.schema}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+ident); err != nil {
		return fmt.Errorf("creating schema %s: %w", s.schema, err)
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
			return fmt.Errorf("applying migration %s to schema %s: %w", base, s.schema, err)
		}
	}
	return nil
}

// Schema returns the PostgreSQL schema the store uses.
func (s *Postgres) Schema() string { return s.schema }

// Pool returns the store's connection pool.
func (s *Postgres) Pool() *pgxpool.Pool { return s.pool }

// Close closes the connection pool.
func (s *Postgres) Close() { s.pool.Close() }

// OnChange implements Store.
func (s *Postgres) OnChange(fn func(Invalidation)) {
	s.mu.Lock()
	s.onChange = append(s.onChange, fn)
	s.mu.Unlock()
}

// LookupToken implements Store. A failure that looks like a dropped
// connection is retried once: after a database restart, the first query on
// each stale pooled connection fails.
func (s *Postgres) LookupToken(ctx context.Context, hash Hash) (*Credential, error) {
	cred, err := s.lookupToken(ctx, hash)
	if err != nil && !errors.Is(err, ErrNotFound) && ctx.Err() == nil {
		cred, err = s.lookupToken(ctx, hash)
	}
	return cred, err
}

const lookupTokenSQL = `
SELECT t.id, t.expires_at, k.id, k.scopes, a.id, a.name, a.team, a.scopes, a.disabled
FROM tokens t
JOIN keys k ON k.id = t.key_id
JOIN accounts a ON a.id = k.account_id
WHERE t.hash = $1`

func (s *Postgres) lookupToken(ctx context.Context, hash Hash) (*Credential, error) {
	var (
		c             Credential
		expiresAt     *time.Time
		keyScopes     []string
		accountScopes []string
	)
	err := s.pool.QueryRow(ctx, lookupTokenSQL, hash[:]).Scan(
		&c.TokenID, &expiresAt, &c.KeyID, &keyScopes, &c.AccountID, &c.AccountName, &c.Team, &accountScopes, &c.Disabled)
	if err != nil {
		return nil, wrapErr("looking up token", err)
	}
	if expiresAt != nil {
		c.ExpiresAt = *expiresAt
	}
	c.Scopes = effectiveScopes(keyScopes, accountScopes)
	c.JoinedScopes = scope.Join(c.Scopes)
	return &c, nil
}

// effectiveScopes is what a key holds: its own scopes intersected with its
// account's, or the account's when the key has none of its own.
func effectiveScopes(keyScopes, accountScopes []string) []string {
	if keyScopes == nil {
		return scope.Normalize(accountScopes)
	}
	return scope.Intersect(keyScopes, accountScopes)
}

// wrapErr maps driver errors to the package's errors, with context.
func wrapErr(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505": // unique_violation
			return fmt.Errorf("%s: %w", what, ErrConflict)
		case "23503": // foreign_key_violation
			return fmt.Errorf("%s: %w", what, ErrNotFound)
		}
		if strings.HasPrefix(pgErr.Code, "22") { // data exception: bad bytes, out of range
			return fmt.Errorf("%s: %w", what, ErrInvalid)
		}
		if strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57") {
			return fmt.Errorf("%s: %w: %v", what, ErrUnavailable, err)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	var netErr net.Error
	if errors.As(err, &netErr) || pgconn.SafeToRetry(err) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.ErrUnexpectedEOF) || // the connection dropped mid-message
		strings.Contains(err.Error(), "connect") || strings.Contains(err.Error(), "closed") {
		return fmt.Errorf("%s: %w: %v", what, ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// change runs fn in a transaction that also announces the returned
// invalidation with NOTIFY, and after the commit tells this node's listeners.
func (s *Postgres) change(ctx context.Context, what string, fn func(pgx.Tx) (Invalidation, error)) error {
	var inv Invalidation
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if inv, err = fn(tx); err != nil {
			return err
		}
		if len(inv.Tokens)+len(inv.Keys)+len(inv.Accounts)+len(inv.Hashes) == 0 {
			return nil
		}
		for _, h := range inv.Hashes {
			inv.HashBits = append(inv.HashBits, h.Bits())
		}
		payload, err := json.Marshal(notice{Schema: s.schema, Invalidation: inv})
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "SELECT pg_notify($1, $2)", NotifyChannel, string(payload))
		return err
	})
	if err != nil {
		if isWrapped(err) {
			return fmt.Errorf("%s: %w", what, err)
		}
		return wrapErr(what, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, fn := range s.onChange {
		fn(inv)
	}
	return nil
}

// notice is the NOTIFY payload.
type notice struct {
	Schema string `json:"schema"`
	Invalidation
}

func isWrapped(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrConflict) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalid)
}

// insertAudit records one mutation, in its transaction. account is the
// account the target belongs to, so callers limited to one account can
// read its events.
func insertAudit(ctx context.Context, tx pgx.Tx, actor, action, target, account string, details map[string]any) error {
	if details == nil {
		details = map[string]any{}
	}
	_, err := tx.Exec(ctx, `INSERT INTO audit_events (id, actor, action, target, account_id, details) VALUES ($1, $2, $3, $4, $5, $6)`,
		NewID(AuditIDPrefix), actor, action, target, account, details)
	return wrapErr("recording audit event", err)
}

const accountColumns = `id, name, kind, team, scopes, disabled, created_at`

func scanAccount(row pgx.Row, a *Account) error {
	if err := row.Scan(&a.ID, &a.Name, &a.Kind, &a.Team, &a.Scopes, &a.Disabled, &a.CreatedAt); err != nil {
		return err
	}
	a.CreatedAt = a.CreatedAt.UTC()
	if a.Scopes == nil {
		a.Scopes = []string{}
	}
	return nil
}

// CreateAccount implements Store. It sets a.ID (when empty) and a.CreatedAt.
func (s *Postgres) CreateAccount(ctx context.Context, actor string, a *Account) error {
	if a.ID == "" {
		a.ID = NewID(AccountIDPrefix)
	}
	if a.Scopes == nil {
		a.Scopes = []string{}
	}
	return s.change(ctx, "creating account", func(tx pgx.Tx) (Invalidation, error) {
		err := tx.QueryRow(ctx, `INSERT INTO accounts (id, name, kind, team, scopes, disabled)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at`,
			a.ID, a.Name, a.Kind, a.Team, a.Scopes, a.Disabled).Scan(&a.CreatedAt)
		if err != nil {
			return Invalidation{}, wrapErr("inserting account", err)
		}
		a.CreatedAt = a.CreatedAt.UTC()
		return Invalidation{}, insertAudit(ctx, tx, actor, "account.create", a.ID, a.ID, map[string]any{
			"name": a.Name, "kind": a.Kind, "team": a.Team, "scopes": a.Scopes, "disabled": a.Disabled,
		})
	})
}

// GetAccount implements Store.
func (s *Postgres) GetAccount(ctx context.Context, ref string) (*Account, error) {
	var a Account
	err := scanAccount(s.pool.QueryRow(ctx, `SELECT `+accountColumns+` FROM accounts WHERE id = $1 OR name = $1`, ref), &a)
	if err != nil {
		return nil, wrapErr("loading account "+ref, err)
	}
	return &a, nil
}

// ListAccounts implements Store.
func (s *Postgres) ListAccounts(ctx context.Context, opts ListOptions) ([]Account, string, error) {
	limit := pageSize(opts.Limit)
	rows, err := s.pool.Query(ctx, `SELECT `+accountColumns+` FROM accounts WHERE id > $1 ORDER BY id LIMIT $2`,
		opts.After, limit+1)
	if err != nil {
		return nil, "", wrapErr("listing accounts", err)
	}
	defer rows.Close()
	accounts := []Account{}
	for rows.Next() {
		var a Account
		if err := scanAccount(rows, &a); err != nil {
			return nil, "", wrapErr("listing accounts", err)
		}
		accounts = append(accounts, a)
	}
	if err := rows.Err(); err != nil {
		return nil, "", wrapErr("listing accounts", err)
	}
	accounts, next := cutPage(accounts, limit, func(a Account) string { return a.ID })
	return accounts, next, nil
}

// UpdateAccount implements Store.
func (s *Postgres) UpdateAccount(ctx context.Context, actor, id string, p AccountPatch) (*Account, error) {
	var a Account
	var scopes []string
	if p.Scopes != nil {
		scopes = *p.Scopes
		if scopes == nil {
			scopes = []string{}
		}
	}
	err := s.change(ctx, "updating account "+id, func(tx pgx.Tx) (Invalidation, error) {
		err := scanAccount(tx.QueryRow(ctx, `UPDATE accounts SET
				name = coalesce($2, name), team = coalesce($3, team),
				scopes = coalesce($4, scopes), disabled = coalesce($5, disabled), updated_at = now()
			WHERE id = $1 RETURNING `+accountColumns, id, p.Name, p.Team, scopes, p.Disabled), &a)
		if err != nil {
			return Invalidation{}, wrapErr("updating account", err)
		}
		details := map[string]any{}
		if p.Name != nil {
			details["name"] = *p.Name
		}
		if p.Team != nil {
			details["team"] = *p.Team
		}
		if p.Scopes != nil {
			details["scopes"] = a.Scopes
		}
		if p.Disabled != nil {
			details["disabled"] = *p.Disabled
		}
		if err := insertAudit(ctx, tx, actor, "account.update", id, id, details); err != nil {
			return Invalidation{}, err
		}
		return Invalidation{Accounts: []string{id}}, nil
	})
	if err != nil {
		return nil, err
	}
	return &a, nil
}

// CreateKey implements Store. It sets the ids (when empty) and creation
// times of k and first, and appends first to k.Tokens.
func (s *Postgres) CreateKey(ctx context.Context, actor string, k *Key, first *NewToken) error {
	newKeyIDs(actor, k, first)
	return s.change(ctx, "creating key", func(tx pgx.Tx) (Invalidation, error) {
		var accountScopes []string
		err := tx.QueryRow(ctx, `INSERT INTO keys (id, account_id, name, description, tags, scopes, created_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			RETURNING created_at, (SELECT scopes FROM accounts WHERE id = $2)`,
			k.ID, k.AccountID, k.Name, k.Description, tagsOrEmpty(k.Tags), k.Scopes, actor).Scan(&k.CreatedAt, &accountScopes)
		if err != nil {
			return Invalidation{}, wrapErr("inserting key", err)
		}
		k.CreatedAt = k.CreatedAt.UTC()
		k.EffectiveScopes = effectiveScopes(k.Scopes, accountScopes)
		if err := insertToken(ctx, tx, first); err != nil {
			return Invalidation{}, err
		}
		k.Tokens = append(k.Tokens, first.Token)
		err = insertAudit(ctx, tx, actor, "key.create", k.ID, k.AccountID, map[string]any{
			"account": k.AccountID, "name": k.Name, "scopes": k.Scopes, "tags": tagsOrEmpty(k.Tags), "token": first.ID,
		})
		return Invalidation{Hashes: []Hash{first.Hash}}, err
	})
}

func insertToken(ctx context.Context, tx pgx.Tx, t *NewToken) error {
	err := tx.QueryRow(ctx, `INSERT INTO tokens (id, key_id, hash, hint, name, description, tags, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING created_at`,
		t.ID, t.KeyID, t.Hash[:], t.Hint, t.Name, t.Description, tagsOrEmpty(t.Tags), t.ExpiresAt).Scan(&t.CreatedAt)
	t.CreatedAt = t.CreatedAt.UTC()
	return wrapErr("inserting token", err)
}

func tagsOrEmpty(tags map[string]string) map[string]string {
	if tags == nil {
		return map[string]string{}
	}
	return tags
}

const keyColumns = `k.id, k.account_id, k.name, k.description, k.tags, k.scopes, k.created_at, k.created_by, a.scopes`

func scanKey(row pgx.Row, k *Key) error {
	var accountScopes []string
	if err := row.Scan(&k.ID, &k.AccountID, &k.Name, &k.Description, &k.Tags, &k.Scopes,
		&k.CreatedAt, &k.CreatedBy, &accountScopes); err != nil {
		return err
	}
	k.CreatedAt = k.CreatedAt.UTC()
	k.EffectiveScopes = effectiveScopes(k.Scopes, accountScopes)
	return nil
}

// GetKey implements Store.
func (s *Postgres) GetKey(ctx context.Context, id string) (*Key, error) {
	var k Key
	err := scanKey(s.pool.QueryRow(ctx, `SELECT `+keyColumns+` FROM keys k JOIN accounts a ON a.id = k.account_id WHERE k.id = $1`, id), &k)
	if err != nil {
		return nil, wrapErr("loading key "+id, err)
	}
	keys := []Key{k}
	if err := s.loadTokens(ctx, keys); err != nil {
		return nil, err
	}
	return &keys[0], nil
}

// ListKeys implements Store.
func (s *Postgres) ListKeys(ctx context.Context, f KeyFilter) ([]Key, string, error) {
	limit := pageSize(f.Limit)
	var tags map[string]string
	if len(f.Tags) > 0 {
		tags = f.Tags
	}
	rows, err := s.pool.Query(ctx, `SELECT `+keyColumns+` FROM keys k JOIN accounts a ON a.id = k.account_id
		WHERE k.id > $1 AND ($2 = '' OR k.account_id = $2) AND ($3::jsonb IS NULL OR k.tags @> $3::jsonb)
		ORDER BY k.id LIMIT $4`, f.After, f.AccountID, tags, limit+1)
	if err != nil {
		return nil, "", wrapErr("listing keys", err)
	}
	defer rows.Close()
	keys := []Key{}
	for rows.Next() {
		var k Key
		if err := scanKey(rows, &k); err != nil {
			return nil, "", wrapErr("listing keys", err)
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return nil, "", wrapErr("listing keys", err)
	}
	keys, next := cutPage(keys, limit, func(k Key) string { return k.ID })
	if err := s.loadTokens(ctx, keys); err != nil {
		return nil, "", err
	}
	return keys, next, nil
}

// loadTokens fills the Tokens of keys with one query.
func (s *Postgres) loadTokens(ctx context.Context, keys []Key) error {
	if len(keys) == 0 {
		return nil
	}
	ids := make([]string, len(keys))
	index := make(map[string]int, len(keys))
	for i := range keys {
		ids[i] = keys[i].ID
		index[keys[i].ID] = i
		keys[i].Tokens = []Token{}
	}
	rows, err := s.pool.Query(ctx, `SELECT id, key_id, name, description, tags, hint, expires_at, created_at,
			last_used_at, coalesce(rotated_to, ''), rotated_at
		FROM tokens WHERE key_id = ANY($1) ORDER BY id`, ids)
	if err != nil {
		return wrapErr("loading tokens", err)
	}
	defer rows.Close()
	for rows.Next() {
		var t Token
		if err := rows.Scan(&t.ID, &t.KeyID, &t.Name, &t.Description, &t.Tags, &t.Hint, &t.ExpiresAt,
			&t.CreatedAt, &t.LastUsedAt, &t.RotatedTo, &t.RotatedAt); err != nil {
			return wrapErr("loading tokens", err)
		}
		t.CreatedAt = t.CreatedAt.UTC()
		t.ExpiresAt = utcPtr(t.ExpiresAt)
		t.LastUsedAt = utcPtr(t.LastUsedAt)
		t.RotatedAt = utcPtr(t.RotatedAt)
		k := &keys[index[t.KeyID]]
		k.Tokens = append(k.Tokens, t)
	}
	return wrapErr("loading tokens", rows.Err())
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// DeleteKey implements Store.
func (s *Postgres) DeleteKey(ctx context.Context, actor, id string) error {
	return s.change(ctx, "deleting key "+id, func(tx pgx.Tx) (Invalidation, error) {
		var account string
		if err := tx.QueryRow(ctx, `DELETE FROM keys WHERE id = $1 RETURNING account_id`, id).Scan(&account); err != nil {
			return Invalidation{}, wrapErr("deleting key", err)
		}
		err := insertAudit(ctx, tx, actor, "key.delete", id, account, nil)
		return Invalidation{Keys: []string{id}}, err
	})
}

func pageSize(limit int) int {
	switch {
	case limit <= 0:
		return DefaultPageSize
	case limit > MaxPageSize:
		return MaxPageSize
	}
	return limit
}

// cutPage trims a result fetched with limit+1 rows to limit and returns the
// cursor of the next page, or "" on the last.
func cutPage[T any](items []T, limit int, id func(T) string) ([]T, string) {
	if len(items) <= limit {
		return items, ""
	}
	items = items[:limit]
	return items, id(items[limit-1])
}

// Interface guard
var _ Store = (*Postgres)(nil)
