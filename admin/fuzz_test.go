package admin

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/keygate/keygate/storage"
)

// A unit-level fuzz of the admin API's request decoding and validation:
// fuzzed bodies go through the real http.Handler to a store that knows two
// accounts and three keys (fuzzStore, in fuzzstore_test.go), and checks
// that every write it is asked to do holds only data the API's rules allow
// and touches only what the caller sees and covers. The rules are written out here
// from DESIGN.md and the documented field limits, not taken from the
// handler's helpers.

// fuzzScope is the scope grammar: "*" or segments [a-z0-9_-]+ joined by ':'.
var fuzzScope = regexp.MustCompile(`^(\*|[a-z0-9_-]+(:[a-z0-9_-]+)*)$`)

// fuzzText reports whether v is acceptable free text: valid UTF-8, no
// control characters, at most max bytes, non-blank when required.
func fuzzText(v string, required bool, max int) bool {
	if required && strings.TrimSpace(v) == "" || len(v) > max || !utf8.ValidString(v) {
		return false
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// fuzzRoute is one JSON-taking route of the API.
type fuzzRoute struct{ method, path string }

var fuzzRoutes = []fuzzRoute{
	{"POST", "/accounts"},
	{"PATCH", "/accounts/acc_1"},
	{"POST", "/keys"},
	{"PATCH", "/keys/key_1"},
	{"POST", "/keys/key_1/tokens"},
	{"PATCH", "/keys/key_1/tokens/tok_1"},
	{"PATCH", "/keys/key_1/tokens/tok_2"}, // a token being rotated out
	{"POST", "/keys/key_1/tokens/tok_1/rotate"},
	{"POST", "/revoke"},
	{"PATCH", "/keys/key_2"}, // a key of another account
	{"PATCH", "/keys/key_3"}, // a sibling wider than some callers
}

// fuzzPrincipals are the callers: the trusted admin endpoint, a key that
// manages accounts, and a key confined to its own account.
var fuzzPrincipals = []Principal{
	Trusted,
	{Actor: "key_p", AccountID: "acc_1", TokenID: "tok_p", Scopes: []string{"accounts", "api_keys", "apps"}},
	{Actor: "key_q", AccountID: "acc_1", TokenID: "tok_q", Scopes: []string{"api_keys:create", "api_keys:update", "api_keys:delete", "apps:read"}},
}

// FuzzAdminRequests sends fuzzed JSON bodies to every JSON-taking route as
// each principal. The handler must not panic, must answer JSON, never 5xx,
// {"error": …} on 4xx, and must call the store only with valid data; a 2xx
// answer is exactly the case where the store was written.
func FuzzAdminRequests(f *testing.F) {
	seeds := []struct {
		route int
		body  string
	}{
		{0, `{"name":"ci-bot","kind":"service","scopes":["apps","runs:read"],"team":"infra"}`},
		{0, `{"name":"acc_x"}`},
		{0, `{"name":"a\u0000b"}`},
		{0, `{"name":"x","scopes":["Apps"]}`},
		{0, `{"name":"x","scopes":["*"]}`},
		{0, `{"name":"x","kind":"robot"}`},
		{0, `{"name":"x","bogus":1}`},
		{0, `{"name":"x"} {}`},
		{0, `{"NAME":"x","Scopes":["apps:read","apps"]}`},
		{0, `[]`},
		{0, ``},
		{0, `{"name":"x",`},
		{1, `{"name":"renamed","team":"t","scopes":["apps"],"disabled":true}`},
		{1, `{"id":"acc_2"}`},
		{1, `{"kind":"user"}`},
		{1, `{"scopes":null}`},
		{2, `{"account":"own","name":"deploy","scopes":["apps:run"],"tags":{"env":"prod"},"expires_at":"2999-01-02T15:04:05Z"}`},
		{2, `{"account":"other","name":"deploy"}`},
		{2, `{"name":"deploy","scopes":[]}`},
		{2, `{"name":"deploy","scopes":null}`},
		{2, `{"account":"acc_1","name":"d","tags":{"a:b":"c"}}`},
		{2, `{"account":"acc_1","name":"d","tags":{"":"c"}}`},
		{2, `{"account":"acc_1","name":"d","expires_at":"2001-01-01T00:00:00Z"}`},
		{2, `{"account":"acc_1","name":"d","expires_at":"tomorrow"}`},
		{2, `{"account":"acc_1","name":"d","scopes":["apps:read","apps:read:x","billing"]}`},
		{3, `{"name":"n","description":"d","tags":{"k":"v"},"scopes":["apps"]}`},
		{3, `{"scopes":null}`},
		{3, `{"scopes":"apps"}`},
		{3, `{"id":"key_9"}`},
		{3, `{"tokens":[]}`},
		{3, `{"effective_scopes":["*"]}`},
		{3, `{"name":"\t"}`},
		{4, `{"name":"ci","description":"d","tags":{"k":"v"},"expires_at":"2999-01-01T00:00:00+02:00"}`},
		{4, `{}`},
		{5, `{"expires_at":null}`},
		{5, `{"expires_at":"2999-01-01T00:00:00Z","name":"n"}`},
		{5, `{"expires_at":5}`},
		{5, `{"secret":"x"}`},
		{6, `{"expires_at":null}`},
		{6, `{"expires_at":"2999-01-01T00:00:00Z"}`},
		{7, `{"grace":"24h"}`},
		{7, `{"grace":"-1s"}`},
		{7, `{"grace":"10000h","expires_at":"2999-01-01T00:00:00Z"}`},
		{7, ``},
		{8, `{"token":"sk-` + strings.Repeat("0", 49) + `"}`},
		{8, `{"token":" sk-bad "}`},
		{8, `{"token":null}`},
		{9, `{"name":"theirs"}`},
		{10, `{"name":"wider"}`},
		{10, `{"scopes":["apps:read"]}`},
	}
	tokens, _ := storage.NewTokenFormat("sk")
	valid := tokens.Generate()
	for i, s := range seeds {
		for p := range fuzzPrincipals {
			f.Add(uint8(s.route), uint8(p+i), []byte(s.body))
		}
	}
	f.Add(uint8(8), uint8(0), []byte(`{"token":"`+valid+`"}`))
	f.Add(uint8(8), uint8(2), []byte(`{"token":"  `+valid+`\n"}`))
	f.Fuzz(func(t *testing.T, route, principal uint8, body []byte) {
		rt := fuzzRoutes[int(route)%len(fuzzRoutes)]
		p := fuzzPrincipals[int(principal)%len(fuzzPrincipals)]
		st := &fuzzStore{t: t, p: p, now: time.Now()}
		h := New(st, tokens, zap.NewNop())
		req := httptest.NewRequest(rt.method, rt.path, bytes.NewReader(body))
		req = req.WithContext(WithPrincipal(req.Context(), p))
		w := httptest.NewRecorder()
		st.start = time.Now()
		h.ServeHTTP(w, req)

		status, out := w.Code, w.Body.Bytes()
		desc := func() string { return rt.method + " " + rt.path + " as " + p.Actor + " with " + string(body) }
		if status >= 500 {
			t.Fatalf("%s: %d %s", desc(), status, out)
		}
		if status == http.StatusNoContent {
			if len(out) != 0 {
				t.Fatalf("%s: 204 with body %q", desc(), out)
			}
		} else {
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("%s: Content-Type %q", desc(), ct)
			}
			var obj map[string]any
			if err := json.Unmarshal(out, &obj); err != nil {
				t.Fatalf("%s: %d with a body that is not a JSON object: %q", desc(), status, out)
			}
			if status >= 400 {
				if code, _ := obj["error"].(string); code == "" {
					t.Fatalf("%s: %d without an error code: %s", desc(), status, out)
				}
				if _, ok := obj["message"].(string); !ok {
					t.Fatalf("%s: %d without a message: %s", desc(), status, out)
				}
			}
			if secret, ok := obj["secret"]; ok {
				s, _ := secret.(string)
				if status != http.StatusCreated || !tokens.Valid(s) || obj["hint"] != nil && obj["hint"] != storage.Hint(s) {
					t.Fatalf("%s: %d with secret %q, hint %v", desc(), status, s, obj["hint"])
				}
			}
		}
		wrote := len(st.writes) > 0
		if ok := status >= 200 && status < 300; ok != wrote || len(st.writes) > 1 {
			t.Fatalf("%s: %d %s, store writes %v", desc(), status, out, st.writes)
		}
		if st.hash != nil {
			var req struct{ Token string }
			if err := json.Unmarshal(body, &req); err != nil {
				t.Fatalf("%s: revoked from a body that is not JSON", desc())
			}
			tok := strings.TrimSpace(req.Token)
			if !tokens.Valid(tok) || storage.HashToken(tok) != *st.hash {
				t.Fatalf("%s: revoked hash %x, not that of the well-formed token %q", desc(), *st.hash, tok)
			}
		}
	})
}
