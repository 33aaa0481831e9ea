package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// DeleteAccount implements Store.
func (s *Postgres) DeleteAccount(ctx context.Context, actor, id string) error {
	return s.change(ctx, "deleting account "+id, func(tx pgx.Tx) (Invalidation, error) {
		var name string
		if err := tx.QueryRow(ctx, `DELETE FROM accounts WHERE id = $1 RETURNING name`, id).Scan(&name); err != nil {
			return Invalidation{}, wrapErr("deleting account", err)
		}
		err := insertAudit(ctx, tx, actor, "account.delete", id, id, map[string]any{"name": name})
		return Invalidation{Accounts: []string{id}}, err
	})
}

// UpdateKey implements Store.
func (s *Postgres) UpdateKey(ctx context.Context, actor, id string, p KeyPatch) (*Key, error) {
	var k Key
	err := s.change(ctx, "updating key "+id, func(tx pgx.Tx) (Invalidation, error) {
		var tags map[string]string
		if p.Tags != nil {
			tags = tagsOrEmpty(*p.Tags)
		}
		var scopes []string
		if p.Scopes != nil {
			scopes = nonNilScopes(*p.Scopes)
		}
		err := scanKey(tx.QueryRow(ctx, `WITH k AS (
				UPDATE keys SET name = coalesce($2, name), description = coalesce($3, description),
					tags = coalesce($4, tags),
					scopes = CASE WHEN $6 THEN NULL ELSE coalesce($5, scopes) END,
					updated_at = now()
				WHERE id = $1 RETURNING *)
			SELECT `+keyColumns+` FROM k JOIN accounts a ON a.id = k.account_id`,
			id, p.Name, p.Description, tags, scopes, p.InheritScopes), &k)
		if err != nil {
			return Invalidation{}, wrapErr("updating key", err)
		}
		details := map[string]any{}
		p.audit(details)
		if p.Scopes != nil || p.InheritScopes {
			details["scopes"] = k.Scopes
		}
		if err := insertAudit(ctx, tx, actor, "key.update", id, k.AccountID, details); err != nil {
			return Invalidation{}, err
		}
		return Invalidation{Keys: []string{id}}, nil
	})
	if err != nil {
		return nil, err
	}
	keys := []Key{k}
	if err := s.loadTokens(ctx, keys); err != nil {
		return nil, err
	}
	return &keys[0], nil
}

