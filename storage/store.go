// Package storage holds Keygate's key store: the Store interface, its
// PostgreSQL implementation, the cache in front of it, the token format and
// hashing.
package storage

import (
	"context"
	"errors"
	"time"
)

// Errors a Store returns; wrap-aware callers test them with errors.Is.
var (
	// ErrNotFound means the account, key or token does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means the write collides with existing data (a taken name).
	ErrConflict = errors.New("conflict")
	// ErrUnavailable means the store could not be reached.
	ErrUnavailable = errors.New("store unavailable")
	// ErrInvalid means the store refused a value it cannot hold (such as
	// a NUL byte in a text field).
	ErrInvalid = errors.New("invalid value")
)

// Account kinds.
const (
	KindUser    = "user"
	KindService = "service"
)

// Account is who keys belong to.
type Account struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Kind      string    `json:"kind"`
	Team      string    `json:"team"`
	Scopes    []string  `json:"scopes"`
	Disabled  bool      `json:"disabled"`
	CreatedAt time.Time `json:"created_at"`
}

// Key is a named grant under one account. Scopes is nil when the key
// inherits its account's scopes; EffectiveScopes is what the key holds now.
type Key struct {
	ID              string            `json:"id"`
	AccountID       string            `json:"account"`
	Name            string            `json:"name"`
	Description     string            `json:"description"`
	Tags            map[string]string `json:"tags"`
	Scopes          []string          `json:"scopes"`
	EffectiveScopes []string          `json:"-"`
	CreatedAt       time.Time         `json:"created_at"`
	CreatedBy       string            `json:"created_by"`
	Tokens          []Token           `json:"-"`
}

// Token status values.
const (
	StatusActive   = "active"
	StatusExpiring = "expiring"
	StatusExpired  = "expired"
)

