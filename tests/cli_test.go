package tests

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/admin"
	apiclient "github.com/keygate/keygate/admin/client"
	"github.com/keygate/keygate/internal/pgtest"
)

// cliRun is one finished run of "caddy apikey …".
type cliRun struct {
	args           []string
	Stdout, Stderr string
	Code           int
}

func (r cliRun) String() string {
	return fmt.Sprintf("caddy apikey %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.Code, r.Stdout, r.Stderr)
}

// LastLine returns the last line of stdout.
func (r cliRun) LastLine() string {
	lines := strings.Split(strings.TrimRight(r.Stdout, "\n"), "\n")
	return lines[len(lines)-1]
}

// JSON decodes stdout into a map.
func (r cliRun) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.Stdout), &m); err != nil {
		t.Fatalf("stdout is not a JSON object: %v\n%s", err, r)
	}
	return m
}

// Row returns the fields of the first stdout line starting with prefix.
func (r cliRun) Row(t testing.TB, prefix string) []string {
	t.Helper()
	for line := range strings.SplitSeq(r.Stdout, "\n") {
		if strings.HasPrefix(line, prefix) {
			return strings.Fields(line)
		}
	}
	t.Fatalf("no line starting with %q in\n%s", prefix, r)
	return nil
}

// runAPIKeyCLI runs "caddy apikey args…" with stdin, without touching
// the real home directory.
func runAPIKeyCLI(t testing.TB, stdin string, args ...string) cliRun {
	t.Helper()
	cmd := exec.Command(caddyBin, append([]string{"apikey"}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := cliRun{args: args, Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running caddy apikey %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// cli runs "caddy apikey args… --address <the gateway's admin endpoint>".
func (g *gateway) cli(args ...string) cliRun {
	g.t.Helper()
	return runAPIKeyCLI(g.t, "", append(args, "--address", strings.TrimPrefix(g.AdminURL, "http://"))...)
}

// mustCLI is cli failing the test unless the command succeeds.
func (g *gateway) mustCLI(args ...string) cliRun {
	g.t.Helper()
	r := g.cli(args...)
	if r.Code != 0 {
		g.t.Fatalf("want success: %s", r)
	}
	return r
}

// failCLI is cli failing the test unless the command fails with a
// one-line message on stderr containing every want.
func (g *gateway) failCLI(want []string, args ...string) cliRun {
	g.t.Helper()
	r := g.cli(args...)
	if r.Code == 0 {
		g.t.Fatalf("want failure: %s", r)
	}
	if strings.Count(strings.TrimSuffix(r.Stderr, "\n"), "\n") != 0 {
		g.t.Errorf("the error is not one line: %s", r)
	}
	for _, w := range want {
		if !strings.Contains(r.Stderr, w) {
			g.t.Errorf("stderr lacks %q: %s", w, r)
		}
	}
	return r
}

var tokenPattern = regexp.MustCompile(`^sk-[0-9A-Za-z]{49}$`)

// newToken checks that r printed a token alone on its last line and
// returns it.
func newToken(t testing.TB, r cliRun) string {
	t.Helper()
	tok := r.LastLine()
	if !tokenPattern.MatchString(tok) {
		t.Fatalf("the last line is not a token: %s", r)
	}
	if strings.Count(r.Stdout, tok) != 1 {
		t.Errorf("the token is printed more than once: %s", r)
	}
	return tok
}

// status sends method path to the protected site with the token.
func (g *gateway) status(method, path, token string) int {
	g.t.Helper()
	return do(g.t, method, g.URL+path, nil, "X-API-Key", token).Status
}

func TestCLIAccountsAndKeys(t *testing.T) {
	gw := startTower(t, pgtest.DSN(t)).gw

	// account create, table.
	r := gw.mustCLI("account", "create", "--name", "ci-bot", "--kind", "service", "--scopes", "apps,runs:read", "--team", "infra")
	if got := r.Row(t, "ID"); !slices.Equal(got, []string{"ID", "NAME", "KIND", "TEAM", "SCOPES", "DISABLED"}) {
		t.Errorf("account header = %q", got)
	}
	row := r.Row(t, "acc_")
	if want := []string{"ci-bot", "service", "infra", "apps,runs:read", "no"}; !slices.Equal(row[1:], want) {
		t.Errorf("account row = %q, want %q after the id", row, want)
	}
	accID := row[0]

	// account create, JSON; no --kind: the API's default.
	a := gw.mustCLI("account", "create", "--name", "alice", "--json").JSON(t)
	if a["kind"] != "user" || a["name"] != "alice" || len(a["scopes"].([]any)) != 0 {
		t.Errorf("account --json = %v", a)
	}

	// account list.
	r = gw.mustCLI("account", "list")
	if row := r.Row(t, accID); row[1] != "ci-bot" {
		t.Errorf("account list row = %q", row)
	}
	r.Row(t, a["id"].(string))
	items := gw.mustCLI("account", "list", "--json").JSON(t)["items"].([]any)
	if len(items) != 2 {
		t.Errorf("account list --json has %d items, want 2", len(items))
	}

	// create: the last line is a working token with the key's scope only.
	before := time.Now()
	r = gw.mustCLI("create", "--account", "ci-bot", "--name", "deploy", "--scopes", "apps:run", "--expires", "720h",
		"--description", "deploys from CI", "--tag", "env=prod", "--tag", "owner=infra")
	deploy := newToken(t, r)
	keyRow := r.Row(t, "key_")
	// ACCOUNT shows the account's name.
	if want := []string{"ci-bot", "deploy", "apps:run", "1"}; !slices.Equal(keyRow[1:5], want) {
		t.Errorf("create key row = %q, want %q after the id", keyRow, want)
	}
	deployID := keyRow[0]
	if got := gw.status("POST", "/v1/apps/web/runs", deploy); got != http.StatusOK {
		t.Errorf("new token on apps:run route = %d, want 200", got)
	}
	if got := gw.status("GET", "/v1/apps", deploy); got != http.StatusForbidden {
		t.Errorf("new token on apps:read route = %d, want 403", got)
	}
	created, err := gw.api().GetKey(t.Context(), deployID)
	if err != nil {
		t.Fatal(err)
	}
	if created.Description != "deploys from CI" || fmt.Sprint(created.Tags) != "map[env:prod owner:infra]" || fmt.Sprint(created.Scopes) != "[apps:run]" {
		t.Errorf("created key = %+v", created)
	}
	if exp := created.Tokens[0].ExpiresAt; exp == nil || exp.Before(before.Add(720*time.Hour-time.Minute)) || exp.After(time.Now().Add(720*time.Hour+time.Minute)) {
		t.Errorf("token expires_at = %v, want about now+720h", exp)
	}

	// create --json: no --scopes, so the key inherits its account's.
	k := gw.mustCLI("create", "--account", accID, "--name", "reader", "--json").JSON(t)
	if k["scopes"] != nil || fmt.Sprint(k["effective_scopes"]) != "[apps runs:read]" {
		t.Errorf("create --json = %v", k)
	}
	reader, _ := k["secret"].(string)
	if !tokenPattern.MatchString(reader) {
		t.Fatalf("create --json: secret = %v", k["secret"])
	}
	if got := gw.status("GET", "/v1/apps", reader); got != http.StatusOK {
		t.Errorf("inheriting token on apps:read route = %d, want 200", got)
	}

	// list, table and JSON, with filters.
	r = gw.mustCLI("list")
	if got := r.Row(t, "ID"); !slices.Equal(got, []string{"ID", "ACCOUNT", "NAME", "SCOPES", "TOKENS", "CREATED"}) {
		t.Errorf("list header = %q", got)
	}
	if row := r.Row(t, deployID); !slices.Equal(row[1:5], []string{"ci-bot", "deploy", "apps:run", "1"}) {
		t.Errorf("list row = %q", row)
	}
	if row := r.Row(t, k["id"].(string)); !slices.Equal(row[1:5], []string{"ci-bot", "reader", "apps,runs:read", "1"}) {
		t.Errorf("list row = %q", row)
	}
	keyNames := func(r cliRun) []string {
		var names []string
		for _, it := range r.JSON(t)["items"].([]any) {
			names = append(names, it.(map[string]any)["name"].(string))
		}
		slices.Sort(names)
		return names
	}
	if got := keyNames(gw.mustCLI("list", "--json")); !slices.Equal(got, []string{"deploy", "reader"}) {
		t.Errorf("list --json names = %q", got)
	}
	if got := keyNames(gw.mustCLI("list", "--tag", "env=prod", "--json")); !slices.Equal(got, []string{"deploy"}) {
		t.Errorf("list --tag env=prod names = %q", got)
	}
	if got := keyNames(gw.mustCLI("list", "--account", "alice", "--json")); len(got) != 0 {
		t.Errorf("list --account alice names = %q", got)
	}
	if out := gw.mustCLI("list", "--account", "alice").Stdout; out != "no keys\n" {
		t.Errorf("empty list does not say so:\n%s", out)
	}
}

func TestCLIListAllPages(t *testing.T) {
	gw := startTower(t, pgtest.DSN(t)).gw
	api := gw.api()
	acc := gw.createAccount("many", "apps")
	const n = 120 // above one page of the API's default size
	for i := range n {
		if _, err := api.CreateKey(t.Context(), admin.CreateKeyRequest{Account: acc, Name: fmt.Sprintf("k%03d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if first, err := api.ListKeys(t.Context(), apiclient.KeyFilter{}, apiclient.ListOptions{}); err != nil || first.Next == "" {
		t.Fatalf("the API answered %d keys on one page: the test does not cover paging", n)
	}
	if items := gw.mustCLI("list", "--json").JSON(t)["items"].([]any); len(items) != n {
		t.Errorf("list --json has %d items, want %d", len(items), n)
	}
	if out := gw.mustCLI("list", "--account", "many").Stdout; strings.Count(out, "\nkey_") != n {
		t.Errorf("list table has %d key rows, want %d", strings.Count(out, "\nkey_"), n)
	}
}

func TestCLIRotateAndRevoke(t *testing.T) {
	gw := startTower(t, pgtest.DSN(t)).gw
	gw.mustCLI("account", "create", "--name", "ci-bot", "--kind", "service", "--scopes", "apps")
	r := gw.mustCLI("create", "--account", "ci-bot", "--name", "deploy")
	tok1 := newToken(t, r)
	keyID := r.Row(t, "key_")[0]
	works := func(name, tok string, want int) {
		t.Helper()
		if got := gw.status("GET", "/v1/apps", tok); got != want {
			t.Errorf("%s: GET /v1/apps = %d, want %d", name, got, want)
		}
	}
	works("tok1", tok1, 200)

	// Rotation with a grace: old and new both work.
	r = gw.mustCLI("rotate", keyID, "--grace", "1h")
	tok2 := newToken(t, r)
	if !strings.Contains(r.Stdout, "keeps working for 1h, until ") {
		t.Errorf("rotate --grace does not tell the grace: %s", r)
	}
	works("tok1 during the grace", tok1, 200)
	works("tok2", tok2, 200)

	// Without --token, the only active token (tok2, not tok1 which is
	// expiring) is rotated; without --grace, it stops at once.
	r = gw.mustCLI("rotate", keyID)
	tok3 := newToken(t, r)
	tok3ID := r.Row(t, "tok_")[0]
	works("tok2 rotated without grace", tok2, 401)
	works("tok3", tok3, 200)
	works("tok1 still in its grace", tok1, 200)

	// --json prints the API's answer with the secret. (--token: once tok2
	// is gone, the API shows tok1 as active again, though it still stops
	// at the end of its grace.)
	rot := gw.mustCLI("rotate", keyID, "--token", tok3ID, "--json").JSON(t)
	tok4, _ := rot["secret"].(string)
	if !tokenPattern.MatchString(tok4) || !strings.HasPrefix(fmt.Sprint(rot["id"]), "tok_") {
		t.Fatalf("rotate --json = %v", rot)
	}
	works("tok3 rotated", tok3, 401)
	works("tok4", tok4, 200)

	// Several active tokens: --token is needed.
	extra, err := gw.api().CreateToken(t.Context(), keyID, admin.CreateTokenRequest{Name: "second"})
	if err != nil {
		t.Fatal(err)
	}
	extraID, tok5 := extra.ID, extra.Secret
	gw.failCLI([]string{"caddy apikey rotate:", extraID, rot["id"].(string), "--token"}, "rotate", keyID)
	tok6 := newToken(t, gw.mustCLI("rotate", keyID, "--token", extraID))
	works("tok5 rotated", tok5, 401)
	works("tok6", tok6, 200)

	// Revoke by token value: it stops, and is never echoed.
	r = gw.mustCLI("revoke", tok4)
	if strings.Contains(r.Stdout+r.Stderr, tok4) {
		t.Errorf("revoke echoes the token: %s", r)
	}
	works("tok4 revoked", tok4, 401)
	works("tok6 after revoking tok4", tok6, 200)

	// Revoke by value from standard input.
	r = runAPIKeyCLI(t, tok6+"\n", "revoke", "-", "--address", strings.TrimPrefix(gw.AdminURL, "http://"))
	if r.Code != 0 || strings.Contains(r.Stdout+r.Stderr, tok6) {
		t.Errorf("revoke - : %s", r)
	}
	works("tok6 revoked", tok6, 401)

	// Revoke by key id: the key and all its tokens go.
	works("tok1 before deleting the key", tok1, 200)
	r = gw.mustCLI("revoke", keyID)
	if !strings.Contains(r.Stdout, keyID) {
		t.Errorf("revoke key: %s", r)
	}
	works("tok1 of the deleted key", tok1, 401)
	if _, err := gw.api().GetKey(t.Context(), keyID); !apiclient.IsNotFound(err) {
		t.Errorf("deleted key: %v, want 404", err)
	}
	gw.failCLI([]string{"caddy apikey rotate: 404 not_found"}, "rotate", keyID)
}

func TestCLIErrors(t *testing.T) {
	gw := startTower(t, pgtest.DSN(t)).gw
	gw.mustCLI("account", "create", "--name", "ci-bot", "--scopes", "apps")

	gw.failCLI([]string{"caddy apikey account create: 400 invalid_request (field scopes):", `"Apps"`},
		"account", "create", "--name", "x", "--scopes", "Apps")
	gw.failCLI([]string{"caddy apikey create: 400 invalid_request (field scopes):", `"Apps"`},
		"create", "--account", "ci-bot", "--name", "k", "--scopes", "Apps")
	gw.failCLI([]string{"caddy apikey create: 404 not_found (field account)"},
		"create", "--account", "nobody", "--name", "k")
	gw.failCLI([]string{"caddy apikey account create: 409 conflict"},
		"account", "create", "--name", "ci-bot")
	gw.failCLI([]string{"caddy apikey account create: 400 invalid_request (field kind)"},
		"account", "create", "--name", "y", "--kind", "robot")
	gw.failCLI([]string{"--expires"}, "create", "--account", "ci-bot", "--name", "k", "--expires", "soon")

	// A malformed token value is refused, and not echoed.
	const bad = "sk-notAValidTokenButSecretAnyway"
	r := gw.failCLI([]string{"caddy apikey revoke: 400 invalid_request (field token)"}, "revoke", bad)
	if strings.Contains(r.Stdout+r.Stderr, bad) {
		t.Errorf("revoke echoes the token: %s", r)
	}
	// rotate takes a key id, and does not echo what it got instead.
	r = gw.failCLI([]string{"key id"}, "rotate", bad)
	if strings.Contains(r.Stdout+r.Stderr, bad) {
		t.Errorf("rotate echoes its argument: %s", r)
	}
	if r := gw.mustCLI("list"); strings.Contains(r.Stdout, "\nkey_") {
		t.Errorf("failed creates left keys:\n%s", r.Stdout)
	}

	// An unreachable admin endpoint.
	dead := fmt.Sprintf("127.0.0.1:%d", pgtest.FreePort(t))
	r = runAPIKeyCLI(t, "", "account", "list", "--address", dead)
	if r.Code == 0 || !strings.Contains(r.Stderr, "cannot reach the admin endpoint at "+dead) ||
		strings.Count(strings.TrimSuffix(r.Stderr, "\n"), "\n") != 0 {
		t.Errorf("unreachable admin endpoint: %s", r)
	}
}

func TestCLIConfigFindsAdminAddress(t *testing.T) {
	gw := startTower(t, pgtest.DSN(t)).gw
	// The gateway's own Caddyfile names its admin address; no --address.
	r := runAPIKeyCLI(t, "", "account", "create", "--name", "from-config", "--json",
		"--config", filepath.Join(gw.dir, "Caddyfile"), "--adapter", "caddyfile")
	if r.Code != 0 || r.JSON(t)["name"] != "from-config" {
		t.Fatalf("--config: %s", r)
	}
}
