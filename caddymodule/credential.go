package caddymodule

import (
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/keygate/keygate/storage/token"
)

// credentialResult says what a request carried.
type credentialResult int

const (
	credentialNone     credentialResult = iota // no credential at all
	credentialOne                              // exactly one token (maybe malformed)
	credentialConflict                         // two different credentials
)

// authorization is the canonical name of the header parsed for schemes.
const authorization = "Authorization"

// extractCredential returns the token the request carries in the given
// header sources (canonical names). Authorization accepts "Bearer <t>",
// Basic with the token as user name or password, and a bare "<t>"; other
// headers carry the bare token. The same token sent twice is one credential.
func extractCredential(h http.Header, sources []string, tokens token.Format) (string, credentialResult) {
	var token string
	result := credentialNone
	for _, name := range sources {
		for _, v := range h[name] {
			v = strings.TrimSpace(v)
			if v == "" {
				continue // an empty header carries nothing
			}
			if name == authorization {
				v = tokenFromAuthorization(v, tokens)
			}
			switch {
			case result == credentialNone:
				token, result = v, credentialOne
			case v != token:
				return "", credentialConflict
			}
		}
	}
	return token, result
}

// tokenFromAuthorization returns the token in a non-empty Authorization
// value; "" (an invalid token) for "Bearer" without one.
func tokenFromAuthorization(v string, tokens token.Format) string {
	scheme, rest, _ := strings.Cut(v, " ")
	switch {
	case schemeIs(scheme, "Bearer"):
		return strings.TrimSpace(rest)
	case schemeIs(scheme, "Basic"):
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(rest))
		if err != nil {
			return "" // malformed: answered as an invalid token
		}
		user, pass, _ := strings.Cut(string(raw), ":")
		if tokens.Valid(user) || pass == "" {
			return user
		}
		return pass
	}
	return v
}

// schemeIs compares an authentication scheme case-insensitively in ASCII
// only (RFC 9110): equal byte lengths keep Unicode folds such as "ſ" for
// "s" from matching.
func schemeIs(scheme, name string) bool {
	return len(scheme) == len(name) && strings.EqualFold(scheme, name)
}

// stripCredentials removes every credential source from the request, so
// no token travels upstream or into later handlers and logs.
func stripCredentials(h http.Header, sources []string) {
	for _, name := range sources {
		// A lookup in a small header map is cheaper than a delete, which
		// hashes the name, and most sources are absent.
		if _, ok := h[name]; ok {
			delete(h, name)
		}
	}
}
