package bolt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/token"
)

// tx is a storage.Tx on one bbolt transaction.
type tx struct{ btx *bbolt.Tx }

func (t *tx) bucket(name []byte) *bbolt.Bucket { return t.btx.Bucket(name) }

// Account implements storage.Tx.
func (t *tx) Account(id string) (*storage.Account, error) {
	var r accountRecord
	if err := get(t.bucket(bucketAccounts), []byte(id), &r); err != nil {
		return nil, err
	}
	return r.account(), nil
}

// AccountByName implements storage.Tx.
func (t *tx) AccountByName(name string) (*storage.Account, error) {
	id := t.bucket(bucketAccountNames).Get([]byte(name))
	if id == nil {
		return nil, storage.ErrNotFound
	}
	return t.Account(string(id))
}

// Accounts implements storage.Tx.
func (t *tx) Accounts(after string, limit int) ([]storage.Account, error) {
	var out []storage.Account
	err := scan(t.bucket(bucketAccounts), after, func(_, v []byte) (bool, error) {
		var r accountRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return false, err
		}
		out = append(out, *r.account())
		return len(out) < limit, nil
	})
	return out, err
}

// PutAccount implements storage.Tx.
func (t *tx) PutAccount(a *storage.Account) error {
	names := t.bucket(bucketAccountNames)
	if id := names.Get([]byte(a.Name)); id != nil && string(id) != a.ID {
		return fmt.Errorf("account name %q: %w", a.Name, storage.ErrConflict)
	}
	if old, err := t.Account(a.ID); err == nil && old.Name != a.Name {
		if err := names.Delete([]byte(old.Name)); err != nil {
			return err
		}
	}
	if err := put(t.bucket(bucketAccounts), []byte(a.ID), fromAccount(a)); err != nil {
		return err
	}
	return names.Put([]byte(a.Name), []byte(a.ID))
}

// DeleteAccount implements storage.Tx.
func (t *tx) DeleteAccount(id string) error {
	a, err := t.Account(id)
	if err != nil {
		return err
	}
	if err := t.bucket(bucketAccountNames).Delete([]byte(a.Name)); err != nil {
		return err
	}
	return t.bucket(bucketAccounts).Delete([]byte(id))
}

// Key implements storage.Tx.
func (t *tx) Key(id string) (*storage.Key, error) {
	var r keyRecord
	if err := get(t.bucket(bucketKeys), []byte(id), &r); err != nil {
		return nil, err
	}
	return r.key(), nil
}

// Keys implements storage.Tx.
func (t *tx) Keys(q storage.KeyQuery) ([]storage.Key, error) {
	var out []storage.Key
	add := func(id []byte) (bool, error) {
		k, err := t.Key(string(id))
		if err != nil {
			return false, err
		}
		for name, v := range q.Tags {
			if got, ok := k.Tags[name]; !ok || got != v {
				return true, nil
			}
		}
		out = append(out, *k)
		return len(out) < q.Limit, nil
	}
	if q.AccountID == "" {
		return out, scan(t.bucket(bucketKeys), q.After, func(k, _ []byte) (bool, error) { return add(k) })
	}
	return out, children(t.bucket(bucketAccountKeys), q.AccountID, q.After, add)
}

// PutKey implements storage.Tx.
func (t *tx) PutKey(k *storage.Key) error {
	index := t.bucket(bucketAccountKeys)
	if old, err := t.Key(k.ID); err == nil && old.AccountID != k.AccountID {
		if err := index.Delete(indexKey(old.AccountID, k.ID)); err != nil {
			return err
		}
	}
	if err := put(t.bucket(bucketKeys), []byte(k.ID), fromKey(k)); err != nil {
		return err
	}
	return index.Put(indexKey(k.AccountID, k.ID), nil)
}

// DeleteKey implements storage.Tx.
func (t *tx) DeleteKey(id string) error {
	k, err := t.Key(id)
	if err != nil {
		return err
	}
	if err := t.bucket(bucketAccountKeys).Delete(indexKey(k.AccountID, id)); err != nil {
		return err
	}
	return t.bucket(bucketKeys).Delete([]byte(id))
}

// Token implements storage.Tx.
func (t *tx) Token(id string) (*storage.TokenRecord, error) {
	var r tokenRecord
	if err := get(t.bucket(bucketTokens), []byte(id), &r); err != nil {
		return nil, err
	}
	return r.token(), nil
}

// TokenByHash implements storage.Tx.
func (t *tx) TokenByHash(hash token.Hash) (*storage.TokenRecord, error) {
	id := t.bucket(bucketTokenHashes).Get(hash[:])
	if id == nil {
		return nil, storage.ErrNotFound
	}
	return t.Token(string(id))
}

