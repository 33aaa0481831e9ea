package tests

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
)

// startAdminSite runs Caddy with apikey_admin as its only site, on the
// given store ("postgres" or "file"), and returns the gateway (whose
// admin endpoint is the trusted API) and the apikey_admin site's URL.
func startAdminSite(t *testing.T, store string) (*gateway, string) {
	t.Helper()
	dir := t.TempDir()
	g := &gateway{t: t, dir: dir, HTTPPort: pgtest.FreePort(t), output: new(lockedBuffer)}
	adminPort := pgtest.FreePort(t)
	g.AdminURL = fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	g.URL = fmt.Sprintf("http://127.0.0.1:%d", g.HTTPPort)
	var storage string
	var env []string
	switch store {
	case "postgres":
		dsn := pgtest.DSN(t)
		storage = fmt.Sprintf("storage postgres {env.KEYGATE_E2E_DSN} {\n\t\t\tschema %s\n\t\t}", pgtest.Schema(t, dsn))
		env = append(env, "KEYGATE_E2E_DSN="+dsn)
	case "file":
		storage = "storage file " + filepath.Join(dir, "keys.db")
	default:
		t.Fatalf("unknown store %q", store)
	}
	caddyfile := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	log default {
		format filter {
			request>headers>X-Api-Key replace REDACTED
		}
	}
	apikeys {
		%s
	}
}