func nonNilScopes(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// keyAccount locks the key's row for the rest of tx, so concurrent token
// changes on one key run one after another, and returns its account.
func keyAccount(ctx context.Context, tx pgx.Tx, keyID string) (string, error) {
	var account string
	err := tx.QueryRow(ctx, `SELECT account_id FROM keys WHERE id = $1 FOR UPDATE`, keyID).Scan(&account)
	return account, wrapErr("loading key "+keyID, err)
}

// CreateToken implements Store. It sets t.ID (when empty) and t.CreatedAt.
func (s *Postgres) CreateToken(ctx context.Context, actor string, t *NewToken) error {
	if t.ID == "" {
		t.ID = NewID(TokenIDPrefix)
	}
	return s.change(ctx, "creating token", func(tx pgx.Tx) (Invalidation, error) {
		account, err := keyAccount(ctx, tx, t.KeyID)
		if err != nil {
			return Invalidation{}, err
		}
		if err := insertToken(ctx, tx, t); err != nil {
			return Invalidation{}, err
		}
		err = insertAudit(ctx, tx, actor, "token.create", t.ID, account, map[string]any{
			"key": t.KeyID, "name": t.Name, "tags": tagsOrEmpty(t.Tags), "expires_at": t.ExpiresAt,
		})
		return Invalidation{Hashes: []Hash{t.Hash}}, err
	})
}

const tokenColumns = `id, key_id, name, description, tags, hint, expires_at, created_at, last_used_at, coalesce(rotated_to, ''), rotated_at`

func scanToken(row pgx.Row, t *Token) error {
	if err := row.Scan(&t.ID, &t.KeyID, &t.Name, &t.Description, &t.Tags, &t.Hint, &t.ExpiresAt,
		&t.CreatedAt, &t.LastUsedAt, &t.RotatedTo, &t.RotatedAt); err != nil {
		return err
	}
	t.CreatedAt = t.CreatedAt.UTC()
	t.ExpiresAt = utcPtr(t.ExpiresAt)
	t.LastUsedAt = utcPtr(t.LastUsedAt)
	t.RotatedAt = utcPtr(t.RotatedAt)
	return nil
}

// lockToken reads token tokenID of key keyID and locks its row for the
// rest of tx, so the rules checked on it hold when tx writes.
func lockToken(ctx context.Context, tx pgx.Tx, keyID, tokenID string) (*Token, error) {
	var t Token
	err := scanToken(tx.QueryRow(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE id = $1 AND key_id = $2 FOR UPDATE`, tokenID, keyID), &t)
	if err != nil {
		return nil, wrapErr("loading token "+tokenID, err)
	}
	return &t, nil
}

// UpdateToken implements Store.
func (s *Postgres) UpdateToken(ctx context.Context, actor, keyID, tokenID string, p TokenPatch) (*Token, error) {
	var t Token
	err := s.change(ctx, "updating token "+tokenID, func(tx pgx.Tx) (Invalidation, error) {
		account, err := keyAccount(ctx, tx, keyID)
		if err != nil {
			return Invalidation{}, err
		}
		cur, err := lockToken(ctx, tx, keyID, tokenID)
		if err != nil {
			return Invalidation{}, err
		}
		if err := p.checkRetiring(cur); err != nil {
			return Invalidation{}, err
		}
		var tags map[string]string
		if p.Tags != nil {
			tags = tagsOrEmpty(*p.Tags)
		}
		err = scanToken(tx.QueryRow(ctx, `UPDATE tokens SET name = coalesce($3, name),
				description = coalesce($4, description), tags = coalesce($5, tags),
				expires_at = CASE WHEN $7 THEN NULL ELSE coalesce($6, expires_at) END
			WHERE id = $1 AND key_id = $2 RETURNING `+tokenColumns,
			tokenID, keyID, p.Name, p.Description, tags, p.ExpiresAt, p.ClearExpiry), &t)
		if err != nil {
			return Invalidation{}, wrapErr("updating token", err)
		}
		details := map[string]any{"key": keyID}
		p.audit(details)
		if p.ExpiresAt != nil || p.ClearExpiry {
			details["expires_at"] = t.ExpiresAt
		}
		if err := insertAudit(ctx, tx, actor, "token.update", tokenID, account, details); err != nil {
			return Invalidation{}, err
		}
		return Invalidation{Tokens: []string{tokenID}}, nil
	})
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// RotateToken implements Store.
func (s *Postgres) RotateToken(ctx context.Context, actor, keyID, tokenID string, next *NewToken, grace time.Duration) (*Token, error) {
	if next.ID == "" {
		next.ID = NewID(TokenIDPrefix)
	}
	var old Token
	deleted := grace <= 0
	err := s.change(ctx, "rotating token "+tokenID, func(tx pgx.Tx) (Invalidation, error) {
		account, err := keyAccount(ctx, tx, keyID)
		if err != nil {
			return Invalidation{}, err
		}
		cur, err := lockToken(ctx, tx, keyID, tokenID)
		if err != nil {
			return Invalidation{}, err
		}
		old = *cur
		if old.RotatedAt != nil {
			return Invalidation{}, fmt.Errorf("token %s was already rotated: %w", tokenID, ErrRetiring)
		}
		next.KeyID, next.Name, next.Description, next.Tags = keyID, old.Name, old.Description, old.Tags
		if err := insertToken(ctx, tx, next); err != nil {
			return Invalidation{}, err
		}
		if deleted {
			_, err = tx.Exec(ctx, `DELETE FROM tokens WHERE id = $1`, tokenID)
		} else {
			at := now()
			err = scanToken(tx.QueryRow(ctx, `UPDATE tokens SET rotated_to = $2, rotated_at = $3, expires_at = $4
				WHERE id = $1 RETURNING `+tokenColumns, tokenID, next.ID, at, retireAt(at, old.ExpiresAt, grace)), &old)
		}
		if err != nil {
			return Invalidation{}, wrapErr("retiring token", err)
		}
		details := map[string]any{"key": keyID, "new_token": next.ID, "grace": grace.String()}
		if err := insertAudit(ctx, tx, actor, "token.rotate", tokenID, account, details); err != nil {
			return Invalidation{}, err
		}
		return Invalidation{Tokens: []string{tokenID}, Hashes: []Hash{next.Hash}}, nil
	})
	if err != nil || deleted {
		return nil, err
	}
	return &old, nil
}

// DeleteToken implements Store.
func (s *Postgres) DeleteToken(ctx context.Context, actor, keyID, tokenID string) error {
	return s.change(ctx, "deleting token "+tokenID, func(tx pgx.Tx) (Invalidation, error) {
		account, err := keyAccount(ctx, tx, keyID)
		if err != nil {
			return Invalidation{}, err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM tokens WHERE id = $1 AND key_id = $2`, tokenID, keyID)
		if err != nil {
			return Invalidation{}, wrapErr("deleting token", err)
		}
		if tag.RowsAffected() == 0 {
			return Invalidation{}, fmt.Errorf("deleting token %s: %w", tokenID, ErrNotFound)
		}
		err = insertAudit(ctx, tx, actor, "token.delete", tokenID, account, map[string]any{"key": keyID})
		return Invalidation{Tokens: []string{tokenID}}, err
	})
}

