package tests

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/storage"
)

// towerSite is a Tower-style API: apps, runs and secrets behind a scope
// table, with the caller's identity passed upstream in headers.
const towerSite = `
	apikey_auth {
		realm "Tower API"
		scope GET    /healthz            public
		scope GET    /v1/me              authenticated
		scope GET    /v1/apps            apps:read
		scope GET    /v1/apps/{app}      apps:read
		scope POST   /v1/apps/{app}/runs apps:run
		scope DELETE /v1/apps/{app}      apps:delete
		scope *      /v1/secrets/*       secrets
		default deny
	}
	reverse_proxy %s {
		header_up X-Keygate-Account {apikey.account}
		header_up X-Keygate-Account-Name {apikey.account_name}
		header_up X-Keygate-Key {apikey.key_id}
		header_up X-Keygate-Token {apikey.token_id}
		header_up X-Keygate-Team {apikey.team}
		header_up X-Keygate-Scopes {apikey.scopes}
		header_up X-Keygate-User {http.auth.user.id}
	}
`

type towerEnv struct {
	gw       *gateway
	up       *upstream
	dsn      string
	reqPort  int
	adminURL string // the apikey_admin site
}

// startTower runs the Tower gateway, plus a site using the require form
// under a matcher and a site serving apikey_admin.
func startTower(t *testing.T, dsn string) *towerEnv {
	t.Helper()
	return startTowerOn(t, dsn, pgtest.Schema(t, dsn))
}

// startTowerOn is startTower on a given schema: gateways started on one
// schema are nodes sharing one key store.
func startTowerOn(t *testing.T, dsn, schema string) *towerEnv {
	t.Helper()
	up := newUpstream(t)
	reqPort, adminPort := pgtest.FreePort(t), pgtest.FreePort(t)
	gw := startGateway(t, gatewayConfig{
		DSN: dsn, Schema: schema,
		Site: fmt.Sprintf(towerSite, up.URL),
		Extra: fmt.Sprintf(`
:%d {
	@runs path /runs/*
	apikey_auth @runs {
		require runs:create runs:read
	}
	respond "ok {http.auth.user.id}"
}

:%d {
	apikey_admin
}
`, reqPort, adminPort),
	})
	return &towerEnv{gw: gw, up: up, dsn: dsn, reqPort: reqPort, adminURL: fmt.Sprintf("http://127.0.0.1:%d", adminPort)}
}

func TestScopeMatrix(t *testing.T) {
	env := startTower(t, pgtest.DSN(t))
	gw := env.gw
	acc := gw.createAccount("tower", "*")
	keys := map[string]string{}
	for name, scopes := range map[string][]string{
		"apps":      {"apps"},
		"apps:read": {"apps:read"},
		"star":      {"*"},
		"runs":      {"runs"},
	} {
		_, keys[name] = gw.createKey(acc, scopes)
	}

	type check struct {
		method, path string
		want         map[string]int // key name → status; "" = no key
	}
	checks := []check{
		{"GET", "/v1/apps", map[string]int{"apps": 200, "apps:read": 200, "star": 200, "runs": 403, "": 401}},
		{"GET", "/v1/apps/web", map[string]int{"apps": 200, "apps:read": 200, "star": 200, "runs": 403, "": 401}},
		{"POST", "/v1/apps/web/runs", map[string]int{"apps": 200, "apps:read": 403, "star": 200, "runs": 403, "": 401}},
		{"DELETE", "/v1/apps/web", map[string]int{"apps": 200, "apps:read": 403, "star": 200, "runs": 403}},
		{"GET", "/v1/secrets/db/password", map[string]int{"apps": 403, "apps:read": 403, "star": 200, "runs": 403}},
		{"PUT", "/v1/secrets/x", map[string]int{"apps": 403, "star": 200}},
		{"GET", "/v1/secrets", map[string]int{"star": 403}}, // /x/* does not match /x: default deny
		{"GET", "/healthz", map[string]int{"apps": 200, "runs": 200, "": 200}},
		{"GET", "/v1/me", map[string]int{"apps": 200, "apps:read": 200, "star": 200, "runs": 200, "": 401}},
		{"GET", "/v1/unmapped", map[string]int{"star": 403, "": 401}},
		{"PATCH", "/v1/apps/web", map[string]int{"star": 403}},
	}
	for _, c := range checks {
		for key, want := range c.want {
			var headers []string
			if key != "" {
				headers = []string{"X-API-Key", keys[key]}
			}
			r := do(t, c.method, gw.URL+c.path, nil, headers...)
			if r.Status != want {
				t.Errorf("%s %s with key %q: %d, want %d (%s)", c.method, c.path, key, r.Status, want, r.Body)
			}
			if want == 200 && !strings.Contains(string(r.Body), `"upstream":true`) {
				t.Errorf("%s %s with key %q: did not reach the upstream: %s", c.method, c.path, key, r.Body)
			}
		}
	}
}

