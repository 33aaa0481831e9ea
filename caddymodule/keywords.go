package caddymodule

import (
	"fmt"
	"slices"
	"strings"

	edlib "github.com/hbollon/go-edlib"
	"golang.org/x/net/http/httpguts"

	"github.com/keygate/keygate/internal/scope"
)

// The rule of this file: a word of the scope table that is a likely typo
// of a keyword is an error, not a meaning. "default pubic" would
// otherwise require a scope nobody holds, and "scope GTE /a x" a method
// nobody sends: both fail closed, but silently.
//
// An access word (a scope rule's last word, default, require) is a
// keyword (deny, public, authenticated) or a scope (internal/scope). A
// one-segment scope is refused when it is one edit (an insertion, a
// deletion, a substitution or a swap of neighbours) from deny or public,
// two from authenticated, or a word that means one of them (allow, open,
// forbidden, auth, …). A scope with ":" is always a scope. A method is
// refused when it is not a registered HTTP method but one edit from
// GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS, or says "any method"
// (ANY, ALL: the table writes that "*").

// accessKeywords are the access words, with the edits a misspelling of
// each may be away from it.
var accessKeywords = []struct {
	word  string
	edits int
}{{AccessDeny, 1}, {AccessPublic, 1}, {AccessAuthenticated, 2}}

// accessSynonyms are words that mean a keyword, with what to write instead.
var accessSynonyms = map[string]string{
	"allow": "public (no key needed) or authenticated (any valid key)", "allowed": "public (no key needed) or authenticated (any valid key)",
	"permit": "public (no key needed) or authenticated (any valid key)",
	"open":   AccessPublic, "anonymous": AccessPublic, "anon": AccessPublic, "unauthenticated": AccessPublic, "noauth": AccessPublic,
	"denied": AccessDeny, "reject": AccessDeny, "forbid": AccessDeny, "forbidden": AccessDeny, "block": AccessDeny, "refuse": AccessDeny,
	"auth": AccessAuthenticated, "authed": AccessAuthenticated, "authentication": AccessAuthenticated,
	"authorized": AccessAuthenticated, "authorised": AccessAuthenticated,
}

// checkScopeWord returns nil when s, which is no keyword, is a scope that
// is not a likely typo of a keyword.
func checkScopeWord(s string) error {
	if err := scope.Validate(s); err != nil {
		return err
	}
	if strings.Contains(s, ":") || s == scope.All {
		return nil
	}
	if want, ok := accessSynonyms[s]; ok {
		return fmt.Errorf("%q: did you mean %s? (as a scope, %q is refused as a likely mistake)", s, want, s)
	}
	for _, kw := range accessKeywords {
		if edlib.OSADamerauLevenshteinDistance(s, kw.word) <= kw.edits {
			return fmt.Errorf("%q: did you mean %s? (as a scope, %q is refused as a likely typo)", s, kw.word, s)
		}
	}
	return nil
}

// commonMethods are the methods a misspelt method is compared with.
var commonMethods = []string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}

// registeredMethods are the methods of the IANA HTTP Method Registry: none
// is taken for a typo, however close to a common one.
var registeredMethods = []string{
	"ACL", "BASELINE-CONTROL", "BIND", "CHECKIN", "CHECKOUT", "CONNECT", "COPY", "DELETE", "GET", "HEAD",
	"LABEL", "LINK", "LOCK", "MERGE", "MKACTIVITY", "MKCALENDAR", "MKCOL", "MKREDIRECTREF", "MKWORKSPACE",
	"MOVE", "OPTIONS", "ORDERPATCH", "PATCH", "POST", "PRI", "PROPFIND", "PROPPATCH", "PUT", "QUERY",
	"REBIND", "REPORT", "SEARCH", "TRACE", "UNBIND", "UNCHECKOUT", "UNLINK", "UNLOCK", "UPDATE",
	"UPDATEREDIRECTREF", "VERSION-CONTROL",
}

// checkMethods returns an error for the first method of a scope rule that
// is a likely typo. Malformed methods are the table's to refuse.
func checkMethods(methods []string) error {
	for _, m := range methods {
		if !httpguts.ValidHeaderFieldName(m) { // not a token
			continue
		}
		m = strings.ToUpper(m)
		if m == "ANY" || m == "ALL" {
			return fmt.Errorf("method %q: did you mean * (any method)?", m)
		}
		if slices.Contains(registeredMethods, m) {
			continue
		}
		for _, c := range commonMethods {
			if edlib.OSADamerauLevenshteinDistance(m, c) <= 1 {
				return fmt.Errorf("method %q: did you mean %s? (%q is refused as a likely typo)", m, c, m)
			}
		}
	}
	return nil
}
