package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Principal returns the caller that c authenticates: never trusted, it
// acts with its key's effective scopes, and is recorded as its key.
func (c *Credential) Principal() Principal {
	return Principal{Actor: c.KeyID, AccountID: c.AccountID, TokenID: c.TokenID, Scopes: c.Scopes}
}

// ErrNoAccount means a trusted identity names no account, or a disabled
// one: the person it names may act on nothing.
var ErrNoAccount = errors.New("no account for this identity")

// MaxIdentityLen bounds the identities IdentityPrincipal accepts.
const MaxIdentityLen = 256

// IdentityPrincipal returns the caller that a person signed in by a
// trusted authentication in front of Keygate (such as a Caddy auth
// handler setting {http.auth.user.id}) acts as: the account whose name is
// identity (never its id: an identity that looks like an id names
// nothing), with that account's scopes, live; recorded in audit events as
// "identity:" followed by the identity. An identity that names no
// account, or a disabled one, is ErrNoAccount: such a person acts on
// nothing, never on another account.
func (ks *Keystore) IdentityPrincipal(ctx context.Context, identity string) (Principal, *Account, error) {
	if identity == "" || len(identity) > MaxIdentityLen || strings.HasPrefix(identity, AccountIDPrefix) {
		return Principal{}, nil, ErrNoAccount
	}
	var a *Account
	err := ks.read(ctx, "loading the account of an identity", func(tx Tx) error {
		var err error
		a, err = tx.AccountByName(identity)
		return err
	})
	switch {
	case errors.Is(err, ErrNotFound):
		return Principal{}, nil, ErrNoAccount
	case err != nil:
		return Principal{}, nil, err
	case a.Disabled:
		return Principal{}, a, fmt.Errorf("%w: account %s is disabled", ErrNoAccount, a.ID)
	}
	return Principal{Actor: "identity:" + identity, AccountID: a.ID, Scopes: nonNilScopes(a.Scopes)}, a, nil
}
