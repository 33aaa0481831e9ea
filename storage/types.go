package storage

import (
	"net/netip"
	"time"

	"github.com/keygate/keygate/storage/token"
)

// Account kinds.
const (
	KindUser    = "user"
	KindService = "service"
)

// Account is who keys belong to.
type Account struct {
	ID        string
	Name      string
	Kind      string
	Team      string
	Scopes    []string
	Disabled  bool
	CreatedAt time.Time
	// Policy is the account's usage policy, shared by all its keys; it
	// never holds Credits.
	Policy Policy
}

// Key is a named grant under one account. Scopes is nil when the key
// inherits its account's scopes. EffectiveScopes (what the key holds now),
// Tokens and Policy.Credits (kept in a CreditBalance record) are filled in
// by the Keystore; backends ignore them.
type Key struct {
	ID              string
	AccountID       string
	Name            string
	Description     string
	Tags            map[string]string
	Scopes          []string
	EffectiveScopes []string
	CreatedAt       time.Time
	CreatedBy       string
	Tokens          []Token
	// Policy is the key's own usage policy; its account's applies too.
	Policy Policy
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
	ID          string
	KeyID       string
	Name        string
	Description string
	Tags        map[string]string
	Hint        string
	ExpiresAt   *time.Time
	CreatedAt   time.Time
	LastUsedAt  *time.Time
	RotatedTo   string
	RotatedAt   *time.Time
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

// TokenRecord is a token as a backend stores it: with the hash of its value.
type TokenRecord struct {
	Token
	Hash token.Hash
}

// Secret is a new token value as the keystore receives it: its hash and
// hint, never the value.
type Secret struct {
	Hash token.Hash
	Hint string
}

// NewSecret returns the Secret of a token value.
func NewSecret(value string) Secret {
	return Secret{Hash: token.Sum(value), Hint: token.Hint(value)}
}

// AuditEvent records one mutation. Details never hold a secret. AccountID
// is the account the target belongs to, so callers limited to one account
// can read its events.
type AuditEvent struct {
	ID        string
	At        time.Time
	Actor     string
	Action    string
	Target    string
	AccountID string
	Details   map[string]any
}

// Credential is what verifying a token yields: who it is and what it may do.
// It is shared by caches and must not be modified.
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
	// KeyPolicy and AccountPolicy are the usage policies that apply to
	// the token: its key's and its account's, both, so that a request can
	// be decided with no store query. KeyPolicy.Credits.Remaining is the
	// balance when the token was looked up, for information only: credits
	// are spent from leases (Keystore.LeaseCredits), never from it.
	KeyPolicy     Policy
	AccountPolicy Policy
}

// Lookup is what Backend.LookupToken reads for one token hash: the token,
// its key's own scopes and its account, in one round trip.
type Lookup struct {
	TokenID   string
	ExpiresAt *time.Time
	KeyID     string
	// KeyScopes is nil when the key inherits its account's scopes.
	KeyScopes []string
	// KeyPolicy is the key's policy, without its credits.
	KeyPolicy Policy
	// Credits are the key's credits; nil when it has none.
	Credits *CreditBalance
	// Account carries its Policy.
	Account Account
}

// Invalidation names what a change may have altered, for caches to drop.
type Invalidation struct {
	Tokens   []string
	Keys     []string
	Accounts []string
	// Hashes are token hashes newly created; they drop negative entries.
	// They never leave the process: other nodes get HashBits.
	Hashes []token.Hash
	// HashBits are 16 bits of each new token's hash (token.Hash.Bits),
	// what other nodes need to drop their negative entries: far too few
	// to find or confirm a token by.
	HashBits []uint16
}

// Empty reports whether inv names nothing.
func (inv *Invalidation) Empty() bool {
	return len(inv.Tokens)+len(inv.Keys)+len(inv.Accounts)+len(inv.Hashes)+len(inv.HashBits) == 0
}

// ListOptions selects one page of a list.
type ListOptions struct {
	// Limit is the page size, capped at MaxPageSize; 0 is DefaultPageSize.
	Limit int
	// After is the cursor: the Next of the previous page.
	After string
}

