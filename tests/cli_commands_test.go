package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/internal/pgtest"
)

// decodeJSON decodes a --json stdout into v.
func decodeJSON(t testing.TB, r cliRun, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.Stdout), v); err != nil {
		t.Fatalf("stdout is not the JSON wanted: %v\n%s", err, r)
	}
}

// wantCode fails the test unless r exited with code and a one-line error
// holding every want.
func wantCode(t testing.TB, r cliRun, code int, want ...string) {
	t.Helper()
	if r.Code != code {
		t.Errorf("exit %d, want %d: %s", r.Code, code, r)
	}
	if strings.Count(strings.TrimSuffix(r.Stderr, "\n"), "\n") != 0 {
		t.Errorf("the error is not one line: %s", r)
	}
	for _, w := range want {
		if !strings.Contains(r.Stderr, w) {
			t.Errorf("stderr lacks %q: %s", w, r)
		}
	}
}

// TestCLIAccountCommands drives account list, get, update, disable,
// enable and delete against a live gateway.
func TestCLIAccountCommands(t *testing.T) {
	gw := startTower(t, pgtest.DSN(t)).gw

	if out := gw.mustCLI("account", "list").Stdout; out != "no accounts\n" {
		t.Errorf("empty account list: %q", out)
	}
	var empty admin.List[admin.Account]
	decodeJSON(t, gw.mustCLI("account", "list", "--json"), &empty)
	if empty.Items == nil || len(empty.Items) != 0 {
		t.Errorf("empty account list --json: %+v", empty)
	}

	gw.mustCLI("account", "create", "--name", "ci-bot", "--kind", "service", "--scopes", "apps,runs:read", "--team", "infra")
	r := gw.mustCLI("account", "get", "ci-bot")
	accID := r.Row(t, "acc_")[0]
	if !strings.HasSuffix(r.Stdout, "\nno keys\n") {
		t.Errorf("account get without keys: %s", r)
	}
	token := newToken(t, gw.mustCLI("create", "--account", "ci-bot", "--name", "deploy"))

	// get: the account and its keys, by name or id, ACCOUNT as a name.
	r = gw.mustCLI("account", "get", accID)
	if row := r.Row(t, "key_"); row[1] != "ci-bot" || row[2] != "deploy" {
		t.Errorf("account get key row = %q", row)
	}
	var got struct {
		admin.Account
		Keys []admin.Key `json:"keys"`
	}
	decodeJSON(t, gw.mustCLI("account", "get", "ci-bot", "--json"), &got)
	if got.ID != accID || len(got.Keys) != 1 || got.Keys[0].Name != "deploy" {
		t.Errorf("account get --json = %+v", got)
	}

	// update: only the fields given change.
	r = gw.mustCLI("account", "update", "ci-bot", "--team", "platform", "--scopes", "apps")
	if row := r.Row(t, accID); !slices.Equal(row[1:], []string{"ci-bot", "service", "platform", "apps", "no"}) {
		t.Errorf("account update row = %q", row)
	}
	var updated admin.Account
	decodeJSON(t, gw.mustCLI("account", "update", accID, "--name", "ci-robot", "--json"), &updated)
	if updated.Name != "ci-robot" || updated.Team != "platform" || !slices.Equal(updated.Scopes, []string{"apps"}) {
		t.Errorf("account update --json = %+v", updated)
	}

	// disable and enable: the account's keys stop and work again.
	if got := gw.status("GET", "/v1/apps", token); got != 200 {
		t.Fatalf("token before disable = %d", got)
	}
	if row := gw.mustCLI("account", "disable", "ci-robot").Row(t, accID); row[len(row)-1] != "yes" {
		t.Errorf("account disable row = %q", row)
	}
	if got := gw.status("GET", "/v1/apps", token); got != 401 {
		t.Errorf("token of a disabled account = %d, want 401", got)
	}
	var enabled admin.Account
	decodeJSON(t, gw.mustCLI("account", "enable", "ci-robot", "--json"), &enabled)
	if enabled.Disabled {
		t.Errorf("account enable --json = %+v", enabled)
	}
	if got := gw.status("GET", "/v1/apps", token); got != 200 {
		t.Errorf("token of a re-enabled account = %d, want 200", got)
	}

	// delete: the account and its keys go; it is then not found (3).
	r = gw.mustCLI("account", "delete", "ci-robot")
	if want := fmt.Sprintf("Deleted account ci-robot (%s) and its 1 key.\n", accID); r.Stdout != want {
		t.Errorf("account delete = %q, want %q", r.Stdout, want)
	}
	if got := gw.status("GET", "/v1/apps", token); got != 401 {
		t.Errorf("token of a deleted account = %d, want 401", got)
	}
	wantCode(t, gw.cli("account", "get", "ci-robot"), 3, "caddy apikey account get: 404 not_found")
	wantCode(t, gw.cli("account", "delete", "ci-robot"), 3, "404")
	wantCode(t, gw.cli("account", "disable", accID), 3, "404")
}

