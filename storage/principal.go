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
