package storage

import (
	"context"
	"time"

	"github.com/keygate/keygate/storage/token"
)

// Backend stores the keystore's records and nothing more: every rule lives
// in the Keystore, which calls a Backend inside transactions. A Backend is
// safe for concurrent use. The conformance suite in storage/storagetest
// checks an implementation.
type Backend interface {
	// Update runs fn in a read-write transaction, committed when fn returns
	// nil. Update transactions are serializable with respect to the
	// records they read: two Updates that read the same record run one
	// after the other. A backend may run fn again after a conflict, so fn
	// must not keep state between runs.
	Update(ctx context.Context, fn func(Tx) error) error
	// View runs fn in a read-only transaction that sees one consistent
	// snapshot.
	View(ctx context.Context, fn func(Tx) error) error
	// LookupToken reads what verification needs for the token with this
	// hash, in one round trip; ErrNotFound when there is none. It is the
	// only call on the request path.
	LookupToken(ctx context.Context, hash token.Hash) (*Lookup, error)
	// RecordUse sets the LastUsedAt of tokens to the given times, never
	// backwards, skipping tokens that are gone, in one write.
	RecordUse(ctx context.Context, uses map[string]time.Time) error
	// Close releases the backend's resources.
	Close() error
}

// Tx reads and writes records inside one transaction. Getters return
// ErrNotFound (wrapped or not) for a missing record. Put methods insert or
// replace the record with the same id and keep the backend's indexes
// exact: after PutToken, the hash a token had before finds nothing. Lists
// are in ascending id order, except Audit.
type Tx interface {
	Account(id string) (*Account, error)
	AccountByName(name string) (*Account, error)
	// Accounts lists at most limit accounts with ids after after.
	Accounts(after string, limit int) ([]Account, error)
	// PutAccount returns ErrConflict when another account has its name.
	PutAccount(a *Account) error
	DeleteAccount(id string) error

	// Key returns a key without its tokens or effective scopes.
	Key(id string) (*Key, error)
	Keys(q KeyQuery) ([]Key, error)
	PutKey(k *Key) error
	DeleteKey(id string) error

	Token(id string) (*TokenRecord, error)
	TokenByHash(hash token.Hash) (*TokenRecord, error)
	// Tokens lists the tokens of the given keys.
	Tokens(keyIDs ...string) ([]TokenRecord, error)
	// PutToken returns ErrConflict when another token has its hash.
	PutToken(t *TokenRecord) error
	DeleteToken(id string) error

	AppendAudit(e *AuditEvent) error
	// Audit lists events newest first.
	Audit(q AuditQuery) ([]AuditEvent, error)

	// CreditBalance returns the credits of key keyID; ErrNotFound when it
	// has none. In an Update it locks the record until the commit, so
	// two leases on one key run one after the other.
	CreditBalance(keyID string) (*CreditBalance, error)
	// CreditBalances lists the credits of those of the keys that have
	// some.
	CreditBalances(keyIDs ...string) ([]CreditBalance, error)
	// PutCreditBalance inserts or replaces the credits of b.KeyID.
	PutCreditBalance(b *CreditBalance) error
	// DeleteCreditBalance removes the credits of key keyID; none is not an
	// error.
	DeleteCreditBalance(keyID string) error

	// AddCounts adds to shared window counts, creating those missing at
	// zero, and returns the totals of the counters in read afterwards (0
	// for those that do not exist), in the order of read. Each counter is
	// in adds at most once, and adds is sorted by counter, so that
	// concurrent syncs lock counts in one order.
	AddCounts(adds []CounterAdd, read []Counter) ([]int64, error)
	// PruneCounts deletes the counts whose ExpiresAt is before t.
	PruneCounts(before time.Time) error
}

// KeyQuery selects keys for Tx.Keys.
type KeyQuery struct {
	// AccountID, when set, keeps the keys of that account.
	AccountID string
	// Tags, when set, must all be present with these values.
	Tags  map[string]string
	After string
	Limit int
}

// AuditQuery selects events for Tx.Audit; empty fields match everything.
type AuditQuery struct {
	Actor, Action, Target, AccountID string
	// Before, when set, keeps events with ids below it.
	Before string
	Limit  int
}

// Notifier is a Tx that can announce a change to other nodes as part of
// the transaction: the notice goes out if and only if the transaction
// commits. The keystore calls Notify at the end of every Update that
// changed something. The Invalidation carries HashBits, never Hashes.
type Notifier interface {
	Notify(inv Invalidation) error
}

// Listener is a Backend shared by several nodes that can follow the
// change notices every node's Notifier sends.
type Listener interface {
	// Listen delivers notices to hooks until ctx ends, reconnecting by
	// itself; it returns when ctx is done.
	Listen(ctx context.Context, hooks ListenHooks)
}

// ListenHooks receive what a change listener sees.
type ListenHooks struct {
	// Notice is called with every change committed by any node on the
	// store (this node's included).
	Notice func(Invalidation)
	// Connected is called after every (re)connection, once listening:
	// notices sent while the listener was away are lost, so everything
	// cached before must be forgotten.
	Connected func()
	// Disconnected is called when the listening connection fails, or
	// stops answering, and after every failed attempt to reconnect.
	Disconnected func(error)
}

// Opener is what a storage guest module (Caddy namespace apikeys.storage)
// provides: the configuration of one store, and a way to open it.
type Opener interface {
	// Identity names the store the module opens, such as its file or its
	// database and schema: configurations whose modules have the same
	// identity share one open Backend across config reloads. It may hold
	// secrets and is never logged.
	Identity() string
	// Open connects to the store and prepares it (migrations).
	Open(ctx context.Context) (Backend, error)
}
