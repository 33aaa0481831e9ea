package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	bolt "go.etcd.io/bbolt"
)

// Export record types.
const (
	RecordAccount = "account"
	RecordKey     = "key"
	RecordToken   = "token"
)

// ExportRecord is one line of an export (JSON Lines): an account, a key or
// a token with its SHA-256. It never holds a token value: there is none.
type ExportRecord struct {
	Type    string       `json:"type"`
	Account *Account     `json:"account,omitempty"`
	Key     *Key         `json:"key,omitempty"`
	Token   *TokenRecord `json:"token,omitempty"`
}

// TokenRecord is a token with its hash, as exported.
type TokenRecord struct {
	Token
	Hash []byte `json:"hash"`
}

// Validate checks that the record holds what its type needs.
func (r *ExportRecord) Validate() error {
	switch {
	case r.Type == RecordAccount && r.Account != nil && r.Account.ID != "" && r.Account.Name != "":
	case r.Type == RecordKey && r.Key != nil && r.Key.ID != "" && r.Key.AccountID != "":
	case r.Type == RecordToken && r.Token != nil && r.Token.ID != "" && r.Token.KeyID != "" && len(r.Token.Hash) == len(Hash{}):
	default:
		return fmt.Errorf("%w: export record of type %q lacks its object, id, parent or hash", ErrInvalid, r.Type)
	}
	return nil
}

// Export implements Store.
func (s *Postgres) Export(ctx context.Context, emit func(ExportRecord) error) error {
	return pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+accountColumns+` FROM accounts ORDER BY id`)
		if err != nil {
			return wrapErr("exporting accounts", err)
		}
		accounts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Account, error) {
			var a Account
			return a, scanAccount(row, &a)
		})
		if err != nil {
			return wrapErr("exporting accounts", err)
		}
		for i := range accounts {
			if err := emit(ExportRecord{Type: RecordAccount, Account: &accounts[i]}); err != nil {
				return err
			}
		}
		rows, err = tx.Query(ctx, `SELECT `+keyColumns+` FROM keys k JOIN accounts a ON a.id = k.account_id ORDER BY k.id`)
		if err != nil {
			return wrapErr("exporting keys", err)
		}
		keys, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Key, error) {
			var k Key
			return k, scanKey(row, &k)
		})
		if err != nil {
			return wrapErr("exporting keys", err)
		}
		for i := range keys {
			if err := emit(ExportRecord{Type: RecordKey, Key: &keys[i]}); err != nil {
				return err
			}
		}
		rows, err = tx.Query(ctx, `SELECT `+tokenColumns+`, hash FROM tokens ORDER BY id DESC`)
		if err != nil {
			return wrapErr("exporting tokens", err)
		}
		defer rows.Close()
		for rows.Next() {
			var t TokenRecord
			if err := rows.Scan(&t.ID, &t.KeyID, &t.Name, &t.Description, &t.Tags, &t.Hint, &t.ExpiresAt,
				&t.CreatedAt, &t.LastUsedAt, &t.RotatedTo, &t.RotatedAt, &t.Hash); err != nil {
				return wrapErr("exporting tokens", err)
			}
			if err := emit(ExportRecord{Type: RecordToken, Token: &t}); err != nil {
				return err
			}
		}
		return wrapErr("exporting tokens", rows.Err())
	})
}

