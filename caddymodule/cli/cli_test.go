package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin"
)

// fakeAdmin is a stand-in for the admin endpoint: it serves canned
// answers and records the requests.
type fakeAdmin struct {
	mu       sync.Mutex
	requests []string
	bodies   []string
	handler  http.HandlerFunc
}

// reqs returns the requests so far, as "METHOD /uri".
func (f *fakeAdmin) reqs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.requests...)
}

// body returns the body of the i-th request.
func (f *fakeAdmin) body(i int) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bodies[i]
}

func newFakeAdmin(t *testing.T, h http.HandlerFunc) (*fakeAdmin, string) {
	f := &fakeAdmin{handler: h}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body bytes.Buffer
		_, _ = body.ReadFrom(r.Body)
		f.mu.Lock()
		f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
		f.bodies = append(f.bodies, body.String())
		f.mu.Unlock()
		r.Body = http.NoBody
		f.handler(w, r)
	}))
	t.Cleanup(srv.Close)
	return f, strings.TrimPrefix(srv.URL, "http://")
}

// runCommand runs "caddy apikey args…" in process and returns its stdout,
// stderr and error.
func runCommand(t *testing.T, addr string, args ...string) (string, string, error) {
	t.Helper()
	root := &cobra.Command{Use: "caddy", SilenceUsage: true}
	apikey := &cobra.Command{Use: "apikey"}
	Setup(apikey)
	root.AddCommand(apikey)
	var stdout, stderr bytes.Buffer
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	root.SetArgs(append(append([]string{"apikey"}, args...), "--address", addr))
	err := root.Execute()
	return stdout.String(), stderr.String(), err
}

func writeAnswer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func TestListFollowsNext(t *testing.T) {
	f, addr := newFakeAdmin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/apikeys/accounts/acc_1" {
			writeAnswer(w, http.StatusOK, admin.Account{ID: "acc_1", Name: "ci-bot"})
			return
		}
		var page admin.List[admin.Key]
		switch r.URL.Query().Get("after") {
		case "":
			page.Items = []admin.Key{{ID: "key_1", Account: "acc_1", Name: "one"}}
			page.Next = "c1"
		case "c1":
			page.Items = []admin.Key{{ID: "key_2", Account: "acc_1", Name: "two"}}
		}
		writeAnswer(w, http.StatusOK, page)
	})
	out, errOut, err := runCommand(t, addr, "list", "--account", "ci-bot", "--tag", "env=prod", "--json")
	if err != nil {
		t.Fatalf("list: %v\n%s", err, errOut)
	}
	want := []string{"GET /apikeys/keys?account=ci-bot&tag=env%3Aprod", "GET /apikeys/keys?account=ci-bot&after=c1&tag=env%3Aprod"}
	if !reflect.DeepEqual(f.reqs(), want) {
		t.Errorf("requests = %q, want %q", f.reqs(), want)
	}
	var got admin.List[admin.Key]
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, out)
	}
	if len(got.Items) != 2 || got.Items[1].ID != "key_2" || got.Next != "" {
		t.Errorf("--json output = %+v", got)
	}

	out, _, err = runCommand(t, addr, "list")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "key_1") || !strings.Contains(out, "key_2") || !strings.HasPrefix(out, "ID ") ||
		strings.Count(out, "ci-bot") != 2 || strings.Contains(out, "acc_1") {
		t.Errorf("table:\n%s", out)
	}
	// Both keys are of one account: one request for its name.
	if reqs := f.reqs()[2:]; len(reqs) != 3 || reqs[2] != "GET /apikeys/accounts/acc_1" {
		t.Errorf("requests for the table = %q", reqs)
	}
}

