package admin

import (
	"encoding/json"
	"net/http"

	"github.com/keygate/keygate/storage"
)

// createAccountBody is a CreateAccountRequest with its policy fields raw
// (policy.go).
type createAccountBody struct {
	CreateAccountRequest
	Limits     json.RawMessage `json:"limits"`
	AllowedIPs json.RawMessage `json:"allowed_ips"`
}

func (h *Handler) createAccount(w http.ResponseWriter, r *http.Request, p Principal) error {
	var req createAccountBody
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := checkText("name", req.Name, true, maxNameLen); err != nil {
		return err
	}
	if err := checkText("team", req.Team, false, maxNameLen); err != nil {
		return err
	}
	if err := checkScopes("scopes", req.Scopes); err != nil {
		return err
	}
	policy, err := policyOf(req.Limits, req.AllowedIPs, false)
	if err != nil {
		return err
	}
	a, err := h.ks.CreateAccount(r.Context(), p, storage.NewAccount{
		Name: req.Name, Kind: req.Kind, Team: req.Team, Scopes: req.Scopes, Disabled: req.Disabled, Policy: policy,
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, accountJSON(a))
	return nil
}

func (h *Handler) listAccounts(w http.ResponseWriter, r *http.Request, p Principal) error {
	opts, err := listOptions(r)
	if err != nil {
		return err
	}
	accounts, next, err := h.ks.Accounts(r.Context(), p, opts)
	if err != nil {
		return err
	}
	out := List[Account]{Items: make([]Account, len(accounts)), Next: next}
	for i := range accounts {
		out.Items[i] = accountJSON(&accounts[i])
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *Handler) getAccount(w http.ResponseWriter, r *http.Request, p Principal) error {
	a, err := h.ks.Account(r.Context(), p, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, accountJSON(a))
	return nil
}

// updateAccountBody is an UpdateAccountRequest with the immutable fields,
// named so that sending them is a clear 400 rather than an "unknown field".
type updateAccountBody struct {
	UpdateAccountRequest
	ID         *string         `json:"id"`
	Kind       *string         `json:"kind"`
	Limits     json.RawMessage `json:"limits"`
	AllowedIPs json.RawMessage `json:"allowed_ips"`
}

func (h *Handler) updateAccount(w http.ResponseWriter, r *http.Request, p Principal) error {
	var req updateAccountBody
	if err := decode(w, r, &req); err != nil {
		return err
	}
	switch {
	case req.ID != nil:
		return errInvalid("id", "id cannot be changed")
	case req.Kind != nil:
		return errInvalid("kind", "kind cannot be changed")
	}
	if req.Name != nil {
		if err := checkText("name", *req.Name, true, maxNameLen); err != nil {
			return err
		}
	}
	if req.Team != nil {
		if err := checkText("team", *req.Team, false, maxNameLen); err != nil {
			return err
		}
	}
	if req.Scopes != nil {
		if err := checkScopes("scopes", *req.Scopes); err != nil {
			return err
		}
	}
	policy, err := policyOf(req.Limits, req.AllowedIPs, true)
	if err != nil {
		return err
	}
	patch := storage.AccountPatch{Name: req.Name, Team: req.Team, Scopes: req.Scopes, Disabled: req.Disabled}
	if req.Limits != nil {
		patch.Limits = &policy.Limits
	}
	if req.AllowedIPs != nil {
		patch.AllowedIPs = &policy.AllowedIPs
	}
	a, err := h.ks.UpdateAccount(r.Context(), p, r.PathValue("id"), patch)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, accountJSON(a))
	return nil
}

func (h *Handler) deleteAccount(w http.ResponseWriter, r *http.Request, p Principal) error {
	if err := h.ks.DeleteAccount(r.Context(), p, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
