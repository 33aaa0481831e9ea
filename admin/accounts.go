package admin

import (
	"net/http"
	"strings"

	"github.com/keygate/keygate/internal/scope"
	"github.com/keygate/keygate/storage"
)

func checkAccountName(name string) error {
	if err := checkText("name", name, true, maxNameLen); err != nil {
		return err
	}
	// Accounts are found by id or name: a name shaped like an id would be ambiguous.
	if strings.HasPrefix(name, storage.AccountIDPrefix) {
		return errInvalid("name", "name must not start with %q, which marks account ids", storage.AccountIDPrefix)
	}
	return nil
}

// checkGrant refuses scopes the caller does not hold itself.
func checkGrant(p Principal, scopes []string) error {
	if missing, ok := scope.Missing(p.Scopes, scopes); ok {
		return errForbiddenScope(missing)
	}
	return nil
}

func (h *Handler) createAccount(w http.ResponseWriter, r *http.Request, p Principal) error {
	var req CreateAccountRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := checkAccountName(req.Name); err != nil {
		return err
	}
	switch req.Kind {
	case "":
		req.Kind = storage.KindUser
	case storage.KindUser, storage.KindService:
	default:
		return errInvalid("kind", "kind must be %q or %q", storage.KindUser, storage.KindService)
	}
	if err := checkText("team", req.Team, false, maxNameLen); err != nil {
		return err
	}
	if err := checkScopes("scopes", req.Scopes); err != nil {
		return err
	}
	if err := checkGrant(p, req.Scopes); err != nil {
		return err
	}
	a := &storage.Account{
		Name: req.Name, Kind: req.Kind, Team: req.Team,
		Scopes: scope.Normalize(req.Scopes), Disabled: req.Disabled,
	}
	if err := h.store.CreateAccount(r.Context(), p.Actor, a); err != nil {
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
	accounts, next, err := h.store.ListAccounts(r.Context(), opts)
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
	a, err := h.visibleAccount(r, p, r.PathValue("id"))
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
	ID   *string `json:"id"`
	Kind *string `json:"kind"`
}

func (h *Handler) updateAccount(w http.ResponseWriter, r *http.Request, p Principal) error {
	// Editing or re-enabling an account hands its scopes to its keys: only
	// for callers holding them all. The refusal comes before any answer
	// that would show the account.
	current, err := h.writableAccount(r, p, r.PathValue("id"))
	if err != nil {
		return err
	}
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
		if err := checkAccountName(*req.Name); err != nil {
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
		if err := checkGrant(p, *req.Scopes); err != nil {
			return err
		}
		normalized := scope.Normalize(*req.Scopes)
		req.Scopes = &normalized
	}
	a, err := h.store.UpdateAccount(r.Context(), p.Actor, current.ID, storage.AccountPatch{
		Name: req.Name, Team: req.Team, Scopes: req.Scopes, Disabled: req.Disabled,
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, accountJSON(a))
	return nil
}

func (h *Handler) deleteAccount(w http.ResponseWriter, r *http.Request, p Principal) error {
	a, err := h.writableAccount(r, p, r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := h.store.DeleteAccount(r.Context(), p.Actor, a.ID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
