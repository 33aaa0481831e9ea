package console

import (
	"net/http"
	"net/url"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/admin/client"
)

// listData is a page of accounts or audit events.
type listData[T any] struct {
	Items   []T
	NextURL string
	Filter  client.AuditFilter
}

func (c *Console) accountsPage(w http.ResponseWriter, r *http.Request, cl *caller) {
	page, err := cl.api.ListAccounts(r.Context(), client.ListOptions{Limit: keysPerPage, After: r.URL.Query().Get("after")})
	if err != nil {
		c.apiFailed(w, r, cl, err)
		return
	}
	d := listData[admin.Account]{Items: page.Items}
	if page.Next != "" {
		d.NextURL = "?" + url.Values{"after": {page.Next}}.Encode()
	}
	c.render(w, r, http.StatusOK, "accounts", view{Title: "Accounts", Caller: cl, Data: d})
}

func (c *Console) auditPage(w http.ResponseWriter, r *http.Request, cl *caller) {
	q := r.URL.Query()
	f := client.AuditFilter{Actor: q.Get("actor"), Action: q.Get("action"), Target: q.Get("target")}
	page, err := cl.api.ListAudit(r.Context(), f, client.ListOptions{Limit: keysPerPage, After: q.Get("after")})
	if err != nil {
		c.apiFailed(w, r, cl, err)
		return
	}
	d := listData[admin.AuditEvent]{Items: page.Items, Filter: f}
	if page.Next != "" {
		v := url.Values{"after": {page.Next}}
		for k, s := range map[string]string{"actor": f.Actor, "action": f.Action, "target": f.Target} {
			if s != "" {
				v.Set(k, s)
			}
		}
		d.NextURL = "?" + v.Encode()
	}
	c.render(w, r, http.StatusOK, "audit", view{Title: "Audit log", Caller: cl, Data: d})
}
