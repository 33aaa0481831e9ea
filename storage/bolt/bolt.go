// Package bolt is Keygate's embedded backend: one bbolt file, for a single
// gateway node. It only stores records; the rules are the keystore's
// (package storage). Its Caddy module is apikeys.storage.file.
package bolt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/token"
)

// Backend is the file store. Every Update is one bbolt transaction (bbolt
// has one writer at a time, so Updates are serializable), fsynced before
// it returns; a second process opening the same file gets an error naming
// it.
type Backend struct {
	db   *bbolt.DB
	path string
}

// Open opens (creating if needed) the file store at path and migrates a
// file written by an older version to the current record format.
func Open(path string) (*Backend, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating the directory of key store %s: %w", path, err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: 2 * time.Second})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, fmt.Errorf("opening key store %s: the file is in use by another process", path)
	}
	if err != nil {
		return nil, fmt.Errorf("opening key store %s: %w", path, err)
	}
	if err := db.Update(prepare); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("preparing key store %s: %w", path, err)
	}
	return &Backend{db: db, path: path}, nil
}

// Path returns the store's file.
func (b *Backend) Path() string { return b.path }

// Close closes the file.
func (b *Backend) Close() error { return b.db.Close() }

// Update implements storage.Backend.
func (b *Backend) Update(_ context.Context, fn func(storage.Tx) error) error {
	return b.db.Update(func(btx *bbolt.Tx) error { return fn(&tx{btx}) })
}

// View implements storage.Backend.
func (b *Backend) View(_ context.Context, fn func(storage.Tx) error) error {
	return b.db.View(func(btx *bbolt.Tx) error { return fn(&tx{btx}) })
}

// LookupToken implements storage.Backend.
func (b *Backend) LookupToken(_ context.Context, hash token.Hash) (*storage.Lookup, error) {
	var l storage.Lookup
	err := b.db.View(func(btx *bbolt.Tx) error {
		tx := &tx{btx}
		t, err := tx.TokenByHash(hash)
		if err != nil {
			return err
		}
		k, err := tx.Key(t.KeyID)
		if err != nil {
			return err
		}
		a, err := tx.Account(k.AccountID)
		if err != nil {
			return err
		}
		l = storage.Lookup{TokenID: t.ID, ExpiresAt: t.ExpiresAt, KeyID: k.ID, KeyScopes: k.Scopes, KeyPolicy: k.Policy, Account: *a}
		if b, err := tx.CreditBalance(k.ID); err == nil {
			l.Credits = b
		} else if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("looking up token: %w", err)
	}
	return &l, nil
}

// RecordUse implements storage.Backend.
func (b *Backend) RecordUse(_ context.Context, uses map[string]time.Time) error {
	return b.db.Update(func(btx *bbolt.Tx) error {
		tokens := btx.Bucket(bucketTokens)
		for id, at := range uses {
			var r tokenRecord
			if err := get(tokens, []byte(id), &r); errors.Is(err, storage.ErrNotFound) {
				continue // deleted since
			} else if err != nil {
				return err
			}
			if r.LastUsedAt != nil && !r.LastUsedAt.Before(at) {
				continue
			}
			r.LastUsedAt = &at
			if err := put(tokens, []byte(id), &r); err != nil {
				return err
			}
		}
		return nil
	})
}

// Interface guard
var _ storage.Backend = (*Backend)(nil)
