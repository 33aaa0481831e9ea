package admin

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/storage"
)

// createKeyBody is a CreateKeyRequest with its policy fields raw
// (policy.go).
type createKeyBody struct {
	CreateKeyRequest
	Limits     json.RawMessage `json:"limits"`
	AllowedIPs json.RawMessage `json:"allowed_ips"`
	Credits    json.RawMessage `json:"credits"`
}

func (h *Handler) createKey(w http.ResponseWriter, r *http.Request, p Principal) error {
	var req createKeyBody
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
	if err := checkText("account", req.Account, false, maxNameLen); err != nil {
		return err
	}
	policy, err := policyOf(req.Limits, req.AllowedIPs, false)
	if err != nil {
		return err
	}
	if req.Credits != nil {
		if policy.Credits, err = parseCredits(req.Credits); err != nil {
			return err
		}
	}
	secret := h.tokens.Generate()
	k, err := h.ks.CreateKey(r.Context(), p, storage.NewKey{
		Account: req.Account, Name: req.Name, Description: req.Description, Tags: req.Tags,
		Scopes: req.Scopes, ExpiresAt: expiresAt, Policy: policy,
	}, storage.NewSecret(secret))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, KeyWithSecret{Key: keyJSON(k, time.Now()), Secret: secret})
	return nil
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
	q := r.URL.Query()
	f := storage.KeyFilter{ListOptions: opts, Account: q.Get("account")}
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
	keys, next, err := h.ks.Keys(r.Context(), p, f)
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

// keyID returns the {id} of the path if it is well-formed text; a bad
// one names no key.
func keyID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if checkText("id", id, true, maxNameLen) != nil {
		return "", errNotFound("no key %q", id)
	}
	return id, nil
}

func (h *Handler) getKey(w http.ResponseWriter, r *http.Request, p Principal) error {
	id, err := keyID(r)
	if err != nil {
		return err
	}
	k, err := h.ks.Key(r.Context(), p, id)
	if err != nil {
		return err
	}
	out := keyJSON(k, time.Now())
	if h.usage.p.Load() != nil {
		a, err := h.ks.Account(r.Context(), p, k.AccountID)
		if err != nil {
			return err
		}
		out.Usage = h.usageOf(r.Context(), k, a)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *Handler) deleteKey(w http.ResponseWriter, r *http.Request, p Principal) error {
	id, err := keyID(r)
	if err != nil {
		return err
	}
	if err := h.ks.DeleteKey(r.Context(), p, id); err != nil {
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
	Account    json.RawMessage `json:"account"`
	Tokens     json.RawMessage `json:"tokens"`
	CreatedBy  json.RawMessage `json:"created_by"`
	Effective  json.RawMessage `json:"effective_scopes"`
	Usage      json.RawMessage `json:"usage"`
	Limits     json.RawMessage `json:"limits"`
	AllowedIPs json.RawMessage `json:"allowed_ips"`
}

func (h *Handler) updateKey(w http.ResponseWriter, r *http.Request, p Principal) error {
	id, err := keyID(r)
	if err != nil {
		return err
	}
	// A key the caller cannot see is 404 before its body is judged.
	if _, err := h.ks.Key(r.Context(), p, id); err != nil {
		return err
	}
	var req updateKeyBody
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := req.check(); err != nil {
		return err
	}
	for name, v := range map[string]json.RawMessage{"account": req.Account, "tokens": req.Tokens, "created_by": req.CreatedBy,
		"effective_scopes": req.Effective, "usage": req.Usage} {
		if v != nil {
			return errInvalid(name, "%s cannot be changed", name)
		}
	}
	patch := storage.KeyPatch{LabelPatch: storage.LabelPatch{Name: req.Name, Description: req.Description, Tags: req.Tags}}
	if err := checkLabels(patch.LabelPatch, true); err != nil {
		return err
	}
	if req.Scopes != nil {
		var scopes []string // null: inherit
		if err := json.Unmarshal(req.Scopes, &scopes); err != nil {
			return errInvalid("scopes", "scopes must be a list of scopes or null")
		}
		if err := checkScopes("scopes", scopes); err != nil {
			return err
		}
		patch.Scopes = &scopes
	}
	policy, err := policyOf(req.Limits, req.AllowedIPs, true)
	if err != nil {
		return err
	}
	if req.Limits != nil {
		patch.Limits = &policy.Limits
	}
	if req.AllowedIPs != nil {
		patch.AllowedIPs = &policy.AllowedIPs
	}
	if req.Credits != nil {
		if patch.Credits, patch.ClearCredits, err = parseCreditsPatch(req.Credits); err != nil {
			return err
		}
	}
	updated, err := h.ks.UpdateKey(r.Context(), p, id, patch)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, keyJSON(updated, time.Now()))
	return nil
}
