package client

import (
	"context"
	"iter"
	"net/http"

	"github.com/keygate/keygate/admin"
)

// AuditFilter selects audit events; empty fields select all.
type AuditFilter struct {
	// Actor is a key id, or "admin" for the admin endpoint.
	Actor string
	// Action is an action such as key.create or token.rotate.
	Action string
	// Target is the id of the object acted on.
	Target string
}

// ListAudit returns one page of audit events, newest first (GET /audit).
func (c *Client) ListAudit(ctx context.Context, f AuditFilter, opts ListOptions) (*admin.List[admin.AuditEvent], error) {
	q := opts.query()
	for name, v := range map[string]string{"actor": f.Actor, "action": f.Action, "target": f.Target} {
		if v != "" {
			q.Set(name, v)
		}
	}
	var page admin.List[admin.AuditEvent]
	return &page, c.call(ctx, http.MethodGet, "/audit", q, nil, &page)
}

// AuditEvents yields the audit events f selects, newest first, page after
// page; stop the loop to stop fetching.
func (c *Client) AuditEvents(ctx context.Context, f AuditFilter) iter.Seq2[admin.AuditEvent, error] {
	return each(ctx, "", func(ctx context.Context, after string) (*admin.List[admin.AuditEvent], error) {
		return c.ListAudit(ctx, f, ListOptions{After: after})
	})
}

// Whoami describes the caller (GET /whoami). On Caddy's admin endpoint,
// which is trusted, it has no account, key or token and every scope.
func (c *Client) Whoami(ctx context.Context) (*admin.Whoami, error) {
	var w admin.Whoami
	return &w, c.call(ctx, http.MethodGet, "/whoami", nil, nil, &w)
}