// RevokeToken implements Store.
func (s *Postgres) RevokeToken(ctx context.Context, actor string, hash Hash) (*Token, error) {
	var t Token
	err := s.change(ctx, "revoking token", func(tx pgx.Tx) (Invalidation, error) {
		err := scanToken(tx.QueryRow(ctx, `DELETE FROM tokens WHERE hash = $1 RETURNING `+tokenColumns, hash[:]), &t)
		if err != nil {
			return Invalidation{}, wrapErr("revoking token", err)
		}
		var account string
		if err := tx.QueryRow(ctx, `SELECT account_id FROM keys WHERE id = $1`, t.KeyID).Scan(&account); err != nil {
			return Invalidation{}, wrapErr("loading key", err)
		}
		err = insertAudit(ctx, tx, actor, "token.revoke", t.ID, account, map[string]any{"key": t.KeyID, "hint": t.Hint})
		return Invalidation{Tokens: []string{t.ID}}, err
	})
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// ListAudit implements Store.
func (s *Postgres) ListAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, string, error) {
	limit := pageSize(f.Limit)
	after := f.After
	if after == "" {
		after = "\U0010FFFF" // above every id: start at the newest
	}
	rows, err := s.pool.Query(ctx, `SELECT id, at, actor, action, target, details FROM audit_events
		WHERE id < $1 AND ($2 = '' OR actor = $2) AND ($3 = '' OR action = $3) AND ($4 = '' OR target = $4)
			AND ($5 = '' OR account_id = $5)
		ORDER BY id DESC LIMIT $6`, after, f.Actor, f.Action, f.Target, f.Account, limit+1)
	if err != nil {
		return nil, "", wrapErr("listing audit events", err)
	}
	defer rows.Close()
	events := []AuditEvent{}
	for rows.Next() {
		var e AuditEvent
		if err := rows.Scan(&e.ID, &e.At, &e.Actor, &e.Action, &e.Target, &e.Details); err != nil {
			return nil, "", wrapErr("listing audit events", err)
		}
		e.At = e.At.UTC()
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", wrapErr("listing audit events", err)
	}
	events, next := cutPage(events, limit, func(e AuditEvent) string { return e.ID })
	return events, next, nil
}

// RecordUse implements Store.
func (s *Postgres) RecordUse(ctx context.Context, uses map[string]time.Time) error {
	ids := make([]string, 0, len(uses))
	ats := make([]time.Time, 0, len(uses))
	for id, at := range uses {
		ids = append(ids, id)
		ats = append(ats, at)
	}
	_, err := s.pool.Exec(ctx, `UPDATE tokens t SET last_used_at = u.at
		FROM unnest($1::text[], $2::timestamptz[]) AS u(id, at)
		WHERE t.id = u.id AND (t.last_used_at IS NULL OR t.last_used_at < u.at)`, ids, ats)
	return wrapErr("recording token use", err)
}
