package tests

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// freshClient opens a connection per request: Caddy replaces its admin
// server on every load (also a failed one) and closes the old one's
// connections, and a POST on a kept-alive connection to it may get EOF.
var freshClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// exampleStorageLine is the commented storage line of Caddyfile.example's
// apikeys block, which the reload tests replace with settings.
const exampleStorageLine = "# storage file /var/lib/keygate/keys.db   # default: in Caddy's data directory"

// exampleWith returns the Caddyfile at path with the apikeys block's
// storage line replaced by settings.
func exampleWith(t *testing.T, path, settings string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(raw), exampleStorageLine) != 1 {
		t.Fatalf("Caddyfile.example no longer holds %q", exampleStorageLine)
	}
	return strings.Replace(string(raw), exampleStorageLine, settings, 1)
}

// mustLoad loads a Caddyfile through the admin endpoint and fails unless
// Caddy answers want.
func mustLoad(t *testing.T, g *gateway, caddyfile string, want int) string {
	t.Helper()
	status, body, err := reloadLoad(freshClient, g.AdminURL, caddyfile)
	if err != nil || status != want {
		t.Fatalf("POST /load: %d %s %v, want %d\n%s", status, body, err, want, g.Output())
	}
	return body
}

// freshAdmin calls the key-management API on the admin endpoint on a new
// connection and fails unless it answers want.
func freshAdmin(t *testing.T, g *gateway, method, path, body string, want int) string {
	t.Helper()
	req, err := http.NewRequest(method, g.AdminURL+"/apikeys"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	status, answer, err := reloadSend(freshClient, req)
	if err != nil || status != want {
		t.Fatalf("%s /apikeys%s: %d %s %v, want %d", method, path, status, answer, err, want)
	}
	return answer
}

// freshGet sends a GET to the gateway with the key, on a new connection.
func freshGet(t *testing.T, url, key string) response {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := freshClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

// TestFailedReloadKeepsAdminAPI loads a config whose store cannot open
// (Caddy answers 400 and keeps the running config): the admin endpoint's
// key API keeps serving the running config's store (it used to answer 503
// "the key store is not open yet" until the next successful load), keys
// created then authenticate, and a good reload afterwards works.
func TestFailedReloadKeepsAdminAPI(t *testing.T) {
	g, path := startExample(t)
	acc := g.createAccount("steady", "apps")
	_, before := g.createKey(acc, []string{"apps:read"})

	body := mustLoad(t, g, exampleWith(t, path, "storage file /proc/nope/keys.db"), http.StatusBadRequest)
	if !strings.Contains(body, "/proc/nope/keys.db") {
		t.Errorf("the failed load's answer does not name the file: %s", body)
	}

	// The running config is untouched: the gateway and the key API.
	if r := freshGet(t, g.URL+"/v1/apps", before); r.Status != 200 {
		t.Fatalf("after the failed load, a key made before it: %d %s", r.Status, r.Body)
	}
	created := freshAdmin(t, g, "POST", "/keys", `{"account": "`+acc+`", "name": "after-failure", "scopes": ["apps:read"]}`, http.StatusCreated)
	secret := jsonField(t, created, "secret")
	if list := freshAdmin(t, g, "GET", "/keys", "", http.StatusOK); !strings.Contains(list, "after-failure") {
		t.Fatalf("GET /apikeys/keys after the failed load does not list the new key: %s", list)
	}
	if r := freshGet(t, g.URL+"/v1/apps", secret); r.Status != 200 {
		t.Fatalf("a key created after the failed load: %d %s", r.Status, r.Body)
	}

	// A good reload still works, and so does everything after it.
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	good := strings.Replace(string(raw), `realm "Demo API"`, `realm "Reloaded API"`, 1)
	mustLoad(t, g, good, http.StatusOK)
	if r := freshGet(t, g.URL+"/v1/apps", ""); r.Status != 401 || !strings.Contains(r.Header.Get("WWW-Authenticate"), "Reloaded API") {
		t.Fatalf("after the good reload, no key: %d %q, want 401 with the new realm", r.Status, r.Header.Get("WWW-Authenticate"))
	}
	for _, key := range []string{before, secret} {
		if r := freshGet(t, g.URL+"/v1/apps", key); r.Status != 200 {
			t.Fatalf("after the good reload, a key: %d %s", r.Status, r.Body)
		}
	}
	freshAdmin(t, g, "POST", "/keys", `{"account": "`+acc+`", "name": "after-reload"}`, http.StatusCreated)
}

// jsonField returns a string field of a JSON object.
func jsonField(t *testing.T, body, name string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, body)
	}
	v, _ := m[name].(string)
	if v == "" {
		t.Fatalf("no %q in %s", name, body)
	}
	return v
}