// Import implements Store.
func (s *Postgres) Import(ctx context.Context, actor string, rec ExportRecord) error {
	if err := rec.Validate(); err != nil {
		return err
	}
	return s.change(ctx, "importing "+rec.Type, func(tx pgx.Tx) (Invalidation, error) {
		switch rec.Type {
		case RecordAccount:
			a := rec.Account
			_, err := tx.Exec(ctx, `INSERT INTO accounts (id, name, kind, team, scopes, disabled, created_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7)
				ON CONFLICT (id) DO UPDATE SET name = $2, kind = $3, team = $4, scopes = $5, disabled = $6, updated_at = now()`,
				a.ID, a.Name, a.Kind, a.Team, nonNilScopes(a.Scopes), a.Disabled, a.CreatedAt)
			if err != nil {
				return Invalidation{}, wrapErr("importing account "+a.ID, err)
			}
			return Invalidation{Accounts: []string{a.ID}}, insertAudit(ctx, tx, actor, "account.import", a.ID, a.ID, nil)
		case RecordKey:
			k := rec.Key
			_, err := tx.Exec(ctx, `INSERT INTO keys (id, account_id, name, description, tags, scopes, created_at, created_by)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
				ON CONFLICT (id) DO UPDATE SET account_id = $2, name = $3, description = $4, tags = $5, scopes = $6, updated_at = now()`,
				k.ID, k.AccountID, k.Name, k.Description, tagsOrEmpty(k.Tags), k.Scopes, k.CreatedAt, k.CreatedBy)
			if err != nil {
				return Invalidation{}, wrapErr("importing key "+k.ID, err)
			}
			return Invalidation{Keys: []string{k.ID}}, insertAudit(ctx, tx, actor, "key.import", k.ID, k.AccountID, nil)
		default:
			t := rec.Token
			var account string
			if err := tx.QueryRow(ctx, `SELECT account_id FROM keys WHERE id = $1`, t.KeyID).Scan(&account); err != nil {
				return Invalidation{}, wrapErr("importing token "+t.ID, err)
			}
			// rotated_to is kept only when the successor exists (it was
			// exported first); rotated_at alone keeps the token retiring.
			_, err := tx.Exec(ctx, `INSERT INTO tokens (id, key_id, hash, hint, name, description, tags, expires_at,
					created_at, last_used_at, rotated_to, rotated_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
					(SELECT id FROM tokens WHERE id = nullif($11, '')), $12)
				ON CONFLICT (id) DO UPDATE SET key_id = $2, hash = $3, hint = $4, name = $5, description = $6, tags = $7,
					expires_at = $8, last_used_at = $10, rotated_to = (SELECT id FROM tokens WHERE id = nullif($11, '')), rotated_at = $12`,
				t.ID, t.KeyID, t.Hash, t.Hint, t.Name, t.Description, tagsOrEmpty(t.Tags), t.ExpiresAt,
				t.CreatedAt, t.LastUsedAt, t.RotatedTo, t.RotatedAt)
			if err != nil {
				return Invalidation{}, wrapErr("importing token "+t.ID, err)
			}
			var h Hash
			copy(h[:], t.Hash)
			return Invalidation{Tokens: []string{t.ID}, Hashes: []Hash{h}},
				insertAudit(ctx, tx, actor, "token.import", t.ID, account, map[string]any{"key": t.KeyID, "hint": t.Hint})
		}
	})
}

// Export implements Store.
func (s *File) Export(_ context.Context, emit func(ExportRecord) error) error {
	return s.db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketAccounts).ForEach(func(_, v []byte) error {
			var a Account
			if err := json.Unmarshal(v, &a); err != nil {
				return err
			}
			a.Scopes = nonNilScopes(a.Scopes)
			return emit(ExportRecord{Type: RecordAccount, Account: &a})
		})
		if err != nil {
			return fmt.Errorf("exporting accounts: %w", err)
		}
		err = tx.Bucket(bucketKeys).ForEach(func(k, _ []byte) error {
			key, err := loadKey(tx, string(k))
			if err != nil {
				return err
			}
			return emit(ExportRecord{Type: RecordKey, Key: key})
		})
		if err != nil {
			return fmt.Errorf("exporting keys: %w", err)
		}
		c := tx.Bucket(bucketTokens).Cursor()
		for k, v := c.Last(); k != nil; k, v = c.Prev() {
			var t TokenRecord
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("exporting tokens: %w", err)
			}
			if err := emit(ExportRecord{Type: RecordToken, Token: &t}); err != nil {
				return err
			}
		}
		return nil
	})
}

