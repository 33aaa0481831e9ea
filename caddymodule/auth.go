package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/keygate/keygate/internal/routetable"
	"github.com/keygate/keygate/internal/scope"
)

func init() {
	caddy.RegisterModule(AuthHandler{})
	httpcaddyfile.RegisterDirective("apikey_auth", parseAuthDirective)
	httpcaddyfile.RegisterDirectiveOrder("apikey_auth", httpcaddyfile.Before, "basic_auth")
}

// Access levels a route can require besides scopes.
const (
	// AccessPublic lets every request through, with or without a key.
	AccessPublic = "public"
	// AccessAuthenticated lets any valid key through.
	AccessAuthenticated = "authenticated"
	// AccessDeny refuses every request (403).
	AccessDeny = "deny"
)

// AuthHandler checks the API key of each request and the scope its route
// requires, answers 400/401/403/503 with a JSON body, or passes the request
// on without its credential and with the caller's identity in placeholders.
// Methods and paths are matched, and passed on, in one canonical form;
// paths an upstream could read differently are refused (requestpath.go).
// How the key is read, verified and refused is its Authenticator's.
//
// The scope table maps method and path patterns to a scope, "public" or
// "authenticated"; the most specific pattern wins whatever the order, and
// Default applies to the rest. With Require instead, every request needs
// all of those scopes (use it with Match). With neither, any valid key
// passes.
type AuthHandler struct {
	Authenticator
	// Routes is the scope table.
	Routes []RouteRule `json:"routes,omitempty"`
	// Default applies to requests no route matches: "deny" (the default
	// with a table), "authenticated", "public" or a scope.
	Default string `json:"default,omitempty"`
	// Require lists scopes every request needs, instead of a table.
	Require []string `json:"require,omitempty"`
	// AllowEncodedSlash lets request paths hold %2F, for APIs whose
	// resource names contain slashes; the table then reads a%2Fb as one
	// segment, as Go's ServeMux and Express do. Without it such requests
	// get 400. Backslashes, ";", encoded control bytes and double encoding
	// get 400 either way.
	AllowEncodedSlash bool `json:"allow_encoded_slash,omitempty"`
	// MatchRaw limits the key check to requests that any of these matcher
	// sets matches; the rest go on unchecked. Unlike a route's "match", it
	// reads the request after it is made canonical (or refused, matched
	// or not): see guard.go. "apikey_auth <matcher>" in the Caddyfile
	// puts the matcher here.
	MatchRaw caddyhttp.RawMatcherSets `json:"match,omitempty" caddy:"namespace=http.matchers"`

	matchers caddyhttp.MatcherSets
	table    routetable.Table[*access]
	fallback *access
}

// RouteRule is one line of the scope table.
type RouteRule struct {
	// Methods the rule applies to; empty or "*" means any.
	Methods []string `json:"methods,omitempty"`
	// Path is a pattern of literal segments, {name} for one segment and a
	// final * for any rest.
	Path string `json:"path"`
	// Scope is the required scope, or "public" or "authenticated".
	Scope string `json:"scope"`
}

// access is what a route requires, with its refusals rendered.
type access struct {
	public bool
	deny   bool
	scopes []string
	// insufficient holds the 403 for each scope in scopes.
	insufficient []*denial
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
	return h.compileTable()
}

// compile checks the whole configuration and builds the answers and the
// table, as Provision does without the app.
func (h *AuthHandler) compile() error {
	if err := h.Authenticator.compile(); err != nil {
		return err
	}
	return h.compileTable()
}