// TestCLIKeyAndTokenCommands drives get, update, token add, token update
// and token delete against a live gateway.
func TestCLIKeyAndTokenCommands(t *testing.T) {
	gw := startTower(t, pgtest.DSN(t)).gw
	gw.mustCLI("account", "create", "--name", "ci-bot", "--scopes", "apps")
	r := gw.mustCLI("create", "--account", "ci-bot", "--name", "deploy", "--description", "deploys", "--tag", "env=prod", "--scopes", "apps:read")
	first := newToken(t, r)
	keyID := r.Row(t, "key_")[0]
	firstID := r.Row(t, "tok_")[0]

	// get: the key with its account's name, fields and tokens.
	r = gw.mustCLI("get", keyID)
	if row := r.Row(t, keyID); !slices.Equal(row[1:5], []string{"ci-bot", "deploy", "apps:read", "1"}) {
		t.Errorf("get row = %q", row)
	}
	for _, want := range []string{"Description:  deploys\n", "Tags:         env=prod\n", "Scopes:       apps:read (its own)\n", "Created by:   admin\n"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("get lacks %q: %s", want, r)
		}
	}
	if row := r.Row(t, "tok_"); row[0] != firstID || row[len(row)-1] != "active" || row[len(row)-2] != "never" {
		t.Errorf("get token row = %q (never used yet)", row)
	}
	var k admin.Key
	decodeJSON(t, gw.mustCLI("get", keyID, "--json"), &k)
	if k.ID != keyID || len(k.Tokens) != 1 || k.Tokens[0].ID != firstID {
		t.Errorf("get --json = %+v", k)
	}

	// update: name, description, tags, scopes; then inherit, clear tags.
	r = gw.mustCLI("update", keyID, "--name", "deployer", "--description", "", "--tag", "env=stage", "--tag", "team=infra", "--scopes", "apps")
	if row := r.Row(t, keyID); !slices.Equal(row[1:4], []string{"ci-bot", "deployer", "apps"}) || !strings.Contains(r.Stdout, "Tags:         env=stage team=infra\n") {
		t.Errorf("update: %s", r)
	}
	k = admin.Key{}
	decodeJSON(t, gw.mustCLI("update", keyID, "--inherit-scopes", "--clear-tags", "--json"), &k)
	if k.Scopes != nil || !slices.Equal(k.EffectiveScopes, []string{"apps"}) || len(k.Tags) != 0 || k.Name != "deployer" || k.Description != "" {
		t.Errorf("update --inherit-scopes --clear-tags --json = %+v", k)
	}
	wantCode(t, gw.cli("update", keyID, "--scopes", "Apps"), 1, "400 invalid_request (field scopes)")

	// token add: a second working token, its value alone on the last line.
	r = gw.mustCLI("token", "add", keyID, "--name", "second", "--expires", "24h", "--tag", "ci=yes")
	second := newToken(t, r)
	secondID := r.Row(t, "tok_")[0]
	if row := r.Row(t, "tok_"); row[2] != "second" || row[len(row)-1] != "active" {
		t.Errorf("token add row = %q", row)
	}
	if got := gw.status("GET", "/v1/apps", second); got != 200 {
		t.Errorf("added token = %d, want 200", got)
	}
	var added admin.TokenWithSecret
	decodeJSON(t, gw.mustCLI("token", "add", keyID, "--json"), &added)
	if !tokenPattern.MatchString(added.Secret) || added.Key != keyID || added.ExpiresAt != nil {
		t.Errorf("token add --json = %+v", added)
	}

	// token update: rename, then drop the expiry.
	r = gw.mustCLI("token", "update", keyID, secondID, "--name", "renamed")
	if row := r.Row(t, secondID); row[2] != "renamed" || row[4] == "never" {
		t.Errorf("token update row = %q (still expiring in 24h)", row)
	}
	var tok admin.Token
	decodeJSON(t, gw.mustCLI("token", "update", keyID, secondID, "--no-expiry", "--json"), &tok)
	if tok.ExpiresAt != nil || tok.Name != "renamed" || tok.Tags["ci"] != "yes" {
		t.Errorf("token update --no-expiry --json = %+v", tok)
	}
	before := time.Now()
	tok = admin.Token{}
	decodeJSON(t, gw.mustCLI("token", "update", keyID, secondID, "--expires", "48h", "--json"), &tok)
	if tok.ExpiresAt == nil || tok.ExpiresAt.Before(before.Add(47*time.Hour)) {
		t.Errorf("token update --expires 48h --json = %+v", tok)
	}

	// token delete: it stops at once; the others keep working.
	r = gw.mustCLI("token", "delete", keyID, secondID)
	if r.Stdout != fmt.Sprintf("Deleted token %s of key %s.\n", secondID, keyID) {
		t.Errorf("token delete: %s", r)
	}
	if got := gw.status("GET", "/v1/apps", second); got != 401 {
		t.Errorf("deleted token = %d, want 401", got)
	}
	if got := gw.status("GET", "/v1/apps", first); got != 200 {
		t.Errorf("the other token after a delete = %d, want 200", got)
	}
	wantCode(t, gw.cli("token", "delete", keyID, secondID), 3, "404 not_found")
	wantCode(t, gw.cli("token", "add", "key_0000000000000000000000"), 3, "404 not_found")
	wantCode(t, gw.cli("get", "key_0000000000000000000000"), 3, "caddy apikey get: 404 not_found")
	wantCode(t, gw.cli("update", "key_0000000000000000000000", "--name", "x"), 3, "404 not_found")

	// rotate --expires sets the new token's expiry.
	added = admin.TokenWithSecret{}
	decodeJSON(t, gw.mustCLI("rotate", keyID, "--token", firstID, "--expires", "2h", "--json"), &added)
	if added.ExpiresAt == nil || added.ExpiresAt.After(time.Now().Add(2*time.Hour+time.Minute)) {
		t.Errorf("rotate --expires 2h --json = %+v", added)
	}
}

