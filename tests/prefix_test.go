package tests

import (
	"net/http"
	"os"
	"strings"
	"testing"
)

// TestKeyPrefixChange: a reload that changes key_prefix and names the
// previous one keeps the tokens issued before working while new ones get
// the new prefix; without the previous prefix they get 401, though the
// store keeps them (changing back brings them back).
func TestKeyPrefixChange(t *testing.T) {
	g, path := startExample(t)
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	withPrefix := func(line string) string {
		if !strings.Contains(string(src), "\tapikeys {\n") {
			t.Fatal("Caddyfile.example no longer has an apikeys block")
		}
		return strings.Replace(string(src), "\tapikeys {\n", "\tapikeys {\n\t\t"+line+"\n", 1)
	}
	load := func(caddyfile string) {
		t.Helper()
		if code, body, err := reloadLoad(http.DefaultClient, g.AdminURL, caddyfile); err != nil || code != http.StatusOK {
			t.Fatalf("/load: %d %s %v", code, body, err)
		}
	}
	status := func(key string) int {
		t.Helper()
		return do(t, "GET", g.URL+"/v1/apps", nil, "X-API-Key", key).Status
	}
	g.mustAdmin("POST", "/accounts", map[string]any{"name": "demo", "scopes": []string{"apps:read"}}, http.StatusCreated)
	old := g.mustAdmin("POST", "/keys", map[string]any{"account": "demo", "name": "old"}, http.StatusCreated)["secret"].(string)
	leaked := g.mustAdmin("POST", "/keys", map[string]any{"account": "demo", "name": "leaked"}, http.StatusCreated)["secret"].(string)

	load(withPrefix("key_prefix kg sk"))
	fresh := g.mustAdmin("POST", "/keys", map[string]any{"account": "demo", "name": "new"}, http.StatusCreated)["secret"].(string)
	if !strings.HasPrefix(fresh, "kg-") {
		t.Errorf("a key created after the change starts %q, want kg-", fresh[:3])
	}
	if s := status(old); s != http.StatusOK {
		t.Errorf("an sk- token under key_prefix kg sk: %d, want 200", s)
	}
	if s := status(fresh); s != http.StatusOK {
		t.Errorf("a kg- token under key_prefix kg sk: %d, want 200", s)
	}
	// Revoking by value takes a token of the previous prefix too.
	g.mustAdmin("POST", "/revoke", map[string]any{"token": leaked}, http.StatusNoContent)
	if s := status(leaked); s != http.StatusUnauthorized {
		t.Errorf("a revoked sk- token: %d, want 401", s)
	}

	load(withPrefix("key_prefix kg"))
	if s := status(old); s != http.StatusUnauthorized {
		t.Errorf("an sk- token under key_prefix kg alone: %d, want 401", s)
	}
	if s := status(fresh); s != http.StatusOK {
		t.Errorf("a kg- token under key_prefix kg: %d, want 200", s)
	}
	load(withPrefix("key_prefix sk"))
	if s := status(old); s != http.StatusOK {
		t.Errorf("an sk- token with key_prefix sk back: %d, want 200", s)
	}
}
