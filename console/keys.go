package console

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/admin/client"
)

// Page sizes of the keys page.
const (
	keysPerPage = 50
	// scanPerPage bounds the keys one page reads while it searches by
	// text or status (which the API does not filter): a page answers in
	// bounded time at any number of keys, and offers to read on.
	scanPerPage = 1000
	// scanBatch is the page size the console asks the API for then.
	scanBatch = 500
)

// keysQuery is the keys page's query: ?q= (text in the id, name or
// description), ?tag=k:v, ?status=active|expiring|expired (a token of
// the key has it), ?account= (for callers that see accounts), ?after=.
type keysQuery struct {
	Q, Tag, Status, Account, After string
}

func readKeysQuery(r *http.Request) keysQuery {
	q := r.URL.Query()
	return keysQuery{Q: strings.TrimSpace(q.Get("q")), Tag: strings.TrimSpace(q.Get("tag")),
		Status: q.Get("status"), Account: strings.TrimSpace(q.Get("account")), After: q.Get("after")}
}

// with returns the query string of kq with after set.
func (kq keysQuery) with(after string) string {
	v := url.Values{}
	for k, s := range map[string]string{"q": kq.Q, "tag": kq.Tag, "status": kq.Status, "account": kq.Account, "after": after} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v.Encode()
}

// keyRow is one line of the keys page.
type keyRow struct {
	admin.Key
	Status string
}

// keysData is the keys page's.
type keysData struct {
	Query    keysQuery
	Rows     []keyRow
	NextURL  string
	Scanned  int
	Filtered bool
	Statuses []string
	// SeesAccounts shows the account column and filter.
	SeesAccounts bool
	CanCreate    bool
}

// keyStatus is a key's status as its list shows it: active when a token
// is, else expiring when one is in a rotation's grace, else expired
// (also a key with no token).
func keyStatus(k *admin.Key) string {
	status := "expired"
	for _, t := range k.Tokens {
		switch t.Status {
		case "active":
			return "active"
		case "expiring":
			status = "expiring"
		}
	}
	return status
}

// matches reports whether k passes the page's text and status filters.
func (kq keysQuery) matches(k *admin.Key) bool {
	if kq.Status != "" {
		found := false
		for _, t := range k.Tokens {
			found = found || t.Status == kq.Status
		}
		if !found {
			return false
		}
	}
	if kq.Q != "" {
		q := strings.ToLower(kq.Q)
		if !strings.Contains(strings.ToLower(k.Name), q) && !strings.Contains(strings.ToLower(k.Description), q) &&
			!strings.Contains(k.ID, kq.Q) {
			return false
		}
	}
	return true
}

func (c *Console) keysPage(w http.ResponseWriter, r *http.Request, cl *caller) {
	kq := readKeysQuery(r)
	d := keysData{Query: kq, Statuses: []string{"active", "expiring", "expired"},
		SeesAccounts: cl.has("accounts:read"), CanCreate: cl.has("api_keys:create")}
	f := client.KeyFilter{Account: kq.Account}
	if kq.Tag != "" {
		k, v, ok := strings.Cut(kq.Tag, ":")
		if !ok || k == "" {
			c.render(w, r, http.StatusBadRequest, "keys", view{Title: "Keys", Caller: cl, Data: d,
				Error: &formError{Field: "tag", Message: "a tag filter is key:value, such as env:prod"}})
			return
		}
		f.Tags = map[string]string{k: v}
	}
	d.Filtered = kq.Q != "" || kq.Status != ""
	after := kq.After
	if !d.Filtered {
		page, err := cl.api.ListKeys(r.Context(), f, client.ListOptions{Limit: keysPerPage, After: after})
		if err != nil {
			c.keysFailed(w, r, cl, d, err)
			return
		}
		for i := range page.Items {
			d.Rows = append(d.Rows, keyRow{Key: page.Items[i], Status: keyStatus(&page.Items[i])})
		}
		if page.Next != "" {
			d.NextURL = "?" + kq.with(page.Next)
		}
		c.render(w, r, http.StatusOK, "keys", view{Title: "Keys", Caller: cl, Data: d})
		return
	}
	// Text and status are filtered here, over at most scanPerPage keys.
	for {
		page, err := cl.api.ListKeys(r.Context(), f, client.ListOptions{Limit: scanBatch, After: after})
		if err != nil {
			c.keysFailed(w, r, cl, d, err)
			return
		}
		full := false
		for i := range page.Items {
			k := &page.Items[i]
			d.Scanned++
			after = k.ID
			if kq.matches(k) {
				d.Rows = append(d.Rows, keyRow{Key: *k, Status: keyStatus(k)})
				if full = len(d.Rows) == keysPerPage; full {
					if i == len(page.Items)-1 && page.Next == "" {
						after = ""
					}
					break
				}
			}
		}
		if full {
			break
		}
		if page.Next == "" {
			after = ""
			break
		}
		if d.Scanned >= scanPerPage {
			break
		}
	}
	if after != "" {
		d.NextURL = "?" + kq.with(after)
	}
	c.render(w, r, http.StatusOK, "keys", view{Title: "Keys", Caller: cl, Data: d})
}

// keysFailed renders the keys page with the API's error (a bad tag, an
// account not found).
func (c *Console) keysFailed(w http.ResponseWriter, r *http.Request, cl *caller, d keysData, err error) {
	status := statusOf(err)
	if status >= 500 {
		c.apiFailed(w, r, cl, err)
		return
	}
	c.render(w, r, status, "keys", view{Title: "Keys", Caller: cl, Data: d, Error: errorOf(err)})
}
