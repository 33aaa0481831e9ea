package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/keygate/keygate/internal/routetable"
	"github.com/keygate/keygate/internal/scope"
)

// Access levels a route can require besides scopes.
const (
	// AccessPublic lets every request through, with or without a key.
	AccessPublic = "public"
	// AccessAuthenticated lets any valid key through.
	AccessAuthenticated = "authenticated"
	// AccessDeny refuses every request (403).
	AccessDeny = "deny"
)

// ScopeTable says what each request requires and decides on it: what
// apikey_auth and apikey_verify share. Both embed it, so its fields are
// the handler's own in JSON.
//
// The table maps method and path patterns to a scope, "public" or
// "authenticated"; the most specific pattern wins whatever the order, and
// Default applies to the rest. With Require instead, every request needs
// all of those scopes. With neither, any valid key passes.
type ScopeTable struct {
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

	table    routetable.Table[*access]
	fallback *access
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
	// Cost is what a request on the route takes from a key's credits;
	// 0 is the default, 1. Keys without credits are not charged.
	Cost int64 `json:"cost,omitempty"`
}

// access is what a route requires, with its refusals rendered.
type access struct {
	public bool
	deny   bool
	scopes []string
	// cost is what a request takes from a key's credits (at least 1).
	cost int64
	// insufficient holds the 403 for each scope in scopes.
	insufficient []*denial
}

// compileTable checks the scope table, default and require and builds
// the table, with the 403s that a (compiled first, for its realm)
// renders. Errors name the setting at fault (settingError).
func (t *ScopeTable) compileTable(a *Authenticator) error {
	if len(t.Require) > 0 {
		if len(t.Routes) > 0 || t.Default != "" {
			return &settingError{setting: "require", err: errors.New("require cannot be combined with a scope table or default")}
		}
		for i, s := range t.Require {
			if s == AccessPublic || s == AccessDeny || (s == AccessAuthenticated && len(t.Require) > 1) {
				return &settingError{setting: "require", index: i,
					err: fmt.Errorf("require %q: require lists scopes (or authenticated alone); for public or denied routes use a scope table", s)}
			}
		}
		acc, err := newAccess(a, t.Require)
		if err != nil {
			return &settingError{setting: "require", index: err.index, err: fmt.Errorf("require: %w", err.err)}
		}
		t.fallback = acc
		return nil
	}

	t.table = routetable.Table[*access]{}
	for i, rule := range t.Routes {
		fail := func(err error) error { return &settingError{setting: "scope", index: i, err: err} }
		acc, err := newAccess(a, []string{rule.Scope})
		if err != nil {
			return fail(fmt.Errorf("scope %s %s: %w", strings.Join(rule.Methods, ","), rule.Path, err.err))
		}
		if err := checkMethods(rule.Methods); err != nil {
			return fail(fmt.Errorf("scope %s %s: %w", strings.Join(rule.Methods, ","), rule.Path, err))
		}
		switch {
		case rule.Cost < 0:
			return fail(fmt.Errorf("scope %s %s: cost %d: must not be negative", strings.Join(rule.Methods, ","), rule.Path, rule.Cost))
		case rule.Cost > 0 && (acc.public || acc.deny):
			return fail(fmt.Errorf("scope %s %s: a cost on a %s route charges nobody", strings.Join(rule.Methods, ","), rule.Path, rule.Scope))
		case rule.Cost > 0:
			acc.cost = rule.Cost
		}
		if err := t.table.Add(rule.Methods, rule.Path, acc); err != nil {
			return fail(fmt.Errorf("scope table: %w", err))
		}
	}
	def := t.Default
	switch {
	case def == "" && len(t.Routes) > 0:
		def = AccessDeny
	case def == "":
		def = AccessAuthenticated
	}
	acc, err := newAccess(a, []string{def})
	if err != nil {
		return &settingError{setting: "default", err: fmt.Errorf("default %q: want deny, authenticated, public or a scope: %w", def, err.err)}
	}
	t.fallback = acc
	return nil
}

// wordError is an access word that newAccess refuses, and its index.
type wordError struct {
	index int
	err   error
}

// newAccess builds what a route requires from its access words: one
// keyword (accessKeyword), or scopes that are not likely typos of one;
// a renders the 403s.
func newAccess(a *Authenticator, words []string) (*access, *wordError) {
	if len(words) == 1 {
		switch words[0] {
		case AccessPublic:
			return &access{public: true}, nil
		case AccessAuthenticated:
			return &access{cost: 1}, nil
		case AccessDeny:
			return &access{deny: true}, nil
		}
	}
	acc := &access{cost: 1}
	for i, s := range words {
		if err := checkScopeWord(s); err != nil {
			return nil, &wordError{index: i, err: err}
		}
		acc.scopes = append(acc.scopes, s)
		acc.insufficient = append(acc.insufficient, a.insufficientScope(s))
	}
	return acc, nil
}

// decide is the decision on a request whose method and path are already
// canonical (path and escaped are what canonical returned), by a's key
// check and the table. apikey_auth and apikey_verify both decide here,
// then render the outcome their own way (auth.go, verify.go). It returns
// the caller's credential (nil on a public route) and what the route
// requires, or the refusal. A step that refuses a request once its key
// and scope are known belongs here or just after (as the usage policies
// do: AuthHandler.serve), for both handlers.
func (t *ScopeTable) decide(a *Authenticator, r *http.Request, path string, escaped bool) (*verified, *access, *denial) {
	acc := t.route(r.Method, path, escaped)
	if acc.public {
		a.strip(r)
		return nil, acc, nil
	}
	cred, denied := a.authenticate(r)
	switch {
	case denied != nil:
		return nil, acc, denied
	case acc.deny:
		return nil, acc, a.answers.forbidden
	}
	for i, required := range acc.scopes {
		if !scope.AnyCovers(cred.Scopes, required) {
			return nil, acc, acc.insufficient[i]
		}
	}
	return cred, acc, nil
}

// route returns what the request requires: its rule in the table, else the
// fallback. path is escaped or decoded, as canonicalPath returned it.
func (t *ScopeTable) route(method, path string, escaped bool) *access {
	if len(t.Routes) == 0 {
		return t.fallback
	}
	var acc *access
	var ok bool
	if escaped {
		acc, ok = t.table.MatchEscaped(method, path)
	} else {
		acc, ok = t.table.Match(method, path)
	}
	if !ok {
		return t.fallback
	}
	return acc
}
