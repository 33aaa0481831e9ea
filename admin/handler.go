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
	routes []Route
	usage  usage
}

// New returns the admin API on the keystore ks, issuing tokens of the
// given format. It parses requests, calls the keystore, which applies
// every rule, and renders the answer.
func New(ks *storage.Keystore, tokens token.Format, logger *zap.Logger) *Handler {
	h := &Handler{ks: ks, tokens: tokens, logger: logger, mux: http.NewServeMux()}
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
		if allow := h.allowedMethods(r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, &apiError{status: http.StatusMethodNotAllowed, code: "method_not_allowed",
				message: fmt.Sprintf("%s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, strings.Join(allow, ", "))})
			return
		}
		writeError(w, errNotFound("no route for %s %s", r.Method, r.URL.Path))
	})
	return h
}

// allowedMethods returns the methods some route serves on r's path: the
// catch-all route answers every method, so the mux cannot say 405 itself.
func (h *Handler) allowedMethods(r *http.Request) []string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete} {
		probe := *r
		probe.Method = m
		if _, pattern := h.mux.Handler(&probe); pattern != "/" {
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
	// use it (any valid key for /whoami, anyone for /openapi.json).
	Scope string
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
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		p, ok := PrincipalFrom(r.Context())
		if !ok {
			writeError(w, &apiError{status: http.StatusUnauthorized, code: "unauthorized", message: "no credential"})
			return
		}
		if requiredScope != "" && !scope.AnyCovers(p.Scopes, requiredScope) {
			writeError(w, &apiError{
				status: http.StatusForbidden, code: "insufficient_scope",
				message: "this key lacks the scope " + requiredScope,
				extra:   map[string]any{"required_scope": requiredScope},
			})
			return
		}
		if err := fn(w, r, p); err != nil {
			h.fail(w, r, err)
		}
	})
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mux.ServeHTTP(w, r)
}
