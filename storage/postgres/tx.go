package postgres

import (
	"context"
	"encoding/json"
	"net/netip"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/token"
)

// tx is a storage.Tx on one PostgreSQL transaction. In an Update, lock is
// " FOR UPDATE": every row read stays locked until the commit.
type tx struct {
	ctx    context.Context
	tx     pgx.Tx
	lock   string
	schema string
}

const accountColumns = `id, name, kind, team, scopes, disabled, created_at, limits, allowed_ips`

func scanAccount(row pgx.Row) (*storage.Account, error) {
	var a storage.Account
	var limits []windowJSON
	var ips []netip.Prefix
	if err := row.Scan(&a.ID, &a.Name, &a.Kind, &a.Team, &a.Scopes, &a.Disabled, &a.CreatedAt, &limits, &ips); err != nil {
		return nil, err
	}
	a.Policy = policyFrom(limits, ips)
	a.CreatedAt = a.CreatedAt.UTC()
	if a.Scopes == nil {
		a.Scopes = []string{}
	}
	return &a, nil
}

// roundTrip returns the context of one round trip of t to the server,
// bounded by roundTripTimeout.
func (t *tx) roundTrip() (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.ctx, roundTripTimeout)
}

// one reads one row with scan.
func one[T any](t *tx, what string, scan func(pgx.Row) (*T, error), sql string, args ...any) (*T, error) {
	ctx, cancel := t.roundTrip()
	defer cancel()
	v, err := scan(t.tx.QueryRow(ctx, sql+t.lock, args...))
	return v, wrapErr(what, err)
}

// many reads rows with scan.
func many[T any](t *tx, what string, scan func(pgx.Row) (*T, error), sql string, args ...any) ([]T, error) {
	ctx, cancel := t.roundTrip()
	defer cancel()
	rows, err := t.tx.Query(ctx, sql+t.lock, args...)
	if err != nil {
		return nil, wrapErr(what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, wrapErr(what, err)
		}
		out = append(out, *v)
	}
	return out, wrapErr(what, rows.Err())
}

// exec runs a statement; one that must touch a row and touches none is
// ErrNotFound.
func (t *tx) exec(what string, mustTouch bool, sql string, args ...any) error {
	ctx, cancel := t.roundTrip()
	defer cancel()
	tag, err := t.tx.Exec(ctx, sql, args...)
	if err != nil {
		return wrapErr(what, err)
	}
	if mustTouch && tag.RowsAffected() == 0 {
		return wrapErr(what, pgx.ErrNoRows)
	}
	return nil
}

// Account implements storage.Tx.
func (t *tx) Account(id string) (*storage.Account, error) {
	return one(t, "loading account", scanAccount, `SELECT `+accountColumns+` FROM accounts WHERE id = $1`, id)
}

// AccountByName implements storage.Tx.
func (t *tx) AccountByName(name string) (*storage.Account, error) {
	return one(t, "loading account", scanAccount, `SELECT `+accountColumns+` FROM accounts WHERE name = $1`, name)
}

// Accounts implements storage.Tx.
func (t *tx) Accounts(after string, limit int) ([]storage.Account, error) {
	return many(t, "listing accounts", scanAccount,
		`SELECT `+accountColumns+` FROM accounts WHERE id > $1 ORDER BY id LIMIT $2`, after, limit)
}

// PutAccount implements storage.Tx.
func (t *tx) PutAccount(a *storage.Account) error {
	limits, ips := policyColumns(&a.Policy)
	return t.exec("writing account", false, `INSERT INTO accounts (id, name, kind, team, scopes, disabled, created_at, limits, allowed_ips)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (id) DO UPDATE SET name = $2, kind = $3, team = $4, scopes = $5, disabled = $6,
			created_at = $7, limits = $8, allowed_ips = $9, updated_at = now()`,
		a.ID, a.Name, a.Kind, a.Team, a.Scopes, a.Disabled, a.CreatedAt, limits, ips)
}

