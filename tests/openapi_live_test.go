package tests

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestOpenAPIMatchesLiveAnswers runs a real gateway on the file store,
// with Caddy's admin endpoint and an apikey_admin site, calls every
// operation of the OpenAPI document it serves (a success and errors
// each), and validates every answer against that document with
// kin-openapi: status declared, headers, body schema, and no field the
// schema does not declare. Successful requests must pass the document's
// request validation too. Usage policies (limits, allowed_ips, credits)
// are set, read back, refused and exported along the way (policies).
func TestOpenAPIMatchesLiveAnswers(t *testing.T) {
	g, site := startAdminSite(t, "file")
	served := do(t, "GET", g.AdminURL+"/apikeys/openapi.json", nil)
	if served.Status != http.StatusOK {
		t.Fatalf("GET /apikeys/openapi.json: %d %s", served.Status, served.Body)
	}
	if onSite := do(t, "GET", site+"/openapi.json", nil); !bytes.Equal(onSite.Body, served.Body) {
		t.Fatalf("apikey_admin serves another document than the admin endpoint (%d)", onSite.Status)
	}
	c := newAPICheck(t, g.AdminURL, site, served.Body)
	A, S := onAdmin, onSite
	future := time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339)
	id := func(r response) string { t.Helper(); return r.JSON(t)["id"].(string) }

	// The document itself.
	c.call(apiCall{op: "getOpenAPI", on: A, method: "GET", path: "/openapi.json", status: 200})
	c.call(apiCall{op: "getOpenAPI", on: S, method: "GET", path: "/openapi.json", status: 200})
	c.call(apiCall{op: "getOpenAPI", on: A, method: "PUT", path: "/openapi.json", status: 405})

	// Accounts.
	c.call(apiCall{op: "createAccount", on: A, method: "POST", path: "/accounts", body: map[string]any{"name": "ops", "kind": "service", "scopes": []string{"*"}}, status: 201})
	team := id(c.call(apiCall{op: "createAccount", on: A, method: "POST", path: "/accounts", body: map[string]any{"name": "team", "team": "blue", "scopes": []string{"apps", "api_keys:read"}}, status: 201}))
	c.call(apiCall{op: "createAccount", on: A, method: "POST", path: "/accounts", body: map[string]any{"name": "ops"}, status: 409})
	c.call(apiCall{op: "createAccount", on: A, method: "POST", path: "/accounts", body: map[string]any{"name": "x", "bogus": 1}, status: 400})
	c.call(apiCall{op: "createAccount", on: A, method: "POST", path: "/accounts", body: `{"name": "` + strings.Repeat("x", 70<<10) + `"}`, status: 413})
	c.call(apiCall{op: "listAccounts", on: A, method: "GET", path: "/accounts?limit=1", status: 200})
	c.call(apiCall{op: "listAccounts", on: A, method: "GET", path: "/accounts?limit=0", status: 400})
	c.call(apiCall{op: "getAccount", on: A, method: "GET", path: "/accounts/ops", status: 200})
	c.call(apiCall{op: "getAccount", on: A, method: "GET", path: "/accounts/nobody", status: 404})
	c.call(apiCall{op: "updateAccount", on: A, method: "PATCH", path: "/accounts/" + team, body: map[string]any{"team": "green"}, status: 200})
	c.call(apiCall{op: "updateAccount", on: A, method: "PATCH", path: "/accounts/" + team, body: map[string]any{"name": "ops"}, status: 409})
	c.call(apiCall{op: "updateAccount", on: A, method: "PATCH", path: "/accounts/" + team, body: map[string]any{"kind": "user"}, status: 400})
	c.call(apiCall{op: "updateAccount", on: A, method: "PATCH", path: "/accounts/nobody", body: map[string]any{"team": "x"}, status: 404})

	// Keys: one with every scope (inherited from "ops") to call the site
	// with, one reading keys only, and a spare one.
	ops := c.call(apiCall{op: "createKey", on: A, method: "POST", path: "/keys", body: map[string]any{"account": "ops", "name": "root"}, status: 201}).JSON(t)
	opsSecret := ops["secret"].(string)
	reader := c.call(apiCall{op: "createKey", on: A, method: "POST", path: "/keys", body: map[string]any{
		"account": team, "name": "reader", "description": "reads keys", "tags": map[string]string{"env": "prod"},
		"scopes": []string{"api_keys:read"}, "expires_at": future}, status: 201}).JSON(t)
	readerID, readerSecret := reader["id"].(string), reader["secret"].(string)
	spare := id(c.call(apiCall{op: "createKey", on: A, method: "POST", path: "/keys", body: map[string]any{"account": "team", "name": "spare", "scopes": []string{}}, status: 201}))
	c.call(apiCall{op: "createKey", on: S, key: opsSecret, method: "POST", path: "/keys", body: map[string]any{"name": "own", "scopes": []string{"apps:read"}}, status: 201})
	c.call(apiCall{op: "createKey", on: A, method: "POST", path: "/keys", body: map[string]any{"account": "nobody", "name": "k"}, status: 404})
	c.call(apiCall{op: "createKey", on: A, method: "POST", path: "/keys", body: map[string]any{"account": "ops", "name": "k", "scopes": []string{"Bad"}}, status: 400})
	c.call(apiCall{op: "createKey", on: S, key: readerSecret, method: "POST", path: "/keys", body: map[string]any{"name": "k"}, status: 403})
	c.call(apiCall{op: "listKeys", on: A, method: "GET", path: "/keys?account=team&tag=env:prod&limit=10", status: 200})
	c.call(apiCall{op: "listKeys", on: S, key: readerSecret, method: "GET", path: "/keys", status: 200})
	c.call(apiCall{op: "listKeys", on: A, method: "GET", path: "/keys?tag=novalue", status: 400})
	c.call(apiCall{op: "listKeys", on: A, method: "GET", path: "/keys?account=nobody", status: 404})
	c.call(apiCall{op: "getKey", on: A, method: "GET", path: "/keys/" + readerID, status: 200})
	c.call(apiCall{op: "getKey", on: A, method: "GET", path: "/keys/key_missing", status: 404})
	c.call(apiCall{op: "getKey", on: S, key: opsSecret, method: "GET", path: "/keys/key_%00", status: 400})
	c.call(apiCall{op: "updateKey", on: A, method: "PATCH", path: "/keys/" + readerID, body: map[string]any{"description": "still reads", "tags": map[string]string{"env": "stage"}}, status: 200})
	c.call(apiCall{op: "updateKey", on: A, method: "PATCH", path: "/keys/" + spare, body: map[string]any{"scopes": nil}, status: 200})
	c.call(apiCall{op: "updateKey", on: A, method: "PATCH", path: "/keys/" + readerID, body: map[string]any{"id": "key_other"}, status: 400})
	c.call(apiCall{op: "updateKey", on: A, method: "PATCH", path: "/keys/key_missing", body: map[string]any{"name": "x"}, status: 404})

	c.policies(opsSecret)

	// Tokens.
	tokens := "/keys/" + readerID + "/tokens"
	second := c.call(apiCall{op: "createToken", on: A, method: "POST", path: tokens, body: map[string]any{"name": "second", "expires_at": future}, status: 201}).JSON(t)
	secondID := second["id"].(string)
	c.call(apiCall{op: "createToken", on: A, method: "POST", path: tokens, body: map[string]any{"expires_at": "yesterday"}, status: 400})
	c.call(apiCall{op: "createToken", on: A, method: "POST", path: "/keys/key_missing/tokens", body: map[string]any{}, status: 404})
	c.call(apiCall{op: "updateToken", on: A, method: "PATCH", path: tokens + "/" + secondID, body: map[string]any{"name": "2nd", "expires_at": nil}, status: 200})
	c.call(apiCall{op: "updateToken", on: A, method: "PATCH", path: tokens + "/" + secondID, body: map[string]any{"status": "active"}, status: 400})
	c.call(apiCall{op: "updateToken", on: A, method: "PATCH", path: tokens + "/tok_missing", body: map[string]any{"name": "x"}, status: 404})
	rotated := id(c.call(apiCall{op: "rotateToken", on: A, method: "POST", path: tokens + "/" + secondID + "/rotate", body: map[string]any{"grace": "1h"}, status: 201}))
	c.call(apiCall{op: "rotateToken", on: A, method: "POST", path: tokens + "/" + secondID + "/rotate", body: map[string]any{}, status: 409})
	c.call(apiCall{op: "rotateToken", on: A, method: "POST", path: tokens + "/" + rotated + "/rotate", body: map[string]any{"grace": "forever"}, status: 400})
	c.call(apiCall{op: "rotateToken", on: A, method: "POST", path: tokens + "/tok_missing/rotate", status: 404})
	c.call(apiCall{op: "updateToken", on: A, method: "PATCH", path: tokens + "/" + secondID, body: map[string]any{"expires_at": nil}, status: 409})
	spareTok := g.firstToken(spare)
	c.call(apiCall{op: "rotateToken", on: A, method: "POST", path: "/keys/" + spare + "/tokens/" + spareTok + "/rotate", status: 201}) // no body: no grace
	c.call(apiCall{op: "deleteToken", on: A, method: "DELETE", path: tokens + "/" + rotated, status: 204})
	c.call(apiCall{op: "deleteToken", on: A, method: "DELETE", path: tokens + "/" + rotated, status: 404})
	c.call(apiCall{op: "revokeToken", on: A, method: "POST", path: "/revoke", body: map[string]any{"token": second["secret"]}, status: 204})
	c.call(apiCall{op: "revokeToken", on: A, method: "POST", path: "/revoke", body: map[string]any{"token": "not-a-token"}, status: 400})
	c.call(apiCall{op: "revokeToken", on: A, method: "POST", path: "/revoke", body: map[string]any{"token": withChecksum("sk-" + strings.Repeat("Z", 43))}, status: 404})

	// The caller, and the audit.
	c.call(apiCall{op: "whoami", on: A, method: "GET", path: "/whoami", status: 200})
	c.call(apiCall{op: "whoami", on: S, key: opsSecret, method: "GET", path: "/whoami", status: 200})
	c.call(apiCall{op: "whoami", on: S, key: withChecksum("sk-" + strings.Repeat("Y", 43)), method: "GET", path: "/whoami", status: 401})
	c.call(apiCall{op: "listAudit", on: A, method: "GET", path: "/audit?action=key.create&limit=2", status: 200})
	c.call(apiCall{op: "listAudit", on: A, method: "GET", path: "/audit?limit=x", status: 400})
	c.call(apiCall{op: "listAudit", on: S, key: readerSecret, method: "GET", path: "/audit", status: 403})

	// Export, import and the store's check, on the admin endpoint only.
	export := c.call(apiCall{op: "exportRecords", on: A, method: "GET", path: "/export", status: 200})
	c.call(apiCall{op: "exportRecords", on: A, method: "PUT", path: "/export", status: 405})
	jsonl := "application/jsonl"
	c.call(apiCall{op: "importRecords", on: A, method: "POST", path: "/import", body: export.Body, contentType: jsonl, status: 200})
	c.call(apiCall{op: "importRecords", on: A, method: "POST", path: "/import", body: "{\n", contentType: jsonl, status: 400})
	c.call(apiCall{op: "importRecords", on: A, method: "POST", path: "/import", body: `{"type":"key","version":1,"key":{"id":"key_orphan","account":"acc_missing"}}` + "\n", contentType: jsonl, status: 404})
	c.call(apiCall{op: "importRecords", on: A, method: "POST", path: "/import", body: `{"type":"account","version":1,"account":{"id":"acc_other","name":"ops","kind":"user"}}` + "\n", contentType: jsonl, status: 409})
	c.call(apiCall{op: "importRecords", on: A, method: "GET", path: "/import", status: 405})
	c.call(apiCall{op: "checkStore", on: A, method: "GET", path: "/check", status: 200})
	c.call(apiCall{op: "checkStore", on: A, method: "PUT", path: "/check", status: 405})
	for _, path := range []string{"/export", "/import", "/check"} {
		if r := do(t, "GET", site+path, nil, "X-API-Key", opsSecret); r.Status != http.StatusNotFound {
			t.Errorf("GET %s through apikey_admin: %d, want 404 (admin endpoint only)", path, r.Status)
		}
	}

	// Deletions.
	c.call(apiCall{op: "deleteKey", on: A, method: "DELETE", path: "/keys/" + spare, status: 204})
	c.call(apiCall{op: "deleteKey", on: A, method: "DELETE", path: "/keys/" + spare, status: 404})
	doomed := id(c.call(apiCall{op: "createAccount", on: A, method: "POST", path: "/accounts", body: map[string]any{"name": "doomed"}, status: 201}))
	c.call(apiCall{op: "deleteAccount", on: A, method: "DELETE", path: "/accounts/" + doomed, status: 204})
	c.call(apiCall{op: "deleteAccount", on: A, method: "DELETE", path: "/accounts/" + doomed, status: 404})

	// Sweeps over every operation, then the store gone.
	nothing := c.call(apiCall{op: "createKey", on: A, method: "POST", path: "/keys", body: map[string]any{"account": "team", "name": "nothing", "scopes": []string{}}, status: 201}).JSON(t)
	fill := func(path string) string {
		acc := strings.NewReplacer("{id}", team)
		if !strings.HasPrefix(path, "/accounts/") {
			acc = strings.NewReplacer("{id}", readerID, "{tid}", g.firstToken(readerID))
		}
		return acc.Replace(path)
	}
	c.sweep(fill, opsSecret, nothing["secret"].(string))
	c.storeGone(g)
	c.requireCoverage()
}

