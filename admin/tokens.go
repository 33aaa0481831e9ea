package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/keygate/keygate/storage"
)

// TokenWithSecret is a token as its creation answers it: with its value,
// shown this once.
type TokenWithSecret struct {
	Token
	Secret string `json:"secret"`
}

func (h *Handler) createToken(w http.ResponseWriter, r *http.Request, p Principal) error {
	// A new value of a key is that key's power: only for callers covering it.
	k, err := h.writableKey(r, p, r.PathValue("id"))
	if err != nil {
		return err
	}
	var req CreateTokenRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := checkLabels(storage.LabelPatch{Name: &req.Name, Description: &req.Description, Tags: &req.Tags}, false); err != nil {
		return err
	}
	expiresAt, err := parseExpiry("expires_at", req.ExpiresAt, time.Now())
	if err != nil {
		return err
	}
	secret := h.tokens.Generate()
	t := &storage.NewToken{
		Token: storage.Token{KeyID: k.ID, Name: req.Name, Description: req.Description, Tags: req.Tags,
			Hint: storage.Hint(secret), ExpiresAt: expiresAt},
		Hash: storage.HashToken(secret),
	}
	if err := h.store.CreateToken(r.Context(), p.Actor, t); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, TokenWithSecret{Token: tokenJSON(&t.Token, time.Now()), Secret: secret})
	return nil
}

// visibleToken loads the key with id and its token tid, if the caller may
// see them.
func (h *Handler) visibleToken(r *http.Request, p Principal) (*storage.Key, *storage.Token, error) {
	k, err := h.visibleKey(r, p, r.PathValue("id"))
	if err != nil {
		return nil, nil, err
	}
	tid := r.PathValue("tid")
	for i := range k.Tokens {
		if k.Tokens[i].ID == tid {
			return k, &k.Tokens[i], nil
		}
	}
	return nil, nil, errNotFound("key %s has no token %q", k.ID, tid)
}

// updateTokenBody is an UpdateTokenRequest with the fields that cannot be
// written.
type updateTokenBody struct {
	UpdateTokenRequest
	immutableFields
}

// immutableFields are fields of the objects that cannot be written. They
// are named so that sending one is a 400 naming it, not "unknown field".
type immutableFields struct {
	ID         json.RawMessage `json:"id"`
	Secret     json.RawMessage `json:"secret"`
	Hint       json.RawMessage `json:"hint"`
	Token      json.RawMessage `json:"token"`
	Value      json.RawMessage `json:"value"`
	Key        json.RawMessage `json:"key"`
	Status     json.RawMessage `json:"status"`
	CreatedAt  json.RawMessage `json:"created_at"`
	LastUsedAt json.RawMessage `json:"last_used_at"`
}

// check refuses any immutable field that was sent.
func (f immutableFields) check() error {
	for _, field := range []struct {
		name string
		v    json.RawMessage
	}{
		{"id", f.ID}, {"secret", f.Secret}, {"hint", f.Hint}, {"token", f.Token}, {"value", f.Value},
		{"key", f.Key}, {"status", f.Status}, {"created_at", f.CreatedAt}, {"last_used_at", f.LastUsedAt},
	} {
		if field.v != nil {
			return errInvalid(field.name, "%s cannot be changed", field.name)
		}
	}
	return nil
}

