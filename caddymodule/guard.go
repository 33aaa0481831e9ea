package caddymodule

import (
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// The rule of this file: a matcher that decides which requests apikey_auth
// checks must read the request as the upstream will. A handler behind a
// route's matcher never sees the requests that matcher does not match, and
// Caddy's matchers read requests differently from many upstreams: the path
// matcher reads the decoded, cleaned path (x%2F..%2F..%2Fb is "/v1/b" to
// it, one segment under /v1/apps/ for Go's ServeMux), does not match
// "/v1/apps;x/a" (/v1/apps/a to a Servlet container), and the method
// matcher compares as sent ("post" is not POST to it, but is to Werkzeug
// and Django). So apikey_auth takes its matcher itself (AuthHandler's
// MatchRaw) and makes every request canonical, or refuses it, before the
// matcher reads it. Where the matcher is not apikey_auth's own (a handle
// block around it), apikey_guard does the same in front of it.

func init() {
	caddy.RegisterModule(GuardHandler{})
	httpcaddyfile.RegisterHandlerDirective("apikey_guard", parseGuardDirective)
	// After try_files is just before apikey_auth (which is just before
	// basic_auth), whichever registers first: before every handle block.
	httpcaddyfile.RegisterDirectiveOrder("apikey_guard", httpcaddyfile.After, "try_files")
}

// GuardHandler makes the method and path of each request canonical, in
// place, as apikey_auth does, or answers 400 invalid_request; it checks no
// key. apikey_auth with its own matcher needs none; put it before other
// matchers that decide which requests apikey_auth sees, such as those of
// handle or route blocks holding apikey_auth (the Caddyfile directive,
// at a site's top level, runs before every handle block).
type GuardHandler struct {
	// AllowEncodedSlash lets request paths hold %2F, as apikey_auth's
	// option does; paths whose decoded form would have dot or empty
	// segments (x%2F..%2Fy) are still refused, since matchers read the
	// decoded form.
	AllowEncodedSlash bool `json:"allow_encoded_slash,omitempty"`

	answers requestAnswers
}

// requestAnswers are the 400s for a method or path that is not canonical.
type requestAnswers struct {
	// badPath holds the 400 for each pathFault; badMethod is the 400 for
	// a method that is not a token; hiddenDots is the 400 for a path that
	// matchers would read differently (see decodedClean).
	badPath    [numPathFaults]*denial
	badMethod  *denial
	hiddenDots *denial
}

func newRequestAnswers() requestAnswers {
	var a requestAnswers
	a.badMethod = newDenial(resultInvalidRequest, http.StatusBadRequest, "invalid_request", "the request method is not an HTTP method token", "", nil)
	for f := pathOK + 1; f < numPathFaults; f++ {
		a.badPath[f] = newDenial(resultInvalidRequest, http.StatusBadRequest, "invalid_request", pathFaultMessages[f], "", nil)
	}
	a.hiddenDots = newDenial(resultInvalidRequest, http.StatusBadRequest, "invalid_request",
		"the request path must not have dot or empty segments once its encoded slashes are decoded", "", nil)
	return a
}

// CaddyModule returns the Caddy module information.
func (GuardHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.apikey_guard",
		New: func() caddy.Module { return new(GuardHandler) },
	}
}

// Provision renders the refusals.
func (g *GuardHandler) Provision(caddy.Context) error {
	g.answers = newRequestAnswers()
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (g *GuardHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if bad := g.canonical(r); bad != nil {
		return bad.serve(w, r)
	}
	return next.ServeHTTP(w, r)
}

// canonical makes the request's method and path canonical (requestpath.go)
// and returns nil, or returns the refusal.
func (g *GuardHandler) canonical(r *http.Request) *denial {
	_, _, bad := g.answers.forMatchers(r, g.AllowEncodedSlash)
	return bad
}

// forMatchers is canonical for a request that matchers read next: it also
// refuses a path they would read differently (see decodedClean).
func (a *requestAnswers) forMatchers(r *http.Request, allowEncodedSlash bool) (path string, escaped bool, bad *denial) {
	path, escaped, bad = a.canonical(r, allowEncodedSlash)
	if bad == nil && !decodedClean(r, escaped) {
		bad = a.hiddenDots
	}
	return path, escaped, bad
}

// decodedClean reports whether matchers read the path as canonicalPath
// left it. With %2F allowed (escaped true) the path is clean as the
// upstream splits it, but a path matcher splits the decoded form:
// x%2F..%2F..%2Fy is "x/../../y" there, and Caddy's path matcher resolves
// it out of the matched tree.
func decodedClean(r *http.Request, escaped bool) bool {
	return !escaped || caddyhttp.CleanPath(r.URL.Path, true) == r.URL.Path
}

// provisionMatch loads the handler's matchers.
func (h *AuthHandler) provisionMatch(ctx caddy.Context) error {
	if h.MatchRaw == nil {
		return nil
	}
	mods, err := ctx.LoadModule(h, "MatchRaw")
	if err != nil {
		return fmt.Errorf("loading matchers: %w", err)
	}
	h.matchers = nil
	if err := h.matchers.FromInterface(mods); err != nil {
		return fmt.Errorf("loading matchers: %w", err)
	}
	return nil
}

// serveMatched is ServeHTTP with matchers: every request is made canonical
// or refused first, then the key is checked on those the matchers match.
func (h *AuthHandler) serveMatched(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	path, escaped, bad := h.answers.forMatchers(r, h.AllowEncodedSlash)
	if bad != nil {
		h.strip(r) // handle_errors routes may still proxy it
		return bad.serve(w, r)
	}
	match, err := h.matchers.AnyMatchWithError(r)
	if err != nil {
		return err // as a route does: the matcher's own error
	}
	if !match {
		return next.ServeHTTP(w, r)
	}
	cred, acc, denied := h.decide(&h.Authenticator, r, path, escaped)
	return h.serve(w, r, next, cred, acc, denied)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*GuardHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*GuardHandler)(nil)
	_ caddyfile.Unmarshaler       = (*GuardHandler)(nil)
)
