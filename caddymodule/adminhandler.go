package caddymodule

import (
	"encoding/json"
	"net/http"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/admin"
)

func init() {
	caddy.RegisterModule(AdminHandler{})
	httpcaddyfile.RegisterHandlerDirective("apikey_admin", parseAdminDirective)
	httpcaddyfile.RegisterDirectiveOrder("apikey_admin", httpcaddyfile.Before, "respond")
}

// AdminHandler serves the key-management API on a site. Callers
// authenticate with their own key, read, verified and refused by its
// Authenticator as apikey_auth does, and act with that key's scopes: each
// route needs its scope (403 with the same challenge as apikey_auth's),
// and nothing the caller does can grant more than it holds. Routes start
// at the handler's root (/keys); mount it under a prefix with handle_path.
type AdminHandler struct {
	// Auth is how the caller's key is read and answered.
	Auth AdminAuth `json:"auth,omitempty"`

	// insufficient caches the 403 of each scope a route needs.
	insufficient *sync.Map // string -> *denial
}

// AdminAuth is apikey_admin's "auth" object: its Authenticator, and how
// request paths are read.
//
// It was once a whole apikey_auth configuration, so it still accepts the
// fields that only apikey_auth uses (routes, default, require, match);
// apikey_admin never used them, and warns when they are set.
type AdminAuth struct {
	Authenticator
	// AllowEncodedSlash lets request paths hold %2F, as apikey_auth's
	// option does.
	AllowEncodedSlash bool `json:"allow_encoded_slash,omitempty"`

	// LegacyRoutes is accepted and ignored (see above).
	LegacyRoutes json.RawMessage `json:"routes,omitempty"`
	// LegacyDefault is accepted and ignored.
	LegacyDefault json.RawMessage `json:"default,omitempty"`
	// LegacyRequire is accepted and ignored.
	LegacyRequire json.RawMessage `json:"require,omitempty"`
	// LegacyMatch is accepted and ignored.
	LegacyMatch json.RawMessage `json:"match,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (AdminHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.apikey_admin",
		New: func() caddy.Module { return new(AdminHandler) },
	}
}

// Provision sets up the key check.
func (h *AdminHandler) Provision(ctx caddy.Context) error {
	h.insufficient = new(sync.Map)
	if err := h.Auth.provision(ctx); err != nil {
		return err
	}
	for name, v := range map[string]json.RawMessage{
		"routes": h.Auth.LegacyRoutes, "default": h.Auth.LegacyDefault,
		"require": h.Auth.LegacyRequire, "match": h.Auth.LegacyMatch,
	} {
		if len(v) > 0 {
			h.Auth.logger.Warn("apikey_admin does not use auth."+name+"; every route needs a valid key, then its own scope: remove it",
				zap.String("setting", "auth."+name))
		}
	}
	return nil
}

// ServeHTTP authenticates the caller and serves the admin API as it.
func (h *AdminHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	a := &h.Auth.Authenticator
	if r.Method == http.MethodGet && r.URL.Path == "/openapi.json" {
		// The API's description is public, as on the admin endpoint.
		a.strip(r)
		if api := a.app.api(); api != nil {
			api.ServeHTTP(w, r)
			return nil
		}
		return a.answers.unavailable.serve(w, r)
	}
	if _, _, bad := a.canonical(r, h.Auth.AllowEncodedSlash); bad != nil {
		return bad.serve(w, r)
	}
	cred, denied := a.authenticate(r)
	if denied != nil {
		return denied.serve(w, r)
	}
	api := a.app.api()
	if api == nil {
		return a.answers.unavailable.serve(w, r)
	}
	p := cred.principal()
	if missing := api.MissingScope(r, p); missing != "" {
		return h.insufficientScope(missing).serve(w, r)
	}
	admit(r, cred)
	api.ServeHTTP(w, r.WithContext(admin.WithPrincipal(r.Context(), p)))
	return nil
}

// insufficientScope returns the 403 for a caller lacking the scope s,
// rendered once per scope (the API's routes need a handful).
func (h *AdminHandler) insufficientScope(s string) *denial {
	if d, ok := h.insufficient.Load(s); ok {
		return d.(*denial)
	}
	d, _ := h.insufficient.LoadOrStore(s, h.Auth.Authenticator.insufficientScope(s))
	return d.(*denial)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*AdminHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*AdminHandler)(nil)
	_ caddyfile.Unmarshaler       = (*AdminHandler)(nil)
)
