package console

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/keygate/keygate/admin"
)

// keyData is the key page's.
type keyData struct {
	Key *admin.Key
	// Secret is a token value just made (rotation), shown this once.
	Secret string
	Chart  *chart
	// Form holds the edit form's values.
	Form                           keyForm
	CanUpdate, CanDelete, CanWrite bool
	// Own marks the token the caller signed in with.
	Own string
	// Notice says what the last write did.
	Notice string
}

// keyForm is the values of the key's edit form.
type keyForm struct {
	Name, Description, Tags string
}

func (c *Console) loadKey(w http.ResponseWriter, r *http.Request, cl *caller) *admin.Key {
	k, err := cl.api.GetKey(r.Context(), r.PathValue("id"))
	if err != nil {
		c.apiFailed(w, r, cl, err)
		return nil
	}
	return k
}

// showKey renders the key page of k, with an error or a new secret.
func (c *Console) showKey(w http.ResponseWriter, r *http.Request, cl *caller, k *admin.Key, status int, d keyData, ferr *formError) {
	d.Key = k
	if d.Form == (keyForm{}) {
		d.Form = keyForm{Name: k.Name, Description: k.Description, Tags: tagText(k.Tags)}
	}
	d.CanUpdate, d.CanDelete = cl.has("api_keys:update"), cl.has("api_keys:delete")
	d.CanWrite = d.CanUpdate || d.CanDelete
	if cl.p.TokenID != "" {
		d.Own = cl.p.TokenID
	}
	d.Chart = c.usageChart(r, cl, k.ID)
	c.render(w, r, status, "key", view{Title: "Key " + k.Name, Caller: cl, Data: d, Error: ferr, Notice: d.Notice})
}

func (c *Console) keyPage(w http.ResponseWriter, r *http.Request, cl *caller) {
	if k := c.loadKey(w, r, cl); k != nil {
		d := keyData{}
		switch q := r.URL.Query(); {
		case q.Has("saved"):
			d.Notice = "Saved."
		case q.Has("revoked"):
			d.Notice = "The token is revoked."
		}
		c.showKey(w, r, cl, k, http.StatusOK, d, nil)
	}
}

// editKey changes the key's name, description and tags.
func (c *Console) editKey(w http.ResponseWriter, r *http.Request, cl *caller) {
	f := keyForm{Name: strings.TrimSpace(r.PostForm.Get("name")), Description: r.PostForm.Get("description"), Tags: r.PostForm.Get("tags")}
	tags, ferr := formTags(f.Tags)
	c.saveEdit(w, r, cl, keyData{Form: f}, ferr, func() error {
		_, err := cl.api.UpdateKey(r.Context(), r.PathValue("id"), admin.UpdateKeyRequest{Name: &f.Name, Description: &f.Description, Tags: &tags})
		return err
	})
}

// editToken changes a token's expiry (an empty field clears it).
func (c *Console) editToken(w http.ResponseWriter, r *http.Request, cl *caller) {
	at, ferr := formTime("expires_at", r.PostForm.Get("expires_at"))
	c.saveEdit(w, r, cl, keyData{}, ferr, func() error {
		raw := json.RawMessage("null")
		if at != "" {
			raw, _ = json.Marshal(at)
		}
		_, err := cl.api.UpdateToken(r.Context(), r.PathValue("id"), r.PathValue("tid"), admin.UpdateTokenRequest{ExpiresAt: raw})
		return err
	})
}

// saveEdit runs edit, an API call on the key of the path, unless the form
// was bad (ferr): done, back to the key's page; refused, the key's page
// with the form, the API's error and the status it answered.
func (c *Console) saveEdit(w http.ResponseWriter, r *http.Request, cl *caller, d keyData, ferr *formError, edit func() error) {
	status := http.StatusBadRequest
	if ferr == nil {
		err := edit()
		switch {
		case err == nil:
			http.Redirect(w, r, mountOf(r).Base+"/keys/"+r.PathValue("id")+"?saved=1", http.StatusSeeOther)
			return
		case statusOf(err) == http.StatusNotFound:
			c.apiFailed(w, r, cl, err)
			return
		}
		status, ferr = statusOf(err), errorOf(err)
	}
	if k := c.loadKey(w, r, cl); k != nil {
		c.showKey(w, r, cl, k, status, d, ferr)
	}
}

// rotateToken replaces a token; the old one stops after the grace. The
// new value is in this answer only.
func (c *Console) rotateToken(w http.ResponseWriter, r *http.Request, cl *caller) {
	rot, err := cl.api.RotateToken(r.Context(), r.PathValue("id"), r.PathValue("tid"),
		admin.RotateRequest{Grace: strings.TrimSpace(r.PostForm.Get("grace"))})
	if err != nil && statusOf(err) == http.StatusNotFound {
		c.apiFailed(w, r, cl, err)
		return
	}
	k := c.loadKey(w, r, cl)
	if k == nil {
		return
	}
	if err != nil {
		c.showKey(w, r, cl, k, statusOf(err), keyData{}, errorOf(err))
		return
	}
	c.showKey(w, r, cl, k, http.StatusOK, keyData{Secret: rot.Secret}, nil)
}

// confirmData is a confirmation page's.
type confirmData struct {
	Action, Question, Button, Back string
}

func (c *Console) revokePage(w http.ResponseWriter, r *http.Request, cl *caller) {
	k := c.loadKey(w, r, cl)
	if k == nil {
		return
	}
	tid := r.PathValue("tid")
	for _, t := range k.Tokens {
		if t.ID == tid {
			base := mountOf(r).Base + "/keys/" + k.ID
			c.render(w, r, http.StatusOK, "confirm", view{Title: "Revoke token", Caller: cl, Data: confirmData{
				Action: base + "/tokens/" + t.ID + "/revoke", Back: base, Button: "Revoke token",
				Question: "Revoke token " + t.Name + " (" + t.Hint + ") of key " + k.Name + "? Requests with it are refused at once. This cannot be undone.",
			}})
			return
		}
	}
	c.message(w, r, http.StatusNotFound, cl, "Not found", "Key "+k.ID+" has no token "+tid+".")
}

// revokeToken deletes a token: it stops at once, on every node.
func (c *Console) revokeToken(w http.ResponseWriter, r *http.Request, cl *caller) {
	if err := cl.api.DeleteToken(r.Context(), r.PathValue("id"), r.PathValue("tid")); err != nil {
		c.apiFailed(w, r, cl, err)
		return
	}
	http.Redirect(w, r, mountOf(r).Base+"/keys/"+r.PathValue("id")+"?revoked=1", http.StatusSeeOther)
}

func (c *Console) deleteKeyPage(w http.ResponseWriter, r *http.Request, cl *caller) {
	k := c.loadKey(w, r, cl)
	if k == nil {
		return
	}
	base := mountOf(r).Base + "/keys/" + k.ID
	c.render(w, r, http.StatusOK, "confirm", view{Title: "Delete key", Caller: cl, Data: confirmData{
		Action: base + "/delete", Back: base, Button: "Delete key",
		Question: "Delete key " + k.Name + " (" + k.ID + ") and all its tokens? Requests with any of them are refused at once. This cannot be undone.",
	}})
}

func (c *Console) deleteKey(w http.ResponseWriter, r *http.Request, cl *caller) {
	if err := cl.api.DeleteKey(r.Context(), r.PathValue("id")); err != nil {
		c.apiFailed(w, r, cl, err)
		return
	}
	http.Redirect(w, r, mountOf(r).Base+"/keys?deleted=1", http.StatusSeeOther)
}
