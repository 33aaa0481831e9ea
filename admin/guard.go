package admin

import (
	"errors"
	"net/http"
	"strings"

	"github.com/keygate/keygate/internal/scope"
	"github.com/keygate/keygate/storage"
)

// The one rule for what a caller may act on, beyond the route's own scope:
//
//   - It sees its own account and that account's keys; with accounts:read
//     it sees every account and key. What it does not see is 404, on reads
//     and writes alike.
//   - It writes (edits, deletes, re-enables, rotates, mints tokens, edits
//     or deletes tokens, places keys) only on what it covers: an account
//     whose scopes it all holds, a key whose grant it all holds (403
//     forbidden, naming a scope it lacks). A key's grant is the scopes
//     written on it, or, when it inherits, its account's: a key's power can
//     grow back up to its written scopes when its account does, so covering
//     only what it holds today is not enough.
//   - Its own key is always covered: whatever that key will hold, the
//     caller holds too.
//
// The trusted admin endpoint holds "*", so it sees and covers everything.
// Revoke by value is outside the rule: knowing a token is enough to stop it.

// seesAccount reports whether p may see the account with id and its keys.
func (p Principal) seesAccount(id string) bool {
	return p.seesAllAccounts() || id == p.AccountID
}

// keyGrant is what a key may hold at most as things stand: its own scopes,
// or its account's when it inherits them (its effective scopes then).
func keyGrant(k *storage.Key) []string {
	if k.Scopes != nil {
		return k.Scopes
	}
	return k.EffectiveScopes
}

// canActOnKey refuses a write on k that p may not do: 404 when p does not
// see k, 403 when p does not cover its grant.
func canActOnKey(p Principal, k *storage.Key) error {
	if !p.seesAccount(k.AccountID) {
		return errNotFound("no key %q", k.ID)
	}
	if k.ID == p.Actor {
		return nil
	}
	if missing, ok := scope.Missing(p.Scopes, keyGrant(k)); ok {
		return errNotCovered("key "+k.ID, missing)
	}
	return nil
}

// canActOnAccount refuses a write on a that p may not do: 404 when p does
// not see a, 403 when p does not hold all of its scopes.
func canActOnAccount(p Principal, a *storage.Account, ref string) error {
	if !p.seesAccount(a.ID) {
		return errNotFound("account %q not found", ref)
	}
	if missing, ok := scope.Missing(p.Scopes, a.Scopes); ok {
		return errNotCovered("account "+a.ID, missing)
	}
	return nil
}

// visibleAccount loads the account ref (an id or a name) if p sees it.
func (h *Handler) visibleAccount(r *http.Request, p Principal, ref string) (*storage.Account, error) {
	a, err := h.store.GetAccount(r.Context(), ref)
	if errors.Is(err, storage.ErrNotFound) || err == nil && !p.seesAccount(a.ID) {
		return nil, errNotFound("account %q not found", ref)
	}
	return a, err
}

// writableAccount loads the account ref for a write by p.
func (h *Handler) writableAccount(r *http.Request, p Principal, ref string) (*storage.Account, error) {
	a, err := h.visibleAccount(r, p, ref)
	if err != nil {
		return nil, err
	}
	if err := canActOnAccount(p, a, ref); err != nil {
		return nil, err
	}
	return a, nil
}

// visibleKey loads the key with id if p sees it.
func (h *Handler) visibleKey(r *http.Request, p Principal, id string) (*storage.Key, error) {
	if !strings.HasPrefix(id, storage.KeyIDPrefix) || checkText("id", id, true, maxNameLen) != nil {
		return nil, errNotFound("no key %q", id)
	}
	k, err := h.store.GetKey(r.Context(), id)
	if errors.Is(err, storage.ErrNotFound) || err == nil && !p.seesAccount(k.AccountID) {
		return nil, errNotFound("no key %q", id)
	}
	return k, err
}

// writableKey loads the key with id for a write by p.
func (h *Handler) writableKey(r *http.Request, p Principal, id string) (*storage.Key, error) {
	k, err := h.visibleKey(r, p, id)
	if err != nil {
		return nil, err
	}
	if err := canActOnKey(p, k); err != nil {
		return nil, err
	}
	return k, nil
}

// writableToken loads the key and token of the request's path for a write
// by p: the token's key decides.
func (h *Handler) writableToken(r *http.Request, p Principal) (*storage.Key, *storage.Token, error) {
	k, t, err := h.visibleToken(r, p)
	if err != nil {
		return nil, nil, err
	}
	if err := canActOnKey(p, k); err != nil {
		return nil, nil, err
	}
	return k, t, nil
}
