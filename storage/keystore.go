// Package storage is Keygate's keystore: accounts, keys, tokens and audit
// events, and every rule about them (ids, grants and visibility, rotation
// and grace, expiry, cascades, audit, change notices, export and import),
// written once over the narrow record interface Backend. The backends
// (storage/postgres, storage/bolt) only store records; storage/token is the
// token format and storage/cache the verification cache.
package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/internal/scope"
	"github.com/keygate/keygate/storage/token"
)

// Keystore is the key store service. Every mutation is one backend
// transaction that also records its audit event and announces what
// changed. It is safe for concurrent use.
type Keystore struct {
	backend Backend

	mu       sync.RWMutex
	onChange []func(Invalidation)

	// lastPrune is when SyncWindows last pruned counts (Unix ns).
	lastPrune atomic.Int64
}

// New returns the keystore over b.
func New(b Backend) *Keystore {
	return &Keystore{backend: b}
}

// Backend returns the keystore's backend.
func (ks *Keystore) Backend() Backend { return ks.backend }

// Close closes the backend.
func (ks *Keystore) Close() error { return ks.backend.Close() }

// OnChange registers fn to be called after every committed change made
// through this keystore, so this node's cache drops what changed at once.
func (ks *Keystore) OnChange(fn func(Invalidation)) {
	ks.mu.Lock()
	ks.onChange = append(ks.onChange, fn)
	ks.mu.Unlock()
}

// Listener returns the backend as a Listener, or nil when it does not
// follow other nodes' changes (a store for one node).
func (ks *Keystore) Listener() Listener {
	l, _ := ks.backend.(Listener)
	return l
}

// LookupToken returns the credential of the token with this hash, or
// ErrNotFound.
func (ks *Keystore) LookupToken(ctx context.Context, hash token.Hash) (*Credential, error) {
	l, err := ks.backend.LookupToken(ctx, hash)
	if err != nil {
		return nil, err
	}
	c := &Credential{
		TokenID: l.TokenID, KeyID: l.KeyID, AccountID: l.Account.ID, AccountName: l.Account.Name,
		Team: l.Account.Team, Scopes: effectiveScopes(l.KeyScopes, l.Account.Scopes), Disabled: l.Account.Disabled,
		KeyPolicy: l.KeyPolicy, AccountPolicy: l.Account.Policy,
	}
	c.AccountPolicy.Credits = nil
	c.KeyPolicy.Credits = nil
	if l.Credits != nil {
		c.KeyPolicy.Credits = l.Credits.credits(now())
	}
	if l.ExpiresAt != nil {
		c.ExpiresAt = *l.ExpiresAt
	}
	c.JoinedScopes = scope.Join(c.Scopes)
	return c, nil
}

// RecordUse writes the last-used times of tokens (never backwards), in
// one backend write, without an audit event or change notice. It is the
// entry point of the cache's batched use records.
func (ks *Keystore) RecordUse(ctx context.Context, uses map[string]time.Time) error {
	if len(uses) == 0 {
		return nil
	}
	clean := make(map[string]time.Time, len(uses))
	for id, at := range uses {
		clean[id] = at.UTC().Truncate(time.Microsecond)
	}
	if err := ks.backend.RecordUse(ctx, clean); err != nil {
		return fmt.Errorf("recording token use: %w", err)
	}
	return nil
}

// effectiveScopes is what a key holds: its own scopes intersected with its
// account's, or the account's when the key has none of its own.
func effectiveScopes(keyScopes, accountScopes []string) []string {
	if keyScopes == nil {
		return scope.Normalize(accountScopes)
	}
	return scope.Intersect(keyScopes, accountScopes)
}

// now is the keystore's clock, in UTC at microsecond precision, which
// every backend can hold exactly.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// timePtr returns t in UTC at microsecond precision, or nil.
func timePtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC().Truncate(time.Microsecond)
	return &u
}

// change is one Update transaction in progress: what it changed and the
// time it runs at.
type change struct {
	Tx
	p   Principal
	at  time.Time
	inv Invalidation
}

// audit records the change's event, in its transaction.
func (c *change) audit(action, target, account string, details map[string]any) error {
	if details == nil {
		details = map[string]any{}
	}
	return c.AppendAudit(&AuditEvent{ID: NewID(AuditIDPrefix), At: c.at, Actor: c.p.Actor, Action: action,
		Target: target, AccountID: account, Details: details})
}

// write runs fn in one Update transaction as p. The change notice goes
// out inside the transaction (when the backend's Tx is a Notifier) and to
// this node's OnChange hooks after the commit.
func (ks *Keystore) write(ctx context.Context, p Principal, what string, fn func(c *change) error) error {
	var inv Invalidation
	err := ks.backend.Update(ctx, func(tx Tx) error {
		c := &change{Tx: tx, p: p, at: now()}
		if err := fn(c); err != nil {
			return err
		}
		inv = c.inv
		inv.HashBits = nil
		for _, h := range inv.Hashes {
			inv.HashBits = append(inv.HashBits, h.Bits())
		}
		if n, ok := tx.(Notifier); ok && !inv.Empty() {
			wire := inv
			wire.Hashes = nil // hashes never leave the process
			return n.Notify(wire)
		}
		return nil
	})
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return err // a rule's answer speaks for itself
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	for _, fn := range ks.onChange {
		fn(inv)
	}
	return nil
}

// read runs fn in one View transaction.
func (ks *Keystore) read(ctx context.Context, what string, fn func(tx Tx) error) error {
	err := ks.backend.View(ctx, fn)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			return err
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// cutPage trims a result fetched with limit+1 items to limit and returns
// the cursor of the next page, or "" on the last.
func cutPage[T any](items []T, limit int, id func(*T) string) ([]T, string) {
	if len(items) <= limit {
		return items, ""
	}
	items = items[:limit]
	return items, id(&items[limit-1])
}

func tagsOrEmpty(tags map[string]string) map[string]string {
	if tags == nil {
		return map[string]string{}
	}
	return tags
}

func nonNilScopes(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilList[T any](items []T) []T {
	if items == nil {
		return []T{}
	}
	return items
}
