package caddymodule

import (
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"golang.org/x/net/http/httpguts"
)

// The rule of this file: apikey_verify decides on the request a proxy
// describes (its original method and URI, in headers or, for Envoy, in the
// check request's own line) exactly as apikey_auth decides on the request
// it receives: the same canonical form, the same ScopeTable.decide, the
// same refusals. Only the rendering of the outcome differs: a 2xx with
// every identity header set (empty when absent, so that a proxy copying
// what it gets overwrites whatever the client sent), or the refusal in
// the form the proxy passes on (proxyanswer.go).

func init() {
	caddy.RegisterModule(VerifyHandler{})
	httpcaddyfile.RegisterHandlerDirective("apikey_verify", parseVerifyDirective)
	httpcaddyfile.RegisterDirectiveOrder("apikey_verify", httpcaddyfile.Before, "respond")
}

// Values of VerifyHandler.Mode: which proxy asks, so where the original
// request is read and how refusals are answered.
const (
	// ModeCaddy reads X-Forwarded-Method and X-Forwarded-Uri, as Caddy's
	// forward_auth sends them.
	ModeCaddy = "caddy"
	// ModeTraefik reads the same headers, as Traefik's ForwardAuth sends
	// them.
	ModeTraefik = "traefik"
	// ModeNginx reads X-Original-Method and X-Original-URI (set with
	// proxy_set_header in the auth_request location) and answers every
	// refusal whose status is not 401 or 403 as a 403, with the real
	// status in X-Keygate-Status: nginx's auth_request turns any other
	// status into a 500 (proxyanswer.go).
	ModeNginx = "nginx"
	// ModeEnvoy reads the method and path of the check request itself,
	// less PathPrefix, as Envoy's HTTP ext_authz sends them.
	ModeEnvoy = "envoy"
)

// VerifyHandler answers forward-auth subrequests (Caddy's forward_auth,
// Traefik's ForwardAuth, nginx's auth_request, Envoy's HTTP ext_authz):
// it decides on the original request the proxy describes as apikey_auth
// decides on the requests it receives (its Authenticator and ScopeTable,
// ScopeTable.decide), and answers 200 with the caller's identity in
// headers, or the refusal apikey_auth would send. It is terminal: it
// proxies nothing. Its answers are sent as they are, whatever
// handle_errors routes the server has, since a proxy reads them.
type VerifyHandler struct {
	Authenticator
	ScopeTable
	// Mode is caddy (the default), traefik, nginx or envoy.
	Mode string `json:"mode,omitempty"`
	// MethodHeader names the header that holds the original method.
	// Default: X-Forwarded-Method, X-Original-Method in nginx mode; not
	// used in envoy mode.
	MethodHeader string `json:"method_header,omitempty"`
	// URIHeader names the header that holds the original request URI
	// (path and query, as sent). Default: X-Forwarded-Uri, X-Original-URI
	// in nginx mode; not used in envoy mode.
	URIHeader string `json:"uri_header,omitempty"`
	// PathPrefix, in envoy mode, is the http_service's path_prefix: what
	// Envoy puts before the original path of the check request.
	PathPrefix string `json:"path_prefix,omitempty"`
	// IdentityHeaders name the headers of a 200 answer.
	IdentityHeaders IdentityHeaders `json:"identity_headers,omitzero"`

	mode         string
	methodHeader string
	uriHeader    string
	identity     [numIdentity]string // canonical header names
	refusals     verifyAnswers
}

// IdentityHeaders name the headers in which a 200 answer carries the
// caller's identity. Every one is set on every 200, empty when the value
// is (a public route), so that a proxy that copies them replaces those a
// client sent.
type IdentityHeaders struct {
	// Account carries the account id. Default: X-Keygate-Account.
	Account string `json:"account,omitempty"`
	// Key carries the key id. Default: X-Keygate-Key.
	Key string `json:"key,omitempty"`
	// Token carries the token id (never the token). Default:
	// X-Keygate-Token.
	Token string `json:"token,omitempty"`
	// Scopes carries the effective scopes, comma-separated. Default:
	// X-Keygate-Scopes.
	Scopes string `json:"scopes,omitempty"`
	// AccountName carries the account's name. Default:
	// X-Keygate-Account-Name.
	AccountName string `json:"account_name,omitempty"`
	// Team carries the account's team. Default: X-Keygate-Team.
	Team string `json:"team,omitempty"`
}

