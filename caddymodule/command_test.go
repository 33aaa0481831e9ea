package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/keygate/keygate/admin"
)

func TestSplitScopes(t *testing.T) {
	for in, want := range map[string][]string{
		"":                    {},
		"apps":                {"apps"},
		"apps,runs:read":      {"apps", "runs:read"},
		" apps , ,runs:read,": {"apps", "runs:read"},
	} {
		if got := splitScopes(in); !reflect.DeepEqual(got, want) {
			t.Errorf("splitScopes(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseTags(t *testing.T) {
	got, err := parseTags([]string{"env=prod", "team=infra", "expr=a=b", "empty="})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"env": "prod", "team": "infra", "expr": "a=b", "empty": ""}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseTags = %v, want %v", got, want)
	}
	if got, err := parseTags(nil); got != nil || err != nil {
		t.Errorf("parseTags(nil) = %v, %v; want nil, nil", got, err)
	}
	for _, bad := range [][]string{{"env"}, {"=prod"}, {"env=a", "env=b"}} {
		if _, err := parseTags(bad); err == nil {
			t.Errorf("parseTags(%q): no error", bad)
		}
	}
}

func TestTagFilters(t *testing.T) {
	got, err := tagFilters([]string{"env=prod", "x=a:b"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"env:prod", "x:a:b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("tagFilters = %q, want %q", got, want)
	}
	if _, err := tagFilters([]string{"env:prod"}); err == nil {
		t.Error("tagFilters(env:prod): no error")
	}
}

func TestParseExpires(t *testing.T) {
	now := time.Date(2030, 1, 2, 15, 4, 5, 123, time.FixedZone("X", 3600))
	for in, want := range map[string]string{
		"720h":                      "2030-02-01T14:04:05Z",
		"30d":                       "2030-02-01T14:04:05Z",
		"90s":                       "2030-01-02T14:05:35Z",
		"2031-05-06T07:08:09Z":      "2031-05-06T07:08:09Z",
		"2031-05-06T09:08:09+02:00": "2031-05-06T07:08:09Z",
		"2031-05-06T07:08:09.5Z":    "2031-05-06T07:08:09.5Z",
	} {
		got, err := parseExpires(in, now)
		if err != nil || got != want {
			t.Errorf("parseExpires(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "soon", "-1h", "0s", "2031-05-06"} {
		if got, err := parseExpires(bad, now); err == nil {
			t.Errorf("parseExpires(%q) = %q, want an error", bad, got)
		}
	}
}

func TestParseGrace(t *testing.T) {
	for in, want := range map[string]time.Duration{"24h": 24 * time.Hour, "1d": 24 * time.Hour, "90s": 90 * time.Second, "0s": 0} {
		if got, err := parseGrace(in); err != nil || got != want {
			t.Errorf("parseGrace(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"-1h", "tomorrow"} {
		if _, err := parseGrace(bad); err == nil {
			t.Errorf("parseGrace(%q): no error", bad)
		}
	}
}

func TestOnlyActiveToken(t *testing.T) {
	key := func(statuses ...string) admin.Key {
		k := admin.Key{ID: "key_1"}
		for i, s := range statuses {
			k.Tokens = append(k.Tokens, admin.Token{ID: fmt.Sprintf("tok_%d", i), Status: s})
		}
		return k
	}
	if id, err := onlyActiveToken(key("expiring", "active", "expired")); err != nil || id != "tok_1" {
		t.Errorf("one active: %q, %v", id, err)
	}
	if _, err := onlyActiveToken(key("expired")); err == nil || !strings.Contains(err.Error(), "no active token") {
		t.Errorf("none active: %v", err)
	}
	_, err := onlyActiveToken(key("active", "expiring", "active"))
	if err == nil {
		t.Fatal("two active: no error")
	}
	for _, want := range []string{"tok_0", "tok_2", "--token"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("two active: %q does not name %s", err, want)
		}
	}
}

func TestParseErrorAnswer(t *testing.T) {
	for _, c := range []struct {
		status int
		body   string
		want   string
	}{
		{400, `{"error":"invalid_request","message":"scope \"Apps\": invalid character 'A'","field":"scopes"}` + "\n",
			`400 invalid_request (field scopes): scope "Apps": invalid character 'A'`},
		{404, `{"error":"not_found","message":"no key \"key_x\""}`, `404 not_found: no key "key_x"`},
		{503, `{"error":"keygate is not configured: add the apikeys global option"}`,
			`503 Service Unavailable: keygate is not configured: add the apikeys global option`},
		{502, "bad\ngateway\n", "502 Bad Gateway: bad gateway"},
		{500, "", "500 Internal Server Error"},
	} {
		if got := parseErrorAnswer(c.status, []byte(c.body)).Error(); got != c.want {
			t.Errorf("parseErrorAnswer(%d, %q) = %q, want %q", c.status, c.body, got, c.want)
		}
	}
}

func TestAdminRequestError(t *testing.T) {
	err := adminRequestError("localhost:2019", errors.New(`caddy responded with error: HTTP 409: {"error":"conflict","message":"conflicts with an existing record"}`+"\n"))
	var ae *apiAnswerError
	if !errors.As(err, &ae) || ae.Status != 409 || ae.Code != "conflict" {
		t.Fatalf("answer error = %#v", err)
	}
	err = adminRequestError("localhost:2019", errors.New(`performing request: Get "http://localhost:2019/apikeys/keys": dial tcp [::1]:2019: connect: connection refused`))
	if errors.As(err, &ae) || !strings.HasPrefix(err.Error(), "cannot reach the admin endpoint at localhost:2019") ||
		strings.Contains(err.Error(), "performing request") {
		t.Errorf("unreachable = %q", err)
	}
}

func TestRedactError(t *testing.T) {
	const secret = "sk-abcdefghijklmnop"
	err := redactError(errors.New("bad "+secret+"!"), secret)
	if strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "[REDACTED]") {
		t.Errorf("redactError = %q", err)
	}
	orig := &apiAnswerError{Status: 400, Code: "invalid_request"}
	if got := redactError(orig, secret); got != orig {
		t.Errorf("redactError changed an error without the secret: %v", got)
	}
}

// columnStarts returns the offsets where each header word starts.
func columnStarts(header string) []int {
	var starts []int
	for i := range header {
		if header[i] != ' ' && (i == 0 || header[i-1] == ' ') {
			starts = append(starts, i)
		}
	}
	return starts
}

// checkAligned checks that every row of a table has a cell starting at each
// header column.
func checkAligned(t *testing.T, table string, wantRows int) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	if len(lines) != wantRows+1 {
		t.Fatalf("table has %d lines, want %d:\n%s", len(lines), wantRows+1, table)
	}
	starts := columnStarts(lines[0])
	for _, line := range lines[1:] {
		for _, s := range starts {
			if s >= len(line) || line[s] == ' ' || (s > 0 && line[s-1] != ' ') {
				t.Errorf("row not aligned at column %d:\n%s", s, table)
			}
		}
	}
	return lines
}

func TestRenderAccounts(t *testing.T) {
	var b bytes.Buffer
	err := renderAccounts(&b, []admin.Account{
		{ID: "acc_1", Name: "ci-bot", Kind: "service", Team: "infra", Scopes: []string{"apps", "runs:read"}},
		{ID: "acc_22222", Name: "alice\tx", Kind: "user", Scopes: []string{}, Disabled: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := checkAligned(t, b.String(), 2)
	if got := strings.Fields(lines[0]); !reflect.DeepEqual(got, []string{"ID", "NAME", "KIND", "TEAM", "SCOPES", "DISABLED"}) {
		t.Errorf("header = %q", got)
	}
	if got := strings.Fields(lines[1]); !reflect.DeepEqual(got, []string{"acc_1", "ci-bot", "service", "infra", "apps,runs:read", "no"}) {
		t.Errorf("row 1 = %q", got)
	}
	if got := strings.Fields(lines[2]); !reflect.DeepEqual(got, []string{"acc_22222", "alice", "x", "user", "-", "-", "yes"}) {
		t.Errorf("row 2 = %q", got)
	}
}

func TestRenderKeys(t *testing.T) {
	created := time.Date(2030, 1, 2, 15, 4, 5, 999, time.FixedZone("X", 3600))
	var b bytes.Buffer
	err := renderKeys(&b, []admin.Key{
		{ID: "key_1", Account: "acc_1", Name: "deploy", EffectiveScopes: []string{"apps:run"}, CreatedAt: created,
			Tokens: []admin.Token{{Status: "active"}, {Status: "expiring"}, {Status: "active"}, {Status: "expired"}}},
		{ID: "key_2", Account: "acc_1", Name: "a much longer name", EffectiveScopes: []string{}, CreatedAt: created},
	})
	if err != nil {
		t.Fatal(err)
	}
	lines := checkAligned(t, b.String(), 2)
	if got := strings.Fields(lines[0]); !reflect.DeepEqual(got, []string{"ID", "ACCOUNT", "NAME", "SCOPES", "TOKENS", "CREATED"}) {
		t.Errorf("header = %q", got)
	}
	if got := strings.Fields(lines[1]); !reflect.DeepEqual(got, []string{"key_1", "acc_1", "deploy", "apps:run", "2", "2030-01-02T14:04:05Z"}) {
		t.Errorf("row 1 = %q", got)
	}
}

func TestRenderTokens(t *testing.T) {
	exp := time.Date(2030, 1, 2, 15, 4, 5, 0, time.UTC)
	var b bytes.Buffer
	err := renderTokens(&b, []admin.Token{
		{ID: "tok_1", Key: "key_1", Name: "default", Hint: "sk-AbC…xyZ9", ExpiresAt: &exp, Status: "active"},
		{ID: "tok_2", Key: "key_1", Hint: "sk-DeF…uvW8", Status: "expiring"},
	})
	if err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"TOKEN", "HINT", "EXPIRES", "2030-01-02T15:04:05Z", "never", "sk-AbC…xyZ9", "expiring"} {
		if !strings.Contains(out, want) {
			t.Errorf("tokens table lacks %q:\n%s", want, out)
		}
	}
}

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
	setupAPIKeyCommand(apikey)
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
	if !strings.Contains(out, "key_1") || !strings.Contains(out, "key_2") || !strings.HasPrefix(out, "ID ") {
		t.Errorf("table:\n%s", out)
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

	// Without --scopes, no scopes field: the key inherits.
	if _, errOut, err := runCommand(t, addr, "create", "--account", "ci-bot", "--name", "deploy"); err != nil {
		t.Fatalf("create: %v\n%s", err, errOut)
	}
	if strings.Contains(f.body(1), "scopes") || strings.Contains(f.body(1), "expires_at") {
		t.Errorf("request body = %s", f.body(1))
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
		{[]string{"rotate"}, "caddy apikey rotate: want one argument, a key id, not 0"},
		{[]string{"list", "sk-secretvalue"}, "caddy apikey list: unexpected argument(s)"},
		{[]string{"list", "--bogus"}, "caddy apikey list: unknown flag: --bogus"},
		{[]string{"nope"}, `caddy apikey: unknown command "nope"`},
		{[]string{"account", "nope"}, `caddy apikey account: unknown command "nope"`},
		{[]string{"create", "--name", "x"}, "caddy apikey create: --account is required"},
		{[]string{"create", "--account", "a", "--name", "x", "--tag", "env"}, `caddy apikey create: --tag "env": want key=value`},
		{[]string{"rotate", "key_1", "--grace", "-1h"}, `caddy apikey rotate: --grace "-1h"`},
		{[]string{"rotate", "key_1", "--token", "sk-secretvalue"}, "caddy apikey rotate: --token must be a token id"},
	} {
		_, errOut, err := runCommand(t, addr, c.args...)
		if err == nil || !strings.HasPrefix(errOut, c.want) || strings.Count(errOut, "\n") != 1 || strings.Contains(errOut, "sk-secretvalue") {
			t.Errorf("%q: err %v, stderr %q; want it to start with %q", c.args, err, errOut, c.want)
		}
	}
}
