package console

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/token"
)

// routes registers the console's pages.
func (c *Console) routes() {
	m := c.mux
	m.Handle("GET /static/", serveStatic())
	m.HandleFunc("GET /{$}", c.home)
	m.HandleFunc("GET /signin", c.signInPage)
	m.HandleFunc("POST /signin", c.signIn)
	m.HandleFunc("POST /signout", c.signOut)
	m.HandleFunc("GET /keys", c.with(c.keysPage))
	m.HandleFunc("GET /keys/new", c.with(c.newKeyPage))
	m.HandleFunc("POST /keys", c.with(c.createKey))
	m.HandleFunc("GET /keys/{id}", c.with(c.keyPage))
	m.HandleFunc("POST /keys/{id}", c.with(c.editKey))
	m.HandleFunc("GET /keys/{id}/delete", c.with(c.deleteKeyPage))
	m.HandleFunc("POST /keys/{id}/delete", c.with(c.deleteKey))
	m.HandleFunc("POST /keys/{id}/tokens/{tid}/rotate", c.with(c.rotateToken))
	m.HandleFunc("POST /keys/{id}/tokens/{tid}", c.with(c.editToken))
	m.HandleFunc("GET /keys/{id}/tokens/{tid}/revoke", c.with(c.revokePage))
	m.HandleFunc("POST /keys/{id}/tokens/{tid}/revoke", c.with(c.revokeToken))
	m.HandleFunc("GET /accounts", c.with(c.accountsPage))
	m.HandleFunc("GET /audit", c.with(c.auditPage))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c.message(w, r, http.StatusNotFound, nil, "Not found", "There is no page at "+r.URL.Path+".")
	})
}

// with runs fn for a signed-in caller; a POST must also pass write's
// checks first.
func (c *Console) with(fn func(w http.ResponseWriter, r *http.Request, cl *caller)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			// The origin is checked before anything else is looked at.
			if err := c.origins.Check(r); err != nil {
				c.forbidden(w, r, "This form was sent from another site; the console only accepts its own forms.")
				return
			}
		}
		cl := c.signedIn(w, r)
		if cl == nil {
			return
		}
		if r.Method == http.MethodPost && !c.write(w, r, cl) {
			return
		}
		fn(w, r, cl)
	}
}

func (c *Console) home(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.sessions.get(r); ok || mountOf(r).Identity != "" {
		http.Redirect(w, r, mountOf(r).Base+"/keys", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, mountOf(r).Base+"/signin", http.StatusSeeOther)
}

func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.sessions.get(r); ok {
		http.Redirect(w, r, mountOf(r).Base+"/keys", http.StatusSeeOther)
		return
	}
	c.renderSignIn(w, r, http.StatusOK, "", "")
}

// renderSignIn renders the sign-in form with a notice or an error.
func (c *Console) renderSignIn(w http.ResponseWriter, r *http.Request, status int, notice, errLine string) {
	v := view{Title: "Sign in", Notice: notice, Data: mountOf(r).Identity}
	if errLine != "" {
		v.Error = &formError{Message: errLine, Field: "key"}
	}
	c.render(w, r, status, "signin", v)
}

// signIn starts a session for a pasted key. The key travels in the form
// body only; the session keeps its hash.
func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	if !c.write(w, r, nil) {
		return
	}
	ks := c.cfg.Keystore()
	if ks == nil || c.cfg.API() == nil {
		c.unavailable(w, r)
		return
	}
	value := strings.TrimSpace(r.PostForm.Get("key"))
	if value == "" {
		c.renderSignIn(w, r, http.StatusBadRequest, "", "Paste a key to sign in.")
		return
	}
	if !c.cfg.Tokens.Valid(value) {
		c.renderSignIn(w, r, http.StatusUnauthorized, "", "That is not a valid key.")
		return
	}
	hash := token.Sum(value)
	cred, err := ks.LookupToken(r.Context(), hash)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		c.renderSignIn(w, r, http.StatusUnauthorized, "", "That is not a valid key.")
		return
	case err != nil:
		c.unavailable(w, r)
		return
	case cred.Disabled:
		c.renderSignIn(w, r, http.StatusUnauthorized, "", "That key's account is disabled.")
		return
	case !cred.ExpiresAt.IsZero() && !time.Now().Before(cred.ExpiresAt):
		c.renderSignIn(w, r, http.StatusUnauthorized, "", "That key has expired.")
		return
	}
	c.sessions.end(r)
	id := c.sessions.create(&session{tokenHash: &hash})
	setCookie(w, mountOf(r).Base, id, int(c.cfg.SessionTTL/time.Second))
	http.Redirect(w, r, mountOf(r).Base+"/keys", http.StatusSeeOther)
}

// signOut ends the session. It needs the session's CSRF token, so no
// other site can sign a person out.
func (c *Console) signOut(w http.ResponseWriter, r *http.Request) {
	s, ok := c.sessions.get(r)
	if !ok {
		http.Redirect(w, r, mountOf(r).Base+"/signin", http.StatusSeeOther)
		return
	}
	if !c.write(w, r, &caller{sess: s}) {
		return
	}
	c.sessions.end(r)
	setCookie(w, mountOf(r).Base, "", -1)
	if mountOf(r).Identity != "" {
		c.message(w, r, http.StatusOK, nil, "Signed out",
			"Your console session has ended. You are still signed in to the site in front of the console as "+
				mountOf(r).Identity+"; opening the console again starts a new session.")
		return
	}
	c.renderSignIn(w, r, http.StatusOK, "You are signed out.", "")
}
