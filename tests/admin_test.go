package tests

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
)

// TestAdminEndpointLifecycle drives the admin endpoint: accounts, keys,
// the show-once secret, listing and deletion.
func TestAdminEndpointLifecycle(t *testing.T) {
	env := startTower(t, pgtest.DSN(t))
	gw := env.gw

	acc := gw.mustAdmin("POST", "/accounts", map[string]any{"name": "ci-bot", "kind": "service", "team": "infra", "scopes": []string{"apps", "runs:read"}}, http.StatusCreated)
	for _, f := range []string{"id", "name", "kind", "team", "scopes", "disabled", "created_at"} {
		if _, ok := acc[f]; !ok {
			t.Errorf("account lacks %q: %v", f, acc)
		}
	}
	accID := acc["id"].(string)
	if !strings.HasPrefix(accID, "acc_") {
		t.Errorf("account id %q", accID)
	}
	if r := gw.adminDo("POST", "/accounts", map[string]any{"name": "ci-bot", "kind": "user"}); r.Status != http.StatusConflict || r.JSON(t)["error"] != "conflict" {
		t.Errorf("duplicate account name: %d %s", r.Status, r.Body)
	}
	got := gw.mustAdmin("GET", "/accounts/ci-bot", nil, http.StatusOK)
	if got["id"] != accID {
		t.Errorf("account by name: %v", got)
	}
	list := gw.mustAdmin("GET", "/accounts", nil, http.StatusOK)
	if items := list["items"].([]any); len(items) != 1 {
		t.Errorf("accounts list: %v", list)
	}
	if _, ok := list["next"]; ok {
		t.Errorf("single page carries next: %v", list)
	}

	// The key is created by account name, with the secret shown once.
	expires := time.Now().Add(720 * time.Hour).UTC().Truncate(time.Second)
	created := gw.mustAdmin("POST", "/keys", map[string]any{
		"account": "ci-bot", "name": "deploy", "description": "deploys apps",
		"tags": map[string]string{"env": "prod"}, "scopes": []string{"apps:run"},
		"expires_at": expires.Format(time.RFC3339),
	}, http.StatusCreated)
	secret, _ := created["secret"].(string)
	keyID, _ := created["id"].(string)
	if !strings.HasPrefix(secret, "sk-") || !strings.HasPrefix(keyID, "key_") {
		t.Fatalf("created key: %v", created)
	}
	for _, f := range []string{"id", "account", "name", "description", "tags", "scopes", "effective_scopes", "created_at", "created_by", "tokens"} {
		if _, ok := created[f]; !ok {
			t.Errorf("key lacks %q: %v", f, created)
		}
	}
	if created["account"] != accID || created["created_by"] != "admin" {
		t.Errorf("key account/created_by: %v", created)
	}
	tokens := created["tokens"].([]any)
	tok := tokens[0].(map[string]any)
	for _, f := range []string{"id", "key", "name", "description", "tags", "hint", "expires_at", "created_at", "last_used_at", "status"} {
		if _, ok := tok[f]; !ok {
			t.Errorf("token lacks %q: %v", f, tok)
		}
	}
	if tok["hint"] != secret[:6]+"…"+secret[len(secret)-4:] || tok["status"] != "active" || tok["expires_at"] != expires.Format(time.RFC3339) {
		t.Errorf("token: %v", tok)
	}
	if r := do(t, "POST", gw.URL+"/v1/apps/web/runs", nil, "X-API-Key", secret); r.Status != 200 {
		t.Errorf("new key cannot run: %d %s", r.Status, r.Body)
	}

	inherit := gw.mustAdmin("POST", "/keys", map[string]any{"account": accID, "name": "reader"}, http.StatusCreated)
	if inherit["scopes"] != nil {
		t.Errorf("key without scopes on the admin endpoint should inherit (null scopes): %v", inherit["scopes"])
	}
	if eff, _ := json.Marshal(inherit["effective_scopes"]); string(eff) != `["apps","runs:read"]` {
		t.Errorf("inheriting key effective scopes %s", eff)
	}

	got = gw.mustAdmin("GET", "/keys/"+keyID, nil, http.StatusOK)
	if _, ok := got["secret"]; ok {
		t.Errorf("GET /keys/{id} shows the secret")
	}
	keys := gw.mustAdmin("GET", "/keys?account=ci-bot&tag=env:prod", nil, http.StatusOK)
	if items := keys["items"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != keyID {
		t.Errorf("filtered key list: %v", keys)
	}
	page := gw.mustAdmin("GET", "/keys?limit=1", nil, http.StatusOK)
	if len(page["items"].([]any)) != 1 || page["next"] == nil {
		t.Fatalf("first page: %v", page)
	}
	rest := gw.mustAdmin("GET", "/keys?limit=1&after="+page["next"].(string), nil, http.StatusOK)
	if len(rest["items"].([]any)) != 1 || rest["next"] != nil {
		t.Errorf("last page: %v", rest)
	}

	gw.mustAdmin("DELETE", "/keys/"+keyID, nil, http.StatusNoContent)
	if r := do(t, "POST", gw.URL+"/v1/apps/web/runs", nil, "X-API-Key", secret); r.Status != 401 {
		t.Errorf("deleted key still works: %d", r.Status)
	}
	gw.mustAdmin("GET", "/keys/"+keyID, nil, http.StatusNotFound)
	gw.mustAdmin("DELETE", "/keys/"+keyID, nil, http.StatusNotFound)

	// No later response holds the secret.
	for _, path := range []string{"/keys", "/keys/" + inherit["id"].(string), "/accounts"} {
		if r := gw.adminDo("GET", path, nil); strings.Contains(string(r.Body), secret) {
			t.Errorf("GET %s shows a secret", path)
		}
	}
	if strings.Contains(gw.Output(), secret) {
		t.Errorf("Caddy's log holds a secret")
	}
}

// TestAdminBadInput sends hostile requests to both mount points: each gets
// its 4xx with a JSON error naming the field, nothing is half-written, and
// the service and earlier keys keep working.
func TestAdminBadInput(t *testing.T) {
	env := startTower(t, pgtest.DSN(t))
	gw := env.gw
	base := gw.createAccount("base", "apps")
	soon := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
	keyID, secret := gw.createKey(base, []string{"apps:read"}, "expires_at", soon)
	key := gw.mustAdmin("GET", "/keys/"+keyID, nil, http.StatusOK)
	tokID := key["tokens"].([]any)[0].(map[string]any)["id"].(string)
	otherKey, _ := gw.createKey(base, nil)
	otherTok := gw.mustAdmin("GET", "/keys/"+otherKey, nil, http.StatusOK)["tokens"].([]any)[0].(map[string]any)["id"].(string)
	ops := gw.createAccount("ops", "*")
	_, opsKey := gw.createKey(ops, []string{"*"})

	mounts := map[string]func(method, path string, body any) response{
		"admin endpoint": gw.adminDo,
		"apikey_admin": func(method, path string, body any) response {
			return do(t, method, env.adminURL+path, body, "X-API-Key", opsKey)
		},
	}
	huge := `{"name":"` + strings.Repeat("a", 1<<20) + `"}`
	tokPath := "/keys/" + keyID + "/tokens/" + tokID
	for mount, call := range mounts {
		// Through apikey_admin a key without account goes to the caller's.
		var noAccount any = map[string]any{"name": "k"}
		noAccountField := "account"
		// apikey_admin refuses a path holding %00 before routing, as
		// apikey_auth does; the admin endpoint refuses the id itself.
		nulPathField := "id"
		if mount == "apikey_admin" {
			noAccount, noAccountField = map[string]any{"name": "k", "scopes": []string{"Apps"}}, "scopes"
			nulPathField = ""
		}
		tests := []struct {
			name, method, path string
			body               any
			status             int
			field              string
		}{
			{"malformed JSON", "POST", "/accounts", `{"name":`, 400, ""},
			{"not an object", "POST", "/accounts", `[1,2]`, 400, ""},
			{"empty body", "POST", "/accounts", ``, 400, ""},
			{"null body", "POST", "/accounts", `null`, 400, "name"},
			{"two objects", "POST", "/accounts", `{"name":"a"}{"name":"b"}`, 400, ""},
			{"unknown field", "POST", "/accounts", map[string]any{"name": "x", "role": "admin"}, 400, "role"},
			{"wrong type", "POST", "/accounts", map[string]any{"name": 5}, 400, "name"},
			{"nested object", "POST", "/accounts", map[string]any{"name": map[string]any{"$gt": ""}}, 400, "name"},
			{"scopes wrong type", "POST", "/accounts", map[string]any{"name": "x", "scopes": "apps"}, 400, "scopes"},
			{"empty name", "POST", "/accounts", map[string]any{"name": ""}, 400, "name"},
			{"blank name", "POST", "/accounts", map[string]any{"name": "   "}, 400, "name"},
			{"control characters", "POST", "/accounts", map[string]any{"name": "a\x00b"}, 400, "name"},
			{"id-shaped name", "POST", "/accounts", map[string]any{"name": "acc_x"}, 400, "name"},
			{"bad kind", "POST", "/accounts", map[string]any{"name": "x", "kind": "robot"}, 400, "kind"},
			{"scope upper case", "POST", "/accounts", map[string]any{"name": "x", "scopes": []string{"Apps"}}, 400, "scopes"},
			{"scope empty segment", "POST", "/accounts", map[string]any{"name": "x", "scopes": []string{"a::b"}}, 400, "scopes"},
			{"scope trailing colon", "POST", "/accounts", map[string]any{"name": "x", "scopes": []string{"apps:"}}, 400, "scopes"},
			{"scope leading space", "POST", "/accounts", map[string]any{"name": "x", "scopes": []string{" apps"}}, 400, "scopes"},
			{"1 MB body", "POST", "/accounts", huge, 413, ""},
			{"long name", "POST", "/accounts", map[string]any{"name": strings.Repeat("a", 201)}, 400, "name"},
			{"duplicate account", "POST", "/accounts", map[string]any{"name": "base"}, 409, "name"},
			{"rename to a taken name", "PATCH", "/accounts/ops", map[string]any{"name": "base"}, 409, "name"},
			{"key without account", "POST", "/keys", noAccount, 400, noAccountField},
			{"key unknown account", "POST", "/keys", map[string]any{"account": "nobody", "name": "k"}, 404, "account"},
			{"key account of wrong type", "POST", "/keys", map[string]any{"account": keyID, "name": "k"}, 404, "account"},
			{"key without name", "POST", "/keys", map[string]any{"account": "base"}, 400, "name"},
			{"key past expiry", "POST", "/keys", map[string]any{"account": "base", "name": "k", "expires_at": "2001-01-01T00:00:00Z"}, 400, "expires_at"},
			{"key bad expiry", "POST", "/keys", map[string]any{"account": "base", "name": "k", "expires_at": "tomorrow"}, 400, "expires_at"},
			{"key bad tag", "POST", "/keys", map[string]any{"account": "base", "name": "k", "tags": map[string]string{"a:b": "c"}}, 400, "tags"},
			{"key tags wrong type", "POST", "/keys", map[string]any{"account": "base", "name": "k", "tags": []string{"x"}}, 400, "tags"},
			{"key secret field", "POST", "/keys", map[string]any{"account": "base", "name": "k", "secret": "sk-x"}, 400, "secret"},
			{"key bad scope", "POST", "/keys", map[string]any{"account": "base", "name": "k", "scopes": []string{"*:x"}}, 400, "scopes"},
			{"key 1 MB name", "POST", "/keys", huge, 413, ""},
			{"list bad limit", "GET", "/keys?limit=0", nil, 400, "limit"},
			{"list huge limit", "GET", "/keys?limit=100000", nil, 400, "limit"},
			{"list bad tag", "GET", "/keys?tag=novalue", nil, 400, "tag"},
			{"audit bad limit", "GET", "/audit?limit=abc", nil, 400, "limit"},
			{"get key wrong id type", "GET", "/keys/acc_x", nil, 404, ""},
			{"get unknown key", "GET", "/keys/key_nothere", nil, 404, ""},
			{"patch account id", "PATCH", "/accounts/base", map[string]any{"id": "acc_y"}, 400, "id"},
			{"patch account kind", "PATCH", "/accounts/base", map[string]any{"kind": "user"}, 400, "kind"},
			{"patch unknown account", "PATCH", "/accounts/nobody", map[string]any{"team": "x"}, 404, ""},
			{"patch key id", "PATCH", "/keys/" + keyID, map[string]any{"id": "key_y"}, 400, "id"},
			{"patch key secret", "PATCH", "/keys/" + keyID, map[string]any{"secret": secret}, 400, "secret"},
			{"patch key hint", "PATCH", "/keys/" + keyID, map[string]any{"hint": "sk-x"}, 400, "hint"},
			{"patch key account", "PATCH", "/keys/" + keyID, map[string]any{"account": "ops"}, 400, "account"},
			{"patch key bad scopes", "PATCH", "/keys/" + keyID, map[string]any{"scopes": []string{"a::b"}}, 400, "scopes"},
			{"patch key scopes type", "PATCH", "/keys/" + keyID, map[string]any{"scopes": "apps"}, 400, "scopes"},
			{"patch key empty name", "PATCH", "/keys/" + keyID, map[string]any{"name": ""}, 400, "name"},
			{"patch key empty tag name", "PATCH", "/keys/" + keyID, map[string]any{"tags": map[string]string{"": "x"}}, 400, "tags"},
			{"patch token value", "PATCH", tokPath, map[string]any{"value": secret}, 400, "value"},
			{"patch token token", "PATCH", tokPath, map[string]any{"token": secret}, 400, "token"},
			{"patch token status", "PATCH", tokPath, map[string]any{"status": "active"}, 400, "status"},
			{"patch token bad expiry", "PATCH", tokPath, map[string]any{"expires_at": "yesterday"}, 400, "expires_at"},
			{"patch token past expiry", "PATCH", tokPath, map[string]any{"expires_at": "2001-01-01T00:00:00Z"}, 400, "expires_at"},
			{"patch token of another key", "PATCH", "/keys/" + keyID + "/tokens/" + otherTok, map[string]any{"name": "x"}, 404, ""},
			{"rotate bad grace", "POST", tokPath + "/rotate", map[string]any{"grace": "forever"}, 400, "grace"},
			{"rotate negative grace", "POST", tokPath + "/rotate", map[string]any{"grace": "-1h"}, 400, "grace"},
			{"rotate unknown field", "POST", tokPath + "/rotate", map[string]any{"bogus": 1}, 400, "bogus"},
			{"rotate unknown token", "POST", "/keys/" + keyID + "/tokens/tok_nothere/rotate", nil, 404, ""},
			{"token expiry wrong type", "POST", "/keys/" + keyID + "/tokens", map[string]any{"expires_at": 5}, 400, "expires_at"},
			{"token 1 MB", "POST", "/keys/" + keyID + "/tokens", huge, 413, ""},
			{"delete unknown token", "DELETE", "/keys/" + keyID + "/tokens/tok_nothere", nil, 404, ""},
			{"revoke malformed", "POST", "/revoke", map[string]any{"token": "not-a-token"}, 400, "token"},
			{"revoke empty", "POST", "/revoke", map[string]any{}, 400, "token"},
			{"revoke wrong type", "POST", "/revoke", map[string]any{"token": 5}, 400, "token"},
			{"revoke unknown", "POST", "/revoke", map[string]any{"token": withChecksum("sk-" + strings.Repeat("Z", 43))}, 404, ""},
			{"injection-looking name stored verbatim", "POST", "/accounts", map[string]any{"name": mount + " x'); DROP TABLE accounts;--"}, 201, ""},
			{"unknown route", "GET", "/nothing", nil, 404, ""},
			{"wrong method on a key", "PUT", "/keys/" + keyID, map[string]any{"name": "x"}, 405, ""},
			{"wrong method on a collection", "DELETE", "/accounts", nil, 405, ""},
			{"NUL cursor", "GET", "/keys?after=%00", nil, 400, "after"},
			{"invalid UTF-8 cursor", "GET", "/keys?after=%ff", nil, 400, "after"},
			{"NUL tag filter", "GET", "/keys?tag=a:%00", nil, 400, "tag"},
			{"NUL key id", "GET", "/keys/key_%00", nil, 400, nulPathField},
			{"invalid UTF-8 account", "GET", "/accounts/%ff", nil, 400, "id"},
			{"invalid UTF-8 audit actor", "GET", "/audit?actor=%ff", nil, 400, "actor"},
			{"NUL in account name", "PATCH", "/accounts/base", map[string]any{"team": "a\u0000b"}, 400, "team"},
		}
		if r := call("PUT", "/keys/"+keyID, nil); r.Header.Get("Allow") != "GET, HEAD, PATCH, DELETE" {
			t.Errorf("%s: PUT on a key: Allow %q, want the key's methods", mount, r.Header.Get("Allow"))
		}
		for _, tt := range tests {
			r := call(tt.method, tt.path, tt.body)
			if r.Status != tt.status {
				t.Errorf("%s: %s: %d, want %d: %.300s", mount, tt.name, r.Status, tt.status, r.Body)
				continue
			}
			if tt.status >= 400 {
				body := r.JSON(t)
				if body["error"] == nil || body["message"] == nil {
					t.Errorf("%s: %s: body %v lacks error/message", mount, tt.name, body)
				}
				if tt.field != "" && body["field"] != tt.field {
					t.Errorf("%s: %s: field %v, want %q (%v)", mount, tt.name, body["field"], tt.field, body)
				}
				if tt.status == http.StatusConflict && body["message"] != `account name "base" is taken` {
					t.Errorf("%s: %s: message %q, want it to say what is taken", mount, tt.name, body["message"])
				}
			}
		}
	}

	// Nothing was half-written; earlier keys and the service still work.
	accounts := gw.mustAdmin("GET", "/accounts", nil, http.StatusOK)["items"].([]any)
	if len(accounts) != 4 {
		t.Errorf("after bad input, %d accounts: %v", len(accounts), accounts)
	}
	keys := gw.mustAdmin("GET", "/keys", nil, http.StatusOK)["items"].([]any)
	if len(keys) != 3 {
		t.Errorf("after bad input, %d keys: %v", len(keys), keys)
	}
	after := gw.mustAdmin("GET", "/keys/"+keyID, nil, http.StatusOK)
	if toks := after["tokens"].([]any); len(toks) != 1 || toks[0].(map[string]any)["status"] != "active" ||
		toks[0].(map[string]any)["expires_at"] != soon || after["name"] != "key" {
		t.Errorf("the key changed: %v", after)
	}
	if r := do(t, "GET", gw.URL+"/v1/apps", nil, "X-API-Key", secret); r.Status != 200 {
		t.Errorf("an earlier key stopped working: %d %s", r.Status, r.Body)
	}
	if strings.Contains(gw.Output(), secret) {
		t.Errorf("a secret reached Caddy's log")
	}
}

// TestSiteAdminHandler drives apikey_admin: the caller's own key decides,
// and a key never grants more than it holds.
func TestSiteAdminHandler(t *testing.T) {
	env := startTower(t, pgtest.DSN(t))
	gw := env.gw
	acc := gw.createAccount("team-a", "apps", "api_keys")
	other := gw.createAccount("team-b", "apps")
	_, manager := gw.createKey(acc, []string{"api_keys", "apps:read"})
	_, reader := gw.createKey(acc, []string{"api_keys:read"})
	otherKey, _ := gw.createKey(other, nil)
	api := func(method, path string, body any, key string) response {
		return do(t, method, env.adminURL+path, body, "X-API-Key", key)
	}

	if r := api("GET", "/keys", nil, ""); r.Status != 401 {
		t.Errorf("no key: %d", r.Status)
	}
	r := api("POST", "/keys", map[string]any{"name": "ro", "scopes": []string{"apps:read"}}, manager)
	if r.Status != 201 {
		t.Fatalf("create within own scopes: %d %s", r.Status, r.Body)
	}
	created := r.JSON(t)
	if created["account"] != acc || created["created_by"] == "admin" {
		t.Errorf("created key: %v", created)
	}
	for _, s := range []string{"apps", "*", "secrets", "apps:run"} {
		r := api("POST", "/keys", map[string]any{"name": "x", "scopes": []string{s}}, manager)
		if r.Status != 403 || r.JSON(t)["error"] != "forbidden" || r.JSON(t)["scope"] != s {
			t.Errorf("granting %q: %d %s", s, r.Status, r.Body)
		}
	}
	r = api("POST", "/keys", map[string]any{"name": "implicit"}, manager)
	if r.Status != 201 {
		t.Fatalf("create without scopes: %d %s", r.Status, r.Body)
	}
	if s, _ := json.Marshal(r.JSON(t)["scopes"]); string(s) != `["api_keys","apps:read"]` {
		t.Errorf("key created without scopes got %s, want the caller's scopes written explicitly", s)
	}
	if r := api("POST", "/keys", map[string]any{"name": "x"}, reader); r.Status != 403 || r.JSON(t)["required_scope"] != "api_keys:create" {
		t.Errorf("create without api_keys:create: %d %s", r.Status, r.Body)
	}
	if r := api("GET", "/keys/"+otherKey, nil, manager); r.Status != 404 {
		t.Errorf("another account's key: %d", r.Status)
	}
	if r := api("POST", "/keys", map[string]any{"account": "team-b", "name": "x"}, manager); r.Status != 404 {
		t.Errorf("key on another account: %d %s", r.Status, r.Body)
	}
	list := api("GET", "/keys", nil, reader).JSON(t)["items"].([]any)
	for _, k := range list {
		if k.(map[string]any)["account"] != acc {
			t.Errorf("list shows another account's key: %v", k)
		}
	}
	if r := api("GET", "/accounts", nil, manager); r.Status != 403 {
		t.Errorf("accounts without accounts scope: %d", r.Status)
	}
}

// TestEmptyScopesHoldNothing: "scopes": [] is a key that holds nothing;
// only an absent or null scopes field inherits the account's.
func TestEmptyScopesHoldNothing(t *testing.T) {
	env := startTower(t, pgtest.DSN(t))
	gw := env.gw
	acc := gw.createAccount("empty", "apps")
	k := gw.mustAdmin("POST", "/keys", map[string]any{"account": acc, "name": "nothing", "scopes": []string{}}, http.StatusCreated)
	if s, _ := json.Marshal(k["scopes"]); string(s) != "[]" {
		t.Fatalf("scopes %s, want []", s)
	}
	if s, _ := json.Marshal(k["effective_scopes"]); string(s) != "[]" {
		t.Fatalf("effective scopes %s, want []", s)
	}
	secret := k["secret"].(string)
	if r := do(t, "GET", gw.URL+"/v1/apps", nil, "X-API-Key", secret); r.Status != 403 {
		t.Fatalf("a key holding nothing reads apps: %d", r.Status)
	}
	if r := do(t, "GET", gw.URL+"/v1/me", nil, "X-API-Key", secret); r.Status != 200 {
		t.Fatalf("a key holding nothing is still a valid key: %d", r.Status)
	}
	id := k["id"].(string)
	got := gw.mustAdmin("PATCH", "/keys/"+id, map[string]any{"scopes": nil}, http.StatusOK)
	if got["scopes"] != nil {
		t.Fatalf("PATCH scopes null: %v, want inheritance (null)", got["scopes"])
	}
	if r := do(t, "GET", gw.URL+"/v1/apps", nil, "X-API-Key", secret); r.Status != 200 {
		t.Fatalf("after inheriting, the key cannot read apps: %d", r.Status)
	}
	got = gw.mustAdmin("PATCH", "/keys/"+id, map[string]any{"scopes": []string{}}, http.StatusOK)
	if s, _ := json.Marshal(got["scopes"]); string(s) != "[]" {
		t.Fatalf("PATCH scopes []: %s", s)
	}
}