// DeleteAccount implements storage.Tx.
func (t *tx) DeleteAccount(id string) error {
	return t.exec("deleting account", true, `DELETE FROM accounts WHERE id = $1`, id)
}

const keyColumns = `id, account_id, name, description, tags, scopes, created_at, created_by, limits, allowed_ips`

func scanKey(row pgx.Row) (*storage.Key, error) {
	var k storage.Key
	var limits []windowJSON
	var ips []netip.Prefix
	if err := row.Scan(&k.ID, &k.AccountID, &k.Name, &k.Description, &k.Tags, &k.Scopes, &k.CreatedAt, &k.CreatedBy,
		&limits, &ips); err != nil {
		return nil, err
	}
	k.Policy = policyFrom(limits, ips)
	k.CreatedAt = k.CreatedAt.UTC()
	return &k, nil
}

// Key implements storage.Tx.
func (t *tx) Key(id string) (*storage.Key, error) {
	return one(t, "loading key", scanKey, `SELECT `+keyColumns+` FROM keys WHERE id = $1`, id)
}

// Keys implements storage.Tx.
func (t *tx) Keys(q storage.KeyQuery) ([]storage.Key, error) {
	var tags map[string]string
	if len(q.Tags) > 0 {
		tags = q.Tags
	}
	return many(t, "listing keys", scanKey, `SELECT `+keyColumns+` FROM keys
		WHERE id > $1 AND ($2 = '' OR account_id = $2) AND ($3::jsonb IS NULL OR tags @> $3::jsonb)
		ORDER BY id LIMIT $4`, q.After, q.AccountID, tags, q.Limit)
}

// PutKey implements storage.Tx.
func (t *tx) PutKey(k *storage.Key) error {
	limits, ips := policyColumns(&k.Policy)
	return t.exec("writing key", false, `INSERT INTO keys (id, account_id, name, description, tags, scopes, created_at, created_by,
			limits, allowed_ips)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (id) DO UPDATE SET account_id = $2, name = $3, description = $4, tags = $5, scopes = $6,
			created_at = $7, created_by = $8, limits = $9, allowed_ips = $10, updated_at = now()`,
		k.ID, k.AccountID, k.Name, k.Description, k.Tags, k.Scopes, k.CreatedAt, k.CreatedBy, limits, ips)
}

// DeleteKey implements storage.Tx.
func (t *tx) DeleteKey(id string) error {
	return t.exec("deleting key", true, `DELETE FROM keys WHERE id = $1`, id)
}

const tokenColumns = `id, key_id, name, description, tags, hint, expires_at, created_at, last_used_at,
	coalesce(rotated_to, ''), rotated_at, hash`

func scanToken(row pgx.Row) (*storage.TokenRecord, error) {
	var r storage.TokenRecord
	var hash []byte
	if err := row.Scan(&r.ID, &r.KeyID, &r.Name, &r.Description, &r.Tags, &r.Hint, &r.ExpiresAt,
		&r.CreatedAt, &r.LastUsedAt, &r.RotatedTo, &r.RotatedAt, &hash); err != nil {
		return nil, err
	}
	copy(r.Hash[:], hash)
	r.CreatedAt = r.CreatedAt.UTC()
	r.ExpiresAt, r.LastUsedAt, r.RotatedAt = utcPtr(r.ExpiresAt), utcPtr(r.LastUsedAt), utcPtr(r.RotatedAt)
	return &r, nil
}

// Token implements storage.Tx.
func (t *tx) Token(id string) (*storage.TokenRecord, error) {
	return one(t, "loading token", scanToken, `SELECT `+tokenColumns+` FROM tokens WHERE id = $1`, id)
}

// TokenByHash implements storage.Tx.
func (t *tx) TokenByHash(hash token.Hash) (*storage.TokenRecord, error) {
	return one(t, "loading token", scanToken, `SELECT `+tokenColumns+` FROM tokens WHERE hash = $1`, hash[:])
}

