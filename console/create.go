package console

import (
	"net/http"
	"strings"

	"github.com/keygate/keygate/admin"
)

// newKeyData is the create page's.
type newKeyData struct {
	// Scopes are the caller's own, offered as boxes: a key gets at most
	// those (the API refuses more).
	Scopes []string
	Form   newKeyForm
	// SeesAccounts offers the account field.
	SeesAccounts bool
}

// newKeyForm is the values of the create form.
type newKeyForm struct {
	Account, Name, Description, Tags, MoreScopes, ExpiresAt string
	Chosen                                                  map[string]bool
}

// createdData is the page of a key just created, with its secret.
type createdData struct {
	Key    *admin.KeyWithSecret
	Secret string
}

func (c *Console) newKeyPage(w http.ResponseWriter, r *http.Request, cl *caller) {
	c.renderNewKey(w, r, cl, http.StatusOK, newKeyForm{}, nil)
}

func (c *Console) renderNewKey(w http.ResponseWriter, r *http.Request, cl *caller, status int, f newKeyForm, ferr *formError) {
	c.render(w, r, status, "newkey", view{Title: "New key", Caller: cl, Error: ferr, Data: newKeyData{
		Scopes: cl.Scopes, Form: f, SeesAccounts: cl.has("accounts:read"),
	}})
}

// createKey creates a key and shows its secret, in this answer only.
func (c *Console) createKey(w http.ResponseWriter, r *http.Request, cl *caller) {
	form := r.PostForm
	f := newKeyForm{Account: strings.TrimSpace(form.Get("account")), Name: strings.TrimSpace(form.Get("name")),
		Description: form.Get("description"), Tags: form.Get("tags"), MoreScopes: form.Get("more_scopes"),
		ExpiresAt: form.Get("expires_at"), Chosen: map[string]bool{}}
	for _, s := range form["scope"] {
		f.Chosen[s] = true
	}
	tags, ferr := formTags(f.Tags)
	if ferr != nil {
		c.renderNewKey(w, r, cl, http.StatusBadRequest, f, ferr)
		return
	}
	expires, ferr := formTime("expires_at", f.ExpiresAt)
	if ferr != nil {
		c.renderNewKey(w, r, cl, http.StatusBadRequest, f, ferr)
		return
	}
	k, err := cl.api.CreateKey(r.Context(), admin.CreateKeyRequest{
		Account: f.Account, Name: f.Name, Description: f.Description, Tags: tags,
		Scopes: formScopes(form), ExpiresAt: expires,
	})
	if err != nil {
		c.renderNewKey(w, r, cl, statusOf(err), f, errorOf(err))
		return
	}
	c.render(w, r, http.StatusCreated, "created", view{Title: "Key created", Caller: cl, Data: createdData{Key: k, Secret: k.Secret}})
}
