package storage

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/scope"
)

// FirstTokenName names the token a key is created with.
const FirstTokenName = "default"

// visibleKey reads key id, with its effective scopes, if p may see it.
func visibleKey(tx Tx, p Principal, id string) (*Key, *Account, error) {
	if !strings.HasPrefix(id, KeyIDPrefix) {
		return nil, nil, notFound("", "no key %q", id)
	}
	k, err := tx.Key(id)
	if errors.Is(err, ErrNotFound) {
		return nil, nil, notFound("", "no key %q", id)
	}
	if err != nil {
		return nil, nil, err
	}
	a, err := tx.Account(k.AccountID)
	if err != nil {
		return nil, nil, err
	}
	if !p.sees(a.ID) {
		return nil, nil, notFound("", "no key %q", id)
	}
	k.EffectiveScopes = effectiveScopes(k.Scopes, a.Scopes)
	if k.Policy.Credits, err = keyCredits(tx, k.ID, now()); err != nil {
		return nil, nil, err
	}
	return k, a, nil
}

// keyCredits reads the credits of key id, settled at now; nil when it has
// none.
func keyCredits(tx Tx, id string, now time.Time) (*Credits, error) {
	b, err := tx.CreditBalance(id)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return b.credits(now), nil
}

// withCredits fills in the credits of keys, settled at now.
func withCredits(tx Tx, keys []Key, now time.Time) error {
	if len(keys) == 0 {
		return nil
	}
	ids := make([]string, len(keys))
	index := make(map[string]int, len(keys))
	for i := range keys {
		ids[i] = keys[i].ID
		index[keys[i].ID] = i
		keys[i].Policy.Credits = nil
	}
	balances, err := tx.CreditBalances(ids...)
	if err != nil {
		return err
	}
	for i := range balances {
		if j, ok := index[balances[i].KeyID]; ok {
			keys[j].Policy.Credits = balances[i].credits(now)
		}
	}
	return nil
}

// newBalance is the credit record of a key given credits c at now.
func newBalance(keyID string, c *Credits, now time.Time) *CreditBalance {
	b := &CreditBalance{KeyID: keyID, Remaining: c.Remaining, Refill: c.Refill, Epoch: nextEpoch(0)}
	if c.Refill != nil {
		b.NextRefill = c.Refill.Next(now)
	}
	return b
}

// callerPolicies reads the policies p is bound by: its own key's (with
// its credits) and its account's. A caller whose actor is not a key is
// bound by its account's only.
func callerPolicies(tx Tx, p Principal, now time.Time) (own, account *Policy, err error) {
	own, account = &Policy{}, &Policy{}
	if strings.HasPrefix(p.Actor, KeyIDPrefix) {
		k, err := tx.Key(p.Actor)
		if errors.Is(err, ErrNotFound) {
			return nil, nil, &Error{Kind: ErrForbidden, Message: "the caller's key no longer exists"}
		}
		if err != nil {
			return nil, nil, err
		}
		own = &k.Policy
		if own.Credits, err = keyCredits(tx, k.ID, now); err != nil {
			return nil, nil, err
		}
	}
	if a, err := tx.Account(p.AccountID); err == nil {
		account = &a.Policy
	} else if !errors.Is(err, ErrNotFound) {
		return nil, nil, err
	}
	return own, account, nil
}

// writableKey reads key id for a write by p: p must see it and cover it.
func writableKey(tx Tx, p Principal, id string) (*Key, *Account, error) {
	k, a, err := visibleKey(tx, p, id)
	if err != nil {
		return nil, nil, err
	}
	return k, a, p.canActOnKey(k)
}

// withTokens fills in the tokens of keys, in id order.
func withTokens(tx Tx, keys []Key) error {
	if len(keys) == 0 {
		return nil
	}
	ids := make([]string, len(keys))
	index := make(map[string]int, len(keys))
	for i := range keys {
		ids[i] = keys[i].ID
		index[keys[i].ID] = i
		keys[i].Tokens = []Token{}
	}
	tokens, err := tx.Tokens(ids...)
	if err != nil {
		return err
	}
	for i := range tokens {
		k := &keys[index[tokens[i].KeyID]]
		k.Tokens = append(k.Tokens, tokens[i].Token)
	}
	return nil
}