func TestCreateCommand(t *testing.T) {
	const secret = "sk-0123456789012345678901234567890123456789012abcdef"
	f, addr := newFakeAdmin(t, func(w http.ResponseWriter, r *http.Request) {
		writeAnswer(w, http.StatusCreated, admin.KeyWithSecret{
			Key: admin.Key{ID: "key_1", Account: "acc_1", Name: "deploy", EffectiveScopes: []string{"apps:run"},
				Tokens: []admin.Token{{ID: "tok_1", Key: "key_1", Name: "default", Hint: "sk-012…cdef", Status: "active"}}},
			Secret: secret,
		})
	})
	out, errOut, err := runCommand(t, addr, "create", "--account", "ci-bot", "--name", "deploy", "--scopes", "apps:run",
		"--expires", "2031-01-01T00:00:00Z", "--tag", "env=prod", "--description", "CI")
	if err != nil {
		t.Fatalf("create: %v\n%s", err, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if lines[len(lines)-1] != secret {
		t.Errorf("last line is not the token:\n%s", out)
	}
	if strings.Count(out, secret) != 1 {
		t.Errorf("the token is printed more than once:\n%s", out)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(f.body(0)), &body); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"account": "ci-bot", "name": "deploy", "description": "CI", "scopes": []any{"apps:run"},
		"tags": map[string]any{"env": "prod"}, "expires_at": "2031-01-01T00:00:00Z"}
	if !reflect.DeepEqual(body, want) {
		t.Errorf("request body = %v, want %v", body, want)
	}

	// Without --scopes, scopes null: the key inherits. --scopes "" is [].
	if _, errOut, err := runCommand(t, addr, "create", "--account", "ci-bot", "--name", "deploy"); err != nil {
		t.Fatalf("create: %v\n%s", err, errOut)
	}
	if got := f.body(len(f.reqs()) - 2); got != `{"account":"ci-bot","name":"deploy","scopes":null}` {
		t.Errorf("request body = %s", got)
	}
	if _, errOut, err := runCommand(t, addr, "create", "--account", "ci-bot", "--name", "deploy", "--scopes", ""); err != nil {
		t.Fatalf("create: %v\n%s", err, errOut)
	}
	if got := f.body(len(f.reqs()) - 2); got != `{"account":"ci-bot","name":"deploy","scopes":[]}` {
		t.Errorf("request body = %s", got)
	}
}

func TestRotateCommand(t *testing.T) {
	tokens := []admin.Token{{ID: "tok_1", Status: "active"}, {ID: "tok_0", Status: "expiring"}}
	f, addr := newFakeAdmin(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet:
			writeAnswer(w, http.StatusOK, admin.Key{ID: "key_1", Tokens: tokens})
		case strings.HasSuffix(r.URL.Path, "/rotate"):
			writeAnswer(w, http.StatusCreated, admin.TokenWithSecret{Token: admin.Token{ID: "tok_2", Status: "active"}, Secret: "sk-new"})
		}
	})
	out, errOut, err := runCommand(t, addr, "rotate", "key_1", "--grace", "1d")
	if err != nil {
		t.Fatalf("rotate: %v\n%s", err, errOut)
	}
	if want := []string{"GET /apikeys/keys/key_1", "POST /apikeys/keys/key_1/tokens/tok_1/rotate"}; !reflect.DeepEqual(f.reqs(), want) {
		t.Errorf("requests = %q, want %q", f.reqs(), want)
	}
	if f.body(1) != `{"grace":"24h0m0s"}` {
		t.Errorf("rotate body = %s", f.body(1))
	}
	if !strings.HasSuffix(out, "\nsk-new\n") {
		t.Errorf("last line is not the token:\n%s", out)
	}

	tokens = append(tokens, admin.Token{ID: "tok_3", Status: "active"})
	_, errOut, err = runCommand(t, addr, "rotate", "key_1")
	if err == nil || !strings.Contains(errOut, "tok_1, tok_3") || !strings.Contains(errOut, "--token") {
		t.Errorf("two active tokens: err %v, stderr %q", err, errOut)
	}

	n := len(f.reqs())
	_, errOut, err = runCommand(t, addr, "rotate", "sk-leaked-value")
	if err == nil || strings.Contains(errOut, "sk-leaked-value") || len(f.reqs()) != n {
		t.Errorf("rotate with a non-key argument: err %v, stderr %q", err, errOut)
	}
}

