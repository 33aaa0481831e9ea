package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"

	"github.com/keygate/keygate/internal/routetable"
	"github.com/keygate/keygate/internal/scope"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/token"
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
//
// The scope table maps method and path patterns to a scope, "public" or
// "authenticated"; the most specific pattern wins whatever the order, and
// Default applies to the rest. With Require instead, every request needs
// all of those scopes (use it with Match). With neither, any valid key
// passes.
type AuthHandler struct {
	// Headers are the credential sources, in order. Authorization accepts
	// "Bearer <token>", Basic with the token as user name or password, and
	// a bare token; other headers carry the bare token. Default:
	// X-API-Key, then Authorization.
	Headers []string `json:"headers,omitempty"`
	// Realm is named in WWW-Authenticate challenges. Default: "API".
	Realm string `json:"realm,omitempty"`
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
	app      *App
	tokens   token.Format
	sources  []string
	table    routetable.Table[*access]
	fallback *access
	answers  answers
	logger   *zap.Logger
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

// answers are the handler's refusals that do not depend on the route.
type answers struct {
	unauthorized, invalidToken, expired, disabled, invalidRequest, forbidden, unavailable *denial
	requestAnswers
}

// CaddyModule returns the Caddy module information.
func (AuthHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.apikey_auth",
		New: func() caddy.Module { return new(AuthHandler) },
	}
}

// Provision compiles the scope table and finds the apikeys app.
func (h *AuthHandler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	appModule, err := ctx.App("apikeys")
	if err != nil {
		return fmt.Errorf("loading apikeys app: %w", err)
	}
	h.app = appModule.(*App)
	h.tokens = h.app.Tokens()
	if err := h.provisionMatch(ctx); err != nil {
		return err
	}
	return h.compile()
}

