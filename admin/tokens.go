package admin

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/token"
)

// TokenWithSecret is a token as its creation answers it: with its value,
// shown this once.
type TokenWithSecret struct {
	Token
	Secret string `json:"secret"`
}

func (h *Handler) createToken(w http.ResponseWriter, r *http.Request, p Principal) error {
	id, err := keyID(r)
	if err != nil {
		return err
	}
	if _, err := h.ks.Key(r.Context(), p, id); err != nil {
		return err // a key the caller cannot see is 404 before its body is judged
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
	t, err := h.ks.CreateToken(r.Context(), p, id, storage.NewToken{
		Name: req.Name, Description: req.Description, Tags: req.Tags, ExpiresAt: expiresAt,
	}, storage.NewSecret(secret))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, TokenWithSecret{Token: tokenJSON(t, time.Now()), Secret: secret})
	return nil
}

// tokenPath returns the key and token ids of the path, once the caller
// is known to see them: a token it cannot see is 404 before the body is
// judged.
func (h *Handler) tokenPath(r *http.Request, p Principal) (string, string, error) {
	kid, err := keyID(r)
	if err != nil {
		return "", "", err
	}
	k, err := h.ks.Key(r.Context(), p, kid)
	if err != nil {
		return "", "", err
	}
	tid := r.PathValue("tid")
	for i := range k.Tokens {
		if k.Tokens[i].ID == tid {
			return k.ID, tid, nil
		}
	}
	return "", "", errNotFound("key %s has no token %q", k.ID, tid)
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
	kid, tid, err := h.tokenPath(r, p)
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
	updated, err := h.ks.UpdateToken(r.Context(), p, kid, tid, patch)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tokenJSON(updated, time.Now()))
	return nil
}

func (h *Handler) rotateToken(w http.ResponseWriter, r *http.Request, p Principal) error {
	kid, tid, err := h.tokenPath(r, p)
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
	var rot storage.Rotation
	if req.Grace != "" {
		rot.Grace, err = time.ParseDuration(req.Grace)
		if err != nil || rot.Grace < 0 {
			return errInvalid("grace", "grace must be a non-negative duration such as 24h")
		}
	}
	if rot.ExpiresAt, err = parseExpiry("expires_at", req.ExpiresAt, now); err != nil {
		return err
	}
	secret := h.tokens.Generate()
	rotated, err := h.ks.RotateToken(r.Context(), p, kid, tid, rot, storage.NewSecret(secret))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, RotatedToken{
		TokenWithSecret:   TokenWithSecret{Token: tokenJSON(&rotated.New, now), Secret: secret},
		OldTokenExpiresAt: rotated.OldExpiresAt,
	})
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

func (h *Handler) deleteToken(w http.ResponseWriter, r *http.Request, p Principal) error {
	kid, tid, err := h.tokenPath(r, p)
	if err != nil {
		return err
	}
	if err := h.ks.DeleteToken(r.Context(), p, kid, tid); err != nil {
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
	value := strings.TrimSpace(req.Token)
	if !h.tokens.Valid(value) {
		return errInvalid("token", "token is not a well-formed %s- token", h.tokens.Prefix())
	}
	if _, err := h.ks.RevokeToken(r.Context(), p, token.Sum(value)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