func TestRevokeCommand(t *testing.T) {
	const token = "sk-notwellformed"
	f, addr := newFakeAdmin(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/apikeys/revoke" {
			// An API echoing the value must not make the CLI print it.
			writeAnswer(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "field": "token", "message": "bad token " + token})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	out, errOut, err := runCommand(t, addr, "revoke", "key_1")
	if err != nil || !strings.Contains(out, "key_1") {
		t.Fatalf("revoke key: %v\n%s%s", err, out, errOut)
	}
	_, errOut, err = runCommand(t, addr, "revoke", token)
	if err == nil || strings.Contains(errOut, token) || !strings.Contains(errOut, "400 invalid_request (field token)") {
		t.Errorf("revoke token: err %v, stderr %q", err, errOut)
	}
	if want := []string{"DELETE /apikeys/keys/key_1", "POST /apikeys/revoke"}; !reflect.DeepEqual(f.reqs(), want) {
		t.Errorf("requests = %q, want %q", f.reqs(), want)
	}
	if f.body(1) != `{"token":"`+token+`"}` {
		t.Errorf("revoke body = %s", f.body(1))
	}
}

func TestErrorAnswerIsOneLine(t *testing.T) {
	_, addr := newFakeAdmin(t, func(w http.ResponseWriter, r *http.Request) {
		writeAnswer(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "field": "scopes", "message": `scope "Apps": invalid character 'A'`})
	})
	out, errOut, err := runCommand(t, addr, "account", "create", "--name", "x", "--scopes", "Apps")
	if err == nil {
		t.Fatal("no error")
	}
	if want := "caddy apikey account create: 400 invalid_request (field scopes): scope \"Apps\": invalid character 'A'\n"; errOut != want {
		t.Errorf("stderr = %q, want %q", errOut, want)
	}
	if out != "" {
		t.Errorf("stdout = %q", out)
	}
}

func TestUsageErrorsAreOneLine(t *testing.T) {
	_, addr := newFakeAdmin(t, func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("unexpected request %s %s", r.Method, r.URL)
	})
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"rotate"}, "caddy apikey rotate: want one key id, not 0 argument(s)"},
		{[]string{"list", "sk-secretvalue"}, "caddy apikey list: unexpected argument(s)"},
		{[]string{"list", "--bogus"}, "caddy apikey list: unknown flag: --bogus"},
		{[]string{"nope"}, `caddy apikey: unknown command "nope"`},
		{[]string{"account", "nope"}, `caddy apikey account: unknown command "nope"`},
		{[]string{"token", "nope"}, `caddy apikey token: unknown command "nope"`},
		{[]string{"create", "--name", "x"}, "caddy apikey create: --account is required"},
		{[]string{"create", "--account", "a", "--name", "x", "--tag", "env"}, `caddy apikey create: --tag "env": want key=value`},
		{[]string{"create", "--account", "a", "--name", "x", "--expires", "soon"}, `caddy apikey create: --expires "soon"`},
		{[]string{"rotate", "key_1", "--grace", "-1h"}, `caddy apikey rotate: --grace "-1h"`},
		{[]string{"rotate", "key_1", "--token", "sk-secretvalue"}, "caddy apikey rotate: --token must be a token id"},
		{[]string{"rotate", "sk-secretvalue"}, "caddy apikey rotate: the argument must be a key id"},
		{[]string{"get", "sk-secretvalue"}, "caddy apikey get: the argument must be a key id"},
		{[]string{"update", "key_1"}, "caddy apikey update: nothing to change"},
		{[]string{"update", "key_1", "--scopes", "a", "--inherit-scopes"}, "caddy apikey update: --scopes and --inherit-scopes exclude each other"},
		{[]string{"update", "key_1", "--tag", "a=b", "--clear-tags"}, "caddy apikey update: --tag and --clear-tags exclude each other"},
		{[]string{"account", "update", "ci-bot"}, "caddy apikey account update: nothing to change"},
		{[]string{"account", "get"}, "caddy apikey account get: want one account, by id or name, not 0"},
		{[]string{"token", "add"}, "caddy apikey token add: want one key id, not 0"},
		{[]string{"token", "update", "key_1", "tok_1"}, "caddy apikey token update: nothing to change"},
		{[]string{"token", "update", "key_1", "tok_1", "--expires", "1h", "--no-expiry"}, "caddy apikey token update: --expires and --no-expiry exclude each other"},
		{[]string{"token", "delete", "key_1"}, "caddy apikey token delete: want a key id and a token id, not 1"},
		{[]string{"token", "delete", "key_1", "sk-secretvalue"}, "caddy apikey token delete: the second argument must be a token id"},
		{[]string{"audit", "--since", "last week"}, `caddy apikey audit: --since "last week"`},
		{[]string{"audit", "--limit", "-1"}, "caddy apikey audit: --limit -1"},
		{[]string{"import"}, "caddy apikey import: want one file (or - for standard input), not 0"},
	} {
		_, errOut, err := runCommand(t, addr, c.args...)
		if !strings.HasPrefix(errOut, c.want) || strings.Count(errOut, "\n") != 1 || strings.Contains(errOut, "sk-secretvalue") {
			t.Errorf("%q: stderr %q; want it to start with %q", c.args, errOut, c.want)
		}
		var ee *ExitError
		if !errors.As(err, &ee) || ee.Code != exitUsage {
			t.Errorf("%q: error %v, want exit status %d", c.args, err, exitUsage)
		}
	}
}