// The identity headers, in the order of IdentityHeaders.
const (
	identityAccount = iota
	identityKey
	identityToken
	identityScopes
	identityAccountName
	identityTeam
	numIdentity
)

// identityOptions are the identity_headers options, in order, with their
// default names.
var identityOptions = [numIdentity]struct{ option, name string }{
	{"account", "X-Keygate-Account"},
	{"key", "X-Keygate-Key"},
	{"token", "X-Keygate-Token"},
	{"scopes", "X-Keygate-Scopes"},
	{"account_name", "X-Keygate-Account-Name"},
	{"team", "X-Keygate-Team"},
}

// fields returns pointers to the names, in the order of identityOptions.
func (ih *IdentityHeaders) fields() [numIdentity]*string {
	return [numIdentity]*string{&ih.Account, &ih.Key, &ih.Token, &ih.Scopes, &ih.AccountName, &ih.Team}
}

// verifyAnswers are the 400s for a check request that does not describe
// an original request.
type verifyAnswers struct {
	missingMethod, repeatedMethod, missingURI, repeatedURI, badURI, badPrefix *denial
}

// CaddyModule returns the Caddy module information.
func (VerifyHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.apikey_verify",
		New: func() caddy.Module { return new(VerifyHandler) },
	}
}

// Provision finds the apikeys app and compiles the configuration.
func (v *VerifyHandler) Provision(ctx caddy.Context) error {
	if err := v.Authenticator.provision(ctx); err != nil {
		return err
	}
	return v.compileVerify()
}

// compile checks the whole configuration, as Provision does without the
// app.
func (v *VerifyHandler) compile() error {
	if err := v.Authenticator.compile(); err != nil {
		return err
	}
	return v.compileVerify()
}

// compileVerify checks the table and the proxy settings (the
// authenticator compiled first) and renders the 400s.
func (v *VerifyHandler) compileVerify() error {
	if err := v.compileTable(&v.Authenticator); err != nil {
		return err
	}
	v.mode = v.Mode
	methodHeader, uriHeader := "X-Forwarded-Method", "X-Forwarded-Uri"
	switch v.Mode {
	case "":
		v.mode = ModeCaddy
	case ModeCaddy, ModeTraefik:
	case ModeNginx:
		methodHeader, uriHeader = "X-Original-Method", "X-Original-URI"
	case ModeEnvoy:
		methodHeader, uriHeader = "", ""
	default:
		return &settingError{setting: "mode", err: fmt.Errorf("mode %q: want caddy, traefik, nginx or envoy", v.Mode)}
	}
	if v.mode == ModeEnvoy {
		for _, s := range []struct{ setting, value string }{{"method_header", v.MethodHeader}, {"uri_header", v.URIHeader}} {
			if s.value != "" {
				return &settingError{setting: s.setting, err: fmt.Errorf("%s: envoy mode reads the check request's own method and path", s.setting)}
			}
		}
		if v.PathPrefix != "" && (!strings.HasPrefix(v.PathPrefix, "/") || !validPathPrefix(v.PathPrefix)) {
			return &settingError{setting: "path_prefix", err: fmt.Errorf("path_prefix %q: want a path starting with /", v.PathPrefix)}
		}
	} else if v.PathPrefix != "" {
		return &settingError{setting: "path_prefix", err: fmt.Errorf("path_prefix: only envoy mode has one (mode is %s)", v.mode)}
	}
	var err error
	if v.methodHeader, err = headerSetting("method_header", v.MethodHeader, methodHeader); err != nil {
		return err
	}
	if v.uriHeader, err = headerSetting("uri_header", v.URIHeader, uriHeader); err != nil {
		return err
	}
	seen := map[string]string{}
	for i, name := range v.IdentityHeaders.fields() {
		opt := identityOptions[i]
		canon, err := headerSetting("identity_headers", *name, opt.name)
		if err != nil {
			err.(*settingError).index = i
			return err
		}
		if other, dup := seen[canon]; dup {
			return &settingError{setting: "identity_headers", index: i, err: fmt.Errorf("identity_headers: %s and %s both name %s", other, opt.option, canon)}
		}
		seen[canon] = opt.option
		v.identity[i] = canon
	}
	v.refusals = newVerifyAnswers(v.methodHeader, v.uriHeader, v.PathPrefix)
	return nil
}

