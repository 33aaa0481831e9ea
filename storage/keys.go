package storage

import (
	"context"
	"errors"
	"strings"

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
	return k, a, nil
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
// endpoint inherits its account's.
func (ks *Keystore) CreateKey(ctx context.Context, p Principal, n NewKey, secret Secret) (*Key, error) {
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
	err := ks.write(ctx, p, "creating key", func(c *change) error {
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
		k.AccountID = a.ID
		k.CreatedAt = c.at
		k.EffectiveScopes = effectiveScopes(k.Scopes, a.Scopes)
		if err := c.PutKey(k); err != nil {
			return err
		}
		if err := insertToken(c, first); err != nil {
			return err
		}
		return c.audit("key.create", k.ID, k.AccountID, map[string]any{
			"account": k.AccountID, "name": k.Name, "scopes": k.Scopes, "tags": k.Tags, "token": first.ID,
		})
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
// account's, live.
func (ks *Keystore) UpdateKey(ctx context.Context, p Principal, id string, patch KeyPatch) (*Key, error) {
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
	err := ks.write(ctx, p, "updating key", func(c *change) error {
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

// deleteKey deletes a key and its tokens: the cascade of key deletion.
func deleteKey(tx Tx, id string) error {
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
