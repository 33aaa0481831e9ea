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

// The rule for usage policies (limits, allowed IPs, credits), which bound
// what a key may send and spend; it keeps "nobody grants what it does not
// hold" true for rate and money:
//
//   - Authority over an account's budget is the trusted principal's, or a
//     caller's that holds accounts:update and covers the account, on any
//     account but its own. Whoever creates an account (accounts:create)
//     sets its first policy.
//   - With authority, a caller writes any policy on the account and its
//     keys.
//   - Without it, a caller may only tighten, on what it may write anyway:
//     every edit leaves the policy at least as tight as it was (see
//     loosens). So no key ever loosens its own policy or its own
//     account's, whatever its scopes.
//   - A key created without authority is bound at least as its creator's
//     own key: given no limits or allowed IPs, it gets the creator's,
//     written explicitly (as scopes are); given some, they must be at
//     least as tight; on another account than the creator's, the
//     creator's account's policy binds them too, since the new key
//     escapes it. A creator whose own key has credits cannot create keys
//     without authority at all: a balance cannot be copied, only spent,
//     and a new key's credits would be new money. A creator without
//     credits may give the new key some (it holds unlimited).
//
// Rate windows bound each key alone: keys made by a limited key are each
// bound as it is, and a bound on all of an account's keys together is the
// account's windows, which no key of it escapes.

// budgetAuthority reports whether p may loosen the usage policy of
// account a and of its keys.
func (p Principal) budgetAuthority(a *Account) bool {
	if p.Trusted {
		return true
	}
	return a.ID != p.AccountID && scope.AnyCovers(p.Scopes, "accounts:update") && p.canActOnAccount(a) == nil
}

// tightenOnly refuses a change of what's policy (on account a or one of
// its keys) from prev to next that loosens it, unless p has authority.
func (p Principal) tightenOnly(a *Account, what string, next, prev *Policy) error {
	if p.budgetAuthority(a) {
		return nil
	}
	if field := loosens(next, prev); field != "" {
		return &Error{Kind: ErrForbidden, Field: field, Message: "cannot loosen " + field + " of " + what +
			": that needs accounts:update on its account, which must not be the caller's own"}
	}
	return nil
}

// newKeyPolicy returns the policy of a key p creates on account a, asked
// for as asked (nil Limits or AllowedIPs: the default). own is the
// policy of p's own key (with its credits), ownAccount that of p's
// account.
func (p Principal) newKeyPolicy(a *Account, asked Policy, own, ownAccount *Policy) (Policy, error) {
	if p.budgetAuthority(a) {
		return asked, nil
	}
	if own.Credits != nil {
		return Policy{}, &Error{Kind: ErrForbidden, Field: "credits", Message: "the caller's key has credits: " +
			"a key it creates would spend outside its balance (creating one needs accounts:update on another account)"}
	}
	if asked.Limits == nil {
		asked.Limits = own.Limits
	}
	if asked.AllowedIPs == nil {
		asked.AllowedIPs = own.AllowedIPs
	}
	floors := []*Policy{own}
	if a.ID != p.AccountID {
		floors = append(floors, ownAccount)
	}
	for _, floor := range floors {
		if field := loosens(&asked, floor); field != "" {
			return Policy{}, &Error{Kind: ErrForbidden, Field: field, Message: "the key's " + field +
				" must bind at least as the caller's own (its key's and its account's)"}
		}
	}
	return asked, nil
}