// TestCLIAuditAndWhoami drives audit (with each filter) and whoami.
func TestCLIAuditAndWhoami(t *testing.T) {
	gw := startTower(t, pgtest.DSN(t)).gw

	r := gw.mustCLI("whoami")
	if !strings.Contains(r.Stdout, "is trusted") || !strings.Contains(r.Stdout, "every scope (*)") || !strings.Contains(r.Stdout, `"admin"`) {
		t.Errorf("whoami: %s", r)
	}
	var w admin.Whoami
	decodeJSON(t, gw.mustCLI("whoami", "--json"), &w)
	if w.Key != nil || w.Account != nil || !slices.Equal(w.Scopes, []string{"*"}) {
		t.Errorf("whoami --json = %+v", w)
	}

	if out := gw.mustCLI("audit").Stdout; out != "no audit events\n" {
		t.Errorf("empty audit: %q", out)
	}
	gw.mustCLI("account", "create", "--name", "ci-bot", "--scopes", "apps")
	r = gw.mustCLI("create", "--account", "ci-bot", "--name", "deploy")
	keyID := r.Row(t, "key_")[0]
	gw.mustCLI("rotate", keyID, "--grace", "1h") // the old token stays, with its name

	r = gw.mustCLI("audit")
	if got := r.Row(t, "AT"); !slices.Equal(got, []string{"AT", "ACTION", "TARGET", "TARGET_NAME", "ACTOR", "ACTOR_NAME"}) {
		t.Errorf("audit header = %q", got)
	}
	var actions []string
	for line := range strings.SplitSeq(strings.TrimSpace(r.Stdout), "\n") {
		actions = append(actions, strings.Fields(line)[1])
	}
	if want := []string{"ACTION", "token.rotate", "key.create", "account.create"}; !slices.Equal(actions, want) {
		t.Errorf("audit actions = %q, want %q\n%s", actions, want, r)
	}
	// Names beside ids: the account's, the key's, the token's; the actor
	// is the admin endpoint.
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n")[1:] {
		f := strings.Fields(line)
		want := map[string]string{"account.create": "ci-bot", "key.create": "deploy", "token.rotate": "deploy/default"}[f[1]]
		if f[3] != want || f[4] != "admin" {
			t.Errorf("audit row %q: want target name %q, actor admin", f, want)
		}
	}

	// Filters.
	var page admin.List[admin.AuditEvent]
	decodeJSON(t, gw.mustCLI("audit", "--action", "key.create", "--json"), &page)
	if len(page.Items) != 1 || page.Items[0].Target != keyID {
		t.Errorf("audit --action key.create --json = %+v", page)
	}
	decodeJSON(t, gw.mustCLI("audit", "--actor", "admin", "--limit", "2", "--json"), &page)
	if len(page.Items) != 2 || page.Items[0].Action != "token.rotate" {
		t.Errorf("audit --limit 2 --json = %+v", page)
	}
	decodeJSON(t, gw.mustCLI("audit", "--target", keyID, "--json"), &page)
	if len(page.Items) != 1 {
		t.Errorf("audit --target key --json = %+v", page)
	}
	decodeJSON(t, gw.mustCLI("audit", "--since", "1h", "--json"), &page)
	if len(page.Items) != 3 {
		t.Errorf("audit --since 1h --json: %d events, want 3", len(page.Items))
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if out := gw.mustCLI("audit", "--since", future).Stdout; out != "no audit events\n" {
		t.Errorf("audit --since the future: %q", out)
	}
	if out := gw.mustCLI("audit", "--actor", "key_0000000000000000000000").Stdout; out != "no audit events\n" {
		t.Errorf("audit --actor unknown: %q", out)
	}
}

