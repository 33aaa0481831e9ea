package client

import (
	"context"
	"iter"
	"net/http"

	"github.com/keygate/keygate/admin"
)

// CreateAccount creates an account (POST /accounts).
func (c *Client) CreateAccount(ctx context.Context, req admin.CreateAccountRequest) (*admin.Account, error) {
	var a admin.Account
	return &a, c.call(ctx, http.MethodPost, "/accounts", nil, req, &a)
}

// ListAccounts returns one page of accounts (GET /accounts).
func (c *Client) ListAccounts(ctx context.Context, opts ListOptions) (*admin.List[admin.Account], error) {
	var page admin.List[admin.Account]
	return &page, c.call(ctx, http.MethodGet, "/accounts", opts.query(), nil, &page)
}

// Accounts yields every account, page after page.
func (c *Client) Accounts(ctx context.Context) iter.Seq2[admin.Account, error] {
	return each(ctx, "", func(ctx context.Context, after string) (*admin.List[admin.Account], error) {
		return c.ListAccounts(ctx, ListOptions{After: after})
	})
}

// GetAccount returns the account with the id or name ref (GET
// /accounts/{id}).
func (c *Client) GetAccount(ctx context.Context, ref string) (*admin.Account, error) {
	var a admin.Account
	return &a, c.call(ctx, http.MethodGet, "/accounts/"+escape(ref), nil, nil, &a)
}

// UpdateAccount changes the fields req sets of the account ref (PATCH
// /accounts/{id}).
func (c *Client) UpdateAccount(ctx context.Context, ref string, req admin.UpdateAccountRequest) (*admin.Account, error) {
	var a admin.Account
	return &a, c.call(ctx, http.MethodPatch, "/accounts/"+escape(ref), nil, req, &a)
}

// DeleteAccount deletes the account ref with all its keys (DELETE
// /accounts/{id}).
func (c *Client) DeleteAccount(ctx context.Context, ref string) error {
	return c.call(ctx, http.MethodDelete, "/accounts/"+escape(ref), nil, nil, nil)
}