func TestCredentialForms(t *testing.T) {
	env := startTower(t, pgtest.DSN(t))
	gw := env.gw
	acc := gw.createAccount("forms", "apps")
	_, secret := gw.createKey(acc, nil)
	_, other := gw.createKey(acc, nil)
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	tests := []struct {
		name    string
		headers []string
		want    int
		code    string
	}{
		{"X-API-Key", []string{"X-API-Key", secret}, 200, ""},
		{"x-api-key lower case name", []string{"x-api-key", secret}, 200, ""},
		{"Bearer", []string{"Authorization", "Bearer " + secret}, 200, ""},
		{"bearer lower case", []string{"Authorization", "bearer " + secret}, 200, ""},
		{"raw Authorization", []string{"Authorization", secret}, 200, ""},
		{"Basic user", []string{"Authorization", basic(secret, "")}, 200, ""},
		{"Basic user with password", []string{"Authorization", basic(secret, "x")}, 200, ""},
		{"Basic password", []string{"Authorization", basic("ci", secret)}, 200, ""},
		{"same token twice", []string{"X-API-Key", secret, "Authorization", "Bearer " + secret}, 200, ""},
		{"two different tokens", []string{"X-API-Key", secret, "Authorization", "Bearer " + other}, 401, "invalid_request"},
		{"two X-API-Key values", []string{"X-API-Key", secret, "X-API-Key", other}, 401, "invalid_request"},
		{"Bearer without token", []string{"Authorization", "Bearer"}, 401, "invalid_token"},
		{"Basic bad base64", []string{"Authorization", "Basic !!!"}, 401, "invalid_token"},
		{"Basic neither is a token", []string{"Authorization", basic("user", "pass")}, 401, "invalid_token"},
		{"other scheme", []string{"Authorization", "Digest " + secret}, 401, "invalid_token"},
		{"empty header", []string{"X-API-Key", ""}, 401, "unauthorized"},
	}
	for _, tt := range tests {
		r := do(t, "GET", gw.URL+"/v1/apps", nil, tt.headers...)
		if r.Status != tt.want {
			t.Errorf("%s: %d, want %d: %s", tt.name, r.Status, tt.want, r.Body)
			continue
		}
		if tt.code != "" {
			if got := r.JSON(t)["error"]; got != tt.code {
				t.Errorf("%s: error %q, want %q", tt.name, got, tt.code)
			}
		}
	}
}

