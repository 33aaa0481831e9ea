// Package console is Keygate's web console for keys: server-rendered
// html/template pages, a stylesheet and a few lines of JavaScript, all
// embedded, over the admin API (package admin), which it calls in the
// same process as the signed-in person's principal. Every rule (route
// scopes, visibility, coverage, validation) is the API's and the
// keystore's; the console parses forms and renders answers.
//
// People sign in by pasting a key (the console then acts with that key's
// scopes, as apikey_admin does) or by a trusted identity set by an
// authentication in front of it (Caddy's basic_auth or forward_auth
// setting {http.auth.user.id}), mapped to the account of that name.
// Sessions live in memory (see sessions). Caddy glue lives in package
// caddymodule (apikey_console).
package console

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/admin/client"
	"github.com/keygate/keygate/internal/scope"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/token"
)

// Defaults of Config.
const (
	DefaultSessionTTL  = 8 * time.Hour
	DefaultMaxSessions = 10000
)

// Config is what a Console needs.
type Config struct {
	// API returns the admin API, or nil while the store is not ready
	// (the console answers 503 then).
	API func() *admin.Handler
	// Keystore returns the key store, or nil while it is not ready.
	Keystore func() *storage.Keystore
	// Tokens is the token format of pasted keys.
	Tokens token.Format
	// SessionTTL is how long a session lasts after sign-in; 0 is
	// DefaultSessionTTL.
	SessionTTL time.Duration
	// MaxSessions bounds the sessions held in memory; 0 is
	// DefaultMaxSessions.
	MaxSessions int
	// Logger logs what goes wrong (never a key).
	Logger *zap.Logger
}

// Console serves the web console. It is safe for concurrent use.
type Console struct {
	cfg      Config
	sessions *sessions
	mux      *http.ServeMux
	origins  *http.CrossOriginProtection
	logger   *zap.Logger
}

// Mount says where and for whom a request is served.
type Mount struct {
	// Base is the path the console is mounted at ("/console" under
	// handle_path /console/*), for links and the cookie's path.
	Base string
	// Identity is the identity a trusted authentication in front of the
	// console set ({http.auth.user.id}); empty when none did.
	Identity string
}

// New returns a console over cfg.
func New(cfg Config) *Console {
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	c := &Console{cfg: cfg, sessions: newSessions(cfg.SessionTTL, cfg.MaxSessions),
		mux: http.NewServeMux(), origins: http.NewCrossOriginProtection(), logger: cfg.Logger}
	c.routes()
	return c
}

type mountKey struct{}

// ServeHTTP implements http.Handler, for a console mounted at the root
// with no trusted identity; Serve says otherwise.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.Serve(w, r, Mount{}) }

// Serve serves r as mounted by m.
func (c *Console) Serve(w http.ResponseWriter, r *http.Request, m Mount) {
	m.Base = strings.TrimSuffix(m.Base, "/")
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	c.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), mountKey{}, m)))
}

func mountOf(r *http.Request) Mount {
	m, _ := r.Context().Value(mountKey{}).(Mount)
	return m
}

// caller is the signed-in person of a request.
type caller struct {
	sess *session
	p    admin.Principal
	api  *client.Client
	// Who is shown in the header.
	Who string
	// Via says how the person signed in ("key" or "identity").
	Via string
	// Scopes are the caller's scopes.
	Scopes []string
}

// Has reports whether the caller holds scope s, for templates; see has.
func (cl *caller) Has(s string) bool { return cl.has(s) }

// has reports whether the caller holds scope s (to show what it may use;
// the API decides).
func (cl *caller) has(s string) bool {
	return scope.AnyCovers(cl.Scopes, s)
}

// errSignedOut is a session that no longer holds: its key was revoked,
// expired or disabled, or its identity changed.
var errSignedOut = errors.New("signed out")

// signedIn returns the request's caller: its session's, or (with none)
// a new session for the trusted identity, if the request has one. It
// answers the request itself when it returns nil.
func (c *Console) signedIn(w http.ResponseWriter, r *http.Request) *caller {
	api, ks := c.cfg.API(), c.cfg.Keystore()
	if api == nil || ks == nil {
		c.unavailable(w, r)
		return nil
	}
	m := mountOf(r)
	s, ok := c.sessions.get(r)
	if ok && s.identity != "" && s.identity != m.Identity {
		// The identity in front changed (another person, or signed out
		// there): this session is not theirs.
		c.sessions.end(r)
		ok = false
	}
	if !ok {
		if m.Identity == "" {
			http.Redirect(w, r, m.Base+"/signin", http.StatusSeeOther)
			return nil
		}
		s = &session{identity: m.Identity}
		if _, _, err := ks.IdentityPrincipal(r.Context(), m.Identity); err != nil {
			c.noAccount(w, r, err)
			return nil
		}
		setCookie(w, m.Base, c.sessions.create(s), int(c.cfg.SessionTTL/time.Second))
	}
	cl, err := c.resolve(r.Context(), ks, api, s)
	switch {
	case errors.Is(err, storage.ErrNoAccount):
		c.sessions.end(r)
		c.noAccount(w, r, err)
		return nil
	case errors.Is(err, errSignedOut):
		c.sessions.end(r)
		setCookie(w, m.Base, "", -1)
		c.renderSignIn(w, r, http.StatusUnauthorized, "You were signed out: the key you signed in with is no longer valid (revoked, expired, or its account disabled).", "")
		return nil
	case err != nil:
		c.logger.Warn("console: resolving the session's caller", zap.Error(err))
		c.unavailable(w, r)
		return nil
	}
	return cl
}

// resolve reads the principal of session s from the store, now.
func (c *Console) resolve(ctx context.Context, ks *storage.Keystore, api *admin.Handler, s *session) (*caller, error) {
	cl := &caller{sess: s}
	if s.tokenHash != nil {
		cred, err := ks.LookupToken(ctx, *s.tokenHash)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			return nil, errSignedOut
		case err != nil:
			return nil, err
		case cred.Disabled, !cred.ExpiresAt.IsZero() && !time.Now().Before(cred.ExpiresAt):
			return nil, errSignedOut
		}
		cl.p, cl.Via = cred.Principal(), "key"
		cl.Who = cred.AccountName + " · key " + cred.KeyID
	} else {
		p, a, err := ks.IdentityPrincipal(ctx, s.identity)
		if err != nil {
			return nil, err
		}
		cl.p, cl.Via = p, "identity"
		cl.Who = s.identity + " · account " + a.Name
	}
	cl.Scopes = cl.p.Scopes
	cl.api = apiClient(api, cl.p)
	return cl, nil
}

// write checks that a write (POST) is the console's own: a same-origin
// browser request (Sec-Fetch-Site or Origin) carrying the session's CSRF
// token. It answers the request itself (403) when not.
func (c *Console) write(w http.ResponseWriter, r *http.Request, cl *caller) bool {
	if err := c.origins.Check(r); err != nil {
		c.forbidden(w, r, "This form was sent from another site; the console only accepts its own forms.")
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, admin.MaxBodyBytes)
	if err := r.ParseForm(); err != nil {
		c.forbidden(w, r, "The form could not be read.")
		return false
	}
	if cl != nil && !cl.sess.validCSRF(r.PostForm.Get("csrf")) {
		c.forbidden(w, r, "The form's security token is missing or stale: reload the page and try again.")
		return false
	}
	return true
}