// validPathPrefix reports whether p is a path Envoy can send as it is.
func validPathPrefix(p string) bool {
	u, err := url.ParseRequestURI(p)
	return err == nil && u.RawQuery == "" && !u.ForceQuery && u.EscapedPath() == p
}

// headerSetting returns the canonical form of the header name set (or
// def when it is empty), or the error naming the setting.
func headerSetting(setting, set, def string) (string, error) {
	if set == "" {
		set = def
	}
	if set == "" {
		return "", nil
	}
	if !httpguts.ValidHeaderFieldName(set) {
		return "", &settingError{setting: setting, err: fmt.Errorf("%s %q: not a valid header name", setting, set)}
	}
	return textproto.CanonicalMIMEHeaderKey(set), nil
}

func newVerifyAnswers(methodHeader, uriHeader, prefix string) verifyAnswers {
	bad := func(message string) *denial {
		return newDenial(resultInvalidRequest, http.StatusBadRequest, "invalid_request", message, "", nil)
	}
	if methodHeader == "" { // envoy mode
		return verifyAnswers{
			badURI:    bad("the check request's path is not a request target (/path?query)"),
			badPrefix: bad("the check request's path does not start with the path_prefix " + prefix),
		}
	}
	return verifyAnswers{
		missingMethod:  bad("the " + methodHeader + " header is missing: the proxy must send the original request's method"),
		repeatedMethod: bad("the " + methodHeader + " header appears more than once"),
		missingURI:     bad("the " + uriHeader + " header is missing: the proxy must send the original request's URI"),
		repeatedURI:    bad("the " + uriHeader + " header appears more than once"),
		badURI:         bad("the " + uriHeader + " header is not a request target (/path?query)"),
	}
}

// ServeHTTP implements caddyhttp.MiddlewareHandler; next is never called.
func (v *VerifyHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	cred, _, denied := v.authorize(r)
	if denied != nil {
		v.refuse(w, denied)
		return nil
	}
	// Usage policies (usage.go) go here, between the decision and the
	// answer, as AuthHandler.serve runs them: a refusal of theirs is
	// answered through v.proxyWriter(w) as refuse does, so nginx mode
	// carries its status as it carries the 400s and 503s. Until they are
	// applied here, a key with a policy is refused rather than let
	// through unmetered: an allowlist or a limit must never be a no-op.
	if cred != nil && cred.limited {
		v.refuse(w, policyNotApplied)
		return nil
	}
	admit(r, cred)
	v.allow(w, cred)
	return nil
}

// policyNotApplied refuses, on apikey_verify, a key that has a usage
// policy (limits, credits, allowed_ips), which this handler does not
// apply yet.
var policyNotApplied = newDenial(resultForbidden, http.StatusForbidden, "forbidden",
	"this API key has usage limits, which apikey_verify does not apply yet; use apikey_auth for it", "", nil)