// Tokens implements storage.Tx.
func (t *tx) Tokens(keyIDs ...string) ([]storage.TokenRecord, error) {
	return many(t, "loading tokens", scanToken,
		`SELECT `+tokenColumns+` FROM tokens WHERE key_id = ANY($1) ORDER BY id`, keyIDs)
}

// PutToken implements storage.Tx.
func (t *tx) PutToken(r *storage.TokenRecord) error {
	return t.exec("writing token", false, `INSERT INTO tokens (id, key_id, hash, hint, name, description, tags,
			expires_at, created_at, last_used_at, rotated_to, rotated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, nullif($11, ''), $12)
		ON CONFLICT (id) DO UPDATE SET key_id = $2, hash = $3, hint = $4, name = $5, description = $6, tags = $7,
			expires_at = $8, created_at = $9, last_used_at = $10, rotated_to = nullif($11, ''), rotated_at = $12`,
		r.ID, r.KeyID, r.Hash[:], r.Hint, r.Name, r.Description, r.Tags, r.ExpiresAt,
		r.CreatedAt, r.LastUsedAt, r.RotatedTo, r.RotatedAt)
}

// DeleteToken implements storage.Tx.
func (t *tx) DeleteToken(id string) error {
	return t.exec("deleting token", true, `DELETE FROM tokens WHERE id = $1`, id)
}

// AppendAudit implements storage.Tx.
func (t *tx) AppendAudit(e *storage.AuditEvent) error {
	return t.exec("recording audit event", false, `INSERT INTO audit_events (id, at, actor, action, target, account_id, details)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, e.ID, e.At, e.Actor, e.Action, e.Target, e.AccountID, e.Details)
}

func scanEvent(row pgx.Row) (*storage.AuditEvent, error) {
	var e storage.AuditEvent
	if err := row.Scan(&e.ID, &e.At, &e.Actor, &e.Action, &e.Target, &e.AccountID, &e.Details); err != nil {
		return nil, err
	}
	e.At = e.At.UTC()
	return &e, nil
}

// Audit implements storage.Tx.
func (t *tx) Audit(q storage.AuditQuery) ([]storage.AuditEvent, error) {
	before := q.Before
	if before == "" {
		before = "\U0010FFFF" // above every id: start at the newest
	}
	return many(t, "listing audit events", scanEvent, `SELECT id, at, actor, action, target, account_id, details
		FROM audit_events
		WHERE id < $1 AND ($2 = '' OR actor = $2) AND ($3 = '' OR action = $3) AND ($4 = '' OR target = $4)
			AND ($5 = '' OR account_id = $5)
		ORDER BY id DESC LIMIT $6`, before, q.Actor, q.Action, q.Target, q.AccountID, q.Limit)
}

// notice is the NOTIFY payload: the schema (several deployments may share
// a database) and what changed.
type notice struct {
	Schema   string   `json:"schema"`
	Tokens   []string `json:"tokens,omitempty"`
	Keys     []string `json:"keys,omitempty"`
	Accounts []string `json:"accounts,omitempty"`
	HashBits []uint16 `json:"hash_bits,omitempty"`
}

// Notify implements storage.Notifier: NOTIFY is delivered at commit, and
// not at all if the transaction rolls back.
func (t *tx) Notify(inv storage.Invalidation) error {
	payload, err := json.Marshal(notice{Schema: t.schema, Tokens: inv.Tokens, Keys: inv.Keys,
		Accounts: inv.Accounts, HashBits: inv.HashBits})
	if err != nil {
		return err
	}
	return t.exec("announcing the change", false, "SELECT pg_notify($1, $2)", NotifyChannel, string(payload))
}

// Interface guards
var (
	_ storage.Tx       = (*tx)(nil)
	_ storage.Notifier = (*tx)(nil)
)
