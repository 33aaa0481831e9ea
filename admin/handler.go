// Package admin is Keygate's key-management REST API as a plain
// http.Handler: it parses requests, calls the keystore (package storage),
// which applies every rule, and renders the answers. It is served on
// Caddy's admin endpoint, which trusts its callers, and on sites through
// apikey_admin, where callers authenticate with their own key; the
// Principal in the request context says which.
package admin

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/keygate/keygate/internal/scope"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/token"
)

// Principal is who calls the API and what it may do; see
// storage.Principal.
type Principal = storage.Principal

// Trusted is the principal of Caddy's admin endpoint: it may do anything.
var Trusted = storage.Trusted

type principalKey struct{}

// WithPrincipal returns ctx carrying p for the Handler.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal carried by ctx.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// MaxBodyBytes bounds request bodies; larger ones get 413.
const MaxBodyBytes = 64 << 10

// Handler serves the admin API. Requests must carry a Principal (see
// WithPrincipal); those without one are refused.
type Handler struct {
	ks     *storage.Keystore
	tokens token.Format
	logger *zap.Logger
	mux    *http.ServeMux
	// trusted serves Caddy's admin endpoint: the routes only it has, then
	// mux.
	trusted *http.ServeMux
	routes  []Route
	// scopes maps each route's mux pattern to the scope it requires.
	scopes map[string]string
	usage  usage
	// listener reports the store's change listener for GET /check; nil
	// when the store has none.
	listener func() *ListenerStatus
}

// New returns the admin API on the keystore ks, issuing tokens of the
// given format. It parses requests, calls the keystore, which applies
// every rule, and renders the answer.
func New(ks *storage.Keystore, tokens token.Format, logger *zap.Logger) *Handler {
	h := &Handler{ks: ks, tokens: tokens, logger: logger, mux: http.NewServeMux(), scopes: map[string]string{}}
	h.route("POST /accounts", "accounts:create", h.createAccount)
	h.route("GET /accounts", "accounts:read", h.listAccounts)
	h.route("GET /accounts/{id}", "accounts:read", h.getAccount)
	h.route("PATCH /accounts/{id}", "accounts:update", h.updateAccount)
	h.route("DELETE /accounts/{id}", "accounts:delete", h.deleteAccount)
	h.route("POST /keys", "api_keys:create", h.createKey)
	h.route("GET /keys", "api_keys:read", h.listKeys)
	h.route("GET /keys/{id}", "api_keys:read", h.getKey)
	h.route("PATCH /keys/{id}", "api_keys:update", h.updateKey)
	h.route("DELETE /keys/{id}", "api_keys:delete", h.deleteKey)
	h.route("POST /keys/{id}/tokens", "api_keys:create", h.createToken)
	h.route("PATCH /keys/{id}/tokens/{tid}", "api_keys:update", h.updateToken)
	h.route("POST /keys/{id}/tokens/{tid}/rotate", "api_keys:update", h.rotateToken)
	h.route("DELETE /keys/{id}/tokens/{tid}", "api_keys:delete", h.deleteToken)
	h.route("POST /revoke", "api_keys:delete", h.revoke)
	h.route("GET /whoami", "", h.whoami)
	h.route("GET /audit", "audit:read", h.listAudit)
	h.mux.HandleFunc("GET /openapi.json", serveOpenAPI)
	h.routes = append(h.routes, Route{Method: "GET", Path: "/openapi.json"})
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if allow := allowedMethods(h.mux, r); len(allow) > 0 {
			methodNotAllowed(w, r, allow)
			return
		}
		if _, pattern := h.trusted.Handler(r); pattern != "/" {
			writeError(w, errNotFound("%s %s is served on Caddy's admin endpoint only", r.Method, r.URL.Path))
			return
		}
		writeError(w, errNotFound("no route for %s %s", r.Method, r.URL.Path))
	})

	// Export and import move token hashes, and the check says where the
	// store is: Caddy's admin endpoint only.
	h.trusted = http.NewServeMux()
	h.trustedRoute("GET /export", h.ServeExport)
	h.trustedRoute("POST /import", h.ServeImport)
	h.trustedRoute("GET /check", h.serveCheck)
	h.trusted.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if allow := allowedMethods(h.trusted, r); len(allow) > 0 {
			methodNotAllowed(w, r, allow)
			return
		}
		h.mux.ServeHTTP(w, r)
	})
	return h
}

// trustedRoute registers fn under pattern on Caddy's admin endpoint only.
func (h *Handler) trustedRoute(pattern string, fn http.HandlerFunc) {
	method, path, _ := strings.Cut(pattern, " ")
	h.routes = append(h.routes, Route{Method: method, Path: path, AdminEndpointOnly: true})
	h.trusted.HandleFunc(pattern, fn)
}