// compileTable checks the scope table, default and require and builds
// the table. Errors name the setting at fault (settingError).
func (h *AuthHandler) compileTable() error {
	if len(h.Require) > 0 {
		if len(h.Routes) > 0 || h.Default != "" {
			return &settingError{setting: "require", err: errors.New("require cannot be combined with a scope table or default")}
		}
		for i, s := range h.Require {
			if s == AccessPublic || s == AccessDeny || (s == AccessAuthenticated && len(h.Require) > 1) {
				return &settingError{setting: "require", index: i,
					err: fmt.Errorf("require %q: require lists scopes (or authenticated alone); for public or denied routes use a scope table", s)}
			}
		}
		acc, err := h.newAccess(h.Require)
		if err != nil {
			return &settingError{setting: "require", index: err.index, err: fmt.Errorf("require: %w", err.err)}
		}
		h.fallback = acc
		return nil
	}

	h.table = routetable.Table[*access]{}
	for i, rule := range h.Routes {
		fail := func(err error) error { return &settingError{setting: "scope", index: i, err: err} }
		acc, err := h.newAccess([]string{rule.Scope})
		if err != nil {
			return fail(fmt.Errorf("scope %s %s: %w", strings.Join(rule.Methods, ","), rule.Path, err.err))
		}
		if err := checkMethods(rule.Methods); err != nil {
			return fail(fmt.Errorf("scope %s %s: %w", strings.Join(rule.Methods, ","), rule.Path, err))
		}
		if err := h.table.Add(rule.Methods, rule.Path, acc); err != nil {
			return fail(fmt.Errorf("scope table: %w", err))
		}
	}
	def := h.Default
	switch {
	case def == "" && len(h.Routes) > 0:
		def = AccessDeny
	case def == "":
		def = AccessAuthenticated
	}
	acc, err := h.newAccess([]string{def})
	if err != nil {
		return &settingError{setting: "default", err: fmt.Errorf("default %q: want deny, authenticated, public or a scope: %w", def, err.err)}
	}
	h.fallback = acc
	return nil
}

// wordError is an access word that newAccess refuses, and its index.
type wordError struct {
	index int
	err   error
}

// newAccess builds what a route requires from its access words: one
// keyword (accessKeyword), or scopes that are not likely typos of one.
func (h *AuthHandler) newAccess(words []string) (*access, *wordError) {
	if len(words) == 1 {
		switch words[0] {
		case AccessPublic:
			return &access{public: true}, nil
		case AccessAuthenticated:
			return &access{}, nil
		case AccessDeny:
			return &access{deny: true}, nil
		}
	}
	acc := &access{}
	for i, s := range words {
		if err := checkScopeWord(s); err != nil {
			return nil, &wordError{index: i, err: err}
		}
		acc.scopes = append(acc.scopes, s)
		acc.insufficient = append(acc.insufficient, h.insufficientScope(s))
	}
	return acc, nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *AuthHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if h.matchers != nil {
		return h.serveMatched(w, r, next)
	}
	cred, denied := h.authorize(r)
	return h.serve(w, r, next, cred, denied)
}

// serve answers the decision of authorize or decide.
func (h *AuthHandler) serve(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler, cred *verified, denied *denial) error {
	if denied != nil {
		return denied.serve(w, r)
	}
	admit(r, cred)
	return next.ServeHTTP(w, r)
}

// authorize decides on the request and strips its credential. It returns
// the caller's credential, nil for a public route, or the refusal.
//
// The method and path are made canonical first, on every route (which
// route matches is itself read from the path), and the request goes on
// with them: see requestpath.go.
func (h *AuthHandler) authorize(r *http.Request) (*verified, *denial) {
	path, escaped, bad := h.canonical(r, h.AllowEncodedSlash)
	if bad != nil {
		return nil, bad
	}
	return h.decide(r, path, escaped)
}

// decide is authorize for a request already made canonical; path and
// escaped are what canonical returned.
func (h *AuthHandler) decide(r *http.Request, path string, escaped bool) (*verified, *denial) {
	acc := h.route(r.Method, path, escaped)
	if acc.public {
		h.strip(r)
		return nil, nil
	}
	cred, denied := h.authenticate(r)
	switch {
	case denied != nil:
		return nil, denied
	case acc.deny:
		return nil, h.answers.forbidden
	}
	for i, required := range acc.scopes {
		if !scope.AnyCovers(cred.Scopes, required) {
			return nil, acc.insufficient[i]
		}
	}
	return cred, nil
}

// route returns what the request requires: its rule in the table, else the
// fallback. path is escaped or decoded, as canonicalPath returned it.
func (h *AuthHandler) route(method, path string, escaped bool) *access {
	if len(h.Routes) == 0 {
		return h.fallback
	}
	var acc *access
	var ok bool
	if escaped {
		acc, ok = h.table.MatchEscaped(method, path)
	} else {
		acc, ok = h.table.Match(method, path)
	}
	if !ok {
		return h.fallback
	}
	return acc
}

// Interface guards
var (
	_ caddy.Provisioner           = (*AuthHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*AuthHandler)(nil)
	_ caddyfile.Unmarshaler       = (*AuthHandler)(nil)
)