// CreateKey creates a key with its first token, whose value secret is.
// The key's account is n.Account (id or name), the caller's own when
// empty; p must see it, and cover it when it is not p's own. Scopes p names must be its own; a key created
// without scopes gets p's own, written explicitly, or on the trusted
// endpoint inherits its account's. Its policy is bound by the rule for
// usage policies (principal.go): without authority over the account's
// budget, a key gets at least its creator's limits and allowed IPs.
func (ks *Keystore) CreateKey(ctx context.Context, p Principal, n NewKey, secret Secret) (*Key, error) {
	asked, err := checkPolicy(n.Policy, true)
	if err != nil {
		return nil, err
	}
	// nil asks for the default, empty for none.
	if n.Policy.Limits != nil && asked.Limits == nil {
		asked.Limits = []Window{}
	}
	if n.Policy.AllowedIPs != nil && asked.AllowedIPs == nil {
		asked.AllowedIPs = []netip.Prefix{}
	}
	scopes := p.defaultKeyScopes()
	if n.Scopes != nil { // [] is a key that holds nothing, not one that inherits
		if err := p.grant(n.Scopes); err != nil {
			return nil, err
		}
		scopes = nonNilScopes(scope.Normalize(n.Scopes))
	}
	ref := n.Account
	if ref == "" {
		if p.Trusted {
			return nil, invalid("account", "account is required")
		}
		ref = p.AccountID
	}
	k := &Key{ID: NewID(KeyIDPrefix), Name: n.Name, Description: n.Description, Tags: tagsOrEmpty(n.Tags),
		Scopes: scopes, CreatedBy: p.Actor}
	first := &TokenRecord{Token: Token{ID: NewID(TokenIDPrefix), KeyID: k.ID, Name: FirstTokenName,
		Tags: map[string]string{}, Hint: secret.Hint, ExpiresAt: timePtr(n.ExpiresAt)}, Hash: secret.Hash}
	err = ks.write(ctx, p, "creating key", func(c *change) error {
		a, err := visibleAccount(c, p, ref, "account")
		if err != nil {
			return err
		}
		if a.ID != p.AccountID {
			// A key placed in another account speaks for that account.
			if err := p.canActOnAccount(a); err != nil {
				return err
			}
		}
		own, ownAccount := &Policy{}, &Policy{}
		if !p.budgetAuthority(a) {
			if own, ownAccount, err = callerPolicies(c, p, c.at); err != nil {
				return err
			}
		}
		policy, err := p.newKeyPolicy(a, asked, own, ownAccount)
		if err != nil {
			return err
		}
		if policy, err = checkPolicy(policy, true); err != nil {
			return err
		}
		k.Policy = policy
		k.AccountID = a.ID
		k.CreatedAt = c.at
		k.EffectiveScopes = effectiveScopes(k.Scopes, a.Scopes)
		if err := c.PutKey(k); err != nil {
			return err
		}
		if policy.Credits != nil {
			b := newBalance(k.ID, policy.Credits, c.at)
			if err := c.PutCreditBalance(b); err != nil {
				return err
			}
			k.Policy.Credits = b.credits(c.at)
		}
		if err := insertToken(c, first); err != nil {
			return err
		}
		details := map[string]any{
			"account": k.AccountID, "name": k.Name, "scopes": k.Scopes, "tags": k.Tags, "token": first.ID,
		}
		auditPolicy(details, &k.Policy)
		return c.audit("key.create", k.ID, k.AccountID, details)
	})
	if err != nil {
		return nil, err
	}
	k.Tokens = []Token{first.Token}
	return k, nil
}

// Key returns key id with its tokens.
func (ks *Keystore) Key(ctx context.Context, p Principal, id string) (*Key, error) {
	var k *Key
	err := ks.read(ctx, "loading key", func(tx Tx) error {
		var err error
		if k, _, err = visibleKey(tx, p, id); err != nil {
			return err
		}
		keys := []Key{*k}
		err = withTokens(tx, keys)
		k = &keys[0]
		return err
	})
	return k, err
}