func (h *Handler) updateToken(w http.ResponseWriter, r *http.Request, p Principal) error {
	k, t, err := h.writableToken(r, p)
	if err != nil {
		return err
	}
	var req updateTokenBody
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := req.check(); err != nil {
		return err
	}
	patch := storage.TokenPatch{LabelPatch: storage.LabelPatch{Name: req.Name, Description: req.Description, Tags: req.Tags}}
	if err := checkLabels(patch.LabelPatch, false); err != nil {
		return err
	}
	if req.ExpiresAt != nil {
		if bytes.Equal(bytes.TrimSpace(req.ExpiresAt), []byte("null")) {
			patch.ClearExpiry = true
		} else {
			var v string
			if err := json.Unmarshal(req.ExpiresAt, &v); err != nil {
				return errInvalid("expires_at", "expires_at must be an RFC 3339 time or null")
			}
			exp, err := parseExpiry("expires_at", v, time.Now())
			if err != nil {
				return err
			}
			if exp == nil {
				return errInvalid("expires_at", "expires_at must be an RFC 3339 time or null")
			}
			patch.ExpiresAt = exp
		}
	}
	// The store refuses, in its transaction, to un-retire a token being
	// rotated out: checked here, a concurrent rotation could slip between.
	updated, err := h.store.UpdateToken(r.Context(), p.Actor, k.ID, t.ID, patch)
	if errors.Is(err, storage.ErrRetiring) {
		return errConflict("the token is being rotated out: its expiry can be brought forward, not removed or moved later")
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tokenJSON(updated, time.Now()))
	return nil
}

func (h *Handler) rotateToken(w http.ResponseWriter, r *http.Request, p Principal) error {
	k, old, err := h.writableToken(r, p)
	if err != nil {
		return err
	}
	var req RotateRequest
	if r.ContentLength != 0 {
		if err := decode(w, r, &req); err != nil {
			return err
		}
	}
	now := time.Now()
	var grace time.Duration
	if req.Grace != "" {
		grace, err = time.ParseDuration(req.Grace)
		if err != nil || grace < 0 {
			return errInvalid("grace", "grace must be a non-negative duration such as 24h")
		}
	}
	expiresAt, err := parseExpiry("expires_at", req.ExpiresAt, now)
	if err != nil {
		return err
	}
	if expiresAt == nil && old.ExpiresAt != nil {
		// Keep the old token's lifetime.
		e := now.Add(old.ExpiresAt.Sub(old.CreatedAt)).UTC()
		expiresAt = &e
	}
	secret := h.tokens.Generate()
	next := &storage.NewToken{
		Token: storage.Token{Hint: storage.Hint(secret), ExpiresAt: expiresAt},
		Hash:  storage.HashToken(secret),
	}
	// The store checks that the token is not retiring already and clamps
	// the grace to its expiry, in the rotation's transaction.
	retired, err := h.store.RotateToken(r.Context(), p.Actor, k.ID, old.ID, next, grace)
	if errors.Is(err, storage.ErrRetiring) {
		return errConflict("the token was already rotated")
	}
	if err != nil {
		return err
	}
	answer := RotatedToken{TokenWithSecret: TokenWithSecret{Token: tokenJSON(&next.Token, now), Secret: secret}, OldTokenExpiresAt: time.Now().UTC()}
	if retired != nil && retired.ExpiresAt != nil {
		answer.OldTokenExpiresAt = *retired.ExpiresAt
	}
	writeJSON(w, http.StatusCreated, answer)
	return nil
}

// RotatedToken is what a rotation answers: the new token with its value,
// and when the old one stops working: at the end of the grace, or at its
// own expiry when that comes first (the grace is clamped to it); at the
// rotation when there is no grace.
type RotatedToken struct {
	TokenWithSecret
	OldTokenExpiresAt time.Time `json:"old_token_expires_at"`
}

func errConflict(message string) *apiError {
	return &apiError{status: http.StatusConflict, code: "conflict", message: message}
}

func (h *Handler) deleteToken(w http.ResponseWriter, r *http.Request, p Principal) error {
	k, t, err := h.writableToken(r, p)
	if err != nil {
		return err
	}
	if err := h.store.DeleteToken(r.Context(), p.Actor, k.ID, t.ID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// revoke deletes the token whose value the caller knows, whatever its
// account: knowing a leaked value is enough to stop it.
func (h *Handler) revoke(w http.ResponseWriter, r *http.Request, p Principal) error {
	var req RevokeRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	token := strings.TrimSpace(req.Token)
	if !h.tokens.Valid(token) {
		return errInvalid("token", "token is not a well-formed %s- token", h.tokens.Prefix())
	}
	if _, err := h.store.RevokeToken(r.Context(), p.Actor, storage.HashToken(token)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
