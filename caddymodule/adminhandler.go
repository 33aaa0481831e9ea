package caddymodule

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/keygate/keygate/admin"
)

func init() {
	caddy.RegisterModule(AdminHandler{})
	httpcaddyfile.RegisterHandlerDirective("apikey_admin", parseAdminDirective)
	httpcaddyfile.RegisterDirectiveOrder("apikey_admin", httpcaddyfile.Before, "respond")
}

// AdminHandler serves the key-management API on a site. Callers
// authenticate with their own key, checked like any request, and act with
// that key's scopes: each route needs its scope, and nothing the caller
// does can grant more than it holds. Routes start at the handler's root
// (/keys); mount it under a prefix with handle_path.
type AdminHandler struct {
	// Auth is how the caller's key is read and answered; its scope table
	// is not used (every route needs a valid key, then its own scope).
	Auth AuthHandler `json:"auth,omitempty"`

	app *App
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
	h.Auth.Routes, h.Auth.Require, h.Auth.Default = nil, nil, AccessAuthenticated
	if err := h.Auth.Provision(ctx); err != nil {
		return err
	}
	h.app = h.Auth.app
	return nil
}

// ServeHTTP authenticates the caller and serves the admin API as it.
func (h *AdminHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	if r.Method == http.MethodGet && r.URL.Path == "/openapi.json" {
		// The API's description is public, as on the admin endpoint.
		stripCredentials(r.Header, h.Auth.sources)
		if api := h.app.api(); api != nil {
			api.ServeHTTP(w, r)
			return nil
		}
		return h.Auth.answers.unavailable.serve(w, r)
	}
	cred, denied := h.Auth.authorize(r)
	if denied != nil {
		return denied.serve(w, r)
	}
	api := h.app.api()
	if api == nil {
		return h.Auth.answers.unavailable.serve(w, r)
	}
	resultAllowed.Inc()
	setPlaceholders(r, cred)
	p := admin.Principal{Actor: cred.KeyID, AccountID: cred.AccountID, TokenID: cred.TokenID, Scopes: cred.Scopes}
	api.ServeHTTP(w, r.WithContext(admin.WithPrincipal(r.Context(), p)))
	return nil
}

// parseAdminDirective sets up the handler from the Caddyfile:
//
//	apikey_admin [<matcher>] {
//		header <name>
//		realm <realm>
//	}
func parseAdminDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	a := new(AdminHandler)
	err := a.UnmarshalCaddyfile(h.Dispenser)
	return a, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens.
func (h *AdminHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "header":
			if !d.NextArg() {
				return d.ArgErr()
			}
			h.Auth.Headers = append(h.Auth.Headers, d.Val())
		case "realm":
			if !d.NextArg() {
				return d.ArgErr()
			}
			h.Auth.Realm = d.Val()
		default:
			return d.Errf("apikey_admin: unknown option %q", d.Val())
		}
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	// Refuse a bad header name or realm at parse time, with the line.
	probe := h.Auth
	if err := probe.compile(); err != nil {
		return d.Errf("apikey_admin: %v", err)
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*AdminHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*AdminHandler)(nil)
	_ caddyfile.Unmarshaler       = (*AdminHandler)(nil)
)
