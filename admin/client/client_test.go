package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/bolt"
	"github.com/keygate/keygate/storage/token"
)

// newAPI serves the admin API on a file store as Caddy's admin endpoint
// does (trusted, with export and import) and returns a client of it.
func newAPI(t *testing.T) *Client {
	t.Helper()
	b, err := bolt.Open(filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	tokens, err := token.NewFormat("sk")
	if err != nil {
		t.Fatal(err)
	}
	h := admin.New(storage.New(b), tokens, zap.NewNop())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.URL.Path = strings.TrimPrefix(r.URL.Path, "/apikeys")
		h.ServeTrusted(w, r)
	}))
	t.Cleanup(srv.Close)
	c, err := New(srv.URL + "/apikeys/")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ptr[T any](v T) *T { return &v }

// TestEveryOperation drives each method against the real handler.
func TestEveryOperation(t *testing.T) {
	c := newAPI(t)
	ctx := context.Background()
	acc, err := c.CreateAccount(ctx, admin.CreateAccountRequest{Name: "ci-bot", Kind: "service", Scopes: []string{"apps", "runs:read"}})
	if err != nil || acc.Kind != "service" {
		t.Fatalf("CreateAccount = %+v, %v", acc, err)
	}
	if _, err := c.CreateAccount(ctx, admin.CreateAccountRequest{Name: "ci-bot"}); !isStatus(err, 409, "conflict") {
		t.Errorf("duplicate account: %v", err)
	}
	if a, err := c.GetAccount(ctx, "ci-bot"); err != nil || a.ID != acc.ID {
		t.Errorf("GetAccount by name = %+v, %v", a, err)
	}
	if a, err := c.UpdateAccount(ctx, acc.ID, admin.UpdateAccountRequest{Team: ptr("infra")}); err != nil || a.Team != "infra" {
		t.Errorf("UpdateAccount = %+v, %v", a, err)
	}

	k, err := c.CreateKey(ctx, admin.CreateKeyRequest{Account: "ci-bot", Name: "deploy", Tags: map[string]string{"env": "prod"}})
	if err != nil || k.Secret == "" || k.Scopes != nil || len(k.EffectiveScopes) != 2 {
		t.Fatalf("CreateKey (inheriting) = %+v, %v", k, err)
	}
	none, err := c.CreateKey(ctx, admin.CreateKeyRequest{Account: acc.ID, Name: "nothing", Scopes: []string{}})
	if err != nil || none.Scopes == nil || len(none.EffectiveScopes) != 0 {
		t.Fatalf("CreateKey with [] = %+v, %v", none, err)
	}
	if _, err := c.CreateKey(ctx, admin.CreateKeyRequest{Account: acc.ID, Name: "x", Scopes: []string{"Bad"}}); !isStatus(err, 400, "invalid_request") ||
		err.(*Error).Field != "scopes" {
		t.Errorf("bad scope: %#v", err)
	}
	keys, err := Collect(c.Keys(ctx, KeyFilter{Tags: map[string]string{"env": "prod"}}))
	if err != nil || len(keys) != 1 || keys[0].ID != k.ID {
		t.Errorf("Keys(env=prod) = %+v, %v", keys, err)
	}
	if u, err := c.UpdateKey(ctx, none.ID, admin.UpdateKeyRequest{Scopes: admin.InheritScopes, Name: ptr("all")}); err != nil || u.Scopes != nil || u.Name != "all" {
		t.Errorf("UpdateKey inherit = %+v, %v", u, err)
	}

	tok, err := c.CreateToken(ctx, k.ID, admin.CreateTokenRequest{Name: "second", ExpiresAt: "2099-01-01T00:00:00Z"})
	if err != nil || tok.Secret == "" || tok.ExpiresAt == nil {
		t.Fatalf("CreateToken = %+v, %v", tok, err)
	}
	if u, err := c.UpdateToken(ctx, k.ID, tok.ID, admin.UpdateTokenRequest{ExpiresAt: admin.NeverExpires}); err != nil || u.ExpiresAt != nil {
		t.Errorf("UpdateToken never = %+v, %v", u, err)
	}
	rot, err := c.RotateToken(ctx, k.ID, tok.ID, admin.RotateRequest{Grace: "1h"})
	if err != nil || rot.Secret == "" || rot.ID == tok.ID {
		t.Fatalf("RotateToken = %+v, %v", rot, err)
	}
	if err := c.DeleteToken(ctx, k.ID, rot.ID); err != nil {
		t.Errorf("DeleteToken: %v", err)
	}
	if err := c.Revoke(ctx, k.Secret); err != nil {
		t.Errorf("Revoke: %v", err)
	}
	if err := c.Revoke(ctx, k.Secret); !IsNotFound(err) || strings.Contains(err.Error(), k.Secret) {
		t.Errorf("Revoke again: %v", err)
	}
	if got, err := c.GetKey(ctx, "key_nope"); !IsNotFound(err) {
		t.Errorf("GetKey unknown = %+v, %v", got, err)
	}

	w, err := c.Whoami(ctx)
	if err != nil || w.Key != nil || len(w.Scopes) != 1 || w.Scopes[0] != "*" {
		t.Errorf("Whoami = %+v, %v", w, err)
	}
	var actions []string
	for ev, err := range c.AuditEvents(ctx, AuditFilter{Actor: "admin"}) {
		if err != nil {
			t.Fatal(err)
		}
		actions = append(actions, ev.Action)
	}
	if len(actions) < 8 || actions[len(actions)-1] != "account.create" {
		t.Errorf("audit actions = %q", actions)
	}

	var export bytes.Buffer
	n, err := c.Export(ctx, &export)
	if err != nil || n != (ExportCounts{Accounts: 1, Keys: 2, Tokens: 2}) || strings.Count(export.String(), "\n") != 5 {
		t.Fatalf("Export = %+v, %v\n%s", n, err, export.String())
	}
	res, err := c.Import(ctx, bytes.NewReader(export.Bytes()))
	if err != nil || *res != (admin.ImportResult{Imported: 5, Unchanged: 5}) {
		t.Errorf("Import = %+v, %v", res, err)
	}
	_, err = c.Import(ctx, strings.NewReader("{\"type\":\"account\"}\n"))
	var e *Error
	if !errors.As(err, &e) || e.Status != 400 || e.Line != 1 {
		t.Errorf("bad import: %#v", err)
	}

	if err := c.DeleteKey(ctx, none.ID); err != nil {
		t.Errorf("DeleteKey: %v", err)
	}
	if err := c.DeleteAccount(ctx, "ci-bot"); err != nil {
		t.Errorf("DeleteAccount: %v", err)
	}
	if page, err := c.ListAccounts(ctx, ListOptions{Limit: 10}); err != nil || len(page.Items) != 0 {
		t.Errorf("ListAccounts after delete = %+v, %v", page, err)
	}
}