// compile checks the configuration and builds the table and answers.
func (h *AuthHandler) compile() error {
	if h.Realm == "" {
		h.Realm = "API"
	}
	if strings.ContainsAny(h.Realm, "\"\\\r\n") {
		return fmt.Errorf("realm %q: must not contain quotes, backslashes or line breaks", h.Realm)
	}
	headers := h.Headers
	if len(headers) == 0 {
		headers = []string{"X-API-Key", authorization}
	}
	h.sources = h.sources[:0]
	for _, name := range headers {
		if !httpguts.ValidHeaderFieldName(name) {
			return fmt.Errorf("header %q: not a valid header name", name)
		}
		h.sources = append(h.sources, textproto.CanonicalMIMEHeaderKey(name))
	}

	h.answers = answers{
		unauthorized:   newDenial(resultUnauthorized, http.StatusUnauthorized, "unauthorized", "an API key is required", challenge(h.Realm), nil),
		invalidToken:   newDenial(resultInvalidToken, http.StatusUnauthorized, "invalid_token", "the API key is not valid", challenge(h.Realm, "error", "invalid_token"), nil),
		expired:        newDenial(resultExpired, http.StatusUnauthorized, "invalid_token", "the API key has expired", challenge(h.Realm, "error", "invalid_token"), nil),
		disabled:       newDenial(resultDisabled, http.StatusUnauthorized, "invalid_token", "the API key's account is disabled", challenge(h.Realm, "error", "invalid_token"), nil),
		invalidRequest: newDenial(resultInvalidRequest, http.StatusUnauthorized, "invalid_request", "the request carries two different credentials", challenge(h.Realm, "error", "invalid_request"), nil),
		forbidden:      newDenial(resultForbidden, http.StatusForbidden, "forbidden", "no API route matches this request", "", nil),
		unavailable:    newDenial(resultUnavailable, http.StatusServiceUnavailable, "unavailable", "the key store is unavailable; retry later", "", nil),
	}
	h.answers.requestAnswers = newRequestAnswers()

	if len(h.Require) > 0 {
		if len(h.Routes) > 0 || h.Default != "" {
			return errors.New("require cannot be combined with a scope table or default")
		}
		for _, s := range h.Require {
			if s == AccessPublic || s == AccessDeny || (s == AccessAuthenticated && len(h.Require) > 1) {
				return fmt.Errorf("require %q: require lists scopes (or authenticated alone); for public or denied routes use a scope table", s)
			}
		}
		acc, err := h.newAccess(h.Require)
		if err != nil {
			return fmt.Errorf("require: %w", err)
		}
		h.fallback = acc
		return nil
	}

	h.table = routetable.Table[*access]{}
	for _, rule := range h.Routes {
		acc, err := h.newAccess([]string{rule.Scope})
		if err != nil {
			return fmt.Errorf("scope %s %s: %w", strings.Join(rule.Methods, ","), rule.Path, err)
		}
		if err := h.table.Add(rule.Methods, rule.Path, acc); err != nil {
			return fmt.Errorf("scope table: %w", err)
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
		return fmt.Errorf("default: %w", err)
	}
	h.fallback = acc
	return nil
}

// newAccess builds what a route requires from its scope words.
func (h *AuthHandler) newAccess(words []string) (*access, error) {
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
	for _, s := range words {
		if err := scope.Validate(s); err != nil {
			return nil, err
		}
		acc.scopes = append(acc.scopes, s)
		acc.insufficient = append(acc.insufficient, newDenial(resultInsufficientScope, http.StatusForbidden, "insufficient_scope",
			"the API key lacks the scope "+s, challenge(h.Realm, "error", "insufficient_scope", "scope", s),
			map[string]string{"required_scope": s}))
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
	if cred == nil {
		resultPublic.Inc()
	} else {
		resultAllowed.Inc()
	}
	setPlaceholders(r, cred)
	return next.ServeHTTP(w, r)
}

// authorize decides on the request and strips its credential. It returns
// the caller's credential, nil for a public route, or the refusal.
//
// The method and path are made canonical first, on every route (which
// route matches is itself read from the path), and the request goes on
// with them: see requestpath.go.
func (h *AuthHandler) authorize(r *http.Request) (*verified, *denial) {
	path, escaped, bad := h.canonicalRequest(r)
	if bad != nil {
		stripCredentials(r.Header, h.sources) // handle_errors routes may still proxy it
		return nil, bad
	}
	return h.decide(r, path, escaped)
}

// decide is authorize for a request already made canonical; path and
// escaped are what canonicalRequest returned.
func (h *AuthHandler) decide(r *http.Request, path string, escaped bool) (*verified, *denial) {
	acc := h.route(r.Method, path, escaped)
	token, found := extractCredential(r.Header, h.sources, h.tokens)
	stripCredentials(r.Header, h.sources)
	if acc.public {
		return nil, nil
	}

	switch found {
	case credentialNone:
		return nil, h.answers.unauthorized
	case credentialConflict:
		return nil, h.answers.invalidRequest
	}
	if !h.tokens.Valid(token) {
		return nil, h.answers.invalidToken
	}
	verifier := h.app.verifier()
	if verifier == nil {
		return nil, h.answers.unavailable
	}
	cred, err := verifier.Verify(r.Context(), token)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, h.answers.invalidToken
	case err != nil:
		h.logger.Warn("key store unavailable", zap.Error(err))
		return nil, h.answers.unavailable
	case cred.Disabled:
		return nil, h.answers.disabled
	case !cred.ExpiresAt.IsZero() && !time.Now().Before(cred.ExpiresAt):
		return nil, h.answers.expired
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

// setPlaceholders exposes the caller's identity to later handlers and
// logs; on a public route (cred nil) the {apikey.*} placeholders are empty.
func setPlaceholders(r *http.Request, cred *verified) {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return
	}
	if cred == nil {
		repl.Map(anonymousVars)
		return
	}
	repl.Map(cred.vars)
}

// parseAuthDirective sets up the handler from the Caddyfile:
//
//	apikey_auth [<matcher>] {
//		header <name>
//		realm <realm>
//		scope <methods> <path> <scope|public|authenticated>
//		default <deny|authenticated|public|scope>
//		require <scope>...
//		allow_encoded_slash
//	}
//
// The matcher goes in the handler's "match", not on its route (see
// guard.go), so the route has none.
func parseAuthDirective(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	if !h.Next() {
		return nil, h.ArgErr()
	}
	matcherSet, err := h.ExtractMatcherSet()
	if err != nil {
		return nil, err
	}
	a := new(AuthHandler)
	if err := a.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	if matcherSet != nil {
		a.MatchRaw = caddyhttp.RawMatcherSets{matcherSet}
	}
	return h.NewRoute(nil, a), nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens.
func (h *AuthHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.Errf("apikey_auth: unexpected argument %q; options go in a block", d.Val())
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "header":
			if !d.NextArg() {
				return d.ArgErr()
			}
			h.Headers = append(h.Headers, d.Val())
			if d.NextArg() {
				return d.ArgErr()
			}
		case "realm":
			if !d.NextArg() {
				return d.ArgErr()
			}
			h.Realm = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		case "scope":
			args := d.RemainingArgs()
			if len(args) != 3 {
				return d.Errf("scope: expected <methods> <path> <scope|public|authenticated>, got %d arguments", len(args))
			}
			rule := RouteRule{Path: args[1], Scope: args[2]}
			if args[0] != "*" {
				rule.Methods = strings.Split(args[0], ",")
			}
			if err := routetable.ValidatePattern(rule.Path); err != nil {
				return d.Errf("scope: %v", err)
			}
			if rule.Scope != AccessPublic && rule.Scope != AccessAuthenticated {
				if err := scope.Validate(rule.Scope); err != nil {
					return d.Errf("scope %s %s: %v", args[0], args[1], err)
				}
			}
			h.Routes = append(h.Routes, rule)
		case "default":
			if h.Default != "" {
				return d.Err("default: already set")
			}
			if !d.NextArg() {
				return d.ArgErr()
			}
			h.Default = d.Val()
			switch h.Default {
			case AccessDeny, AccessAuthenticated, AccessPublic:
			default:
				if err := scope.Validate(h.Default); err != nil {
					return d.Errf("default: want deny, authenticated, public or a scope: %v", err)
				}
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		case "allow_encoded_slash":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.AllowEncodedSlash = true
		case "require":
			args := d.RemainingArgs()
			if len(args) == 0 {
				args = []string{AccessAuthenticated}
			}
			for _, s := range args {
				if s == AccessAuthenticated && len(args) == 1 {
					continue
				}
				if err := scope.Validate(s); err != nil {
					return d.Errf("require: %v", err)
				}
			}
			h.Require = append(h.Require, args...)
		default:
			return d.Errf("apikey_auth: unknown option %q", d.Val())
		}
	}
	// Catch what only the whole block shows (conflicting routes, require
	// mixed with a table) while the line numbers are at hand.
	probe := *h
	if err := probe.compile(); err != nil {
		return d.Errf("apikey_auth: %v", err)
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*AuthHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*AuthHandler)(nil)
	_ caddyfile.Unmarshaler       = (*AuthHandler)(nil)
)