:%d {
	apikey_admin
}
`, adminPort, storage, g.HTTPPort)
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	g.launch(path, env...)
	return g, g.URL
}

// firstToken returns the id of the first token of key, read on the
// trusted endpoint.
func (g *gateway) firstToken(key string) string {
	g.t.Helper()
	return g.mustAdmin("GET", "/keys/"+key, nil, http.StatusOK)["tokens"].([]any)[0].(map[string]any)["id"].(string)
}

// grantCase is one write through apikey_admin by a key of the "team"
// account holding exactly caller, which the guard must refuse.
type grantCase struct {
	name         string
	caller       []string
	method, path string
	body         any
	status       int
	scope        string // for 403: the missing scope the answer must name
}

// TestAdminWritesNeedCoverage: through apikey_admin, every write on an
// account or key needs the caller to see it (else 404) and to hold all of
// its scopes (else 403 forbidden naming one); the targets are unchanged
// afterwards. Reads, writes on what the caller covers, and revoke by value
// still work.
func TestAdminWritesNeedCoverage(t *testing.T) {
	for _, store := range []string{"postgres", "file"} {
		t.Run(store, func(t *testing.T) { testAdminWritesNeedCoverage(t, store) })
	}
}

func testAdminWritesNeedCoverage(t *testing.T, store string) {
	gw, site := startAdminSite(t, store)
	soon := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)

	// The targets, made on the trusted endpoint.
	root := gw.createAccount("root", "*")
	rootKey, rootSecret := gw.createKey(root, nil, "expires_at", soon)
	team := gw.createAccount("team", "accounts", "api_keys", "apps", "billing")
	wide, _ := gw.createKey(team, []string{"apps", "billing"}, "expires_at", soon)
	inherit, _ := gw.createKey(team, nil)
	// Declared beyond its account: holds nothing now, "secrets" once the
	// account gets it back.
	dormant, _ := gw.createKey(team, []string{"secrets"})
	frozen := gw.createAccount("frozen", "secrets")
	frozenKey, _ := gw.createKey(frozen, nil, "expires_at", soon)
	gw.mustAdmin("PATCH", "/accounts/"+frozen, map[string]any{"disabled": true}, http.StatusOK)
	billing := gw.createAccount("billing-svc", "billing")
	tok := map[string]string{}
	for _, k := range []string{rootKey, wide, frozenKey} {
		tok[k] = gw.firstToken(k)
	}

	// The callers: keys of team holding exactly the scopes a case names.
	callers := map[string]string{}
	caller := func(scopes []string) string {
		name := strings.Join(scopes, " ")
		if callers[name] == "" {
			_, callers[name] = gw.createKey(team, scopes)
		}
		return callers[name]
	}
	call := func(method, path string, body any, secret string) response {
		return do(t, method, site+path, body, "X-API-Key", secret)
	}

	snapshot := func() map[string][]byte {
		out := map[string][]byte{}
		for _, a := range []string{root, team, frozen, billing} {
			out[a] = gw.adminDo("GET", "/accounts/"+a, nil).Body
		}
		// No key appeared in the other accounts (team's callers are in use:
		// their last_used_at moves).
		for _, a := range []string{root, frozen, billing} {
			out[a+" keys"] = gw.adminDo("GET", "/keys?account="+a+"&limit=100", nil).Body
		}
		for _, k := range []string{rootKey, wide, inherit, dormant, frozenKey} {
			out[k] = gw.adminDo("GET", "/keys/"+k, nil).Body
		}
		return out
	}

	au, ad := []string{"accounts:update"}, []string{"accounts:delete"}
	rau, rad := []string{"accounts:read", "accounts:update"}, []string{"accounts:read", "accounts:delete"}
	kc, ku, kd := []string{"api_keys:create"}, []string{"api_keys:update"}, []string{"api_keys:delete"}
	rkc, rku, rkd := []string{"accounts:read", "api_keys:create"}, []string{"accounts:read", "api_keys:update"}, []string{"accounts:read", "api_keys:delete"}
	tp := func(key string) string { return "/keys/" + key + "/tokens/" + tok[key] }
	cases := []grantCase{
		// The order matters only on a broken guard, where these writes
		// succeed: what destroys a target comes after what needs it.
		// Tokens: of a sibling with wider scopes, of root's key, of frozen's.
		{"mint on wide sibling", kc, "POST", "/keys/" + wide + "/tokens", map[string]any{}, 403, "apps"},
		{"mint on inheriting sibling", kc, "POST", "/keys/" + inherit + "/tokens", map[string]any{}, 403, "accounts"},
		{"mint on dormant sibling", kc, "POST", "/keys/" + dormant + "/tokens", map[string]any{}, 403, "secrets"},
		{"mint on root key", rkc, "POST", "/keys/" + rootKey + "/tokens", map[string]any{}, 403, "*"},
		{"mint on frozen key", rkc, "POST", "/keys/" + frozenKey + "/tokens", map[string]any{}, 403, "secrets"},
		{"unexpire wide sibling's token", ku, "PATCH", tp(wide), map[string]any{"expires_at": nil}, 403, "apps"},
		{"unexpire root key's token unseen", ku, "PATCH", tp(rootKey), map[string]any{"expires_at": nil}, 404, ""},
		{"unexpire root key's token", rku, "PATCH", tp(rootKey), map[string]any{"expires_at": nil}, 403, "*"},
		{"unexpire frozen key's token", rku, "PATCH", tp(frozenKey), map[string]any{"expires_at": nil}, 403, "secrets"},
		{"rotate wide sibling's token", ku, "POST", tp(wide) + "/rotate", nil, 403, "apps"},
		{"rotate root key's token", rku, "POST", tp(rootKey) + "/rotate", nil, 403, "*"},
		{"delete wide sibling's token", kd, "DELETE", tp(wide), nil, 403, "apps"},
		{"delete root key's token unseen", kd, "DELETE", tp(rootKey), nil, 404, ""},
		{"delete root key's token", rkd, "DELETE", tp(rootKey), nil, 403, "*"},
		{"delete frozen key's token", rkd, "DELETE", tp(frozenKey), nil, 403, "secrets"},
		// Keys, including one whose declared scopes its account lacks today.
		{"edit wide sibling", ku, "PATCH", "/keys/" + wide, map[string]any{"name": "pwned"}, 403, "apps"},
		{"narrow wide sibling", ku, "PATCH", "/keys/" + wide, map[string]any{"scopes": []string{"api_keys:update"}}, 403, "apps"},
		{"edit root key unseen", ku, "PATCH", "/keys/" + rootKey, map[string]any{"name": "pwned"}, 404, ""},
		{"edit root key", rku, "PATCH", "/keys/" + rootKey, map[string]any{"name": "pwned"}, 403, "*"},
		{"edit frozen key", rku, "PATCH", "/keys/" + frozenKey, map[string]any{"name": "pwned"}, 403, "secrets"},
		{"delete wide sibling", kd, "DELETE", "/keys/" + wide, nil, 403, "apps"},
		{"delete dormant sibling", kd, "DELETE", "/keys/" + dormant, nil, 403, "secrets"},
		{"delete root key unseen", kd, "DELETE", "/keys/" + rootKey, nil, 404, ""},
		{"delete root key", rkd, "DELETE", "/keys/" + rootKey, nil, 403, "*"},
		{"delete frozen key", rkd, "DELETE", "/keys/" + frozenKey, nil, 403, "secrets"},
		// A key placed in another account is a write on that account.
		{"key in root unseen", kc, "POST", "/keys", map[string]any{"account": root, "name": "x"}, 404, ""},
		{"key in root", rkc, "POST", "/keys", map[string]any{"account": "root", "name": "x"}, 403, "*"},
		{"key in frozen", rkc, "POST", "/keys", map[string]any{"account": frozen, "name": "x"}, 403, "secrets"},
		// Accounts: another account is invisible without accounts:read, and
		// a visible one needs all of its scopes.
		{"edit root unseen", au, "PATCH", "/accounts/" + root, map[string]any{"team": "pwned"}, 404, ""},
		{"edit root by name unseen", au, "PATCH", "/accounts/root", map[string]any{"team": "pwned"}, 404, ""},
		{"edit root", rau, "PATCH", "/accounts/" + root, map[string]any{"team": "pwned"}, 403, "*"},
		{"re-enable frozen unseen", au, "PATCH", "/accounts/" + frozen, map[string]any{"disabled": false}, 404, ""},
		{"re-enable frozen", rau, "PATCH", "/accounts/" + frozen, map[string]any{"disabled": false}, 403, "secrets"},
		{"replace scopes held with own", []string{"accounts:read", "accounts:update", "apps"}, "PATCH", "/accounts/" + billing, map[string]any{"scopes": []string{"apps"}}, 403, "billing"},
		{"delete frozen", rad, "DELETE", "/accounts/" + frozen, nil, 403, "secrets"},
		{"delete root", rad, "DELETE", "/accounts/" + root, nil, 403, "*"},
		{"delete root unseen", ad, "DELETE", "/accounts/" + root, nil, 404, ""},
		// Last: it would take the callers' own scopes away.
		{"narrow own account", au, "PATCH", "/accounts/" + team, map[string]any{"scopes": []string{"accounts:update"}}, 403, "accounts"},
	}
	for _, c := range cases {
		caller(c.caller) // callers first: they are keys of team, in the snapshot
	}
	before := snapshot()
	for _, c := range cases {
		r := call(c.method, c.path, c.body, caller(c.caller))
		if r.Status != c.status {
			t.Errorf("%s: %s %s as %v: %d, want %d: %s", c.name, c.method, c.path, c.caller, r.Status, c.status, r.Body)
			continue
		}
		body := r.JSON(t)
		want := map[int]string{403: "forbidden", 404: "not_found"}[c.status]
		if body["error"] != want || c.status == 403 && body["scope"] != c.scope {
			t.Errorf("%s: answer %s, want error %q naming scope %q", c.name, r.Body, want, c.scope)
		}
		// A refused caller learns no scopes of what it may not see.
		if _, ok := body["scopes"]; ok {
			t.Errorf("%s: the refusal carries scopes: %s", c.name, r.Body)
		}
	}
	after := snapshot()
	for what, b := range before {
		if !bytes.Equal(b, after[what]) {
			t.Errorf("%s changed:\nbefore %s\nafter  %s", what, b, after[what])
		}
	}
	if t.Failed() {
		return
	}

	// What the rule allows still works. A caller covering a sibling acts on it.
	_, manager := gw.createKey(team, []string{"api_keys", "apps:read"})
	narrow, _ := gw.createKey(team, []string{"apps:read"})
	for _, c := range []struct {
		method, path string
		body         any
		status       int
	}{
		{"PATCH", "/keys/" + narrow, map[string]any{"name": "renamed"}, 200},
		{"POST", "/keys/" + narrow + "/tokens", map[string]any{"name": "second"}, 201},
		{"PATCH", "/keys/" + narrow + "/tokens/" + gw.firstToken(narrow), map[string]any{"name": "first"}, 200},
		{"POST", "/keys/" + narrow + "/tokens/" + gw.firstToken(narrow) + "/rotate", nil, 201},
		{"DELETE", "/keys/" + narrow, nil, 204},
	} {
		if r := call(c.method, c.path, c.body, manager); r.Status != c.status {
			t.Errorf("covered sibling: %s %s: %d, want %d: %s", c.method, c.path, r.Status, c.status, r.Body)
		}
	}
	// A key acts on itself even when it declares scopes its account lacks
	// today: whatever the key will hold, its caller holds too.
	self, selfSecret := gw.createKey(team, []string{"api_keys:update", "secrets"})
	if r := call("POST", "/keys/"+self+"/tokens/"+gw.firstToken(self)+"/rotate", nil, selfSecret); r.Status != 201 {
		t.Errorf("rotating its own token: %d %s", r.Status, r.Body)
	}
	// A caller holding all of an account's scopes edits it.
	_, owner := gw.createKey(team, []string{"accounts", "api_keys", "apps", "billing"})
	if r := call("PATCH", "/accounts/"+team, map[string]any{"team": "t"}, owner); r.Status != 200 {
		t.Errorf("editing a covered account: %d %s", r.Status, r.Body)
	}
	if r := call("PATCH", "/accounts/"+billing, map[string]any{"disabled": true}, owner); r.Status != 200 {
		t.Errorf("disabling a covered account: %d %s", r.Status, r.Body)
	}
	// Knowing a token's value is enough to revoke it, whatever its account.
	if r := call("POST", "/revoke", map[string]any{"token": rootSecret}, caller(kd)); r.Status != 204 {
		t.Errorf("revoke by value of root's token: %d %s", r.Status, r.Body)
	}
	// The trusted endpoint covers everything.
	gw.mustAdmin("PATCH", "/accounts/"+frozen, map[string]any{"disabled": false}, http.StatusOK)
	gw.mustAdmin("POST", "/keys/"+wide+"/tokens", map[string]any{}, http.StatusCreated)
}