// TestAnswers checks every row of DESIGN.md's "Answers to clients".
func TestAnswers(t *testing.T) {
	env := startTower(t, pgtest.DSN(t))
	gw := env.gw
	acc := gw.createAccount("answers", "apps:read")
	keyID, secret := gw.createKey(acc, nil)
	_, expiring := gw.createKey(acc, nil, "expires_at", time.Now().Add(1500*time.Millisecond).Format(time.RFC3339Nano))
	revokedID, revoked := gw.createKey(acc, nil)
	if r := do(t, "GET", gw.URL+"/v1/apps", nil, "X-API-Key", revoked); r.Status != 200 {
		t.Fatalf("key before revocation: %d", r.Status)
	}
	gw.mustAdmin("DELETE", "/keys/"+revokedID, nil, http.StatusNoContent)

	realm := `Bearer realm="Tower API"`
	malformed := secret[:len(secret)-1] + "x"
	if malformed == secret {
		malformed = secret[:len(secret)-1] + "y"
	}
	unknown := "sk-" + strings.Repeat("A", 43) // checksum computed below
	unknown = withChecksum(unknown)

	// Let the expiring token expire.
	time.Sleep(time.Until(time.Now().Add(1600 * time.Millisecond)))

	tests := []struct {
		name      string
		method    string
		path      string
		headers   []string
		status    int
		code      string
		challenge string
		message   string
		extra     map[string]string
	}{
		{"no credential", "GET", "/v1/apps", nil, 401, "unauthorized", realm, "", nil},
		{"malformed", "GET", "/v1/apps", []string{"X-API-Key", malformed}, 401, "invalid_token", realm + `, error="invalid_token"`, "", nil},
		{"wrong prefix", "GET", "/v1/apps", []string{"X-API-Key", "pk" + secret[2:]}, 401, "invalid_token", realm + `, error="invalid_token"`, "", nil},
		{"unknown", "GET", "/v1/apps", []string{"X-API-Key", unknown}, 401, "invalid_token", realm + `, error="invalid_token"`, "", nil},
		{"revoked", "GET", "/v1/apps", []string{"X-API-Key", revoked}, 401, "invalid_token", realm + `, error="invalid_token"`, "", nil},
		{"expired", "GET", "/v1/apps", []string{"X-API-Key", expiring}, 401, "invalid_token", realm + `, error="invalid_token"`, "expired", nil},
		{"two credentials", "GET", "/v1/apps", []string{"X-API-Key", secret, "Authorization", "Bearer " + unknown}, 401, "invalid_request", "", "", nil},
		{"insufficient scope", "POST", "/v1/apps/x/runs", []string{"X-API-Key", secret}, 403, "insufficient_scope",
			realm + `, error="insufficient_scope", scope="apps:run"`, "", map[string]string{"required_scope": "apps:run"}},
		{"default deny", "GET", "/elsewhere", []string{"X-API-Key", secret}, 403, "forbidden", "", "", nil},
		{"default deny without key", "GET", "/elsewhere", nil, 401, "unauthorized", realm, "", nil},
	}
	for _, tt := range tests {
		r := do(t, tt.method, gw.URL+tt.path, nil, tt.headers...)
		if r.Status != tt.status {
			t.Errorf("%s: status %d, want %d: %s", tt.name, r.Status, tt.status, r.Body)
			continue
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", tt.name, ct)
		}
		body := r.JSON(t)
		if body["error"] != tt.code || body["message"] == "" {
			t.Errorf("%s: body %v, want error %q and a message", tt.name, body, tt.code)
		}
		if tt.message != "" && !strings.Contains(fmt.Sprint(body["message"]), tt.message) {
			t.Errorf("%s: message %q does not say %q", tt.name, body["message"], tt.message)
		}
		for k, v := range tt.extra {
			if body[k] != v {
				t.Errorf("%s: %s = %v, want %q", tt.name, k, body[k], v)
			}
		}
		if tt.challenge != "" && r.Header.Get("WWW-Authenticate") != tt.challenge {
			t.Errorf("%s: WWW-Authenticate %q, want %q", tt.name, r.Header.Get("WWW-Authenticate"), tt.challenge)
		}
		if tt.status == 403 && tt.code == "forbidden" && r.Header.Get("WWW-Authenticate") != "" {
			t.Errorf("%s: unexpected challenge %q", tt.name, r.Header.Get("WWW-Authenticate"))
		}
	}
	if env.up.hitCount() != 1 {
		t.Errorf("upstream got %d requests, want only the one before revocation", env.up.hitCount())
	}
	_ = keyID
}