// Import implements Store.
func (s *File) Import(_ context.Context, actor string, rec ExportRecord) error {
	if err := rec.Validate(); err != nil {
		return err
	}
	return s.change("importing "+rec.Type, func(tx *bolt.Tx) (Invalidation, error) {
		switch rec.Type {
		case RecordAccount:
			a := rec.Account
			names := tx.Bucket(bucketAccountNames)
			if id := names.Get([]byte(a.Name)); id != nil && string(id) != a.ID {
				return Invalidation{}, fmt.Errorf("account name %q: %w", a.Name, ErrConflict)
			}
			var old Account
			if err := getJSON(tx.Bucket(bucketAccounts), []byte(a.ID), &old); err == nil && old.Name != a.Name {
				if err := names.Delete([]byte(old.Name)); err != nil {
					return Invalidation{}, err
				}
			}
			a.Scopes = nonNilScopes(a.Scopes)
			if err := putJSON(tx.Bucket(bucketAccounts), []byte(a.ID), a); err != nil {
				return Invalidation{}, err
			}
			if err := names.Put([]byte(a.Name), []byte(a.ID)); err != nil {
				return Invalidation{}, err
			}
			return Invalidation{Accounts: []string{a.ID}}, fileAudit(tx, actor, "account.import", a.ID, a.ID, nil)
		case RecordKey:
			k := rec.Key
			if tx.Bucket(bucketAccounts).Get([]byte(k.AccountID)) == nil {
				return Invalidation{}, fmt.Errorf("key %s: account %s: %w", k.ID, k.AccountID, ErrNotFound)
			}
			var old Key
			if err := getJSON(tx.Bucket(bucketKeys), []byte(k.ID), &old); err == nil && old.AccountID != k.AccountID {
				if err := tx.Bucket(bucketAccountKeys).Delete(indexKey(old.AccountID, k.ID)); err != nil {
					return Invalidation{}, err
				}
			}
			rec := Key{ID: k.ID, AccountID: k.AccountID, Name: k.Name, Description: k.Description,
				Tags: tagsOrEmpty(k.Tags), Scopes: k.Scopes, CreatedAt: k.CreatedAt, CreatedBy: k.CreatedBy}
			if err := putJSON(tx.Bucket(bucketKeys), []byte(k.ID), rec); err != nil {
				return Invalidation{}, err
			}
			if err := tx.Bucket(bucketAccountKeys).Put(indexKey(k.AccountID, k.ID), nil); err != nil {
				return Invalidation{}, err
			}
			return Invalidation{Keys: []string{k.ID}}, fileAudit(tx, actor, "key.import", k.ID, k.AccountID, nil)
		default:
			t := rec.Token
			account, err := keyAccountTx(tx, t.KeyID)
			if err != nil {
				return Invalidation{}, err
			}
			hashes := tx.Bucket(bucketTokenHashes)
			if id := hashes.Get(t.Hash); id != nil && string(id) != t.ID {
				return Invalidation{}, fmt.Errorf("token %s: its hash belongs to token %s: %w", t.ID, id, ErrConflict)
			}
			if err := unindexTokenTx(tx, t.ID); err != nil {
				return Invalidation{}, err
			}
			if t.RotatedTo != "" && tx.Bucket(bucketTokens).Get([]byte(t.RotatedTo)) == nil {
				t.RotatedTo = ""
			}
			if err := putJSON(tx.Bucket(bucketTokens), []byte(t.ID), t); err != nil {
				return Invalidation{}, err
			}
			if err := hashes.Put(t.Hash, []byte(t.ID)); err != nil {
				return Invalidation{}, err
			}
			if err := tx.Bucket(bucketKeyTokens).Put(indexKey(t.KeyID, t.ID), nil); err != nil {
				return Invalidation{}, err
			}
			var h Hash
			copy(h[:], t.Hash)
			return Invalidation{Tokens: []string{t.ID}, Hashes: []Hash{h}},
				fileAudit(tx, actor, "token.import", t.ID, account, map[string]any{"key": t.KeyID, "hint": t.Hint})
		}
	})
}

// unindexTokenTx removes the index entries of the stored token id, if
// there is one: its hash and its key's listing. A record replacing it,
// maybe under another key and with another hash, then leaves nothing of
// the old token: its old value must not verify as the new record.
func unindexTokenTx(tx *bolt.Tx, id string) error {
	var old TokenRecord
	err := getJSON(tx.Bucket(bucketTokens), []byte(id), &old)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketTokenHashes).Delete(old.Hash); err != nil {
		return err
	}
	return tx.Bucket(bucketKeyTokens).Delete(indexKey(old.KeyID, id))
}
