package caddymodule

import (
	"encoding/base64"
	"testing"
)

// TestAuthorizationSchemes checks that schemes compare case-insensitively
// in ASCII only: a Unicode look-alike scheme is not Basic or Bearer, so
// its value is taken whole (and fails as a malformed token).
func TestAuthorizationSchemes(t *testing.T) {
	tok := fuzzTokens.Generate()
	basic := base64.StdEncoding.EncodeToString([]byte(tok + ":"))
	for value, want := range map[string]string{
		"Bearer " + tok:  tok,
		"bEARER " + tok:  tok,
		"BASIC " + basic: tok,
		"basic " + basic: tok,
		"Baſic " + basic: "Baſic " + basic, // U+017F folds to s in Unicode only
		"Bearer":         "",
		"Bearer ":        "",
		"Basic !!":       "",
		tok:              tok,
	} {
		if got := tokenFromAuthorization(value, fuzzTokens); got != want {
			t.Errorf("tokenFromAuthorization(%q) = %q, want %q", value, got, want)
		}
	}
}
