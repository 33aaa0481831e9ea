package tests

import (
	"fmt"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/pgtest"
)

// TestAdminRefusalsMatchAuth: apikey_admin answers a key that lacks a
// route's scope as apikey_auth does, with the same realm: 403
// insufficient_scope, the same message wording, "required_scope", and a
// WWW-Authenticate challenge naming the scope (RFC 6750). Its 401s are
// apikey_auth's too.
func TestAdminRefusalsMatchAuth(t *testing.T) {
	up := newUpstream(t)
	dsn := pgtest.DSN(t)
	adminPort := pgtest.FreePort(t)
	gw := startGateway(t, gatewayConfig{
		DSN: dsn, Schema: pgtest.Schema(t, dsn),
		Site: fmt.Sprintf(`
	apikey_auth {
		realm "Tower API"
		scope POST /v1/apps/{app}/runs apps:run
		default authenticated
	}
	reverse_proxy %s
`, up.URL),
		Extra: fmt.Sprintf(`
:%d {
	apikey_admin {
		realm "Tower API"
	}
}
`, adminPort),
	})
	adminURL := fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	acc := gw.createAccount("team", "apps", "api_keys")
	_, reader := gw.createKey(acc, []string{"api_keys:read", "apps:read"})

	// The reference: apikey_auth's refusal of the same key.
	ref := do(t, "POST", gw.URL+"/v1/apps/web/runs", nil, "X-API-Key", reader)
	if ref.Status != 403 {
		t.Fatalf("apikey_auth: %d %s", ref.Status, ref.Body)
	}
	refBody := ref.JSON(t)
	if got := ref.Header.Get("WWW-Authenticate"); got != `Bearer realm="Tower API", error="insufficient_scope", scope="apps:run"` {
		t.Fatalf("apikey_auth challenge %q", got)
	}

	for _, c := range []struct{ method, path, scope string }{
		{"POST", "/keys", "api_keys:create"},
		{"DELETE", "/keys/key_x", "api_keys:delete"},
		{"GET", "/accounts", "accounts:read"},
		{"GET", "/audit", "audit:read"},
	} {
		var body any
		if c.method == "POST" {
			body = map[string]any{"name": "x"}
		}
		r := do(t, c.method, adminURL+c.path, body, "X-API-Key", reader)
		if r.Status != 403 {
			t.Errorf("%s %s: %d %s, want 403", c.method, c.path, r.Status, r.Body)
			continue
		}
		want := `Bearer realm="Tower API", error="insufficient_scope", scope="` + c.scope + `"`
		if got := r.Header.Get("WWW-Authenticate"); got != want {
			t.Errorf("%s %s: WWW-Authenticate %q, want %q", c.method, c.path, got, want)
		}
		got := r.JSON(t)
		wantMessage := strings.Replace(refBody["message"].(string), "apps:run", c.scope, 1)
		if got["error"] != "insufficient_scope" || got["message"] != wantMessage || got["required_scope"] != c.scope {
			t.Errorf("%s %s: body %v, want apikey_auth's wording %q", c.method, c.path, got, wantMessage)
		}
	}

	// What the key may do still passes, and 401s are alike on both sites.
	if r := do(t, "GET", adminURL+"/keys", nil, "X-API-Key", reader); r.Status != 200 {
		t.Errorf("GET /keys with api_keys:read: %d %s", r.Status, r.Body)
	}
	for _, headers := range [][]string{nil, {"X-API-Key", "sk-nope"}} {
		a := do(t, "GET", gw.URL+"/v1/me", nil, headers...)
		b := do(t, "GET", adminURL+"/keys", nil, headers...)
		if a.Status != 401 || b.Status != 401 || a.Header.Get("WWW-Authenticate") != b.Header.Get("WWW-Authenticate") ||
			string(a.Body) != string(b.Body) {
			t.Errorf("401 with %v: apikey_auth %d %q %s, apikey_admin %d %q %s", headers,
				a.Status, a.Header.Get("WWW-Authenticate"), a.Body, b.Status, b.Header.Get("WWW-Authenticate"), b.Body)
		}
	}
}