// Tokens implements storage.Tx.
func (t *tx) Tokens(keyIDs ...string) ([]storage.TokenRecord, error) {
	var out []storage.TokenRecord
	for _, keyID := range keyIDs {
		err := children(t.bucket(bucketKeyTokens), keyID, "", func(id []byte) (bool, error) {
			tok, err := t.Token(string(id))
			if err != nil {
				return false, err
			}
			out = append(out, *tok)
			return true, nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// PutToken implements storage.Tx. It keeps the hash and key indexes
// exact when a token's hash or key changes.
func (t *tx) PutToken(tok *storage.TokenRecord) error {
	hashes, index := t.bucket(bucketTokenHashes), t.bucket(bucketKeyTokens)
	if id := hashes.Get(tok.Hash[:]); id != nil && string(id) != tok.ID {
		return fmt.Errorf("token %s: %w", tok.ID, storage.ErrConflict)
	}
	old, err := t.Token(tok.ID)
	switch {
	case err == nil:
		if old.Hash != tok.Hash {
			if err := hashes.Delete(old.Hash[:]); err != nil {
				return err
			}
		}
		if old.KeyID != tok.KeyID {
			if err := index.Delete(indexKey(old.KeyID, tok.ID)); err != nil {
				return err
			}
		}
	case !errors.Is(err, storage.ErrNotFound):
		return err
	}
	if err := put(t.bucket(bucketTokens), []byte(tok.ID), fromToken(tok)); err != nil {
		return err
	}
	if err := hashes.Put(tok.Hash[:], []byte(tok.ID)); err != nil {
		return err
	}
	return index.Put(indexKey(tok.KeyID, tok.ID), nil)
}

// DeleteToken implements storage.Tx.
func (t *tx) DeleteToken(id string) error {
	tok, err := t.Token(id)
	if err != nil {
		return err
	}
	if err := t.bucket(bucketTokenHashes).Delete(tok.Hash[:]); err != nil {
		return err
	}
	if err := t.bucket(bucketKeyTokens).Delete(indexKey(tok.KeyID, id)); err != nil {
		return err
	}
	return t.bucket(bucketTokens).Delete([]byte(id))
}

// AppendAudit implements storage.Tx.
func (t *tx) AppendAudit(e *storage.AuditEvent) error {
	return put(t.bucket(bucketAudit), []byte(e.ID), &auditRecord{ID: e.ID, At: e.At, Actor: e.Actor,
		Action: e.Action, Target: e.Target, Account: e.AccountID, Details: e.Details})
}

// Audit implements storage.Tx.
func (t *tx) Audit(q storage.AuditQuery) ([]storage.AuditEvent, error) {
	var out []storage.AuditEvent
	c := t.bucket(bucketAudit).Cursor()
	var k, v []byte
	if q.Before == "" {
		k, v = c.Last()
	} else {
		k, v = c.Seek([]byte(q.Before))
		if k == nil {
			k, v = c.Last()
		}
		for k != nil && string(k) >= q.Before {
			k, v = c.Prev()
		}
	}
	for ; k != nil && len(out) < q.Limit; k, v = c.Prev() {
		var r auditRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, err
		}
		if (q.Actor != "" && r.Actor != q.Actor) || (q.Action != "" && r.Action != q.Action) ||
			(q.Target != "" && r.Target != q.Target) || (q.AccountID != "" && r.Account != q.AccountID) {
			continue
		}
		out = append(out, r.event())
	}
	return out, nil
}

// scan calls fn with the records of b after the key after, in key order,
// while it returns true.
func scan(b *bbolt.Bucket, after string, fn func(k, v []byte) (bool, error)) error {
	c := b.Cursor()
	k, v := c.First()
	if after != "" {
		k, v = c.Seek([]byte(after))
		if k != nil && string(k) == after {
			k, v = c.Next()
		}
	}
	for ; k != nil; k, v = c.Next() {
		more, err := fn(k, v)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// children calls fn with the ids indexed under parent in an index
// bucket, after the id after, in id order, while it returns true.
func children(b *bbolt.Bucket, parent, after string, fn func(id []byte) (bool, error)) error {
	prefix := []byte(parent + "\x00")
	c := b.Cursor()
	k, _ := c.Seek(append(prefix, after...))
	if after != "" && k != nil && string(k[len(prefix):]) == after {
		k, _ = c.Next()
	}
	for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		more, err := fn(k[len(prefix):])
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// Interface guard
var _ storage.Tx = (*tx)(nil)