// withChecksum appends the CRC32 base62 checksum to a token body.
func withChecksum(body string) string {
	return body + checksum(body)
}

func TestUpstreamGetsIdentityNotCredential(t *testing.T) {
	env := startTower(t, pgtest.DSN(t))
	gw := env.gw
	a := gw.mustAdmin("POST", "/accounts", map[string]any{"name": "deployer", "kind": "service", "team": "platform", "scopes": []string{"apps", "runs:read"}}, http.StatusCreated)
	acc := a["id"].(string)
	keyID, secret := gw.createKey(acc, []string{"apps:read", "runs:read"})
	k := gw.mustAdmin("GET", "/keys/"+keyID, nil, http.StatusOK)
	tokenID := k["tokens"].([]any)[0].(map[string]any)["id"].(string)

	for _, headers := range [][]string{
		{"X-API-Key", secret},
		{"Authorization", "Bearer " + secret},
	} {
		if r := do(t, "GET", gw.URL+"/v1/apps", nil, headers...); r.Status != 200 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
		h := env.up.lastHeader()
		if h.Get("X-Api-Key") != "" || h.Get("Authorization") != "" {
			t.Errorf("upstream received a credential: %v", h)
		}
		for name, want := range map[string]string{
			"X-Keygate-Account":      acc,
			"X-Keygate-User":         acc,
			"X-Keygate-Account-Name": "deployer",
			"X-Keygate-Key":          keyID,
			"X-Keygate-Token":        tokenID,
			"X-Keygate-Team":         "platform",
			"X-Keygate-Scopes":       "apps:read,runs:read",
		} {
			if got := h.Get(name); got != want {
				t.Errorf("upstream %s = %q, want %q", name, got, want)
			}
		}
	}

	// Public routes strip the credential too.
	do(t, "GET", gw.URL+"/healthz", nil, "X-API-Key", secret)
	if h := env.up.lastHeader(); h.Get("X-Api-Key") != "" || h.Get("X-Keygate-Account") != "" {
		t.Errorf("public route passed credential or identity upstream: %v", h)
	}
}

func TestRequireUnderMatcher(t *testing.T) {
	env := startTower(t, pgtest.DSN(t))
	gw := env.gw
	acc := gw.createAccount("runner", "runs")
	_, both := gw.createKey(acc, []string{"runs:create", "runs:read"})
	_, one := gw.createKey(acc, []string{"runs:read"})
	base := fmt.Sprintf("http://127.0.0.1:%d", env.reqPort)
	for _, c := range []struct {
		path, key string
		want      int
	}{
		{"/runs/1", both, 200},
		{"/runs/1", one, 403},
		{"/runs/1", "", 401},
		{"/other", "", 200}, // outside the matcher
	} {
		var headers []string
		if c.key != "" {
			headers = []string{"X-API-Key", c.key}
		}
		r := do(t, "GET", base+c.path, nil, headers...)
		if r.Status != c.want {
			t.Errorf("GET %s: %d, want %d: %s", c.path, r.Status, c.want, r.Body)
		}
		if c.want == 200 && c.path == "/runs/1" && string(r.Body) != "ok "+acc {
			t.Errorf("GET %s: body %q, want the account id from {http.auth.user.id}", c.path, r.Body)
		}
	}
}

