package tests

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFileStoreReloadSettings reloads a file-store gateway with, in turn,
// new cache settings, a new key_prefix and a new file. Each load succeeds
// (a second bbolt handle on the open file used to fail the first two after
// 2 s: "in use by another process") and the new settings are in force: the
// short ttl sends a known token back to the store, new tokens carry the new
// prefix, the new file is a new, empty store, and going back to the first
// file finds its keys.
func TestFileStoreReloadSettings(t *testing.T) {
	g, path := startExample(t)
	acc := g.createAccount("reloader", "apps")
	_, skKey := g.createKey(acc, []string{"apps:read"})
	queries := func() float64 { return reloadMetric(t, freshClient, g, "caddy_apikeys_store_queries_total") }

	// 1. Only the cache changes: the open file is kept, the new ttl rules.
	const cache = "cache {\n\t\t\tmax_entries 1000\n\t\t\tttl 200ms\n\t\t}"
	mustLoad(t, g, exampleWith(t, path, cache), http.StatusOK)
	if r := freshGet(t, g.URL+"/v1/apps", skKey); r.Status != 200 {
		t.Fatalf("after the cache reload, a key made before it: %d %s", r.Status, r.Body)
	}
	// Under the old ttl (5m) the token would now be served from the cache
	// for minutes; under 200ms it is read from the store again and again.
	start := queries()
	for deadline := time.Now().Add(60 * time.Second); queries()-start < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("repeated requests with one token made %v store queries in 60s: the new ttl (200ms) is not in force", queries()-start)
		}
		if r := freshGet(t, g.URL+"/v1/apps", skKey); r.Status != 200 {
			t.Fatalf("after the cache reload: %d %s", r.Status, r.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// 2. Only key_prefix changes: new tokens carry it.
	mustLoad(t, g, exampleWith(t, path, cache+"\n\t\tkey_prefix kg"), http.StatusOK)
	kgKey := jsonField(t, freshAdmin(t, g, "POST", "/keys", `{"account": "`+acc+`", "name": "kg"}`, http.StatusCreated), "secret")
	if !strings.HasPrefix(kgKey, "kg-") {
		t.Fatalf("after key_prefix kg, a new token is %.6s…", kgKey)
	}
	if r := freshGet(t, g.URL+"/v1/apps", kgKey); r.Status != 200 {
		t.Fatalf("a kg- token: %d %s", r.Status, r.Body)
	}
	// DESIGN: a token whose prefix is wrong is refused before any lookup,
	// so the sk- tokens issued before the change stop working.
	r := freshGet(t, g.URL+"/v1/apps", skKey)
	t.Logf("after key_prefix kg, an sk- token made before: %d %s", r.Status, r.Body)
	if r.Status != 401 || !strings.Contains(string(r.Body), "invalid_token") {
		t.Errorf("after key_prefix kg, an sk- token: %d %s, want 401 invalid_token", r.Status, r.Body)
	}

	// 3. The file changes: a new, empty store.
	other := filepath.Join(t.TempDir(), "other.db")
	mustLoad(t, g, exampleWith(t, path, "storage file "+other+"\n\t\t"+cache+"\n\t\tkey_prefix kg"), http.StatusOK)
	if list := freshAdmin(t, g, "GET", "/keys", "", http.StatusOK); strings.Contains(list, `"id"`) {
		t.Fatalf("the new file store lists keys of the old one: %s", list)
	}
	if r := freshGet(t, g.URL+"/v1/apps", kgKey); r.Status != 401 {
		t.Fatalf("on the new file, a token of the old one: %d %s", r.Status, r.Body)
	}
	freshAdmin(t, g, "POST", "/accounts", `{"name": "elsewhere", "scopes": ["apps"]}`, http.StatusCreated)
	newKey := jsonField(t, freshAdmin(t, g, "POST", "/keys", `{"account": "elsewhere", "name": "k"}`, http.StatusCreated), "secret")
	if r := freshGet(t, g.URL+"/v1/apps", newKey); r.Status != 200 {
		t.Fatalf("a token of the new file: %d %s", r.Status, r.Body)
	}

	// 4. Back to the first file: it was closed and opens again, with its keys.
	mustLoad(t, g, exampleWith(t, path, cache+"\n\t\tkey_prefix kg"), http.StatusOK)
	if r := freshGet(t, g.URL+"/v1/apps", kgKey); r.Status != 200 {
		t.Fatalf("back on the first file, its kg- token: %d %s", r.Status, r.Body)
	}
	if r := freshGet(t, g.URL+"/v1/apps", newKey); r.Status != 401 {
		t.Fatalf("back on the first file, a token of the other: %d %s", r.Status, r.Body)
	}
}