// authorize reads the original request the check request describes,
// makes its method and path canonical and decides on it, as
// AuthHandler.authorize does on its own request. The check request loses
// its credential either way.
func (v *VerifyHandler) authorize(r *http.Request) (*verified, *access, *denial) {
	orig, bad := v.original(r)
	if bad != nil {
		v.strip(r)
		return nil, nil, bad
	}
	path, escaped, bad := v.canonical(orig, v.AllowEncodedSlash)
	if bad != nil {
		return nil, nil, bad
	}
	return v.decide(&v.Authenticator, orig, path, escaped)
}

// original returns the request the proxy asks about: the check request
// with the original method and URL, sharing its headers (so its
// credential) and context; or the 400 when the check request does not
// say which request it is, which must never read as "/".
func (v *VerifyHandler) original(r *http.Request) (*http.Request, *denial) {
	var method, target string
	if v.mode == ModeEnvoy {
		method, target = r.Method, r.RequestURI
		if !strings.HasPrefix(target, v.PathPrefix) {
			return nil, v.refusals.badPrefix
		}
		target = target[len(v.PathPrefix):]
	} else {
		var bad *denial
		if method, bad = oneHeader(r.Header, v.methodHeader, v.refusals.missingMethod, v.refusals.repeatedMethod); bad != nil {
			return nil, bad
		}
		if target, bad = oneHeader(r.Header, v.uriHeader, v.refusals.missingURI, v.refusals.repeatedURI); bad != nil {
			return nil, bad
		}
	}
	u, ok := requestTarget(target)
	if !ok {
		return nil, v.refusals.badURI
	}
	orig := new(http.Request)
	*orig = *r
	orig.Method, orig.URL, orig.RequestURI = method, u, target
	return orig, nil
}

// oneHeader returns the only value of the header name, or the refusal:
// missing when it is absent or empty, repeated when it has several values
// (a client's beside the proxy's: which would the proxy's upstream read?).
func oneHeader(h http.Header, name string, missing, repeated *denial) (string, *denial) {
	switch vals := h[name]; {
	case len(vals) == 0 || len(vals) == 1 && vals[0] == "":
		return "", missing
	case len(vals) > 1:
		return "", repeated
	default:
		return vals[0], nil
	}
}

// requestTarget parses an original request target as net/http parses a
// request line: origin form (/path?query), or absolute form (http://host/
// path), of which only the path and query count. "*" and other forms are
// refused.
func requestTarget(target string) (*url.URL, bool) {
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, false
	}
	if u.Scheme != "" || u.Host != "" {
		if (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" {
			return nil, false
		}
		u.Scheme, u.Host, u.User = "", "", nil
		if u.Path == "" {
			u.Path, u.RawPath = "/", ""
		}
	}
	if !strings.HasPrefix(u.Path, "/") {
		return nil, false
	}
	return u, true
}

// anonymousIdentity holds the (empty) identity of a public route's answer.
var anonymousIdentity [numIdentity]string

// allow answers 200 with every identity header set: the caller's, or
// empty ones on a public route (cred nil).
func (v *VerifyHandler) allow(w http.ResponseWriter, cred *verified) {
	vals := anonymousIdentity[:]
	if cred != nil {
		vals = []string{ // the one allocation of a passing check
			identityAccount:     cred.AccountID,
			identityKey:         cred.KeyID,
			identityToken:       cred.TokenID,
			identityScopes:      cred.JoinedScopes,
			identityAccountName: cred.AccountName,
			identityTeam:        cred.Team,
		}
	}
	h := w.Header()
	for i, name := range v.identity {
		h[name] = vals[i : i+1 : i+1]
	}
	h["Cache-Control"] = noStore
	w.WriteHeader(http.StatusOK)
}

// refuse answers a refusal in the form the mode's proxy passes on.
func (v *VerifyHandler) refuse(w http.ResponseWriter, d *denial) {
	pw := v.proxyWriter(w)
	d.answer(pw)
	if nw, ok := pw.(*nginxWriter); ok {
		nw.finish()
	}
}

// Interface guards
var (
	_ caddy.Provisioner           = (*VerifyHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*VerifyHandler)(nil)
	_ caddyfile.Unmarshaler       = (*VerifyHandler)(nil)
)
