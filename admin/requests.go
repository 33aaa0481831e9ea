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
}

// UpdateAccountRequest is the body of PATCH /accounts/{id}: the fields
// that are set are changed, the others kept.
type UpdateAccountRequest struct {
	Name     *string   `json:"name,omitempty"`
	Team     *string   `json:"team,omitempty"`
	Scopes   *[]string `json:"scopes,omitempty"`
	Disabled *bool     `json:"disabled,omitempty"`
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