func TestDisabledAccountFailsAtOnce(t *testing.T) {
	env := startTower(t, pgtest.DSN(t))
	gw := env.gw
	acc := gw.createAccount("soon-disabled", "apps")
	_, secret := gw.createKey(acc, nil)
	if r := do(t, "GET", gw.URL+"/v1/apps", nil, "X-API-Key", secret); r.Status != 200 {
		t.Fatalf("before: %d", r.Status)
	}
	gw.mustAdmin("PATCH", "/accounts/"+acc, map[string]any{"disabled": true}, http.StatusOK)
	r := do(t, "GET", gw.URL+"/v1/apps", nil, "X-API-Key", secret)
	if r.Status != 401 || r.JSON(t)["error"] != "invalid_token" {
		t.Fatalf("after disabling: %d %s", r.Status, r.Body)
	}
	gw.mustAdmin("PATCH", "/accounts/"+acc, map[string]any{"disabled": false}, http.StatusOK)
	if r := do(t, "GET", gw.URL+"/v1/apps", nil, "X-API-Key", secret); r.Status != 200 {
		t.Fatalf("after enabling again: %d", r.Status)
	}
	// Reducing the account reduces its inheriting key at once.
	gw.mustAdmin("PATCH", "/accounts/"+acc, map[string]any{"scopes": []string{"runs"}}, http.StatusOK)
	if r := do(t, "GET", gw.URL+"/v1/apps", nil, "X-API-Key", secret); r.Status != 403 {
		t.Fatalf("after reducing the account: %d", r.Status)
	}
}

// TestAccessLogShowsAccountNeverToken sends tokens in every form and scans
// the access log and all of Caddy's output (debug level) for them.
func TestAccessLogShowsAccountNeverToken(t *testing.T) {
	env := startTower(t, pgtest.DSN(t))
	gw := env.gw
	acc := gw.createAccount("logged", "apps")
	keyID, secret := gw.createKey(acc, nil)
	unknown := withChecksum("sk-" + strings.Repeat("B", 43))
	for _, headers := range [][]string{
		{"X-API-Key", secret},
		{"Authorization", "Bearer " + secret},
		{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(secret+":"))},
		{"X-API-Key", unknown},
		{"X-API-Key", secret, "Authorization", "Bearer " + unknown},
	} {
		do(t, "GET", gw.URL+"/v1/apps", nil, headers...)
		do(t, "POST", gw.URL+"/v1/apps/x/runs", nil, headers...)
	}
	gw.mustAdmin("DELETE", "/keys/"+keyID, nil, http.StatusNoContent)
	do(t, "GET", gw.URL+"/v1/apps", nil, "X-API-Key", secret)

	var logText string
	deadline := time.Now().Add(10 * time.Second)
	for {
		raw, _ := os.ReadFile(gw.AccessLog)
		logText = string(raw)
		if strings.Count(logText, "\n") >= 11 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(logText, `"user_id":"`+acc+`"`) {
		t.Errorf("access log never names the account as user_id:\n%s", logText)
	}
	base64Secret := base64.StdEncoding.EncodeToString([]byte(secret + ":"))
	for _, text := range []string{logText, gw.Output()} {
		for _, s := range []string{secret, unknown, secret[6 : len(secret)-4], base64Secret} {
			if strings.Contains(text, s) {
				t.Fatalf("a token appears in the logs:\n%s", text)
			}
		}
	}
}

// TestStoreDown checks the 503 row: with PostgreSQL stopped, an uncached
// token gets 503 with Retry-After, a cached one keeps working, and service
// resumes by itself when the database is back.
func TestStoreDown(t *testing.T) {
	pg := pgtest.Dedicated(t)
	env := startTower(t, pg.DSN())
	gw := env.gw
	acc := gw.createAccount("outage", "apps")
	_, cached := gw.createKey(acc, nil)
	_, uncached := gw.createKey(acc, nil)
	if r := do(t, "GET", gw.URL+"/v1/apps", nil, "X-API-Key", cached); r.Status != 200 {
		t.Fatalf("before outage: %d", r.Status)
	}
	time.Sleep(100 * time.Millisecond) // let ristretto apply the cache write
	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	r := do(t, "GET", gw.URL+"/v1/apps", nil, "X-API-Key", uncached)
	if r.Status != 503 || r.JSON(t)["error"] != "unavailable" || r.Header.Get("Retry-After") != storage.UnavailableRetryAfter {
		t.Fatalf("uncached token with the store down: %d %v %s", r.Status, r.Header, r.Body)
	}
	if r := do(t, "GET", gw.URL+"/v1/apps", nil, "X-API-Key", cached); r.Status != 200 {
		t.Fatalf("cached token with the store down: %d %s", r.Status, r.Body)
	}
	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	if r := do(t, "GET", gw.URL+"/v1/apps", nil, "X-API-Key", uncached); r.Status != 200 {
		t.Fatalf("uncached token after the store came back: %d %s", r.Status, r.Body)
	}
}

