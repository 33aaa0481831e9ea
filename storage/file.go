package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/internal/scope"
)

// File is the embedded Store: one bbolt file, for a single gateway node.
// Every mutation is one bbolt transaction, fsynced before it returns; a
// second process opening the same file gets an error naming it.
type File struct {
	db   *bolt.DB
	path string

	mu       sync.RWMutex
	onChange []func(Invalidation)
}

// Buckets of the file store. Index buckets map "<parent>\x00<child>" to
// nothing, so a cursor seek lists a parent's children in id order.
var (
	bucketAccounts     = []byte("accounts")      // id → Account
	bucketAccountNames = []byte("account_names") // name → id
	bucketKeys         = []byte("keys")          // id → Key
	bucketAccountKeys  = []byte("account_keys")  // account \x00 key → ""
	bucketTokens       = []byte("tokens")        // id → TokenRecord
	bucketTokenHashes  = []byte("token_hashes")  // SHA-256 → token id
	bucketKeyTokens    = []byte("key_tokens")    // key \x00 token → ""
	bucketAudit        = []byte("audit")         // id → auditRecord
	allBuckets         = [][]byte{bucketAccounts, bucketAccountNames, bucketKeys, bucketAccountKeys,
		bucketTokens, bucketTokenHashes, bucketKeyTokens, bucketAudit}
)

type auditRecord struct {
	AuditEvent
	AccountID string `json:"account"`
}

// OpenFile opens (creating if needed) the file store at path.
func OpenFile(path string) (*File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating the directory of key store %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("opening key store %s: the file is in use by another process", path)
	}
	if err != nil {
		return nil, fmt.Errorf("opening key store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("preparing key store %s: %w", path, err)
	}
	return &File{db: db, path: path}, nil
}

// Path returns the store's file.
func (s *File) Path() string { return s.path }

// Close closes the file.
func (s *File) Close() { _ = s.db.Close() }

// OnChange implements Store.
func (s *File) OnChange(fn func(Invalidation)) {
	s.mu.Lock()
	s.onChange = append(s.onChange, fn)
	s.mu.Unlock()
}

// change runs fn in a write transaction and, after the commit, tells the
// listeners what changed.
func (s *File) change(what string, fn func(tx *bolt.Tx) (Invalidation, error)) error {
	var inv Invalidation
	err := s.db.Update(func(tx *bolt.Tx) error {
		var err error
		inv, err = fn(tx)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, fn := range s.onChange {
		fn(inv)
	}
	return nil
}

func getJSON(b *bolt.Bucket, key []byte, v any) error {
	raw := b.Get(key)
	if raw == nil {
		return ErrNotFound
	}
	return json.Unmarshal(raw, v)
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, raw)
}

func indexKey(parent, child string) []byte { return []byte(parent + "\x00" + child) }

// children lists the ids indexed under parent in an index bucket.
func children(b *bolt.Bucket, parent string) []string {
	var ids []string
	prefix := []byte(parent + "\x00")
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		ids = append(ids, string(k[len(prefix):]))
	}
	return ids
}

func fileAudit(tx *bolt.Tx, actor, action, target, account string, details map[string]any) error {
	if details == nil {
		details = map[string]any{}
	}
	// Round-trip details through JSON so reads return what was written.
	raw, err := json.Marshal(details)
	if err != nil {
		return err
	}
	var clean map[string]any
	if err := json.Unmarshal(raw, &clean); err != nil {
		return err
	}
	e := auditRecord{AuditEvent: AuditEvent{ID: NewID(AuditIDPrefix), At: now(), Actor: actor, Action: action, Target: target, Details: clean}, AccountID: account}
	return putJSON(tx.Bucket(bucketAudit), []byte(e.ID), e)
}