// sweep checks, for every path of the document (with ids from fill),
// that a method it does not document is 405 with Allow listing exactly
// the documented ones; that a JSON body over the limit is 413 wherever a
// body is taken; and through apikey_admin, that every operation behind a
// key is 401 without one, 400 with %00 in a path parameter (allScopes),
// and 403 naming its x-required-scope with a key that holds no scope
// (noScopes).
func (c *apiCheck) sweep(fill func(string) string, allScopes, noScopes string) {
	t := c.t
	huge := `{"name": "` + strings.Repeat("x", 70<<10) + `"}`
	for path, item := range c.doc.Paths.Map() {
		concrete := fill(path)
		var allow []string
		for _, m := range []string{"GET", "HEAD", "POST", "PATCH", "DELETE"} {
			if item.GetOperation(m) != nil || (m == "HEAD" && item.Get != nil) { // HEAD is served with GET
				allow = append(allow, m)
			}
		}
		for m, op := range item.Operations() {
			r := c.call(apiCall{op: op.OperationID, on: onAdmin, method: "PUT", path: concrete, body: map[string]any{}, status: 405})
			if got := r.Header.Get("Allow"); got != strings.Join(allow, ", ") {
				t.Errorf("PUT %s: Allow %q, the document has %q", path, got, strings.Join(allow, ", "))
			}
			if op.RequestBody != nil && op.RequestBody.Value.Content.Get("application/json") != nil {
				c.call(apiCall{op: op.OperationID, on: onAdmin, method: m, path: concrete, body: huge, status: 413})
			}
			public := op.Security != nil && len(*op.Security) == 0
			if public || op.Extensions["x-admin-endpoint-only"] == true {
				continue
			}
			var body any
			if op.RequestBody != nil {
				body = map[string]any{}
			}
			r = c.call(apiCall{op: op.OperationID, on: onSite, method: m, path: concrete, body: body, status: 401})
			if r.JSON(t)["error"] != "unauthorized" || r.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s without a key: %v %s", m, path, r.Header, r.Body)
			}
			if strings.Contains(path, "{") {
				// apikey_admin refuses %00 in the path before routing.
				bad := strings.Replace(path, "}", "}%00", 1)
				c.call(apiCall{op: op.OperationID, on: onSite, key: allScopes, method: m, path: fill(bad), body: body, status: 400})
			}
			required, _ := op.Extensions["x-required-scope"].(string)
			if required == "" {
				continue
			}
			r = c.call(apiCall{op: op.OperationID, on: onSite, key: noScopes, method: m, path: concrete, body: body, status: 403})
			if b := r.JSON(t); b["error"] != "insufficient_scope" || b["required_scope"] != required {
				t.Errorf("%s %s with a key holding nothing: %s, want insufficient_scope %s", m, path, r.Body, required)
			}
		}
	}
}

