package client

import (
	"context"
	"iter"
	"net/http"
	"slices"

	"github.com/keygate/keygate/admin"
)

// KeyFilter selects keys to list.
type KeyFilter struct {
	// Account is an account's id or name; empty: all the caller sees.
	Account string
	// Tags are tags every listed key carries.
	Tags map[string]string
}

// CreateKey creates a key and its first token (POST /keys); the answer
// carries the token's value, once.
func (c *Client) CreateKey(ctx context.Context, req admin.CreateKeyRequest) (*admin.KeyWithSecret, error) {
	var k admin.KeyWithSecret
	return &k, c.call(ctx, http.MethodPost, "/keys", nil, req, &k)
}

// ListKeys returns one page of keys (GET /keys).
func (c *Client) ListKeys(ctx context.Context, f KeyFilter, opts ListOptions) (*admin.List[admin.Key], error) {
	q := opts.query()
	if f.Account != "" {
		q.Set("account", f.Account)
	}
	names := make([]string, 0, len(f.Tags))
	for k := range f.Tags {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		q.Add("tag", k+":"+f.Tags[k])
	}
	var page admin.List[admin.Key]
	return &page, c.call(ctx, http.MethodGet, "/keys", q, nil, &page)
}

// Keys yields every key f selects, page after page.
func (c *Client) Keys(ctx context.Context, f KeyFilter) iter.Seq2[admin.Key, error] {
	return each(ctx, "", func(ctx context.Context, after string) (*admin.List[admin.Key], error) {
		return c.ListKeys(ctx, f, ListOptions{After: after})
	})
}

// GetKey returns a key with its tokens (GET /keys/{id}).
func (c *Client) GetKey(ctx context.Context, id string) (*admin.Key, error) {
	var k admin.Key
	return &k, c.call(ctx, http.MethodGet, "/keys/"+escape(id), nil, nil, &k)
}

// UpdateKey changes the fields req sets of a key (PATCH /keys/{id}).
func (c *Client) UpdateKey(ctx context.Context, id string, req admin.UpdateKeyRequest) (*admin.Key, error) {
	var k admin.Key
	return &k, c.call(ctx, http.MethodPatch, "/keys/"+escape(id), nil, req, &k)
}

// DeleteKey deletes a key and all its tokens (DELETE /keys/{id}).
func (c *Client) DeleteKey(ctx context.Context, id string) error {
	return c.call(ctx, http.MethodDelete, "/keys/"+escape(id), nil, nil, nil)
}

// CreateToken adds a token to a key (POST /keys/{id}/tokens); the answer
// carries its value, once.
func (c *Client) CreateToken(ctx context.Context, keyID string, req admin.CreateTokenRequest) (*admin.TokenWithSecret, error) {
	var t admin.TokenWithSecret
	return &t, c.call(ctx, http.MethodPost, "/keys/"+escape(keyID)+"/tokens", nil, req, &t)
}

// UpdateToken changes the fields req sets of a token (PATCH
// /keys/{id}/tokens/{tid}).
func (c *Client) UpdateToken(ctx context.Context, keyID, tokenID string, req admin.UpdateTokenRequest) (*admin.Token, error) {
	var t admin.Token
	return &t, c.call(ctx, http.MethodPatch, "/keys/"+escape(keyID)+"/tokens/"+escape(tokenID), nil, req, &t)
}

// RotateToken replaces a token with a new one (POST
// /keys/{id}/tokens/{tid}/rotate); the answer carries the new value, once.
func (c *Client) RotateToken(ctx context.Context, keyID, tokenID string, req admin.RotateRequest) (*admin.RotatedToken, error) {
	var t admin.RotatedToken
	return &t, c.call(ctx, http.MethodPost, "/keys/"+escape(keyID)+"/tokens/"+escape(tokenID)+"/rotate", nil, req, &t)
}

// DeleteToken deletes one token of a key (DELETE /keys/{id}/tokens/{tid}).
func (c *Client) DeleteToken(ctx context.Context, keyID, tokenID string) error {
	return c.call(ctx, http.MethodDelete, "/keys/"+escape(keyID)+"/tokens/"+escape(tokenID), nil, nil, nil)
}

// Revoke revokes the token whose value is token, whatever its key and
// account (POST /revoke). The value never shows in the error.
func (c *Client) Revoke(ctx context.Context, token string) error {
	return redact(c.call(ctx, http.MethodPost, "/revoke", nil, admin.RevokeRequest{Token: token}, nil), token)
}
