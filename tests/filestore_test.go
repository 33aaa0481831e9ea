package tests

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/pgtest"
)

// startExample runs Caddyfile.example as the README's first command does,
// on free ports instead of 2019, 8080 and 9000, with Caddy's data directory
// (and so the default file store) in the gateway's dir.
func startExample(t *testing.T) (*gateway, string) {
	t.Helper()
	src, err := os.ReadFile("../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	g := &gateway{t: t, dir: dir, HTTPPort: pgtest.FreePort(t), output: new(lockedBuffer)}
	adminPort, upstreamPort := pgtest.FreePort(t), pgtest.FreePort(t)
	g.AdminURL = fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	g.URL = fmt.Sprintf("http://127.0.0.1:%d", g.HTTPPort)
	text := string(src)
	for old, repl := range map[string]string{
		"localhost:2019": fmt.Sprintf("127.0.0.1:%d", adminPort),
		":8080":          fmt.Sprintf(":%d", g.HTTPPort),
		"9000":           fmt.Sprint(upstreamPort),
	} {
		if !strings.Contains(text, old) {
			t.Fatalf("Caddyfile.example no longer holds %q", old)
		}
		text = strings.ReplaceAll(text, old, repl)
	}
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	g.launch(path)
	return g, path
}

// TestQuickstart follows the README on Caddyfile.example: no database, an
// account and a key, 200/401/403; after a restart the key still works.
func TestQuickstart(t *testing.T) {
	g, path := startExample(t)
	g.mustAdmin("POST", "/accounts", map[string]any{"name": "demo", "kind": "service", "scopes": []string{"apps:read"}}, http.StatusCreated)
	k := g.mustAdmin("POST", "/keys", map[string]any{"account": "demo", "name": "first"}, http.StatusCreated)
	key := k["secret"].(string)
	check := func(when string) {
		t.Helper()
		if r := do(t, "GET", g.URL+"/v1/apps", nil, "X-API-Key", key); r.Status != 200 || !strings.Contains(string(r.Body), `"upstream": "demo"`) {
			t.Fatalf("%s: GET /v1/apps with the key: %d %s", when, r.Status, r.Body)
		}
		if r := do(t, "GET", g.URL+"/v1/apps", nil); r.Status != 401 {
			t.Fatalf("%s: GET /v1/apps without a key: %d", when, r.Status)
		}
		if r := do(t, "POST", g.URL+"/v1/apps/web/runs", nil, "Authorization", "Bearer "+key); r.Status != 403 {
			t.Fatalf("%s: POST /v1/apps/web/runs: %d", when, r.Status)
		}
	}
	check("first start")
	if _, err := os.Stat(filepath.Join(g.dir, "data", "caddy", "keygate", "keys.db")); err != nil {
		t.Fatalf("the file store is not in Caddy's data directory: %v", err)
	}
	g.stop()
	g.launch(path)
	check("after a restart")
}

// TestFileStoreSurvivesKill kills Caddy with SIGKILL right after 2xx admin
// answers: what they acknowledged is there after a restart.
func TestFileStoreSurvivesKill(t *testing.T) {
	g, path := startExample(t)
	g.mustAdmin("POST", "/accounts", map[string]any{"name": "crash", "scopes": []string{"apps"}}, http.StatusCreated)
	k := g.mustAdmin("POST", "/keys", map[string]any{"account": "crash", "name": "k"}, http.StatusCreated)
	key := k["secret"].(string)
	g.kill()
	g.launch(path)
	if r := do(t, "GET", g.URL+"/v1/apps", nil, "X-API-Key", key); r.Status != 200 {
		t.Fatalf("a key created before SIGKILL: %d %s", r.Status, r.Body)
	}
	g.mustAdmin("POST", "/revoke", map[string]any{"token": key}, http.StatusNoContent)
	g.kill()
	g.launch(path)
	if r := do(t, "GET", g.URL+"/v1/apps", nil, "X-API-Key", key); r.Status != 401 {
		t.Fatalf("a key revoked before SIGKILL: %d", r.Status)
	}
}

// TestSecondProcessOnSameFile: a second Caddy on the same file store
// fails with an error naming the file instead of hanging.
func TestSecondProcessOnSameFile(t *testing.T) {
	first, path := startExample(t)
	_ = first
	store := filepath.Join(first.dir, "data", "caddy", "keygate", "keys.db")
	// Same config and data dir, other ports.
	cfg, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(cfg)
	for _, port := range []int{first.HTTPPort} {
		text = strings.ReplaceAll(text, fmt.Sprintf(":%d", port), fmt.Sprintf(":%d", pgtest.FreePort(t)))
	}
	text = strings.Replace(text, strings.TrimPrefix(first.AdminURL, "http://"), fmt.Sprintf("127.0.0.1:%d", pgtest.FreePort(t)), 1)
	second := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(second, []byte(strings.ReplaceAll(text, "bind 127.0.0.1", "bind 127.0.0.2")), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCaddy(t, []string{"XDG_DATA_HOME=" + filepath.Join(first.dir, "data")}, "run", "--config", second, "--adapter", "caddyfile")
	if err == nil || !strings.Contains(out, store) || !strings.Contains(out, "in use") {
		t.Fatalf("second process: %v\n%s", err, out)
	}
}

// TestMoveFileStoreToPostgres exports a file-store gateway's keys with the
// CLI and imports them into a PostgreSQL-backed gateway: the same tokens
// work there, and importing twice changes nothing.
func TestMoveFileStoreToPostgres(t *testing.T) {
	file, _ := startExample(t)
	acc := file.createAccount("movers", "apps")
	_, inherit := file.createKey(acc, nil)
	narrowID, narrow := file.createKey(acc, []string{"apps:read"})
	tokID := file.mustAdmin("GET", "/keys/"+narrowID, nil, http.StatusOK)["tokens"].([]any)[0].(map[string]any)["id"].(string)
	rotated := file.mustAdmin("POST", "/keys/"+narrowID+"/tokens/"+tokID+"/rotate", map[string]any{"grace": "1h"}, http.StatusCreated)["secret"].(string)

	export := filepath.Join(t.TempDir(), "keys.jsonl")
	if out, err := runCaddy(t, nil, "apikey", "export", "--address", strings.TrimPrefix(file.AdminURL, "http://"), "--output", export); err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(export)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{inherit, narrow, rotated} {
		if strings.Contains(string(raw), secret[3:20]) {
			t.Fatal("the export holds a token value")
		}
	}

	pg := startTower(t, pgtest.DSN(t))
	// The second time, every record is there as the file store had it
	// (nanosecond times, nil tags), though PostgreSQL keeps microseconds.
	for i, want := range []string{"6 created, 0 updated, 0 unchanged", "0 created, 0 updated, 6 unchanged"} {
		out, err := runCaddy(t, nil, "apikey", "import", export, "--address", strings.TrimPrefix(pg.gw.AdminURL, "http://"))
		if err != nil || !strings.Contains(out, "imported 6 records from "+export+": "+want) {
			t.Fatalf("import %d: %v\n%s", i+1, err, out)
		}
	}
	for _, secret := range []string{inherit, narrow, rotated} {
		if r := do(t, "GET", pg.gw.URL+"/v1/apps", nil, "X-API-Key", secret); r.Status != 200 {
			t.Fatalf("a moved token on the PostgreSQL gateway: %d %s", r.Status, r.Body)
		}
	}
	if r := do(t, "POST", pg.gw.URL+"/v1/apps/x/runs", nil, "X-API-Key", narrow); r.Status != 403 {
		t.Fatalf("a moved narrow key gained scopes: %d", r.Status)
	}
	keys := pg.gw.mustAdmin("GET", "/keys", nil, http.StatusOK)["items"].([]any)
	if len(keys) != 2 {
		t.Fatalf("after importing twice, %d keys", len(keys))
	}
	// Export and import are not on apikey_admin sites.
	if r := do(t, "GET", pg.adminURL+"/export", nil, "X-API-Key", inherit); r.Status != 404 && r.Status != 403 {
		t.Fatalf("export through apikey_admin: %d", r.Status)
	}
}