// Keys returns a page of keys (with tokens) and the cursor of the next
// page. A principal that does not see all accounts lists its own.
func (ks *Keystore) Keys(ctx context.Context, p Principal, f KeyFilter) ([]Key, string, error) {
	limit := f.pageSize()
	var keys []Key
	var next string
	err := ks.read(ctx, "listing keys", func(tx Tx) error {
		q := KeyQuery{Tags: f.Tags, After: f.After, Limit: limit + 1}
		switch {
		case f.Account != "":
			a, err := visibleAccount(tx, p, f.Account, "account")
			if err != nil {
				return err
			}
			q.AccountID = a.ID
		case !p.seesAllAccounts():
			q.AccountID = p.AccountID
		}
		page, err := tx.Keys(q)
		if err != nil {
			return err
		}
		keys, next = cutPage(page, limit, func(k *Key) string { return k.ID })
		if err := withCredits(tx, keys, now()); err != nil {
			return err
		}
		accountScopes := map[string][]string{}
		for i := range keys {
			k := &keys[i]
			s, ok := accountScopes[k.AccountID]
			if !ok {
				a, err := tx.Account(k.AccountID)
				if err != nil {
					return err
				}
				s = a.Scopes
				accountScopes[k.AccountID] = s
			}
			k.EffectiveScopes = effectiveScopes(k.Scopes, s)
		}
		return withTokens(tx, keys)
	})
	if err != nil {
		return nil, "", err
	}
	return nonNilList(keys), next, nil
}

// UpdateKey changes key id, which p must cover. New scopes must be held by p; a patch to
// inherit gives the key p's own scopes, or on the trusted endpoint its
// account's, live. Without authority over the account's budget, the key's
// policy can only be tightened (principal.go). Setting the balance changes
// the credits' epoch: leases taken before cannot be returned, and the
// change notice tells nodes to drop them.
func (ks *Keystore) UpdateKey(ctx context.Context, p Principal, id string, patch KeyPatch) (*Key, error) {
	asked, credits, err := checkPatchPolicy(patch)
	if err != nil {
		return nil, err
	}
	var scopes []string
	if patch.Scopes != nil {
		scopes = p.defaultKeyScopes()
		if *patch.Scopes != nil { // [] holds nothing; nil inherits
			if err := p.grant(*patch.Scopes); err != nil {
				return nil, err
			}
			scopes = nonNilScopes(scope.Normalize(*patch.Scopes))
		}
	}
	var out *Key
	err = ks.write(ctx, p, "updating key", func(c *change) error {
		k, a, err := writableKey(c, p, id)
		if err != nil {
			return err
		}
		details := map[string]any{}
		patch.apply(&k.Name, &k.Description, &k.Tags)
		patch.audit(details)
		if patch.Scopes != nil {
			k.Scopes = scopes
			details["scopes"] = k.Scopes
		}
		if err := updateKeyPolicy(c, p, a, k, patch, asked, credits, details); err != nil {
			return err
		}
		if err := c.PutKey(k); err != nil {
			return err
		}
		k.EffectiveScopes = effectiveScopes(k.Scopes, a.Scopes)
		keys := []Key{*k}
		if err := withTokens(c, keys); err != nil {
			return err
		}
		out = &keys[0]
		c.inv.Keys = append(c.inv.Keys, k.ID)
		return c.audit("key.update", k.ID, k.AccountID, details)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DeleteKey deletes key id, which p must cover, and its tokens.
func (ks *Keystore) DeleteKey(ctx context.Context, p Principal, id string) error {
	return ks.write(ctx, p, "deleting key", func(c *change) error {
		k, _, err := writableKey(c, p, id)
		if err != nil {
			return err
		}
		if err := deleteKey(c, k.ID); err != nil {
			return err
		}
		c.inv.Keys = append(c.inv.Keys, k.ID)
		return c.audit("key.delete", k.ID, k.AccountID, nil)
	})
}

// deleteKey deletes a key, its tokens and its credits: the cascade of key
// deletion.
func deleteKey(tx Tx, id string) error {
	if err := tx.DeleteCreditBalance(id); err != nil {
		return err
	}
	tokens, err := tx.Tokens(id)
	if err != nil {
		return err
	}
	for i := range tokens {
		if err := tx.DeleteToken(tokens[i].ID); err != nil {
			return err
		}
	}
	return tx.DeleteKey(id)
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