// storeGone loads a config without Keygate: the admin endpoint then
// answers every operation 503 with Retry-After, as the document says.
func (c *apiCheck) storeGone(g *gateway) {
	t := c.t
	status, body, err := reloadLoad(client, g.AdminURL, fmt.Sprintf("{\n\tadmin %s\n\tpersist_config off\n}\n:%d {\n\trespond \"bare\"\n}\n",
		strings.TrimPrefix(g.AdminURL, "http://"), g.HTTPPort))
	if err != nil || status != http.StatusOK {
		t.Fatalf("loading a config without Keygate: %d %s %v", status, body, err)
	}
	for _, route := range c.ops {
		path := strings.NewReplacer("{id}", "key_x", "{tid}", "tok_x").Replace(route.Path)
		var body any
		if route.Operation.RequestBody != nil {
			body = map[string]any{}
		}
		r := c.call(apiCall{op: route.Operation.OperationID, on: onAdmin, method: route.Method, path: path, body: body, status: 503})
		if r.Header.Get("Retry-After") == "" {
			t.Errorf("%s %s without Keygate: no Retry-After", route.Method, path)
		}
	}
}

// policies calls the operations that carry usage policies with them:
// accounts and keys created and edited with limits, allowlists and
// credits, a key read back with its balance (and usage when the gateway
// reports it), bad values refused with 400 naming the element at fault,
// and a loosening through apikey_admin refused with 403 naming the
// field. allScopes is a key of its own account holding *, with no
// policy of its own.
func (c *apiCheck) policies(allScopes string) {
	t := c.t
	A, S := onAdmin, onSite
	day := map[string]any{"name": "day", "limit": 10000, "window": "24h"}
	burst := map[string]any{"name": "burst", "limit": 20, "window": "1s"}
	monthly := map[string]any{"amount": 1000, "interval": "monthly", "day": 1}

	acc := c.call(apiCall{op: "createAccount", on: A, method: "POST", path: "/accounts", body: map[string]any{"name": "metered", "scopes": []string{"apps"},
		"limits": []any{day}, "allowed_ips": []string{"10.1.2.3/8", "2001:db8::1"}}, status: 201}).JSON(t)
	if fmt.Sprint(acc["limits"]) != "[map[limit:10000 name:day window:24h]]" || fmt.Sprint(acc["allowed_ips"]) != "[10.0.0.0/8 2001:db8::1/128]" {
		t.Errorf("account created with a policy: limits %v, allowed_ips %v", acc["limits"], acc["allowed_ips"])
	}
	c.callField(apiCall{op: "createAccount", on: A, method: "POST", path: "/accounts", body: map[string]any{"name": "m2",
		"limits": []any{map[string]any{"name": "fast", "limit": 1, "window": "500ms"}}}, status: 400}, "limits[0].window")
	acc = c.call(apiCall{op: "updateAccount", on: A, method: "PATCH", path: "/accounts/metered", body: map[string]any{"limits": []any{day, burst}, "allowed_ips": nil}, status: 200}).JSON(t)
	if len(acc["limits"].([]any)) != 2 || len(acc["allowed_ips"].([]any)) != 0 {
		t.Errorf("account after PATCH limits, allowed_ips null: %v %v", acc["limits"], acc["allowed_ips"])
	}
	c.callField(apiCall{op: "updateAccount", on: A, method: "PATCH", path: "/accounts/metered", body: map[string]any{"allowed_ips": []string{"10.0.0.0/33"}}, status: 400}, "allowed_ips[0]")

	key := c.call(apiCall{op: "createKey", on: A, method: "POST", path: "/keys", body: map[string]any{"account": "metered", "name": "metered",
		"limits": []any{burst}, "allowed_ips": []string{"192.0.2.7"}, "credits": map[string]any{"remaining": 500, "refill": monthly}}, status: 201}).JSON(t)
	path := "/keys/" + key["id"].(string)
	c.callField(apiCall{op: "createKey", on: A, method: "POST", path: "/keys", body: map[string]any{"account": "metered", "name": "bad",
		"credits": map[string]any{"remaining": 1, "refill": map[string]any{"amount": 1, "interval": "monthly", "day": 32}}}, status: 400}, "credits.refill.day")
	c.callField(apiCall{op: "createKey", on: A, method: "POST", path: "/keys", body: map[string]any{"account": "metered", "name": "bad",
		"limits": []any{burst, burst}}, status: 400}, "limits[1].name")

	got := c.call(apiCall{op: "getKey", on: A, method: "GET", path: path, status: 200}).JSON(t)
	credits, _ := got["credits"].(map[string]any)
	if credits["remaining"] != 500.0 || fmt.Sprint(credits["refill"]) != "map[amount:1000 day:1 interval:monthly]" || credits["next_refill"] == nil {
		t.Errorf("GET %s: credits %v", path, got["credits"])
	}
	if fmt.Sprint(got["allowed_ips"]) != "[192.0.2.7/32]" || len(got["limits"].([]any)) != 1 {
		t.Errorf("GET %s: limits %v, allowed_ips %v", path, got["limits"], got["allowed_ips"])
	}
	if usage, ok := got["usage"].(map[string]any); ok { // when the gateway reports it; the schema was checked by call
		if len(usage["windows"].([]any)) != 1 || len(usage["account_windows"].([]any)) != 2 {
			t.Errorf("GET %s: usage %v", path, usage)
		}
	}

	patched := c.call(apiCall{op: "updateKey", on: A, method: "PATCH", path: path, body: map[string]any{"limits": []any{},
		"allowed_ips": []string{"10.0.0.0/8"}, "credits": map[string]any{"remaining": 10, "refill": nil}}, status: 200}).JSON(t)
	if c, _ := patched["credits"].(map[string]any); c["remaining"] != 10.0 || c["refill"] != nil || c["next_refill"] != nil || len(patched["limits"].([]any)) != 0 {
		t.Errorf("PATCH %s: credits %v, limits %v", path, patched["credits"], patched["limits"])
	}
	c.call(apiCall{op: "updateKey", on: A, method: "PATCH", path: path, body: map[string]any{"credits": map[string]any{"refill": map[string]any{"amount": 5, "interval": "weekly", "day": 6}}}, status: 200})
	c.callField(apiCall{op: "updateKey", on: A, method: "PATCH", path: path, body: map[string]any{"limits": []any{map[string]any{"name": "burst", "limit": 0, "window": "1s"}}}, status: 400}, "limits[0].limit")
	c.callField(apiCall{op: "updateKey", on: A, method: "PATCH", path: path, body: map[string]any{"credits": map[string]any{"next_refill": "2030-01-01T00:00:00Z"}}, status: 400}, "credits.next_refill")
	unlimited := c.call(apiCall{op: "updateKey", on: A, method: "PATCH", path: "/keys/" + c.call(apiCall{op: "createKey", on: A, method: "POST", path: "/keys",
		body: map[string]any{"account": "metered", "name": "spender", "credits": map[string]any{"remaining": 3}, "limits": nil}, status: 201}).JSON(t)["id"].(string),
		body: map[string]any{"credits": nil}, status: 200}).JSON(t)
	if v, ok := unlimited["credits"]; !ok || v != nil {
		t.Errorf("PATCH credits null: credits %v (present %v), want null", v, ok)
	}

	// Through apikey_admin, on its own account, the caller has no
	// authority over the budget: it may tighten a key, not loosen it.
	tight := c.call(apiCall{op: "createKey", on: S, key: allScopes, method: "POST", path: "/keys", body: map[string]any{"name": "tight", "limits": []any{burst}}, status: 201}).JSON(t)
	r := c.callField(apiCall{op: "updateKey", on: S, key: allScopes, method: "PATCH", path: "/keys/" + tight["id"].(string), body: map[string]any{"limits": nil}, status: 403}, "limits")
	if r["error"] != "forbidden" {
		t.Errorf("loosening a key's limits through apikey_admin: %v, want forbidden", r)
	}
}