// methodNotAllowed answers 405 with the methods the path allows.
func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow []string) {
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, &apiError{status: http.StatusMethodNotAllowed, code: "method_not_allowed",
		message: fmt.Sprintf("%s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, strings.Join(allow, ", "))})
}

// allowedMethods returns the methods some route of mux serves on r's
// path: the catch-all route answers every method, so the mux cannot say
// 405 itself.
func allowedMethods(mux *http.ServeMux, r *http.Request) []string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete} {
		probe := *r
		probe.Method = m
		if _, pattern := mux.Handler(&probe); pattern != "/" {
			allow = append(allow, m)
			if m == http.MethodGet {
				allow = append(allow, http.MethodHead) // the mux serves HEAD with GET
			}
		}
	}
	return allow
}

// Route is one route of the API, as the OpenAPI document must list it.
type Route struct {
	Method, Path string
	// Scope is the scope the route requires; empty when any caller may
	// use it (any valid key for /whoami, anyone for /openapi.json) and on
	// the routes of Caddy's admin endpoint only.
	Scope string
	// AdminEndpointOnly routes are served by ServeTrusted only, never
	// through apikey_admin.
	AdminEndpointOnly bool
}

// Routes returns the routes the handler serves.
func (h *Handler) Routes() []Route { return h.routes }

// handlerFunc is an API route: it writes the response on success and
// returns an *apiError (or any error, answered 500) otherwise.
type handlerFunc func(w http.ResponseWriter, r *http.Request, p Principal) error

// route registers fn under pattern, for callers holding requiredScope.
func (h *Handler) route(pattern, requiredScope string, fn handlerFunc) {
	method, path, _ := strings.Cut(pattern, " ")
	h.routes = append(h.routes, Route{Method: method, Path: path, Scope: requiredScope})
	h.scopes[pattern] = requiredScope
	params := pathParams(path)
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		p, ok := PrincipalFrom(r.Context())
		if !ok {
			writeError(w, &apiError{status: http.StatusUnauthorized, code: "unauthorized", message: "no credential"})
			return
		}
		for _, name := range params {
			if err := checkPathParam(name, r.PathValue(name)); err != nil {
				writeError(w, err)
				return
			}
		}
		if lacks(p, requiredScope) {
			writeError(w, &apiError{
				status: http.StatusForbidden, code: "insufficient_scope",
				message: "the API key lacks the scope " + requiredScope,
				extra:   map[string]any{"required_scope": requiredScope},
			})
			return
		}
		if err := fn(w, r, p); err != nil {
			h.fail(w, r, err)
		}
	})
}

// pathParams returns the names of path's wildcards ("{id}" → "id").
func pathParams(path string) []string {
	var names []string
	for _, seg := range strings.Split(path, "/") {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			names = append(names, strings.TrimSuffix(seg[1:], "}"))
		}
	}
	return names
}

// checkPathParam refuses an id or name in the path that no record can
// hold (invalid UTF-8, control characters), with the parameter as the
// field, so every store answers it alike instead of one looking it up
// (404) and another refusing the bytes (400).
func checkPathParam(name, v string) *apiError {
	if !utf8.ValidString(v) || strings.IndexFunc(v, unicode.IsControl) >= 0 {
		return errInvalid(name, "path parameter %s is not valid UTF-8 text", name)
	}
	return nil
}

// lacks reports whether p lacks the scope a route requires ("" for none).
func lacks(p Principal, requiredScope string) bool {
	return requiredScope != "" && !scope.AnyCovers(p.Scopes, requiredScope)
}

// MissingScope returns the scope that the route r goes to requires and p
// lacks, or "" when p may call that route or r goes to none (the handler
// answers those). The handler refuses such calls itself, with 403
// insufficient_scope; a caller that answers refusals its own way (with
// the challenge of its realm) asks first.
func (h *Handler) MissingScope(r *http.Request, p Principal) string {
	_, pattern := h.mux.Handler(r)
	if required := h.scopes[pattern]; lacks(p, required) {
		return required
	}
	return ""
}

// ServeHTTP implements http.Handler: the API as apikey_admin serves it,
// as the request's Principal.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mux.ServeHTTP(w, r)
}

// ServeTrusted serves the API as Caddy's admin endpoint does: as the
// Trusted principal, with the routes only that endpoint has (GET /export
// and POST /import, which move token hashes, and GET /check).
func (h *Handler) ServeTrusted(w http.ResponseWriter, r *http.Request) {
	h.trusted.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), Trusted)))
}
