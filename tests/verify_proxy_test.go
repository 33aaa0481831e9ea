package tests

import (
	"fmt"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/pgtest"
)

// What a client of an API behind a proxy that asks Keygate sees, whatever
// the proxy: these run through real nginx (auth_request) and real Caddy
// (forward_auth), each configured as the README says.

// TestVerifyThroughNginx: nginx auth_request → apikey_verify (mode nginx)
// → upstream, with the README's server block.
func TestVerifyThroughNginx(t *testing.T) {
	nginxBinary(t) // skip (or fail) before starting anything
	env := startVerifier(t, pgtest.DSN(t), "nginx", nil)
	n := startNginx(t, readmeAddresses(readmeBlock(t, "# nginx: the API behind auth_request (inside http { })"),
		fmt.Sprintf("127.0.0.1:%d", env.gw.HTTPPort), env.up.URL, "{port}"))
	checkThroughProxy(t, env, n.URL)
}

// TestVerifyThroughCaddyForwardAuth: Caddy's forward_auth →
// apikey_verify (mode caddy) → upstream, with the README's site block
// (served by the same Caddy process, on a site of its own).
func TestVerifyThroughCaddyForwardAuth(t *testing.T) {
	port := pgtest.FreePort(t)
	env := startVerifier(t, pgtest.DSN(t), "caddy", func(upstream string) string {
		return readmeAddresses(readmeBlock(t, "# Caddy: the API behind forward_auth"), "127.0.0.1:{http_port}", upstream, fmt.Sprint(port))
	})
	checkThroughProxy(t, env, fmt.Sprintf("http://127.0.0.1:%d", port))
}

// checkThroughProxy sends a client's requests to proxyURL and checks the
// answers and what reaches the upstream.
func checkThroughProxy(t *testing.T, env *verifyEnv, proxyURL string) {
	t.Helper()
	up := env.up

	// 200: the identity reaches the upstream; the credential and the
	// client's own identity headers do not.
	for _, cred := range [][]string{{"X-API-Key", env.reader}, {"Authorization", "Bearer " + env.reader}} {
		hits := up.hitCount()
		r := do(t, "GET", proxyURL+"/v1/apps/web?x=1", nil, append(smuggled(), cred...)...)
		if r.Status != 200 || up.hitCount() != hits+1 {
			t.Fatalf("%s: %d %s (upstream hits %d → %d)", cred[0], r.Status, r.Body, hits, up.hitCount())
		}
		h := up.lastHeader()
		checkUpstreamClean(t, h)
		want := map[string]string{"X-Keygate-Account": env.accID, "X-Keygate-Key": env.readerID, "X-Keygate-Scopes": "apps:read", "X-Keygate-Account-Name": "verify-ci"}
		for name, v := range want {
			if got := h.Values(name); len(got) != 1 || got[0] != v {
				t.Errorf("%s: upstream got %s %q, want %q", cred[0], name, got, v)
			}
		}
		if !strings.HasPrefix(h.Get("X-Keygate-Token"), "tok_") || h.Get("X-Keygate-Team") != "" {
			t.Errorf("%s: upstream got token %q team %q", cred[0], h.Get("X-Keygate-Token"), h.Get("X-Keygate-Team"))
		}
	}

	// A public route passes without a key, and smuggled identities are
	// dropped there too: the 200 sets every identity header, empty.
	r := do(t, "GET", proxyURL+"/public/doc", nil, smuggled()...)
	if r.Status != 200 {
		t.Fatalf("public route: %d %s", r.Status, r.Body)
	}
	checkUpstreamClean(t, up.lastHeader())
	for _, name := range identityHeaders {
		if v := up.lastHeader().Get(name); v != "" {
			t.Errorf("public route: upstream got %s %q", name, v)
		}
	}
	// With a key on a public route, the key is not sent on either.
	do(t, "GET", proxyURL+"/public/doc", nil, "X-API-Key", env.reader)
	checkUpstreamClean(t, up.lastHeader())

	// Refusals reach the client with apikey_auth's status, JSON body and
	// challenge, and never the upstream.
	for _, tt := range []struct {
		name, method, path string
		headers            []string
		status             int
		code, challenge    string
		field, value       string
	}{
		{"no key", "GET", "/v1/apps/web", nil, 401, "unauthorized", `Bearer realm="API"`, "", ""},
		{"unknown key", "GET", "/v1/apps/web", []string{"X-API-Key", "sk-unknown"}, 401, "invalid_token", `Bearer realm="API", error="invalid_token"`, "", ""},
		{"two keys", "GET", "/v1/apps/web", []string{"X-API-Key", env.reader, "Authorization", "Bearer " + env.admin}, 401, "invalid_request", `Bearer realm="API", error="invalid_request"`, "", ""},
		{"scope", "POST", "/v1/admin/users", []string{"X-API-Key", env.reader}, 403, "insufficient_scope",
			`Bearer realm="API", error="insufficient_scope", scope="admin"`, "required_scope", "admin"},
		{"unmapped", "GET", "/elsewhere", []string{"X-API-Key", env.reader}, 403, "forbidden", "", "", ""},
		// Percent-encoding tricks: refused, or decided on the path the
		// upstream would route.
		{"encoded slash", "GET", "/v1/apps/x%2F..%2F..%2Fadmin%2Fusers", []string{"X-API-Key", env.reader}, 400, "invalid_request", "", "", ""},
		{"double encoding", "GET", "/v1/apps/x%252F..%252Fadmin", []string{"X-API-Key", env.reader}, 400, "invalid_request", "", "", ""},
		{"encoded backslash", "GET", "/v1/apps/x%5C..%5Cadmin", []string{"X-API-Key", env.reader}, 400, "invalid_request", "", "", ""},
		{"encoded semicolon", "GET", "/v1/apps%3Bx/web", []string{"X-API-Key", env.reader}, 400, "invalid_request", "", "", ""},
		{"encoded dots", "GET", "/v1/apps/%2e%2e/admin/users", []string{"X-API-Key", env.reader}, 403, "insufficient_scope",
			`Bearer realm="API", error="insufficient_scope", scope="admin"`, "required_scope", "admin"},
		{"dot segments", "GET", "/v1/apps/../admin/users", []string{"X-API-Key", env.reader}, 403, "insufficient_scope",
			`Bearer realm="API", error="insufficient_scope", scope="admin"`, "required_scope", "admin"},
		{"public prefix climbed", "GET", "/public/../v1/apps/web", nil, 401, "unauthorized", `Bearer realm="API"`, "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hits := up.hitCount()
			r := do(t, tt.method, proxyURL+tt.path, nil, tt.headers...)
			if r.Status != tt.status {
				t.Fatalf("%d, want %d: %v %s", r.Status, tt.status, r.Header, r.Body)
			}
			body := r.JSON(t)
			if body["error"] != tt.code || body["message"] == "" {
				t.Errorf("body %s, want error %s", r.Body, tt.code)
			}
			if tt.field != "" && body[tt.field] != tt.value {
				t.Errorf("body %s, want %s %s", r.Body, tt.field, tt.value)
			}
			if ch := r.Header.Values("Www-Authenticate"); (tt.challenge == "" && len(ch) != 0) || (tt.challenge != "" && (len(ch) != 1 || ch[0] != tt.challenge)) {
				t.Errorf("WWW-Authenticate %q, want %q", ch, tt.challenge)
			}
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q", ct)
			}
			for _, name := range []string{"X-Keygate-Status", "X-Keygate-Error"} {
				if v := r.Header.Get(name); v != "" {
					t.Errorf("the client sees %s: %s", name, v)
				}
			}
			if up.hitCount() != hits {
				t.Errorf("the upstream got the refused request")
			}
		})
	}

	// A key with the scope passes where the reader was refused.
	if r := do(t, "POST", proxyURL+"/v1/admin/users", nil, "X-API-Key", env.admin); r.Status != 200 {
		t.Fatalf("admin key: %d %s", r.Status, r.Body)
	}
	checkUpstreamClean(t, up.lastHeader())
}

