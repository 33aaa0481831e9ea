package caddymodule

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(AuthHandler{})
	httpcaddyfile.RegisterDirective("apikey_auth", parseAuthDirective)
	httpcaddyfile.RegisterDirectiveOrder("apikey_auth", httpcaddyfile.Before, "basic_auth")
}

// AuthHandler checks the API key of each request and the scope its route
// requires, answers 400/401/403/503 with a JSON body, or passes the request
// on without its credential and with the caller's identity in placeholders.
// Methods and paths are matched, and passed on, in one canonical form;
// paths an upstream could read differently are refused (requestpath.go).
// How the key is read, verified and refused is its Authenticator's.
//
// What each request requires, and the decision on it, are its
// ScopeTable's (ScopeTable.decide, which apikey_verify shares); with
// Require, every request needs all of those scopes (use it with Match).
type AuthHandler struct {
	Authenticator
	ScopeTable
	// MatchRaw limits the key check to requests that any of these matcher
	// sets matches; the rest go on unchecked. Unlike a route's "match", it
	// reads the request after it is made canonical (or refused, matched
	// or not): see guard.go. "apikey_auth <matcher>" in the Caddyfile
	// puts the matcher here.
	MatchRaw caddyhttp.RawMatcherSets `json:"match,omitempty" caddy:"namespace=http.matchers"`
	// UsageSettings say how credits are charged and rate limits shown
	// (usage.go).
	UsageSettings

	matchers caddyhttp.MatcherSets
}

// CaddyModule returns the Caddy module information.
func (AuthHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.apikey_auth",
		New: func() caddy.Module { return new(AuthHandler) },
	}
}

// Provision finds the apikeys app and compiles the scope table.
func (h *AuthHandler) Provision(ctx caddy.Context) error {
	if err := h.Authenticator.provision(ctx); err != nil {
		return err
	}
	if err := h.provisionMatch(ctx); err != nil {
		return err
	}
	if err := h.compileUsage(); err != nil {
		return err
	}
	return h.compileTable(&h.Authenticator)
}

// compile checks the whole configuration and builds the answers and the
// table, as Provision does without the app.
func (h *AuthHandler) compile() error {
	if err := h.Authenticator.compile(); err != nil {
		return err
	}
	if err := h.compileUsage(); err != nil {
		return err
	}
	return h.compileTable(&h.Authenticator)
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *AuthHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if h.matchers != nil {
		return h.serveMatched(w, r, next)
	}
	cred, acc, denied := h.authorize(r)
	return h.serve(w, r, next, cred, acc, denied)
}

// serve answers the decision of authorize or decide.
func (h *AuthHandler) serve(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, cred *verified, acc *access, denied *denial) error {
	if denied != nil {
		return denied.serve(w, r)
	}
	if cred != nil && cred.limited {
		return h.serveLimited(w, r, next, &h.Authenticator, cred, acc.cost)
	}
	admit(r, cred)
	return next.ServeHTTP(w, r)
}

// authorize decides on the request and strips its credential. It returns
// the caller's credential, nil for a public route, and what the route
// requires, or the refusal.
//
// The method and path are made canonical first, on every route (which
// route matches is itself read from the path), and the request goes on
// with them: see requestpath.go.
func (h *AuthHandler) authorize(r *http.Request) (*verified, *access, *denial) {
	path, escaped, bad := h.canonical(r, h.AllowEncodedSlash)
	if bad != nil {
		return nil, nil, bad
	}
	return h.decide(&h.Authenticator, r, path, escaped)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*AuthHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*AuthHandler)(nil)
	_ caddyfile.Unmarshaler       = (*AuthHandler)(nil)
)
