package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/token"
)

// Authenticator reads and checks the caller's API key: what apikey_auth and
// apikey_admin share. It holds the credential sources and the realm (its
// configuration), the answers rendered from them, and the apikeys app
// whose cache verifies keys. apikey_auth embeds it (its fields are the
// handler's own in JSON); apikey_admin holds it as "auth".
type Authenticator struct {
	// Headers are the credential sources, in order. Authorization accepts
	// "Bearer <token>", Basic with the token as user name or password, and
	// a bare token; other headers carry the bare token. Default:
	// X-API-Key, then Authorization.
	Headers []string `json:"headers,omitempty"`
	// Realm is named in WWW-Authenticate challenges. Default: "API".
	Realm string `json:"realm,omitempty"`

	app     *App
	tokens  token.Format
	sources []string
	answers answers
	logger  *zap.Logger
}

// answers are the refusals that do not depend on a route.
type answers struct {
	unauthorized, invalidToken, expired, disabled, invalidRequest, forbidden, unavailable *denial
	requestAnswers
}

// provision finds the apikeys app and compiles the configuration.
func (a *Authenticator) provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	appModule, err := ctx.App("apikeys")
	if err != nil {
		return fmt.Errorf("loading apikeys app: %w", err)
	}
	a.app = appModule.(*App)
	a.tokens = a.app.Tokens()
	return a.compile()
}

// compile checks the sources and the realm and renders the answers.
func (a *Authenticator) compile() error {
	if a.Realm == "" {
		a.Realm = "API"
	}
	if strings.ContainsAny(a.Realm, "\"\\\r\n") {
		return &settingError{setting: "realm", err: fmt.Errorf("realm %q: must not contain quotes, backslashes or line breaks", a.Realm)}
	}
	headers := a.Headers
	if len(headers) == 0 {
		headers = []string{"X-API-Key", authorization}
	}
	a.sources = a.sources[:0]
	for i, name := range headers {
		if !httpguts.ValidHeaderFieldName(name) {
			return &settingError{setting: "header", index: i, err: fmt.Errorf("header %q: not a valid header name", name)}
		}
		a.sources = append(a.sources, textproto.CanonicalMIMEHeaderKey(name))
	}

	realm := a.Realm
	a.answers = answers{
		unauthorized:   newDenial(resultUnauthorized, http.StatusUnauthorized, "unauthorized", "an API key is required", challenge(realm), nil),
		invalidToken:   newDenial(resultInvalidToken, http.StatusUnauthorized, "invalid_token", "the API key is not valid", challenge(realm, "error", "invalid_token"), nil),
		expired:        newDenial(resultExpired, http.StatusUnauthorized, "invalid_token", "the API key has expired", challenge(realm, "error", "invalid_token"), nil),
		disabled:       newDenial(resultDisabled, http.StatusUnauthorized, "invalid_token", "the API key's account is disabled", challenge(realm, "error", "invalid_token"), nil),
		invalidRequest: newDenial(resultInvalidRequest, http.StatusUnauthorized, "invalid_request", "the request carries two different credentials", challenge(realm, "error", "invalid_request"), nil),
		forbidden:      newDenial(resultForbidden, http.StatusForbidden, "forbidden", "no API route matches this request", "", nil),
		unavailable:    newDenial(resultUnavailable, http.StatusServiceUnavailable, "unavailable", "the key store is unavailable; retry later", "", nil),
		requestAnswers: newRequestAnswers(),
	}
	return nil
}

// insufficientScope renders the 403 for a key that lacks the scope s.
// Call it after compile, which sets the realm.
func (a *Authenticator) insufficientScope(s string) *denial {
	return newDenial(resultInsufficientScope, http.StatusForbidden, "insufficient_scope",
		"the API key lacks the scope "+s, challenge(a.Realm, "error", "insufficient_scope", "scope", s),
		map[string]string{"required_scope": s})
}

// strip removes every credential source from the request, so no token
// travels upstream or into later handlers and logs.
func (a *Authenticator) strip(r *http.Request) { stripCredentials(r.Header, a.sources) }

// canonical makes the request's method and path canonical, in place
// (requestpath.go), and returns the path to match, or the 400 refusal; a
// refused request loses its credential too, since handle_errors routes
// may still proxy it.
func (a *Authenticator) canonical(r *http.Request, allowEncodedSlash bool) (path string, escaped bool, bad *denial) {
	path, escaped, bad = a.answers.canonical(r, allowEncodedSlash)
	if bad != nil {
		a.strip(r)
	}
	return path, escaped, bad
}

// authenticate reads the request's credential, strips every source and
// verifies the key. It returns the caller's credential, or the refusal:
// 401 for a missing, conflicting, malformed, unknown, disabled or expired
// key, 503 when the store cannot say.
func (a *Authenticator) authenticate(r *http.Request) (*verified, *denial) {
	token, found := extractCredential(r.Header, a.sources, a.tokens)
	stripCredentials(r.Header, a.sources)
	switch found {
	case credentialNone:
		return nil, a.answers.unauthorized
	case credentialConflict:
		return nil, a.answers.invalidRequest
	}
	if !a.tokens.Valid(token) {
		return nil, a.answers.invalidToken
	}
	verifier := a.app.verifier()
	if verifier == nil {
		return nil, a.answers.unavailable
	}
	cred, err := verifier.Verify(r.Context(), token)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, a.answers.invalidToken
	case err != nil:
		a.logger.Warn("key store unavailable", zap.Error(err))
		return nil, a.answers.unavailable
	case cred.Disabled:
		return nil, a.answers.disabled
	case !cred.ExpiresAt.IsZero() && !time.Now().Before(cred.ExpiresAt):
		return nil, a.answers.expired
	}
	return cred, nil
}

// admit counts a request that passes and exposes the caller's identity
// to later handlers and logs; cred is nil on a public route.
func admit(r *http.Request, cred *verified) {
	if cred == nil {
		resultPublic.Inc()
	} else {
		resultAllowed.Inc()
	}
	setPlaceholders(r, cred)
}

// principal is the caller of the admin API that cred authenticates: never
// trusted, it acts with its key's effective scopes.
func (cred *verified) principal() admin.Principal { return cred.Credential.Principal() }