// TestCLIExportImportCounts: export says what it wrote, import what it
// created and what was already there.
func TestCLIExportImportCounts(t *testing.T) {
	gw := startTower(t, pgtest.DSN(t)).gw
	gw.mustCLI("account", "create", "--name", "ci-bot", "--scopes", "apps")
	gw.mustCLI("account", "create", "--name", "alice")
	keyID := gw.mustCLI("create", "--account", "ci-bot", "--name", "deploy").Row(t, "key_")[0]
	gw.mustCLI("token", "add", keyID)
	gw.mustCLI("create", "--account", "alice", "--name", "laptop")

	file := filepath.Join(t.TempDir(), "keys.jsonl")
	r := gw.mustCLI("export", "--output", file)
	if want := "exported 2 accounts, 2 keys, 3 tokens to " + file + "\n"; r.Stderr != want || r.Stdout != "" {
		t.Errorf("export: %s\nwant stderr %q", r, want)
	}
	raw, err := os.ReadFile(file)
	if err != nil || strings.Count(string(raw), "\n") != 7 {
		t.Fatalf("export file: %v\n%s", err, raw)
	}
	// To standard output, the count still goes to standard error.
	r = gw.mustCLI("export")
	if r.Stdout != string(raw) || r.Stderr != "exported 2 accounts, 2 keys, 3 tokens to standard output\n" {
		t.Errorf("export to stdout: %s", r)
	}

	r = gw.mustCLI("import", file)
	if want := "imported 7 records from " + file + ": 0 created, 0 updated, 7 unchanged\n"; r.Stdout != want {
		t.Errorf("import of what is there: %q, want %q", r.Stdout, want)
	}
	// A changed account and a new store: updated and created.
	gw.mustCLI("account", "update", "alice", "--team", "moved")
	other := startTower(t, pgtest.DSN(t)).gw
	r = runAPIKeyCLI(t, string(raw), "import", "-", "--json", "--address", strings.TrimPrefix(other.AdminURL, "http://"))
	var res admin.ImportResult
	decodeJSON(t, r, &res)
	if res != (admin.ImportResult{Imported: 7, Created: 7}) {
		t.Errorf("import into an empty store = %+v", res)
	}
	r = gw.mustCLI("import", file)
	if want := ": 0 created, 1 updated, 6 unchanged\n"; !strings.HasSuffix(r.Stdout, want) {
		t.Errorf("import over a changed account: %q, want …%q", r.Stdout, want)
	}

	wantCode(t, gw.cli("import", filepath.Join(t.TempDir(), "missing.jsonl")), 1, "opening the export")
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	if err := os.WriteFile(bad, []byte("{\"type\":\"account\"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantCode(t, gw.cli("import", bad), 1, "400 invalid_request")
}

// TestCLIExitCodes: usage errors exit 2, API errors 1, not found 3.
func TestCLIExitCodes(t *testing.T) {
	gw := startTower(t, pgtest.DSN(t)).gw
	gw.mustCLI("account", "create", "--name", "ci-bot")

	for _, args := range [][]string{
		{"bogus"}, {"list", "--bogus"}, {"list", "extra"}, {"create", "--name", "x"},
		{"get"}, {"get", "sk-notAKeyId"}, {"token"}, {"token", "delete", "key_x"},
		{"rotate", "key_x", "--grace", "soon"}, {"audit", "--since", "then"},
	} {
		if args[0] == "token" && len(args) == 1 {
			// A group alone prints its help and succeeds.
			if r := gw.cli(args...); r.Code != 0 || !strings.Contains(r.Stdout, "Usage:") {
				t.Errorf("token alone: %s", r)
			}
			continue
		}
		wantCode(t, gw.cli(args...), 2, "caddy apikey")
	}
	wantCode(t, gw.cli("account", "create", "--name", "ci-bot"), 1, `409 conflict (field name): account name "ci-bot" is taken`)
	wantCode(t, gw.cli("account", "create", "--name", "x", "--kind", "robot"), 1, "400 invalid_request (field kind)")
	wantCode(t, gw.cli("create", "--account", "nobody", "--name", "k"), 3, "404 not_found (field account)")
	wantCode(t, gw.cli("account", "get", "nobody"), 3, "404 not_found")
	dead := fmt.Sprintf("127.0.0.1:%d", pgtest.FreePort(t))
	wantCode(t, runAPIKeyCLI(t, "", "whoami", "--address", dead), 1, "cannot reach the admin endpoint at "+dead)
}