func TestAdminClientAddresses(t *testing.T) {
	for _, addr := range []string{"host:1-9", "fd/3"} {
		if _, err := adminClient(addr); exitCode(err) != exitUsage {
			t.Errorf("adminClient(%q) = %v, want a usage error", addr, err)
		}
	}
	for addr, want := range map[string]string{
		"localhost:2019":        "http://localhost:2019/apikeys",
		"unix//run/caddy.sock":  "http://127.0.0.1/apikeys",
		"unix//run/c.sock|0220": "http://127.0.0.1/apikeys",
	} {
		c, err := adminClient(addr)
		if err != nil || c.BaseURL() != want {
			t.Errorf("adminClient(%q) = %v, %v; want base %s", addr, c, err, want)
		}
	}
}

// TestExitCodes: an error answer exits 1, a 404 exits 3.
func TestExitCodes(t *testing.T) {
	_, addr := newFakeAdmin(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/key_gone") {
			writeAnswer(w, http.StatusNotFound, map[string]string{"error": "not_found", "message": `no key "key_gone"`})
			return
		}
		writeAnswer(w, http.StatusConflict, map[string]string{"error": "conflict", "message": "taken", "field": "name"})
	})
	for args, want := range map[string]int{"get key_gone": exitNotFound, "account create --name x": exitError} {
		_, errOut, err := runCommand(t, addr, strings.Fields(args)...)
		var ee *ExitError
		if !errors.As(err, &ee) || ee.Code != want || strings.Count(errOut, "\n") != 1 {
			t.Errorf("%s: error %v, stderr %q; want exit status %d", args, err, errOut, want)
		}
	}
}

// TestExportCutShort: an export the server cut short fails (exit 1) and
// leaves no file that could pass for a whole export.
func TestExportCutShort(t *testing.T) {
	_, addr := newFakeAdmin(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("{\"type\":\"account\"}\n{\"type\":\"ke"))
	})
	path := filepath.Join(t.TempDir(), "keys.jsonl")
	_, errOut, err := runCommand(t, addr, "export", "--output", path)
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != exitError || !strings.Contains(errOut, "incomplete") {
		t.Errorf("cut export: %v, stderr %q", err, errOut)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the incomplete export file is left: %v", err)
	}
}
