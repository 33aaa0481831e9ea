package storage

import (
	"context"
	"errors"
	"time"

	"github.com/keygate/keygate/storage/token"
)

// insertToken stores a new token; its hash must be new.
func insertToken(c *change, t *TokenRecord) error {
	if _, err := c.TokenByHash(t.Hash); err == nil {
		return conflict("", "a token with this value exists")
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	t.CreatedAt = c.at
	t.Tags = tagsOrEmpty(t.Tags)
	if err := c.PutToken(t); err != nil {
		return err
	}
	c.inv.Hashes = append(c.inv.Hashes, t.Hash)
	return nil
}

// deleteToken deletes one token. A token rotated to it keeps retiring:
// only its link goes.
func deleteToken(tx Tx, t *TokenRecord) error {
	siblings, err := tx.Tokens(t.KeyID)
	if err != nil {
		return err
	}
	for i := range siblings {
		if s := &siblings[i]; s.RotatedTo == t.ID {
			s.RotatedTo = ""
			if err := tx.PutToken(s); err != nil {
				return err
			}
		}
	}
	return tx.DeleteToken(t.ID)
}

// writableToken reads key keyID and its token tokenID for a write by p:
// p must see the key and cover it.
func writableToken(tx Tx, p Principal, keyID, tokenID string) (*Key, *TokenRecord, error) {
	k, _, err := writableKey(tx, p, keyID)
	if err != nil {
		return nil, nil, err
	}
	t, err := tx.Token(tokenID)
	if errors.Is(err, ErrNotFound) || err == nil && t.KeyID != k.ID {
		return nil, nil, notFound("", "key %s has no token %q", k.ID, tokenID)
	}
	return k, t, err
}

// CreateToken adds a token whose value secret is to key keyID. A new
// value of a key is that key's power: p must cover the key.
func (ks *Keystore) CreateToken(ctx context.Context, p Principal, keyID string, n NewToken, secret Secret) (*Token, error) {
	t := &TokenRecord{Token: Token{ID: NewID(TokenIDPrefix), Name: n.Name, Description: n.Description,
		Tags: tagsOrEmpty(n.Tags), Hint: secret.Hint, ExpiresAt: timePtr(n.ExpiresAt)}, Hash: secret.Hash}
	err := ks.write(ctx, p, "creating token", func(c *change) error {
		k, _, err := writableKey(c, p, keyID)
		if err != nil {
			return err
		}
		t.KeyID = k.ID
		if err := insertToken(c, t); err != nil {
			return err
		}
		return c.audit("token.create", t.ID, k.AccountID, map[string]any{
			"key": t.KeyID, "name": t.Name, "tags": t.Tags, "expires_at": t.ExpiresAt,
		})
	})
	if err != nil {
		return nil, err
	}
	return &t.Token, nil
}

// UpdateToken changes token tokenID of key keyID, which p must cover. A
// token being rotated
// out keeps its expiry and cannot be extended past it.
func (ks *Keystore) UpdateToken(ctx context.Context, p Principal, keyID, tokenID string, patch TokenPatch) (*Token, error) {
	var out *Token
	err := ks.write(ctx, p, "updating token", func(c *change) error {
		k, t, err := writableToken(c, p, keyID, tokenID)
		if err != nil {
			return err
		}
		details := map[string]any{"key": k.ID}
		patch.apply(&t.Name, &t.Description, &t.Tags)
		patch.audit(details)
		if err := patch.checkRetiring(&t.Token); err != nil {
			return err
		}
		switch {
		case patch.ClearExpiry:
			t.ExpiresAt = nil
			details["expires_at"] = nil
		case patch.ExpiresAt != nil:
			t.ExpiresAt = timePtr(patch.ExpiresAt)
			details["expires_at"] = *t.ExpiresAt
		}
		if err := c.PutToken(t); err != nil {
			return err
		}
		out = &t.Token
		c.inv.Tokens = append(c.inv.Tokens, t.ID)
		return c.audit("token.update", t.ID, k.AccountID, details)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// RotateToken issues a new token whose value is secret in place of token
// tokenID of key keyID: same key, name, description and tags. The old
// token is deleted when r.Grace is zero, else it keeps working for the
// grace, clamped to its own expiry. A token already rotated cannot be rotated again (ErrConflict).
// p must cover the key.
func (ks *Keystore) RotateToken(ctx context.Context, p Principal, keyID, tokenID string, r Rotation, secret Secret) (*Rotated, error) {
	if r.Grace < 0 {
		return nil, invalid("grace", "grace must be a non-negative duration such as 24h")
	}
	var out Rotated
	next := &TokenRecord{Token: Token{ID: NewID(TokenIDPrefix), Hint: secret.Hint, ExpiresAt: timePtr(r.ExpiresAt)}, Hash: secret.Hash}
	err := ks.write(ctx, p, "rotating token", func(c *change) error {
		k, old, err := writableToken(c, p, keyID, tokenID)
		if err != nil {
			return err
		}
		if old.RotatedAt != nil {
			return &Error{Kind: ErrRetiring, Message: "the token was already rotated"}
		}
		n := *next
		n.KeyID, n.Name, n.Description, n.Tags = k.ID, old.Name, old.Description, tagsOrEmpty(old.Tags)
		if n.ExpiresAt == nil && old.ExpiresAt != nil {
			// Keep the old token's lifetime.
			e := c.at.Add(old.ExpiresAt.Sub(old.CreatedAt))
			n.ExpiresAt = &e
		}
		if err := insertToken(c, &n); err != nil {
			return err
		}
		out = Rotated{New: n.Token, OldExpiresAt: c.at}
		if r.Grace <= 0 {
			if err := deleteToken(c, old); err != nil {
				return err
			}
		} else {
			end := retireAt(c.at, old.ExpiresAt, r.Grace)
			at := c.at
			old.ExpiresAt, old.RotatedTo, old.RotatedAt = &end, n.ID, &at
			if err := c.PutToken(old); err != nil {
				return err
			}
			out.Old, out.OldExpiresAt = &old.Token, end
		}
		c.inv.Tokens = append(c.inv.Tokens, old.ID)
		return c.audit("token.rotate", old.ID, k.AccountID, map[string]any{
			"key": k.ID, "new_token": n.ID, "grace": r.Grace.String(),
		})
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteToken deletes token tokenID of key keyID, which p must cover.
func (ks *Keystore) DeleteToken(ctx context.Context, p Principal, keyID, tokenID string) error {
	return ks.write(ctx, p, "deleting token", func(c *change) error {
		k, t, err := writableToken(c, p, keyID, tokenID)
		if err != nil {
			return err
		}
		if err := deleteToken(c, t); err != nil {
			return err
		}
		c.inv.Tokens = append(c.inv.Tokens, t.ID)
		return c.audit("token.delete", t.ID, k.AccountID, map[string]any{"key": k.ID})
	})
}

// RevokeToken deletes the token with this hash, whatever its account:
// knowing a leaked value is enough to stop it. It returns the token;
// ErrNotFound when there is none.
func (ks *Keystore) RevokeToken(ctx context.Context, p Principal, hash token.Hash) (*Token, error) {
	var out *Token
	err := ks.write(ctx, p, "revoking token", func(c *change) error {
		t, err := c.TokenByHash(hash)
		if err != nil {
			return err
		}
		k, err := c.Key(t.KeyID)
		if err != nil {
			return err
		}
		if err := deleteToken(c, t); err != nil {
			return err
		}
		out = &t.Token
		c.inv.Tokens = append(c.inv.Tokens, t.ID)
		return c.audit("token.revoke", t.ID, k.AccountID, map[string]any{"key": k.ID, "hint": t.Hint})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// retireAt is when a token rotated out at now with a grace stops: at the
// end of the grace, or at its own expiry if that comes first. A grace that
// outlives the token is clamped, never an error: a scheduled job rotates
// exactly the tokens about to expire.
func retireAt(now time.Time, expiresAt *time.Time, grace time.Duration) time.Time {
	end := now.Add(grace)
	if expiresAt != nil && expiresAt.Before(end) {
		return *expiresAt
	}
	return end
}

// checkRetiring refuses, with ErrRetiring, a patch that would remove the
// expiry of t, a token being rotated out, or push it later.
func (p TokenPatch) checkRetiring(t *Token) error {
	if t.RotatedAt == nil {
		return nil
	}
	retiring := func(what string) error {
		return &Error{Kind: ErrRetiring, Field: "expires_at",
			Message: "the token is being rotated out: its expiry can be brought forward, not " + what}
	}
	switch {
	case p.ClearExpiry:
		return retiring("removed")
	case p.ExpiresAt != nil && t.ExpiresAt != nil && p.ExpiresAt.After(*t.ExpiresAt):
		return retiring("moved later than " + t.ExpiresAt.Format(time.RFC3339))
	}
	return nil
}