func isStatus(err error, status int, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == status && e.Code == code
}

func TestErrorAnswers(t *testing.T) {
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
		{403, `{"error":"insufficient_scope","message":"m","required_scope":"api_keys:read"}`, "403 insufficient_scope: m"},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(c.status)
			_, _ = w.Write([]byte(c.body))
		}))
		cl, _ := New(srv.URL)
		_, err := cl.GetKey(context.Background(), "key_x")
		srv.Close()
		var e *Error
		if !errors.As(err, &e) || e.Status != c.status || err.Error() != c.want {
			t.Errorf("%d %q: %v, want %q", c.status, c.body, err, c.want)
		}
		if c.status == 403 && e.RequiredScope != "api_keys:read" {
			t.Errorf("required_scope = %q", e.RequiredScope)
		}
	}
}

// TestRevokeRedacts: an answer that echoes the token value does not put it
// in the error.
func TestRevokeRedacts(t *testing.T) {
	const token = "sk-notwellformed"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_request", "field": "token", "message": "bad token " + token})
	}))
	defer srv.Close()
	c, _ := New(srv.URL)
	err := c.Revoke(context.Background(), token)
	if err == nil || strings.Contains(err.Error(), token) || !strings.Contains(err.Error(), "[REDACTED]") {
		t.Errorf("Revoke error = %v", err)
	}
}

// TestExportCutShort: a stream that stops in a line is an error.
func TestExportCutShort(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("{\"type\":\"account\"}\n{\"type\":\"ke"))
	}))
	defer srv.Close()
	c, _ := New(srv.URL)
	var out bytes.Buffer
	if n, err := c.Export(context.Background(), &out); err == nil || n.Accounts != 1 {
		t.Errorf("Export = %+v, %v", n, err)
	}
}

// TestUnreachable: no answer is a TransportError, not an *Error.
func TestUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c, _ := New(url)
	_, err := c.Whoami(context.Background())
	var te *TransportError
	var e *Error
	if !errors.As(err, &te) || errors.As(err, &e) || strings.Contains(err.Error(), "Get \"") {
		t.Errorf("unreachable: %#v", err)
	}
}

// TestPagesFollowNext: the iterators follow "next" and refuse a loop.
func TestPagesFollowNext(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page := admin.List[admin.Account]{Items: []admin.Account{{ID: "acc_" + r.URL.Query().Get("after")}}, Next: "c1"}
		_ = json.NewEncoder(w).Encode(page)
	}))
	defer srv.Close()
	c, _ := New(srv.URL)
	got, err := Collect(c.Accounts(context.Background()))
	if err == nil || got != nil {
		t.Errorf("looping pages = %v, %v", got, err)
	}
	for a, err := range c.Accounts(context.Background()) {
		if err != nil || a.ID != "acc_" {
			t.Errorf("first item = %+v, %v", a, err)
		}
		break // stopping the loop stops fetching
	}
}
