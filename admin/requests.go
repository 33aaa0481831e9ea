package admin

import "encoding/json"

// The request bodies of the API, shared by the Handler, which decodes
// them, and package client, which sends them. Optional fields carry
// omitempty so that a client leaves out what it does not set; the Handler
// refuses fields that are not listed here (and says which).

// CreateAccountRequest is the body of POST /accounts.
type CreateAccountRequest struct {
	Name string `json:"name"`
	// Kind is "user" (the default) or "service".
	Kind     string   `json:"kind,omitempty"`
	Team     string   `json:"team,omitempty"`
	Scopes   []string `json:"scopes,omitempty"`
	Disabled bool     `json:"disabled,omitempty"`
	// Limits are rate windows shared by all the account's keys.
	Limits []Limit `json:"limits,omitempty"`
	// AllowedIPs are CIDR prefixes (or single addresses) the account's
	// keys may be used from; empty: anywhere.
	AllowedIPs []string `json:"allowed_ips,omitempty"`
}

// UpdateAccountRequest is the body of PATCH /accounts/{id}: the fields
// that are set are changed, the others kept. An empty list (or JSON
// null) of limits or allowed IPs removes them all.
type UpdateAccountRequest struct {
	Name       *string   `json:"name,omitempty"`
	Team       *string   `json:"team,omitempty"`
	Scopes     *[]string `json:"scopes,omitempty"`
	Disabled   *bool     `json:"disabled,omitempty"`
	Limits     *[]Limit  `json:"limits,omitempty"`
	AllowedIPs *[]string `json:"allowed_ips,omitempty"`
}

// Limit is a rate window: at most Limit requests per Window, a Go
// duration of whole seconds from 1s to 744h ("1s", "1m", "24h"). Names
// are 1 to 32 of [a-z0-9_-], unique on their key or account.
type Limit struct {
	Name   string `json:"name"`
	Limit  int64  `json:"limit"`
	Window string `json:"window"`
}

// Refill is a credit refill schedule: the balance goes back to Amount at
// 00:00 UTC every day ("daily", no day), every week on weekday Day
// ("weekly", 0 Sunday to 6), or every month on day Day ("monthly", 1 to
// 31, clamped to the month's last day; 0 is 1).
type Refill struct {
	Amount   int64  `json:"amount"`
	Interval string `json:"interval"`
	Day      int    `json:"day"`
}

// CreditsRequest gives a key credits: a balance spent by its requests
// and, optionally, refilled on a schedule.
type CreditsRequest struct {
	Remaining int64   `json:"remaining"`
	Refill    *Refill `json:"refill,omitempty"`
}

// CreditsPatch changes a key's credits (the "credits" of PATCH
// /keys/{id}): the fields set are changed. Remaining sets the balance,
// voiding the leases gateways hold; Refill replaces the schedule, JSON
// null (NoRefill) removes it. On a key without credits it gives it some,
// Remaining defaulting to the refill's amount.
type CreditsPatch struct {
	Remaining *int64          `json:"remaining,omitempty"`
	Refill    json.RawMessage `json:"refill,omitempty"`
}

// CreateKeyRequest is the body of POST /keys.
type CreateKeyRequest struct {
	// Account is the account's id or name; through apikey_admin it
	// defaults to the caller's own.
	Account     string            `json:"account,omitempty"`
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	// Scopes nil inherits the account's scopes, live; an empty list holds
	// nothing. No omitempty: it would send [] as "inherit".
	Scopes []string `json:"scopes"`
	// ExpiresAt is the first token's expiry, RFC 3339; empty: never.
	ExpiresAt string `json:"expires_at,omitempty"`
	// Limits are the key's own rate windows; its account's apply too.
	// Through apikey_admin a key created without them gets its creator's.
	Limits []Limit `json:"limits,omitempty"`
	// AllowedIPs are CIDR prefixes (or single addresses) the key may be
	// used from; empty: anywhere its account allows.
	AllowedIPs []string `json:"allowed_ips,omitempty"`
	// Credits is nil for a key without a credit limit.
	Credits *CreditsRequest `json:"credits,omitempty"`
}

// UpdateKeyRequest is the body of PATCH /keys/{id}: the fields that are
// set are changed, the others kept.
type UpdateKeyRequest struct {
	Name        *string            `json:"name,omitempty"`
	Description *string            `json:"description,omitempty"`
	Tags        *map[string]string `json:"tags,omitempty"`
	// Scopes is raw to tell three cases apart: absent (nil) keeps them,
	// JSON null (InheritScopes) makes the key inherit its account's, a
	// list sets them.
	Scopes json.RawMessage `json:"scopes,omitempty"`
	// Limits and AllowedIPs replace the key's; an empty list (or JSON
	// null) removes them all.
	Limits     *[]Limit  `json:"limits,omitempty"`
	AllowedIPs *[]string `json:"allowed_ips,omitempty"`
	// Credits is raw for three cases: absent keeps them, JSON null
	// (Unlimited) removes them, a CreditsPatch changes them.
	Credits json.RawMessage `json:"credits,omitempty"`
}

// CreateTokenRequest is the body of POST /keys/{id}/tokens.
type CreateTokenRequest struct {
	Name        string            `json:"name,omitempty"`
	Description string            `json:"description,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
	// ExpiresAt is RFC 3339; empty: never.
	ExpiresAt string `json:"expires_at,omitempty"`
}

// UpdateTokenRequest is the body of PATCH /keys/{id}/tokens/{tid}: the
// fields that are set are changed, the others kept.
type UpdateTokenRequest struct {
	Name        *string            `json:"name,omitempty"`
	Description *string            `json:"description,omitempty"`
	Tags        *map[string]string `json:"tags,omitempty"`
	// ExpiresAt is raw to tell three cases apart: absent (nil) keeps it,
	// JSON null (NeverExpires) removes it, an RFC 3339 string sets it.
	ExpiresAt json.RawMessage `json:"expires_at,omitempty"`
}

// RotateRequest is the body of POST /keys/{id}/tokens/{tid}/rotate.
type RotateRequest struct {
	// Grace is how long the old token keeps working (a Go duration);
	// empty or "0s": it stops now.
	Grace string `json:"grace,omitempty"`
	// ExpiresAt is the new token's expiry; by default the new token gets
	// the old one's lifetime, counted from now.
	ExpiresAt string `json:"expires_at,omitempty"`
}

// RevokeRequest is the body of POST /revoke.
type RevokeRequest struct {
	// Token is the token's value.
	Token string `json:"token"`
}

// InheritScopes is UpdateKeyRequest.Scopes for "inherit the account's".
var InheritScopes = json.RawMessage("null")

// NeverExpires is UpdateTokenRequest.ExpiresAt for "no expiry".
var NeverExpires = json.RawMessage("null")

// Unlimited is UpdateKeyRequest.Credits for "no credit limit".
var Unlimited = json.RawMessage("null")

// NoRefill is CreditsPatch.Refill for "no refill".
var NoRefill = json.RawMessage("null")
