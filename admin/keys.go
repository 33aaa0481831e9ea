package admin

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/scope"
	"github.com/keygate/keygate/storage"
)

// firstTokenName names the token a key is created with.
const firstTokenName = "default"

func (h *Handler) createKey(w http.ResponseWriter, r *http.Request, p Principal) error {
	var req CreateKeyRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := checkLabels(storage.LabelPatch{Name: &req.Name, Description: &req.Description, Tags: &req.Tags}, true); err != nil {
		return err
	}
	if err := checkScopes("scopes", req.Scopes); err != nil {
		return err
	}
	expiresAt, err := parseExpiry("expires_at", req.ExpiresAt, time.Now())
	if err != nil {
		return err
	}
	account, err := h.resolveAccount(r, p, req.Account)
	if err != nil {
		return err
	}
	if account.ID != p.AccountID {
		// A key placed in another account speaks for that account.
		if err := canActOnAccount(p, account, req.Account); err != nil {
			return err
		}
	}

	var scopes []string // nil: inherit the account's scopes, live
	switch {
	case req.Scopes != nil: // [] is a key that holds nothing, not one that inherits

		if err := checkGrant(p, req.Scopes); err != nil {
			return err
		}
		scopes = scope.Normalize(req.Scopes)
	case !p.trusted():
		// Never a live inheritance wider than the caller: write its scopes.
		scopes = scope.Normalize(p.Scopes)
	}

	secret := h.tokens.Generate()
	k := &storage.Key{
		AccountID: account.ID, Name: req.Name, Description: req.Description,
		Tags: req.Tags, Scopes: scopes,
	}
	first := &storage.NewToken{
		Token: storage.Token{Name: firstTokenName, Hint: storage.Hint(secret), ExpiresAt: expiresAt},
		Hash:  storage.HashToken(secret),
	}
	if err := h.store.CreateKey(r.Context(), p.Actor, k, first); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, KeyWithSecret{Key: keyJSON(k, time.Now()), Secret: secret})
	return nil
}

// resolveAccount finds the account a key request names (by id or name), or
// the caller's own when it names none. Accounts the caller may not see are
// not found.
func (h *Handler) resolveAccount(r *http.Request, p Principal, ref string) (*storage.Account, error) {
	if ref == "" {
		if p.trusted() {
			return nil, errInvalid("account", "account is required")
		}
		ref = p.AccountID
	}
	a, err := h.visibleAccount(r, p, ref)
	var ae *apiError
	if errors.As(err, &ae) && ae.status == http.StatusNotFound {
		ae.field = "account"
	}
	return a, err
}

// parseExpiry reads an optional RFC 3339 time that must lie in the future.
func parseExpiry(field, v string, now time.Time) (*time.Time, error) {
	if v == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return nil, errInvalid(field, "%s must be an RFC 3339 time such as 2030-01-02T15:04:05Z", field)
	}
	if !t.After(now) {
		return nil, errInvalid(field, "%s must lie in the future", field)
	}
	t = t.UTC()
	return &t, nil
}

func (h *Handler) listKeys(w http.ResponseWriter, r *http.Request, p Principal) error {
	opts, err := listOptions(r)
	if err != nil {
		return err
	}
	f := storage.KeyFilter{ListOptions: opts}
	q := r.URL.Query()
	if ref := q.Get("account"); ref != "" {
		a, err := h.resolveAccount(r, p, ref)
		if err != nil {
			return err
		}
		f.AccountID = a.ID
	} else if !p.seesAllAccounts() {
		f.AccountID = p.AccountID
	}
	for _, tag := range q["tag"] {
		k, v, ok := strings.Cut(tag, ":")
		if !ok || k == "" {
			return errInvalid("tag", "tag filter %q must be key:value", tag)
		}
		if f.Tags == nil {
			f.Tags = map[string]string{}
		}
		f.Tags[k] = v
	}
	keys, next, err := h.store.ListKeys(r.Context(), f)
	if err != nil {
		return err
	}
	now := time.Now()
	out := List[Key]{Items: make([]Key, len(keys)), Next: next}
	for i := range keys {
		out.Items[i] = keyJSON(&keys[i], now)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// listOptions reads ?limit= and ?after=.
func listOptions(r *http.Request) (storage.ListOptions, error) {
	q := r.URL.Query()
	var opts storage.ListOptions
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > storage.MaxPageSize {
			return opts, errInvalid("limit", "limit must be an integer from 1 to %d", storage.MaxPageSize)
		}
		opts.Limit = n
	}
	opts.After = q.Get("after")
	for field, values := range q {
		for _, v := range values {
			if err := checkText(field, v, false, maxTagKeyLen+maxTagValueLen+1); err != nil {
				return opts, err
			}
		}
	}
	return opts, nil
}

func (h *Handler) getKey(w http.ResponseWriter, r *http.Request, p Principal) error {
	k, err := h.visibleKey(r, p, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, keyJSON(k, time.Now()))
	return nil
}

func (h *Handler) deleteKey(w http.ResponseWriter, r *http.Request, p Principal) error {
	k, err := h.writableKey(r, p, r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := h.store.DeleteKey(r.Context(), p.Actor, k.ID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// updateKeyBody is an UpdateKeyRequest with the fields that cannot be
// written, named so that sending one is a 400 naming it.
type updateKeyBody struct {
	UpdateKeyRequest
	immutableFields
	Account   json.RawMessage `json:"account"`
	Tokens    json.RawMessage `json:"tokens"`
	CreatedBy json.RawMessage `json:"created_by"`
	Effective json.RawMessage `json:"effective_scopes"`
}

func (h *Handler) updateKey(w http.ResponseWriter, r *http.Request, p Principal) error {
	k, err := h.writableKey(r, p, r.PathValue("id"))
	if err != nil {
		return err
	}
	var req updateKeyBody
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := req.check(); err != nil {
		return err
	}
	for name, v := range map[string]json.RawMessage{"account": req.Account, "tokens": req.Tokens, "created_by": req.CreatedBy, "effective_scopes": req.Effective} {
		if v != nil {
			return errInvalid(name, "%s cannot be changed", name)
		}
	}
	patch := storage.KeyPatch{LabelPatch: storage.LabelPatch{Name: req.Name, Description: req.Description, Tags: req.Tags}}
	if err := checkLabels(patch.LabelPatch, true); err != nil {
		return err
	}
	if req.Scopes != nil {
		var scopes []string
		if err := json.Unmarshal(req.Scopes, &scopes); err != nil {
			return errInvalid("scopes", "scopes must be a list of scopes or null")
		}
		switch {
		case scopes != nil: // [] holds nothing; null inherits

			if err := checkScopes("scopes", scopes); err != nil {
				return err
			}
			if err := checkGrant(p, scopes); err != nil {
				return err
			}
			scopes = scope.Normalize(scopes)
			patch.Scopes = &scopes
		case p.trusted():
			patch.InheritScopes = true
		default:
			// Never a live inheritance wider than the caller.
			own := scope.Normalize(p.Scopes)
			patch.Scopes = &own
		}
	}
	updated, err := h.store.UpdateKey(r.Context(), p.Actor, k.ID, patch)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, keyJSON(updated, time.Now()))
	return nil
}
