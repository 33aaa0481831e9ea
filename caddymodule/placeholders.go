package caddymodule

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"

	"github.com/keygate/keygate/limiter"
	"github.com/keygate/keygate/storage"
)

// credentialVars are a credential's request placeholders, boxed once when
// the credential is read from the store so that a request that passes
// costs no allocation to expose them.
type credentialVars struct {
	accountID, keyID, tokenID, accountName, team, scopes any
	// limited leaves the usage placeholders to usageVars (usage.go).
	limited bool
}

// verified is what the cache keeps for a known token: its credential and
// its placeholders, computed once.
type verified struct {
	storage.Credential
	vars caddy.ReplacerFunc
	// limited is set when a usage policy applies (usage.go), ratePolicy
	// to its RateLimit-Policy value when it has rate windows, rateFormat
	// to the fixed parts of its RateLimit value.
	limited    bool
	ratePolicy string
	rateFormat limiter.RateLimitFormat
}

// decorateCredential makes what the cache keeps of a credential.
func decorateCredential(c *storage.Credential) *verified {
	v := &credentialVars{
		accountID:   c.AccountID,
		keyID:       c.KeyID,
		tokenID:     c.TokenID,
		accountName: c.AccountName,
		team:        c.Team,
		scopes:      c.JoinedScopes,
		limited:     limitedPolicy(c),
	}
	return &verified{Credential: *c, vars: v.lookup, limited: v.limited, ratePolicy: ratePolicy(c),
		rateFormat: limiter.NewRateLimitFormat(c.KeyPolicy.Limits, c.AccountPolicy.Limits)}
}

// lookup serves {http.auth.user.id} (the account id, as Caddy's own
// authentication sets it, so access logs show it as user_id) and the
// {apikey.*} placeholders.
func (v *credentialVars) lookup(key string) (any, bool) {
	switch key {
	case "http.auth.user.id", "apikey.account":
		return v.accountID, true
	case "apikey.key_id":
		return v.keyID, true
	case "apikey.token_id":
		return v.tokenID, true
	case "apikey.account_name":
		return v.accountName, true
	case "apikey.team":
		return v.team, true
	case "apikey.scopes":
		return v.scopes, true
	case "apikey.credits_remaining", "apikey.ratelimit_remaining":
		if v.limited {
			return nil, false // usageVars, mapped after these, answers
		}
		return "", true
	}
	return nil, false
}

// anonymousVars serves the {apikey.*} placeholders of a request that passed
// a public route without a key: all empty, rather than left unreplaced.
var anonymousVars = caddy.ReplacerFunc(func(key string) (any, bool) {
	switch key {
	case "apikey.account", "apikey.key_id", "apikey.token_id", "apikey.account_name", "apikey.team", "apikey.scopes",
		"apikey.credits_remaining", "apikey.ratelimit_remaining":
		return "", true
	}
	return nil, false
})

// setPlaceholders exposes the caller's identity to later handlers and
// logs; on a public route (cred nil) the {apikey.*} placeholders are empty.
func setPlaceholders(r *http.Request, cred *verified) {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return
	}
	if cred == nil {
		repl.Map(anonymousVars)
		return
	}
	repl.Map(cred.vars)
}
