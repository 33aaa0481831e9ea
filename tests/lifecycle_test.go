package tests

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
)

// secretWatch remembers every token value an API response created, and
// checks that no other response shows one.
type secretWatch struct {
	t       *testing.T
	secrets []string
}

// created notes the secret of a creating response.
func (s *secretWatch) created(r response) string {
	s.t.Helper()
	secret, _ := r.JSON(s.t)["secret"].(string)
	if !strings.HasPrefix(secret, "sk-") {
		s.t.Fatalf("no secret in a creating response: %d %s", r.Status, r.Body)
	}
	s.secrets = append(s.secrets, secret)
	return secret
}

// check fails if r shows a secret.
func (s *secretWatch) check(what string, r response) response {
	s.t.Helper()
	for _, secret := range s.secrets {
		if strings.Contains(string(r.Body), secret) || strings.Contains(string(r.Body), secret[6:len(secret)-4]) {
			s.t.Fatalf("%s shows a secret: %s", what, r.Body)
		}
	}
	return r
}

// TestLifecycleBothMounts runs a team's whole key lifecycle on the admin
// endpoint and through apikey_admin: a reduced key, several tokens with
// expiry, a rotation with overlap, revocation of a leaked value, a scope
// change and deletion; then its audit trail; no secret after creation.
func TestLifecycleBothMounts(t *testing.T) {
	env := startTower(t, pgtest.DSN(t))
	gw := env.gw
	acc := gw.createAccount("harness", "apps", "api_keys", "audit")
	_, managerKey := gw.createKey(acc, []string{"api_keys", "apps", "audit:read"})

	mounts := []struct {
		name string
		call func(method, path string, body any) response
	}{
		{"admin endpoint", gw.adminDo},
		{"apikey_admin", func(method, path string, body any) response {
			return do(t, method, env.adminURL+path, body, "X-API-Key", managerKey)
		}},
	}
	var allSecrets []string
	for _, m := range mounts {
		t.Run(strings.ReplaceAll(m.name, " ", "_"), func(t *testing.T) {
			w := &secretWatch{t: t}
			defer func() { allSecrets = append(allSecrets, w.secrets...) }()
			call := func(method, path string, body any, want int) map[string]any {
				t.Helper()
				r := m.call(method, path, body)
				if r.Status != want {
					t.Fatalf("%s %s = %d, want %d: %s", method, path, r.Status, want, r.Body)
				}
				if want == http.StatusCreated && r.JSON(t)["secret"] != nil {
					w.created(r)
					if len(r.Body) == 0 {
						return nil
					}
					return r.JSON(t)
				}
				w.check(method+" "+path, r)
				if len(r.Body) == 0 {
					return nil
				}
				return r.JSON(t)
			}
			gateway := func(method, path, secret string) int {
				t.Helper()
				return w.check("gateway", do(t, method, gw.URL+path, nil, "X-API-Key", secret)).Status
			}

			// A reduced key, with its first token.
			key := call("POST", "/keys", map[string]any{"account": acc, "name": "deploy", "scopes": []string{"apps:run", "apps:read"}, "tags": map[string]string{"env": "prod"}}, 201)
			keyID := key["id"].(string)
			leaked := w.secrets[len(w.secrets)-1]

			// More tokens, with expiry.
			ci := call("POST", "/keys/"+keyID+"/tokens", map[string]any{"name": "ci", "expires_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, 201)
			ciSecret := w.secrets[len(w.secrets)-1]
			call("POST", "/keys/"+keyID+"/tokens", map[string]any{"name": "short", "expires_at": time.Now().Add(1500 * time.Millisecond).UTC().Format(time.RFC3339Nano)}, 201)
			shortSecret := w.secrets[len(w.secrets)-1]
			for _, s := range []string{leaked, ciSecret, shortSecret} {
				if got := gateway("POST", "/v1/apps/web/runs", s); got != 200 {
					t.Fatalf("a fresh token gets %d", got)
				}
			}

			// Rotation with an overlap.
			rotated := call("POST", "/keys/"+keyID+"/tokens/"+ci["id"].(string)+"/rotate", map[string]any{"grace": "2s"}, 201)
			newCI := w.secrets[len(w.secrets)-1]
			if rotated["name"] != "ci" || rotated["id"] == ci["id"] || rotated["expires_at"] == nil {
				t.Fatalf("rotated token %v", rotated)
			}
			if gateway("POST", "/v1/apps/web/runs", ciSecret) != 200 || gateway("POST", "/v1/apps/web/runs", newCI) != 200 {
				t.Fatalf("during the grace both tokens must work")
			}
			statuses := map[string]string{}
			for _, tok := range call("GET", "/keys/"+keyID, nil, 200)["tokens"].([]any) {
				tm := tok.(map[string]any)
				statuses[tm["id"].(string)] = tm["status"].(string)
			}
			if statuses[ci["id"].(string)] != "expiring" || statuses[rotated["id"].(string)] != "active" {
				t.Fatalf("statuses during grace: %v", statuses)
			}
			// Rotating the old token again is refused.
			if r := m.call("POST", "/keys/"+keyID+"/tokens/"+ci["id"].(string)+"/rotate", nil); r.Status != 409 {
				t.Fatalf("second rotation of one token: %d %s", r.Status, r.Body)
			}

			// After the grace and the short expiry.
			deadline := time.Now().Add(10 * time.Second)
			for gateway("POST", "/v1/apps/web/runs", ciSecret) != 401 {
				if time.Now().After(deadline) {
					t.Fatal("the rotated-out token still works 10s after a 2s grace")
				}
				time.Sleep(100 * time.Millisecond)
			}
			r := do(t, "POST", gw.URL+"/v1/apps/web/runs", nil, "X-API-Key", shortSecret)
			if r.Status != 401 || !strings.Contains(string(r.Body), "expired") {
				t.Fatalf("expired token: %d %s", r.Status, r.Body)
			}
			if gateway("POST", "/v1/apps/web/runs", newCI) != 200 {
				t.Fatal("the new token stopped with the old one")
			}

			// A leaked value, revoked by value.
			call("POST", "/revoke", map[string]any{"token": leaked}, 204)
			if gateway("POST", "/v1/apps/web/runs", leaked) != 401 {
				t.Fatal("a revoked token still works")
			}

			// A scope change takes effect at once.
			call("PATCH", "/keys/"+keyID, map[string]any{"scopes": []string{"apps:read"}, "description": "read only now"}, 200)
			if gateway("POST", "/v1/apps/web/runs", newCI) != 403 || gateway("GET", "/v1/apps", newCI) != 200 {
				t.Fatal("the reduced key still runs, or cannot read")
			}

			// Token edits.
			edited := call("PATCH", "/keys/"+keyID+"/tokens/"+rotated["id"].(string), map[string]any{"name": "ci-2", "expires_at": nil}, 200)
			if edited["name"] != "ci-2" || edited["expires_at"] != nil {
				t.Fatalf("edited token %v", edited)
			}

			// Deletion.
			call("DELETE", "/keys/"+keyID, nil, 204)
			if gateway("GET", "/v1/apps", newCI) != 401 {
				t.Fatal("a token of a deleted key still works")
			}

			// The audit trail, newest first.
			events := call("GET", "/audit?limit=500", nil, 200)["items"].([]any)
			var trail []string
			for i := len(events) - 1; i >= 0; i-- {
				e := events[i].(map[string]any)
				target, _ := e["target"].(string)
				details, _ := e["details"].(map[string]any)
				if target == keyID || details["key"] == keyID {
					trail = append(trail, e["action"].(string))
				}
			}
			want := "key.create token.create token.create token.rotate token.revoke key.update token.update key.delete"
			if got := strings.Join(trail, " "); got != want {
				t.Fatalf("audit trail:\n got %s\nwant %s", got, want)
			}
			whoami := call("GET", "/whoami", nil, 200)
			if m.name == "apikey_admin" && (whoami["account"].(map[string]any)["id"] != acc || whoami["token"] == nil) {
				t.Fatalf("whoami %v", whoami)
			}
		})
	}
	raw, _ := os.ReadFile(gw.AccessLog)
	for _, secret := range append(allSecrets, managerKey) {
		for _, logs := range []string{gw.Output(), string(raw)} {
			if strings.Contains(logs, secret) || strings.Contains(logs, secret[6:len(secret)-4]) {
				t.Fatal("a secret reached Caddy's logs")
			}
		}
	}
}

// TestEscalationMatrix: a key holding api_keys and apps:read can create
// apps:read keys but nothing wider, cannot widen a key, cannot mint values
// of a wider key, and without api_keys:create cannot create at all.
func TestEscalationMatrix(t *testing.T) {
	env := startTower(t, pgtest.DSN(t))
	gw := env.gw
	acc := gw.createAccount("tower", "*")
	_, manager := gw.createKey(acc, []string{"api_keys", "apps:read"})
	_, readOnly := gw.createKey(acc, []string{"api_keys:read", "api_keys:update", "apps"})
	wideKey, _ := gw.createKey(acc, []string{"apps", "secrets"})
	wideTok := gw.mustAdmin("GET", "/keys/"+wideKey, nil, 200)["tokens"].([]any)[0].(map[string]any)["id"].(string)
	site := func(key, method, path string, body any) response {
		return do(t, method, env.adminURL+path, body, "X-API-Key", key)
	}

	for _, c := range []struct {
		scopes []string
		status int
		lacks  string
	}{
		{[]string{"apps:read"}, 201, ""},
		{[]string{"apps:read:deep"}, 201, ""},
		{[]string{"api_keys:read"}, 201, ""},
		{[]string{"apps"}, 403, "apps"},
		{[]string{"*"}, 403, "*"},
		{[]string{"secrets"}, 403, "secrets"},
		{[]string{"apps:read", "apps:run"}, 403, "apps:run"},
	} {
		r := site(manager, "POST", "/keys", map[string]any{"name": "x", "scopes": c.scopes})
		if r.Status != c.status {
			t.Errorf("create %v: %d, want %d: %s", c.scopes, r.Status, c.status, r.Body)
			continue
		}
		if c.status == 403 {
			if b := r.JSON(t); b["error"] != "forbidden" || b["scope"] != c.lacks {
				t.Errorf("create %v: %v, want forbidden naming %q", c.scopes, b, c.lacks)
			}
		}
	}
	own := site(manager, "POST", "/keys", map[string]any{"name": "mine", "scopes": []string{"apps:read"}}).JSON(t)["id"].(string)
	if r := site(manager, "PATCH", "/keys/"+own, map[string]any{"scopes": []string{"apps"}}); r.Status != 403 || r.JSON(t)["scope"] != "apps" {
		t.Errorf("widening a key: %d %s", r.Status, r.Body)
	}
	if r := site(manager, "POST", "/keys/"+wideKey+"/tokens", map[string]any{"name": "mine"}); r.Status != 403 {
		t.Errorf("minting a value of a wider key: %d %s", r.Status, r.Body)
	}
	if r := site(manager, "POST", "/keys/"+wideKey+"/tokens/"+wideTok+"/rotate", nil); r.Status != 403 {
		t.Errorf("rotating a wider key: %d %s", r.Status, r.Body)
	}
	if r := site(readOnly, "POST", "/keys", map[string]any{"name": "x", "scopes": []string{"apps:read"}}); r.Status != 403 || r.JSON(t)["required_scope"] != "api_keys:create" {
		t.Errorf("creating without api_keys:create: %d %s", r.Status, r.Body)
	}
	for _, c := range []struct{ method, path, scope string }{
		{"POST", "/accounts", "accounts:create"},
		{"GET", "/accounts", "accounts:read"},
		{"PATCH", "/accounts/" + acc, "accounts:update"},
		{"GET", "/audit", "audit:read"},
		{"DELETE", "/keys/" + own, "api_keys:delete"},
	} {
		r := site(readOnly, c.method, c.path, map[string]any{})
		if r.Status != 403 || r.JSON(t)["required_scope"] != c.scope {
			t.Errorf("%s %s without %s: %d %s", c.method, c.path, c.scope, r.Status, r.Body)
		}
	}
	// Nothing above changed the wide key.
	if got := gw.mustAdmin("GET", "/keys/"+wideKey, nil, 200); len(got["tokens"].([]any)) != 1 {
		t.Errorf("the wide key gained tokens: %v", got)
	}
}
