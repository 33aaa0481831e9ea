package storage

import (
	"github.com/keygate/keygate/internal/scope"
)

// Principal is who calls the keystore and what it may do.
type Principal struct {
	// Actor is recorded in audit events: a key id, or "admin".
	Actor string
	// AccountID is the caller's account; empty for the trusted principal.
	AccountID string
	// TokenID is the token the caller authenticated with, if any.
	TokenID string
	// Scopes are the caller's effective scopes.
	Scopes []string
	// Trusted marks the principal of Caddy's admin endpoint, which may do
	// anything. The zero Principal is not trusted.
	Trusted bool
}

// Trusted is the principal of Caddy's admin endpoint: it may do anything.
var Trusted = Principal{Actor: "admin", Scopes: []string{scope.All}, Trusted: true}

// The one rule for what a caller may act on, beyond the admin route's own
// scope:
//
//   - It sees its own account and that account's keys; with accounts:read
//     it sees every account and key. What it does not see is not found,
//     on reads and writes alike.
//   - It writes (edits, deletes, re-enables, rotates, mints tokens, edits
//     or deletes tokens, places keys) only on what it covers: an account
//     whose scopes it all holds, a key whose grant it all holds (else
//     ErrForbidden, naming a scope it lacks). A key's grant is the scopes
//     written on it, or, when it inherits, its account's: a key's power
//     can grow back up to its written scopes when its account does, so
//     covering only what it holds today is not enough.
//   - Its own key is always covered: whatever that key will hold, the
//     caller holds too.
//   - Nobody grants what it does not hold.
//
// The trusted principal sees and covers everything. Revoke by value is
// outside the rule: knowing a token is enough to stop it.

// seesAllAccounts reports whether p may see and manage other accounts' keys.
func (p Principal) seesAllAccounts() bool {
	return p.Trusted || scope.AnyCovers(p.Scopes, "accounts:read")
}

// sees reports whether p may see what belongs to account.
func (p Principal) sees(account string) bool {
	return p.seesAllAccounts() || account == p.AccountID
}

// grant refuses scopes p does not hold itself: nobody can grant what it
// does not hold.
func (p Principal) grant(scopes []string) error {
	if p.Trusted {
		return nil
	}
	if missing, ok := scope.Missing(p.Scopes, scopes); ok {
		return forbiddenScope(missing)
	}
	return nil
}

// defaultKeyScopes are the scopes a key written by p without scopes gets:
// nil (the account's, live) on the trusted endpoint, else p's own written
// explicitly, never a live inheritance wider than p.
func (p Principal) defaultKeyScopes() []string {
	if p.Trusted {
		return nil
	}
	return nonNilScopes(scope.Normalize(p.Scopes))
}

// keyGrant is what a key may hold at most as things stand: its own scopes,
// or its account's when it inherits them (its effective scopes then).
func keyGrant(k *Key) []string {
	if k.Scopes != nil {
		return k.Scopes
	}
	return k.EffectiveScopes
}

// covers refuses a write by p on what (an account or key) holding scopes
// unless p holds them all.
func (p Principal) covers(what string, scopes []string) error {
	if p.Trusted {
		return nil
	}
	if missing, ok := scope.Missing(p.Scopes, scopes); ok {
		return &Error{Kind: ErrForbidden, Scope: missing,
			Message: what + " holds scope " + missing + ", which the caller does not: a caller acts only on what it covers"}
	}
	return nil
}

// canActOnKey refuses a write by p on k, a key p sees (with its effective
// scopes), unless p covers its grant or k is p's own key.
func (p Principal) canActOnKey(k *Key) error {
	if k.ID == p.Actor {
		return nil
	}
	return p.covers("key "+k.ID, keyGrant(k))
}

// canActOnAccount refuses a write by p on a, an account p sees, unless p
// holds all of its scopes.
func (p Principal) canActOnAccount(a *Account) error {
	return p.covers("account "+a.ID, a.Scopes)
}