// now is the store's clock, in UTC at microsecond precision like PostgreSQL.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// LookupToken implements Store.
func (s *File) LookupToken(_ context.Context, hash Hash) (*Credential, error) {
	var c Credential
	err := s.db.View(func(tx *bolt.Tx) error {
		id := tx.Bucket(bucketTokenHashes).Get(hash[:])
		if id == nil {
			return ErrNotFound
		}
		var t TokenRecord
		if err := getJSON(tx.Bucket(bucketTokens), id, &t); err != nil {
			return err
		}
		var k Key
		if err := getJSON(tx.Bucket(bucketKeys), []byte(t.KeyID), &k); err != nil {
			return err
		}
		var a Account
		if err := getJSON(tx.Bucket(bucketAccounts), []byte(k.AccountID), &a); err != nil {
			return err
		}
		c = Credential{TokenID: t.ID, KeyID: k.ID, AccountID: a.ID, AccountName: a.Name, Team: a.Team,
			Scopes: effectiveScopes(k.Scopes, a.Scopes), Disabled: a.Disabled}
		if t.ExpiresAt != nil {
			c.ExpiresAt = *t.ExpiresAt
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("looking up token: %w", err)
	}
	c.JoinedScopes = scope.Join(c.Scopes)
	return &c, nil
}

// CreateAccount implements Store.
func (s *File) CreateAccount(_ context.Context, actor string, a *Account) error {
	if a.ID == "" {
		a.ID = NewID(AccountIDPrefix)
	}
	a.Scopes = nonNilScopes(a.Scopes)
	return s.change("creating account", func(tx *bolt.Tx) (Invalidation, error) {
		names := tx.Bucket(bucketAccountNames)
		if names.Get([]byte(a.Name)) != nil {
			return Invalidation{}, ErrConflict
		}
		a.CreatedAt = now()
		if err := putJSON(tx.Bucket(bucketAccounts), []byte(a.ID), a); err != nil {
			return Invalidation{}, err
		}
		if err := names.Put([]byte(a.Name), []byte(a.ID)); err != nil {
			return Invalidation{}, err
		}
		return Invalidation{}, fileAudit(tx, actor, "account.create", a.ID, a.ID, map[string]any{
			"name": a.Name, "kind": a.Kind, "team": a.Team, "scopes": a.Scopes, "disabled": a.Disabled,
		})
	})
}

// accountByRef finds an account by id or name.
func accountByRef(tx *bolt.Tx, ref string) (*Account, error) {
	var a Account
	err := getJSON(tx.Bucket(bucketAccounts), []byte(ref), &a)
	if errors.Is(err, ErrNotFound) {
		if id := tx.Bucket(bucketAccountNames).Get([]byte(ref)); id != nil {
			err = getJSON(tx.Bucket(bucketAccounts), id, &a)
		}
	}
	if err != nil {
		return nil, err
	}
	return &a, nil
}

// GetAccount implements Store.
func (s *File) GetAccount(_ context.Context, ref string) (*Account, error) {
	var out Account
	err := s.db.View(func(tx *bolt.Tx) error {
		a, err := accountByRef(tx, ref)
		if err != nil {
			return err
		}
		out = *a
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading account %s: %w", ref, err)
	}
	return &out, nil
}

// page walks bucket b in id order after the cursor after, calling add for
// each value until it returns false; it returns the cursor of the next page.
func page(b *bolt.Bucket, after string, limit int, add func(v []byte) (bool, error)) (string, error) {
	c := b.Cursor()
	k, v := c.First()
	if after != "" {
		k, v = c.Seek([]byte(after))
		if k != nil && string(k) == after {
			k, v = c.Next()
		}
	}
	n := 0
	last := ""
	for ; k != nil; k, v = c.Next() {
		if n == limit {
			return last, nil
		}
		ok, err := add(v)
		if err != nil {
			return "", err
		}
		if ok {
			n++
			last = string(k)
		}
	}
	return "", nil
}

// ListAccounts implements Store.
func (s *File) ListAccounts(_ context.Context, opts ListOptions) ([]Account, string, error) {
	accounts := []Account{}
	var next string
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		next, err = page(tx.Bucket(bucketAccounts), opts.After, pageSize(opts.Limit), func(v []byte) (bool, error) {
			var a Account
			if err := json.Unmarshal(v, &a); err != nil {
				return false, err
			}
			accounts = append(accounts, a)
			return true, nil
		})
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("listing accounts: %w", err)
	}
	return accounts, next, nil
}

// UpdateAccount implements Store.
func (s *File) UpdateAccount(_ context.Context, actor, id string, p AccountPatch) (*Account, error) {
	var out Account
	err := s.change("updating account "+id, func(tx *bolt.Tx) (Invalidation, error) {
		var a Account
		if err := getJSON(tx.Bucket(bucketAccounts), []byte(id), &a); err != nil {
			return Invalidation{}, err
		}
		details := map[string]any{}
		if p.Name != nil && *p.Name != a.Name {
			names := tx.Bucket(bucketAccountNames)
			if names.Get([]byte(*p.Name)) != nil {
				return Invalidation{}, ErrConflict
			}
			if err := names.Delete([]byte(a.Name)); err != nil {
				return Invalidation{}, err
			}
			if err := names.Put([]byte(*p.Name), []byte(id)); err != nil {
				return Invalidation{}, err
			}
			a.Name = *p.Name
			details["name"] = a.Name
		}
		if p.Team != nil {
			a.Team = *p.Team
			details["team"] = a.Team
		}
		if p.Scopes != nil {
			a.Scopes = nonNilScopes(*p.Scopes)
			details["scopes"] = a.Scopes
		}
		if p.Disabled != nil {
			a.Disabled = *p.Disabled
			details["disabled"] = a.Disabled
		}
		if err := putJSON(tx.Bucket(bucketAccounts), []byte(id), a); err != nil {
			return Invalidation{}, err
		}
		out = a
		if err := fileAudit(tx, actor, "account.update", id, id, details); err != nil {
			return Invalidation{}, err
		}
		return Invalidation{Accounts: []string{id}}, nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteAccount implements Store.
func (s *File) DeleteAccount(_ context.Context, actor, id string) error {
	return s.change("deleting account "+id, func(tx *bolt.Tx) (Invalidation, error) {
		var a Account
		if err := getJSON(tx.Bucket(bucketAccounts), []byte(id), &a); err != nil {
			return Invalidation{}, err
		}
		for _, keyID := range children(tx.Bucket(bucketAccountKeys), id) {
			if err := deleteKeyTx(tx, keyID); err != nil {
				return Invalidation{}, err
			}
		}
		if err := tx.Bucket(bucketAccounts).Delete([]byte(id)); err != nil {
			return Invalidation{}, err
		}
		if err := tx.Bucket(bucketAccountNames).Delete([]byte(a.Name)); err != nil {
			return Invalidation{}, err
		}
		err := fileAudit(tx, actor, "account.delete", id, id, map[string]any{"name": a.Name})
		return Invalidation{Accounts: []string{id}}, err
	})
}

// CreateKey implements Store.
func (s *File) CreateKey(_ context.Context, actor string, k *Key, first *NewToken) error {
	newKeyIDs(actor, k, first)
	return s.change("creating key", func(tx *bolt.Tx) (Invalidation, error) {
		var a Account
		if err := getJSON(tx.Bucket(bucketAccounts), []byte(k.AccountID), &a); err != nil {
			return Invalidation{}, err
		}
		k.CreatedAt = now()
		k.EffectiveScopes = effectiveScopes(k.Scopes, a.Scopes)
		rec := Key{ID: k.ID, AccountID: k.AccountID, Name: k.Name, Description: k.Description,
			Tags: tagsOrEmpty(k.Tags), Scopes: k.Scopes, CreatedAt: k.CreatedAt, CreatedBy: actor}
		if err := putJSON(tx.Bucket(bucketKeys), []byte(k.ID), rec); err != nil {
			return Invalidation{}, err
		}
		if err := tx.Bucket(bucketAccountKeys).Put(indexKey(k.AccountID, k.ID), nil); err != nil {
			return Invalidation{}, err
		}
		if err := insertTokenTx(tx, first); err != nil {
			return Invalidation{}, err
		}
		k.Tokens = append(k.Tokens, first.Token)
		err := fileAudit(tx, actor, "key.create", k.ID, k.AccountID, map[string]any{
			"account": k.AccountID, "name": k.Name, "scopes": k.Scopes, "tags": tagsOrEmpty(k.Tags), "token": first.ID,
		})
		return Invalidation{Hashes: []Hash{first.Hash}}, err
	})
}

func insertTokenTx(tx *bolt.Tx, t *NewToken) error {
	hashes := tx.Bucket(bucketTokenHashes)
	if hashes.Get(t.Hash[:]) != nil {
		return ErrConflict
	}
	t.CreatedAt = now()
	t.Tags = tagsOrEmpty(t.Tags)
	if t.ExpiresAt != nil {
		e := t.ExpiresAt.UTC().Truncate(time.Microsecond)
		t.ExpiresAt = &e
	}
	if err := putJSON(tx.Bucket(bucketTokens), []byte(t.ID), TokenRecord{Token: t.Token, Hash: t.Hash[:]}); err != nil {
		return err
	}
	if err := hashes.Put(t.Hash[:], []byte(t.ID)); err != nil {
		return err
	}
	return tx.Bucket(bucketKeyTokens).Put(indexKey(t.KeyID, t.ID), nil)
}

// loadKey reads a key with its account's scopes and its tokens.
func loadKey(tx *bolt.Tx, id string) (*Key, error) {
	var rec Key
	if err := getJSON(tx.Bucket(bucketKeys), []byte(id), &rec); err != nil {
		return nil, err
	}
	var a Account
	if err := getJSON(tx.Bucket(bucketAccounts), []byte(rec.AccountID), &a); err != nil {
		return nil, err
	}
	k := &Key{ID: rec.ID, AccountID: rec.AccountID, Name: rec.Name, Description: rec.Description,
		Tags: tagsOrEmpty(rec.Tags), Scopes: rec.Scopes, EffectiveScopes: effectiveScopes(rec.Scopes, a.Scopes),
		CreatedAt: rec.CreatedAt, CreatedBy: rec.CreatedBy, Tokens: []Token{}}
	for _, tid := range children(tx.Bucket(bucketKeyTokens), id) {
		var t TokenRecord
		if err := getJSON(tx.Bucket(bucketTokens), []byte(tid), &t); err != nil {
			return nil, err
		}
		k.Tokens = append(k.Tokens, t.Token)
	}
	return k, nil
}

// GetKey implements Store.
func (s *File) GetKey(_ context.Context, id string) (*Key, error) {
	var k *Key
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		k, err = loadKey(tx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("loading key %s: %w", id, err)
	}
	return k, nil
}

// ListKeys implements Store.
func (s *File) ListKeys(_ context.Context, f KeyFilter) ([]Key, string, error) {
	keys := []Key{}
	var next string
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		next, err = page(tx.Bucket(bucketKeys), f.After, pageSize(f.Limit), func(v []byte) (bool, error) {
			var rec Key
			if err := json.Unmarshal(v, &rec); err != nil {
				return false, err
			}
			if f.AccountID != "" && rec.AccountID != f.AccountID {
				return false, nil
			}
			for tk, tv := range f.Tags {
				if got, ok := rec.Tags[tk]; !ok || got != tv {
					return false, nil
				}
			}
			k, err := loadKey(tx, rec.ID)
			if err != nil {
				return false, err
			}
			keys = append(keys, *k)
			return true, nil
		})
		return err
	})
	if err != nil {
		return nil, "", fmt.Errorf("listing keys: %w", err)
	}
	return keys, next, nil
}

// deleteKeyTx deletes a key, its tokens and their indexes.
func deleteKeyTx(tx *bolt.Tx, id string) error {
	var rec Key
	if err := getJSON(tx.Bucket(bucketKeys), []byte(id), &rec); err != nil {
		return err
	}
	for _, tid := range children(tx.Bucket(bucketKeyTokens), id) {
		if _, err := deleteTokenTx(tx, id, tid); err != nil {
			return err
		}
	}
	if err := tx.Bucket(bucketAccountKeys).Delete(indexKey(rec.AccountID, id)); err != nil {
		return err
	}
	return tx.Bucket(bucketKeys).Delete([]byte(id))
}

// deleteTokenTx deletes a token of key keyID and returns it.
func deleteTokenTx(tx *bolt.Tx, keyID, tokenID string) (*TokenRecord, error) {
	var t TokenRecord
	if err := getJSON(tx.Bucket(bucketTokens), []byte(tokenID), &t); err != nil {
		return nil, err
	}
	if t.KeyID != keyID {
		return nil, ErrNotFound
	}
	// A token rotated to this one keeps retiring: only its link goes.
	tokens := tx.Bucket(bucketTokens)
	for _, other := range children(tx.Bucket(bucketKeyTokens), keyID) {
		var o TokenRecord
		if err := getJSON(tokens, []byte(other), &o); err != nil {
			return nil, err
		}
		if o.RotatedTo == tokenID {
			o.RotatedTo = ""
			if err := putJSON(tokens, []byte(other), o); err != nil {
				return nil, err
			}
		}
	}
	if err := tokens.Delete([]byte(tokenID)); err != nil {
		return nil, err
	}
	if err := tx.Bucket(bucketTokenHashes).Delete(t.Hash); err != nil {
		return nil, err
	}
	return &t, tx.Bucket(bucketKeyTokens).Delete(indexKey(keyID, tokenID))
}

// DeleteKey implements Store.
func (s *File) DeleteKey(_ context.Context, actor, id string) error {
	return s.change("deleting key "+id, func(tx *bolt.Tx) (Invalidation, error) {
		var rec Key
		if err := getJSON(tx.Bucket(bucketKeys), []byte(id), &rec); err != nil {
			return Invalidation{}, err
		}
		if err := deleteKeyTx(tx, id); err != nil {
			return Invalidation{}, err
		}
		err := fileAudit(tx, actor, "key.delete", id, rec.AccountID, nil)
		return Invalidation{Keys: []string{id}}, err
	})
}

// UpdateKey implements Store.
func (s *File) UpdateKey(_ context.Context, actor, id string, p KeyPatch) (*Key, error) {
	var out *Key
	err := s.change("updating key "+id, func(tx *bolt.Tx) (Invalidation, error) {
		var rec Key
		if err := getJSON(tx.Bucket(bucketKeys), []byte(id), &rec); err != nil {
			return Invalidation{}, err
		}
		details := map[string]any{}
		p.apply(&rec.Name, &rec.Description, &rec.Tags)
		p.audit(details)
		switch {
		case p.InheritScopes:
			rec.Scopes = nil
			details["scopes"] = nil
		case p.Scopes != nil:
			rec.Scopes = nonNilScopes(*p.Scopes)
			details["scopes"] = rec.Scopes
		}
		if err := putJSON(tx.Bucket(bucketKeys), []byte(id), rec); err != nil {
			return Invalidation{}, err
		}
		var err error
		if out, err = loadKey(tx, id); err != nil {
			return Invalidation{}, err
		}
		if err := fileAudit(tx, actor, "key.update", id, rec.AccountID, details); err != nil {
			return Invalidation{}, err
		}
		return Invalidation{Keys: []string{id}}, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// keyAccountTx returns the account of key keyID.
func keyAccountTx(tx *bolt.Tx, keyID string) (string, error) {
	var rec Key
	if err := getJSON(tx.Bucket(bucketKeys), []byte(keyID), &rec); err != nil {
		return "", err
	}
	return rec.AccountID, nil
}

// CreateToken implements Store.
func (s *File) CreateToken(_ context.Context, actor string, t *NewToken) error {
	if t.ID == "" {
		t.ID = NewID(TokenIDPrefix)
	}
	return s.change("creating token", func(tx *bolt.Tx) (Invalidation, error) {
		account, err := keyAccountTx(tx, t.KeyID)
		if err != nil {
			return Invalidation{}, err
		}
		if err := insertTokenTx(tx, t); err != nil {
			return Invalidation{}, err
		}
		err = fileAudit(tx, actor, "token.create", t.ID, account, map[string]any{
			"key": t.KeyID, "name": t.Name, "tags": t.Tags, "expires_at": t.ExpiresAt,
		})
		return Invalidation{Hashes: []Hash{t.Hash}}, err
	})
}

// tokenOfKey reads token tokenID of key keyID.
func tokenOfKey(tx *bolt.Tx, keyID, tokenID string) (*TokenRecord, error) {
	var t TokenRecord
	if err := getJSON(tx.Bucket(bucketTokens), []byte(tokenID), &t); err != nil {
		return nil, err
	}
	if t.KeyID != keyID {
		return nil, ErrNotFound
	}
	return &t, nil
}

// UpdateToken implements Store.
func (s *File) UpdateToken(_ context.Context, actor, keyID, tokenID string, p TokenPatch) (*Token, error) {
	var out Token
	err := s.change("updating token "+tokenID, func(tx *bolt.Tx) (Invalidation, error) {
		account, err := keyAccountTx(tx, keyID)
		if err != nil {
			return Invalidation{}, err
		}
		t, err := tokenOfKey(tx, keyID, tokenID)
		if err != nil {
			return Invalidation{}, err
		}
		if err := p.checkRetiring(&t.Token); err != nil {
			return Invalidation{}, err
		}
		details := map[string]any{"key": keyID}
		p.apply(&t.Name, &t.Description, &t.Tags)
		p.audit(details)
		switch {
		case p.ClearExpiry:
			t.ExpiresAt = nil
			details["expires_at"] = nil
		case p.ExpiresAt != nil:
			e := p.ExpiresAt.UTC().Truncate(time.Microsecond)
			t.ExpiresAt = &e
			details["expires_at"] = e
		}
		if err := putJSON(tx.Bucket(bucketTokens), []byte(tokenID), t); err != nil {
			return Invalidation{}, err
		}
		out = t.Token
		if err := fileAudit(tx, actor, "token.update", tokenID, account, details); err != nil {
			return Invalidation{}, err
		}
		return Invalidation{Tokens: []string{tokenID}}, nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// RotateToken implements Store.
func (s *File) RotateToken(_ context.Context, actor, keyID, tokenID string, next *NewToken, grace time.Duration) (*Token, error) {
	if next.ID == "" {
		next.ID = NewID(TokenIDPrefix)
	}
	var old *Token
	err := s.change("rotating token "+tokenID, func(tx *bolt.Tx) (Invalidation, error) {
		account, err := keyAccountTx(tx, keyID)
		if err != nil {
			return Invalidation{}, err
		}
		t, err := tokenOfKey(tx, keyID, tokenID)
		if err != nil {
			return Invalidation{}, err
		}
		if t.RotatedAt != nil {
			return Invalidation{}, fmt.Errorf("token %s was already rotated: %w", tokenID, ErrRetiring)
		}
		next.KeyID, next.Name, next.Description, next.Tags = keyID, t.Name, t.Description, t.Tags
		if err := insertTokenTx(tx, next); err != nil {
			return Invalidation{}, err
		}
		if grace <= 0 {
			if _, err := deleteTokenTx(tx, keyID, tokenID); err != nil {
				return Invalidation{}, err
			}
		} else {
			at := now()
			end := retireAt(at, t.ExpiresAt, grace)
			t.ExpiresAt, t.RotatedTo, t.RotatedAt = &end, next.ID, &at
			if err := putJSON(tx.Bucket(bucketTokens), []byte(tokenID), t); err != nil {
				return Invalidation{}, err
			}
			old = &t.Token
		}
		details := map[string]any{"key": keyID, "new_token": next.ID, "grace": grace.String()}
		if err := fileAudit(tx, actor, "token.rotate", tokenID, account, details); err != nil {
			return Invalidation{}, err
		}
		return Invalidation{Tokens: []string{tokenID}, Hashes: []Hash{next.Hash}}, nil
	})
	if err != nil {
		return nil, err
	}
	return old, nil
}

// DeleteToken implements Store.
func (s *File) DeleteToken(_ context.Context, actor, keyID, tokenID string) error {
	return s.change("deleting token "+tokenID, func(tx *bolt.Tx) (Invalidation, error) {
		account, err := keyAccountTx(tx, keyID)
		if err != nil {
			return Invalidation{}, err
		}
		if _, err := deleteTokenTx(tx, keyID, tokenID); err != nil {
			return Invalidation{}, err
		}
		err = fileAudit(tx, actor, "token.delete", tokenID, account, map[string]any{"key": keyID})
		return Invalidation{Tokens: []string{tokenID}}, err
	})
}

// RevokeToken implements Store.
func (s *File) RevokeToken(_ context.Context, actor string, hash Hash) (*Token, error) {
	var out Token
	err := s.change("revoking token", func(tx *bolt.Tx) (Invalidation, error) {
		id := tx.Bucket(bucketTokenHashes).Get(hash[:])
		if id == nil {
			return Invalidation{}, ErrNotFound
		}
		var t TokenRecord
		if err := getJSON(tx.Bucket(bucketTokens), id, &t); err != nil {
			return Invalidation{}, err
		}
		account, err := keyAccountTx(tx, t.KeyID)
		if err != nil {
			return Invalidation{}, err
		}
		if _, err := deleteTokenTx(tx, t.KeyID, t.ID); err != nil {
			return Invalidation{}, err
		}
		out = t.Token
		err = fileAudit(tx, actor, "token.revoke", t.ID, account, map[string]any{"key": t.KeyID, "hint": t.Hint})
		return Invalidation{Tokens: []string{t.ID}}, err
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// RecordUse implements Store.
func (s *File) RecordUse(_ context.Context, uses map[string]time.Time) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		tokens := tx.Bucket(bucketTokens)
		for id, at := range uses {
			var t TokenRecord
			if err := getJSON(tokens, []byte(id), &t); errors.Is(err, ErrNotFound) {
				continue // deleted since
			} else if err != nil {
				return err
			}
			at = at.UTC().Truncate(time.Microsecond)
			if t.LastUsedAt != nil && !t.LastUsedAt.Before(at) {
				continue
			}
			t.LastUsedAt = &at
			if err := putJSON(tokens, []byte(id), t); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("recording token use: %w", err)
	}
	return nil
}

// ListAudit implements Store.
func (s *File) ListAudit(_ context.Context, f AuditFilter) ([]AuditEvent, string, error) {
	limit := pageSize(f.Limit)
	events := []AuditEvent{}
	var next string
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		var k, v []byte
		if f.After == "" {
			k, v = c.Last()
		} else {
			// Newest first: the page after cursor After holds older ids.
			k, v = c.Seek([]byte(f.After))
			if k == nil {
				k, v = c.Last()
			}
			for k != nil && string(k) >= f.After {
				k, v = c.Prev()
			}
		}
		for ; k != nil; k, v = c.Prev() {
			var e auditRecord
			if err := json.Unmarshal(v, &e); err != nil {
				return err
			}
			if (f.Actor != "" && e.Actor != f.Actor) || (f.Action != "" && e.Action != f.Action) ||
				(f.Target != "" && e.Target != f.Target) || (f.Account != "" && e.AccountID != f.Account) {
				continue
			}
			if len(events) == limit {
				next = events[len(events)-1].ID
				return nil
			}
			events = append(events, e.AuditEvent)
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("listing audit events: %w", err)
	}
	return events, next, nil
}

// Interface guard
var _ Store = (*File)(nil)