// TestVerifyNginxRestoresStatuses: statuses nginx's auth_request cannot
// pass (400, 503) reach the client through the README's error_page
// location with their body and Retry-After; Keygate unreachable is a 503.
func TestVerifyNginxRestoresStatuses(t *testing.T) {
	nginxBinary(t)
	pg := pgtest.Dedicated(t)
	env := startVerifier(t, pg.DSN(), "nginx", nil)
	block := readmeBlock(t, "# nginx: the API behind auth_request (inside http { })")
	n := startNginx(t, readmeAddresses(block, fmt.Sprintf("127.0.0.1:%d", env.gw.HTTPPort), env.up.URL, "{port}"))

	checkRestored := func(name string, r response, status int, code string, retryAfter bool) {
		t.Helper()
		if r.Status != status || r.JSON(t)["error"] != code || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("%s: %d %v %s, want %d %s", name, r.Status, r.Header, r.Body, status, code)
		}
		if (r.Header.Get("Retry-After") != "") != retryAfter || r.Header.Get("Www-Authenticate") != "" ||
			r.Header.Get("X-Keygate-Status") != "" || r.Header.Get("X-Keygate-Error") != "" {
			t.Errorf("%s: headers %v", name, r.Header)
		}
	}
	r := do(t, "GET", n.URL+"/v1/apps/a%2Fb", nil, "X-API-Key", env.reader)
	checkRestored("encoded slash", r, 400, "invalid_request", false)
	if msg, _ := r.JSON(t)["message"].(string); !strings.Contains(msg, "%2F") {
		t.Errorf("400 message %q", msg)
	}

	_, uncached := env.gw.createKey(env.accID, nil)
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	hits := env.up.hitCount()
	r = do(t, "GET", n.URL+"/v1/apps/web", nil, "X-API-Key", uncached)
	checkRestored("store down", r, 503, "unavailable", true)
	if r.Header.Get("Retry-After") != "2" || env.up.hitCount() != hits {
		t.Errorf("store down: Retry-After %q, upstream hits %d → %d", r.Header.Get("Retry-After"), hits, env.up.hitCount())
	}
	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	if r := do(t, "GET", n.URL+"/v1/apps/web", nil, "X-API-Key", uncached); r.Status != 200 {
		t.Fatalf("store back: %d %s", r.Status, r.Body)
	}

	// Keygate unreachable: the same block, pointed at a closed port.
	dead := startNginx(t, readmeAddresses(block, fmt.Sprintf("127.0.0.1:%d", pgtest.FreePort(t)), env.up.URL, "{port}"))
	hits = env.up.hitCount()
	checkRestored("verifier unreachable", do(t, "GET", dead.URL+"/v1/apps/web", nil, "X-API-Key", env.reader), 503, "unavailable", false)
	if env.up.hitCount() != hits {
		t.Error("the upstream got a request nobody verified")
	}
}
