package tests

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// TestAdminPolicies drives limits, allowed IPs and credits through the
// admin API over real HTTP, on both stores: the trusted endpoint writes
// any policy; PATCH null removes; GET shows the settled balance; bad
// values are 400 naming the field; through apikey_admin a key without
// authority over its account's budget only tightens, and keys it creates
// are bound as it is.
func TestAdminPolicies(t *testing.T) {
	for _, store := range []string{"postgres", "file"} {
		t.Run(store, func(t *testing.T) { testAdminPolicies(t, store) })
	}
}

func testAdminPolicies(t *testing.T, store string) {
	gw, site := startAdminSite(t, store)
	burst := map[string]any{"name": "burst", "limit": 20, "window": "1s"}
	day := map[string]any{"name": "day", "limit": 10000, "window": "24h"}
	acc := gw.mustAdmin("POST", "/accounts", map[string]any{"name": "metered", "kind": "service",
		"scopes": []string{"apps", "api_keys"}, "limits": []any{day}, "allowed_ips": []string{"10.1.2.3/8", "2001:db8::/32"}}, http.StatusCreated)
	wantJSON(t, "account limits", acc["limits"], []any{day})
	wantJSON(t, "account allowed_ips", acc["allowed_ips"], []any{"10.0.0.0/8", "2001:db8::/32"})
	monthly := map[string]any{"amount": 1000, "interval": "monthly", "day": 31}
	k := gw.mustAdmin("POST", "/keys", map[string]any{"account": "metered", "name": "k", "limits": []any{burst},
		"allowed_ips": []string{"192.0.2.7"}, "credits": map[string]any{"remaining": 700, "refill": monthly}}, http.StatusCreated)
	id := k["id"].(string)
	wantJSON(t, "key limits", k["limits"], []any{burst})
	wantJSON(t, "key allowed_ips", k["allowed_ips"], []any{"192.0.2.7/32"})
	credits := k["credits"].(map[string]any)
	wantJSON(t, "key credits", map[string]any{"remaining": credits["remaining"], "refill": credits["refill"]},
		map[string]any{"remaining": 700, "refill": monthly})
	next, err := time.Parse(time.RFC3339, credits["next_refill"].(string))
	if err != nil || !next.After(time.Now()) || next.Hour() != 0 || next.After(time.Now().AddDate(0, 1, 1)) {
		t.Errorf("next_refill %v (%v): want the end of this or the next month at 00:00 UTC", credits["next_refill"], err)
	}
	got := gw.mustAdmin("GET", "/keys/"+id, nil, http.StatusOK)
	wantJSON(t, "GET the key's credits", got["credits"], k["credits"])
	wantJSON(t, "GET the key's limits", got["limits"], []any{burst})
	listed := gw.mustAdmin("GET", "/keys?account=metered", nil, http.StatusOK)["items"].([]any)
	wantJSON(t, "listed key's credits", listed[0].(map[string]any)["credits"], k["credits"])

	// PATCH: the balance alone (the refill stays), then null removes.
	got = gw.mustAdmin("PATCH", "/keys/"+id, map[string]any{"credits": map[string]any{"remaining": 5}}, http.StatusOK)
	wantJSON(t, "balance set", got["credits"].(map[string]any)["remaining"], 5)
	wantJSON(t, "refill kept", got["credits"].(map[string]any)["refill"], monthly)
	got = gw.mustAdmin("PATCH", "/keys/"+id, map[string]any{"credits": map[string]any{"refill": nil}}, http.StatusOK)
	wantJSON(t, "refill removed", got["credits"], map[string]any{"remaining": 5, "refill": nil, "next_refill": nil})
	got = gw.mustAdmin("PATCH", "/keys/"+id, map[string]any{"credits": nil, "limits": nil, "allowed_ips": []any{}}, http.StatusOK)
	if got["credits"] != nil || len(got["limits"].([]any)) != 0 || len(got["allowed_ips"].([]any)) != 0 {
		t.Errorf("after removing the policy: %v", got)
	}
	got = gw.mustAdmin("PATCH", "/accounts/metered", map[string]any{"limits": nil, "allowed_ips": []string{"10.0.0.0/16"}}, http.StatusOK)
	wantJSON(t, "account after PATCH", []any{got["limits"], got["allowed_ips"]}, []any{[]any{}, []any{"10.0.0.0/16"}})

	// Bad values: 400 naming the field, nothing written.
	for _, c := range []struct {
		method, path string
		body         map[string]any
		field        string
	}{
		{"POST", "/keys", map[string]any{"account": "metered", "name": "x", "limits": []any{burst, map[string]any{"name": "w", "limit": 1, "window": "0.5s"}}}, "limits[1].window"},
		{"POST", "/keys", map[string]any{"account": "metered", "name": "x", "allowed_ips": []any{"10.0.0.0/8", "nope"}}, "allowed_ips[1]"},
		{"PATCH", "/keys/" + id, map[string]any{"credits": map[string]any{"remaining": 1, "refill": map[string]any{"amount": 1, "interval": "weekly", "day": 9}}}, "credits.refill.day"},
		{"PATCH", "/accounts/metered", map[string]any{"limits": []any{burst, burst}}, "limits[1].name"},
		{"POST", "/accounts", map[string]any{"name": "y", "credits": map[string]any{"remaining": 1}}, "credits"},
	} {
		r := gw.adminDo(c.method, c.path, c.body)
		if body := r.JSON(t); r.Status != http.StatusBadRequest || body["field"] != c.field {
			t.Errorf("%s %s %v: %d %s, want 400 naming %q", c.method, c.path, c.body, r.Status, r.Body, c.field)
		}
	}
	if r := gw.adminDo("GET", "/keys?account=metered", nil); bytes.Count(r.Body, []byte(`"id":"key_`)) != 1 {
		t.Errorf("a refused POST /keys wrote a key: %s", r.Body)
	}

	// Through apikey_admin: a limited key.
	limitedID, limited := gw.createKey("metered", []string{"apps", "api_keys"}, "limits", []any{burst})
	call := func(method, path string, body any) response {
		return do(t, method, site+path, body, "X-API-Key", limited)
	}
	r := call("POST", "/keys", map[string]any{"name": "child"})
	if r.Status != http.StatusCreated {
		t.Fatalf("a limited key creating one: %d %s", r.Status, r.Body)
	}
	child := r.JSON(t)
	wantJSON(t, "the child's limits", child["limits"], []any{burst})
	for _, c := range []struct {
		method, path string
		body         map[string]any
		field        string
	}{
		{"POST", "/keys", map[string]any{"name": "free", "limits": []any{}}, "limits"},
		{"PATCH", "/keys/" + limitedID, map[string]any{"limits": nil}, "limits"},
		{"PATCH", "/keys/" + child["id"].(string), map[string]any{"limits": []any{map[string]any{"name": "burst", "limit": 21, "window": "1s"}}}, "limits"},
		{"PATCH", "/keys/" + limitedID, map[string]any{"allowed_ips": []any{"10.0.0.0/8"}, "credits": map[string]any{"remaining": 6}}, "credits.remaining"},
		{"PATCH", "/keys/" + limitedID, map[string]any{"credits": nil}, "credits"},
		{"PATCH", "/keys/" + limitedID, map[string]any{"credits": map[string]any{"refill": map[string]any{"amount": 5, "interval": "daily"}}}, "credits.refill"},
	} {
		if c.path == "/keys/"+limitedID && c.field == "credits.remaining" {
			// Credits on a key without them bind it: a key may give itself some.
			if r := call("PATCH", c.path, map[string]any{"credits": map[string]any{"remaining": 5}}); r.Status != http.StatusOK {
				t.Fatalf("a key giving itself credits: %d %s", r.Status, r.Body)
			}
		}
		r := call(c.method, c.path, c.body)
		if body := r.JSON(t); r.Status != http.StatusForbidden || body["error"] != "forbidden" || body["field"] != c.field {
			t.Errorf("%s %s %v as a limited key: %d %s, want 403 naming %q", c.method, c.path, c.body, r.Status, r.Body, c.field)
		}
	}
	if r := call("PATCH", "/keys/"+child["id"].(string), map[string]any{"limits": []any{map[string]any{"name": "burst", "limit": 5, "window": "1s"}},
		"credits": map[string]any{"remaining": 10}}); r.Status != http.StatusOK {
		t.Errorf("tightening a sibling: %d %s", r.Status, r.Body)
	}
	got = gw.mustAdmin("GET", "/keys/"+limitedID, nil, http.StatusOK)
	wantJSON(t, "the limited key after refused loosening", []any{got["credits"], got["allowed_ips"]},
		[]any{map[string]any{"remaining": 5, "refill": nil, "next_refill": nil}, []any{}})
	// The trusted endpoint loosens it.
	gw.mustAdmin("PATCH", "/keys/"+limitedID, map[string]any{"limits": nil}, http.StatusOK)
}

// wantJSON compares a decoded JSON value with want, as JSON.
func wantJSON(t *testing.T, what string, got, want any) {
	t.Helper()
	g, _ := jsonMarshal(got)
	w, _ := jsonMarshal(want)
	if !bytes.Equal(g, w) {
		t.Errorf("%s: %s, want %s", what, g, w)
	}
}

// jsonMarshal encodes v with its map keys sorted, so that decoded and
// literal values compare.
func jsonMarshal(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var norm any
	if err := json.Unmarshal(raw, &norm); err != nil {
		return nil, err
	}
	return json.Marshal(norm)
}