// Page sizes for lists.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// pageSize returns the page size opts asks for, within bounds.
func (opts ListOptions) pageSize() int {
	switch {
	case opts.Limit <= 0:
		return DefaultPageSize
	case opts.Limit > MaxPageSize:
		return MaxPageSize
	}
	return opts.Limit
}

// KeyFilter selects keys to list.
type KeyFilter struct {
	ListOptions
	// Account is the id or name of the account whose keys to list.
	Account string
	// Tags must all be present with these values.
	Tags map[string]string
}

// AuditFilter selects audit events, newest first.
type AuditFilter struct {
	ListOptions
	Actor  string
	Action string
	Target string
}

// NewAccount is an account to create.
type NewAccount struct {
	Name     string
	Kind     string // default KindUser
	Team     string
	Scopes   []string
	Disabled bool
	// Policy is the account's usage policy; it cannot hold Credits.
	Policy Policy
}

// AccountPatch changes an account; nil fields are left alone. Pointing
// at an empty list removes all the limits or allowed IPs.
type AccountPatch struct {
	Name       *string
	Team       *string
	Scopes     *[]string
	Disabled   *bool
	Limits     *[]Window
	AllowedIPs *[]netip.Prefix
}

// NewKey is a key to create with its first token.
type NewKey struct {
	// Account is the id or name of the key's account; empty for the
	// caller's own.
	Account     string
	Name        string
	Description string
	Tags        map[string]string
	// Scopes are the key's own scopes; nil for the default (see
	// Keystore.CreateKey), [] for none at all.
	Scopes []string
	// ExpiresAt is the first token's expiry, if any.
	ExpiresAt *time.Time
	// Policy is the key's usage policy. Nil Limits or AllowedIPs ask for
	// the default (see Keystore.CreateKey), empty ones for none; nil
	// Credits is unlimited.
	Policy Policy
}

// LabelPatch changes the descriptive fields keys and tokens share; nil
// fields are left alone.
type LabelPatch struct {
	Name        *string
	Description *string
	Tags        *map[string]string
}

// KeyPatch changes a key; nil fields are left alone. Scopes pointing at a
// nil list asks for the key to inherit (see Keystore.UpdateKey). Limits or
// AllowedIPs pointing at an empty list remove them all; ClearCredits makes
// the key unlimited.
type KeyPatch struct {
	LabelPatch
	Scopes       *[]string
	Limits       *[]Window
	AllowedIPs   *[]netip.Prefix
	Credits      *CreditsPatch
	ClearCredits bool
}

// CreditsPatch changes a key's credits; nil fields are left alone. On a
// key without credits it gives it some: Remaining then defaults to the
// Refill's Amount, and one of them is required.
type CreditsPatch struct {
	// Remaining sets the balance: leases taken before it can no longer
	// be returned (the epoch changes).
	Remaining *int64
	// Refill replaces the refill schedule; ClearRefill removes it.
	Refill      *Refill
	ClearRefill bool
}

// NewToken is a token to add to a key.
type NewToken struct {
	Name        string
	Description string
	Tags        map[string]string
	ExpiresAt   *time.Time
}

// TokenPatch changes a token; nil fields are left alone. ClearExpiry
// removes the token's expiry.
type TokenPatch struct {
	LabelPatch
	ExpiresAt   *time.Time
	ClearExpiry bool
}

// Rotation asks for a token to be replaced.
type Rotation struct {
	// Grace is how long the old token keeps working; 0 stops it now.
	Grace time.Duration
	// ExpiresAt is the new token's expiry; nil gives it the old token's
	// lifetime, counted from now.
	ExpiresAt *time.Time
}

// Rotated is the outcome of a rotation.
type Rotated struct {
	// New is the new token.
	New Token
	// Old is the old token as it now is; nil when it was deleted.
	Old *Token
	// OldExpiresAt is when the old token stops working: the end of the
	// grace, or its own expiry if that comes first; the time of the
	// rotation when there is no grace.
	OldExpiresAt time.Time
}
