package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"

	"github.com/keygate/keygate/limiter"
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
	// UsageSettings: only rate_limit_headers applies. A request is
	// charged when it is checked, before the upstream runs, so
	// cost_header and charge_on 2xx, which read the upstream's answer,
	// are configuration errors here.
	UsageSettings

	mode         string
	methodHeader string
	uriHeader    string
	identity     [numIdentity]string // canonical header names
	refusals     verifyAnswers
	// warnedClientIP is set once clientIPUnknown was logged.
	warnedClientIP *atomic.Bool
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
	if err := v.compileVerifyUsage(); err != nil {
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
	v.warnedClientIP = new(atomic.Bool)
	return nil
}

// compileVerifyUsage checks the usage settings: apikey_verify charges a
// request when it answers the check, so it cannot read the upstream's
// answer, which cost_header and charge_on 2xx need.
func (v *VerifyHandler) compileVerifyUsage() error {
	if err := v.compileUsage(); err != nil {
		return err
	}
	if v.CostHeader != "" {
		return &settingError{setting: "cost_header", err: errors.New("cost_header: apikey_verify charges a request's credits when it answers the check, " +
			"before the upstream runs, so it never sees the upstream's answer; give the route its cost with scope … cost <n>, or use apikey_auth")}
	}
	if v.ChargeOn == Charge2xx {
		return &settingError{setting: "charge_on", err: errors.New("charge_on 2xx: apikey_verify charges a request's credits when it answers the check, " +
			"before the upstream's status is known; only charge_on any applies (apikey_auth can charge 2xx answers only)")}
	}
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
	cred, acc, denied := v.authorize(r)
	if denied != nil {
		v.refuse(w, denied)
		return nil
	}
	if cred != nil && cred.limited {
		return v.serveLimited(w, r, cred, acc.cost)
	}
	admit(r, cred)
	v.allow(w, cred)
	return nil
}

// serveLimited answers for a key with a usage policy as apikey_auth
// decides on it (checkUsage): the allowlists against the original
// client's address (originalClientIP), then the rate windows and the
// credits, the refusals written through proxyWriter. A request that
// passes is charged its route's cost at once: apikey_verify never sees
// the upstream's answer (hence no cost_header or charge_on 2xx).
func (v *VerifyHandler) serveLimited(w http.ResponseWriter, r *http.Request, cred *verified, cost int64) error {
	var d limiter.Decision
	if refused := checkUsage(r, &d, &v.Authenticator, cred, cost, originalClientIP); refused != nil {
		if refused == clientIPUnknown && !v.warnedClientIP.Swap(true) {
			v.logger.Warn("apikey_verify refused a key with allowed_ips because the check request did not name the client: "+
				"list the proxy in the server's trusted_proxies and have it send the client's address in client_ip_headers (X-Forwarded-For)",
				zap.String("remote_addr", r.RemoteAddr))
		}
		v.refuse(w, refused)
		return nil
	}
	v.admitLimited(w, r, cred, &d)
	d.Reservation.Commit(cost)
	v.allow(w, cred)
	return nil
}

// authorize reads the original request the check request describes,
// makes its method and path canonical and decides on it, as
// AuthHandler.authorize does on its own request. The check request loses
// its credential either way.
func (v *VerifyHandler) authorize(r *http.Request) (*verified, *access, *denial) {
	var orig http.Request
	if bad := v.original(&orig, r); bad != nil {
		v.strip(r)
		return nil, nil, bad
	}
	path, escaped, bad := v.canonical(&orig, v.AllowEncodedSlash)
	if bad != nil {
		return nil, nil, bad
	}
	return v.decide(&v.Authenticator, &orig, path, escaped)
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