// Token is one secret of a key, without the secret: only its hint is kept.
// A token superseded by a rotation has RotatedAt set (and RotatedTo, while
// its successor exists) and stops at ExpiresAt.
type Token struct {
	ID          string            `json:"id"`
	KeyID       string            `json:"key"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Tags        map[string]string `json:"tags"`
	Hint        string            `json:"hint"`
	ExpiresAt   *time.Time        `json:"expires_at"`
	CreatedAt   time.Time         `json:"created_at"`
	LastUsedAt  *time.Time        `json:"last_used_at"`
	RotatedTo   string            `json:"rotated_to,omitempty"`
	RotatedAt   *time.Time        `json:"rotated_at,omitempty"`
}

// Status returns the token's status at now.
func (t *Token) Status(now time.Time) string {
	switch {
	case t.ExpiresAt != nil && !now.Before(*t.ExpiresAt):
		return StatusExpired
	case t.RotatedAt != nil:
		return StatusExpiring
	default:
		return StatusActive
	}
}

// NewToken is a token to create: its metadata and the hash of its value.
type NewToken struct {
	Token
	Hash Hash
}

// AuditEvent records one mutation. Details never hold a secret.
type AuditEvent struct {
	ID      string
	At      time.Time
	Actor   string
	Action  string
	Target  string
	Details map[string]any
}

// Credential is what verifying a token yields: who it is and what it may do.
// It is shared by the cache and must not be modified.
type Credential struct {
	TokenID     string
	KeyID       string
	AccountID   string
	AccountName string
	Team        string
	// Scopes are the effective scopes: the key's intersected with its
	// account's, normalized. JoinedScopes is them comma-separated.
	Scopes       []string
	JoinedScopes string
	// ExpiresAt is zero when the token does not expire.
	ExpiresAt time.Time
	// Disabled is set when the token's account is disabled.
	Disabled bool
	// Values holds what CacheConfig.Decorate attached, such as request
	// placeholders computed once per credential instead of per request.
	Values any
}

// Invalidation names what a change may have altered, for caches to drop.
type Invalidation struct {
	Tokens   []string `json:"tokens,omitempty"`
	Keys     []string `json:"keys,omitempty"`
	Accounts []string `json:"accounts,omitempty"`
	// Hashes are token hashes newly created; they drop negative entries.
	// They never leave the process: other nodes get HashBits.
	Hashes []Hash `json:"-"`
	// HashBits are 16 bits of each new token's hash (HashBits of Hash),
	// what other nodes need to drop their negative entries: far too few
	// to find or confirm a token by.
	HashBits []uint16 `json:"hash_bits,omitempty"`
}

// ListOptions selects one page of a list.
type ListOptions struct {
	// Limit is the page size; Store implementations cap it at MaxPageSize.
	Limit int
	// After is the cursor: the Next of the previous page.
	After string
}

// Page sizes for lists.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// KeyFilter selects keys to list.
type KeyFilter struct {
	ListOptions
	AccountID string
	// Tags must all be present with these values.
	Tags map[string]string
}

// AccountPatch changes an account; nil fields are left alone.
type AccountPatch struct {
	Name     *string
	Team     *string
	Scopes   *[]string
	Disabled *bool
}

// KeyPatch changes a key; nil fields are left alone. InheritScopes drops
// the key's own scopes so it holds its account's, live.
type KeyPatch struct {
	LabelPatch
	Scopes        *[]string
	InheritScopes bool
}

// TokenPatch changes a token; nil fields are left alone. ClearExpiry
// removes the token's expiry.
type TokenPatch struct {
	LabelPatch
	ExpiresAt   *time.Time
	ClearExpiry bool
}

// newKeyIDs gives a key being created and its first token their ids,
// unless the caller chose them, and records who creates the key.
func newKeyIDs(actor string, k *Key, first *NewToken) {
	if k.ID == "" {
		k.ID = NewID(KeyIDPrefix)
	}
	if first.ID == "" {
		first.ID = NewID(TokenIDPrefix)
	}
	first.KeyID = k.ID
	k.CreatedBy = actor
}

// LabelPatch changes the descriptive fields keys and tokens share; nil
// fields are left alone.
type LabelPatch struct {
	Name        *string
	Description *string
	Tags        *map[string]string
}

// apply sets the fields p changes.
func (p LabelPatch) apply(name, description *string, tags *map[string]string) {
	if p.Name != nil {
		*name = *p.Name
	}
	if p.Description != nil {
		*description = *p.Description
	}
	if p.Tags != nil {
		*tags = tagsOrEmpty(*p.Tags)
	}
}

// audit records the fields p changes in an audit event's details.
func (p LabelPatch) audit(details map[string]any) {
	if p.Name != nil {
		details["name"] = *p.Name
	}
	if p.Description != nil {
		details["description"] = *p.Description
	}
	if p.Tags != nil {
		details["tags"] = tagsOrEmpty(*p.Tags)
	}
}

// AuditFilter selects audit events, newest first.
type AuditFilter struct {
	ListOptions
	Actor  string
	Action string
	Target string
	// Account limits events to those about this account or its keys.
	Account string
}

// Store keeps accounts, keys, tokens and audit events. Every mutation is
// one transaction that also records its audit event, written by actor.
// Implementations are safe for concurrent use.
type Store interface {
	// LookupToken returns the credential of the token with this hash, or
	// ErrNotFound. It is the only call on the request path.
	LookupToken(ctx context.Context, hash Hash) (*Credential, error)

	CreateAccount(ctx context.Context, actor string, a *Account) error
	// GetAccount finds an account by id or by name.
	GetAccount(ctx context.Context, ref string) (*Account, error)
	ListAccounts(ctx context.Context, opts ListOptions) ([]Account, string, error)
	UpdateAccount(ctx context.Context, actor, id string, p AccountPatch) (*Account, error)

	// CreateKey creates k with its first token.
	CreateKey(ctx context.Context, actor string, k *Key, first *NewToken) error
	// GetKey returns the key with its tokens.
	GetKey(ctx context.Context, id string) (*Key, error)
	// ListKeys returns a page of keys (with tokens) and the cursor of the
	// next page, empty on the last.
	ListKeys(ctx context.Context, f KeyFilter) ([]Key, string, error)
	// DeleteKey deletes the key and its tokens.
	DeleteKey(ctx context.Context, actor, id string) error
	// UpdateKey changes the key's name, description, tags or scopes.
	UpdateKey(ctx context.Context, actor, id string, p KeyPatch) (*Key, error)

	// DeleteAccount deletes the account with its keys and tokens.
	DeleteAccount(ctx context.Context, actor, id string) error

	// CreateToken adds t to the key t.KeyID.
	CreateToken(ctx context.Context, actor string, t *NewToken) error
	// UpdateToken changes a token of a key.
	UpdateToken(ctx context.Context, actor, keyID, tokenID string, p TokenPatch) (*Token, error)
	// RotateToken issues next (its KeyID, Name, Description and Tags are
	// taken from the old token) in place of the token; the old one is
	// deleted when grace is zero, else it expires after grace (or at its
	// own expiry, if sooner). Rotating a token already superseded by a
	// rotation is ErrConflict. It returns the old token as it now is, nil
	// when deleted.
	RotateToken(ctx context.Context, actor, keyID, tokenID string, next *NewToken, grace time.Duration) (*Token, error)
	// DeleteToken deletes one token of a key.
	DeleteToken(ctx context.Context, actor, keyID, tokenID string) error
	// RevokeToken deletes the token with this hash, whatever its account,
	// and returns it; ErrNotFound when there is none.
	RevokeToken(ctx context.Context, actor string, hash Hash) (*Token, error)

	// RecordUse sets the last_used_at of tokens (never backwards), in one
	// statement, without an audit event or change notice.
	RecordUse(ctx context.Context, uses map[string]time.Time) error

	// Export calls emit with every account, then every key, then every
	// token (with its hash, newest first, so a rotation's successor comes
	// before the token it replaces), in one consistent snapshot.
	Export(ctx context.Context, emit func(ExportRecord) error) error
	// Import writes one exported record, replacing a record with its id:
	// importing the same export twice leaves the same state.
	Import(ctx context.Context, actor string, rec ExportRecord) error

	// ListAudit returns a page of audit events, newest first.
	ListAudit(ctx context.Context, f AuditFilter) ([]AuditEvent, string, error)

	// OnChange registers fn to be called after every committed change made
	// through this store, so this node's cache drops what changed at once.
	OnChange(fn func(Invalidation))
	// Close releases the store's resources.
	Close()
}