// TestValidateWithoutDatabase checks that `caddy validate` provisions the
// config without connecting anywhere.
func TestValidateWithoutDatabase(t *testing.T) {
	out, err := runCaddy(t, []string{"KEYGATE_E2E_DSN=postgres://nobody@127.0.0.1:1/none"},
		"validate", "--config", "testdata/validate.Caddyfile", "--adapter", "caddyfile")
	if err != nil {
		t.Fatalf("caddy validate failed: %v\n%s", err, out)
	}
}

// TestPathTricksCannotBypassScopes sends dot segments, encoded dots and
// repeated slashes: the scope that decides is that of the path the
// upstream receives.
func TestPathTricksCannotBypassScopes(t *testing.T) {
	env := startTower(t, pgtest.DSN(t))
	gw := env.gw
	acc := gw.createAccount("tricks", "*")
	_, reader := gw.createKey(acc, []string{"apps:read"})
	_, keeper := gw.createKey(acc, []string{"secrets"})
	for _, path := range []string{
		"/v1/apps/../secrets/x",
		"/v1/apps/%2e%2e/secrets/x",
		"/v1/apps/%2E%2E/secrets/x",
		"/v1/apps/web/../../secrets/x",
		"//v1/secrets/x",
		"/v1//secrets/x",
		"/v1/./secrets/x",
		"/healthz/../v1/secrets/x",
	} {
		if r := do(t, "GET", gw.URL+path, nil); r.Status != 401 {
			t.Errorf("GET %s without a key: %d, want 401", path, r.Status)
		}
		if r := do(t, "GET", gw.URL+path, nil, "X-API-Key", reader); r.Status != 403 {
			t.Errorf("GET %s with apps:read: %d, want 403: %s", path, r.Status, r.Body)
		}
		r := do(t, "GET", gw.URL+path, nil, "X-API-Key", keeper)
		if r.Status != 200 || env.up.path() != "/v1/secrets/x" {
			t.Errorf("GET %s with secrets: %d, upstream path %q, want 200 and /v1/secrets/x", path, r.Status, env.up.path())
		}
	}
	// A public route stays public once cleaned, and the upstream gets the clean path.
	if r := do(t, "GET", gw.URL+"/v1/../healthz", nil); r.Status != 200 || env.up.path() != "/healthz" {
		t.Errorf("GET /v1/../healthz: %d, upstream path %q", r.Status, env.up.path())
	}
}

// TestErrorLogNeverShowsToken: a failing upstream makes Caddy log the
// request at ERROR level; with README's filters, no token shows.
func TestErrorLogNeverShowsToken(t *testing.T) {
	dsn := pgtest.DSN(t)
	gw := startGateway(t, gatewayConfig{
		DSN: dsn, Schema: pgtest.Schema(t, dsn),
		Site: fmt.Sprintf(`
	apikey_auth
	reverse_proxy 127.0.0.1:%d
`, pgtest.FreePort(t)), // nothing listens there: 502
	})
	acc := gw.createAccount("errors", "apps")
	_, secret := gw.createKey(acc, nil)
	for _, headers := range [][]string{{"X-API-Key", secret}, {"Authorization", "Bearer " + secret}} {
		if r := do(t, "GET", gw.URL+"/x", nil, headers...); r.Status != 502 {
			t.Fatalf("want 502 from the dead upstream, got %d", r.Status)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if !strings.Contains(gw.Output(), `"level":"error"`) {
		t.Fatalf("no error was logged:\n%s", gw.Output())
	}
	if strings.Contains(gw.Output(), secret) {
		t.Fatalf("the error log shows a token:\n%s", gw.Output())
	}
}
