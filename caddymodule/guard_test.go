package caddymodule

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func newGuard(t testing.TB, allowEncodedSlash bool) *GuardHandler {
	t.Helper()
	g := &GuardHandler{AllowEncodedSlash: allowEncodedSlash}
	if err := g.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	return g
}

// TestGuard runs the guard on requests: canonical ones go on (method
// upper-cased, dot segments resolved), the rest get 400 invalid_request
// and never reach the next handler.
func TestGuard(t *testing.T) {
	for _, tt := range []struct {
		method, target string
		allow          bool
		status         int    // 0: passed on
		method2, up    string // method and escaped path passed on
	}{
		{method: "GET", target: "/v1/apps/a", method2: "GET", up: "/v1/apps/a"},
		{method: "post", target: "/v1/apps/a/runs", method2: "POST", up: "/v1/apps/a/runs"},
		{method: "GET", target: "/v1/x/../apps/a%20b", method2: "GET", up: "/v1/apps/a%20b"},
		{method: "GET", target: "/healthz", method2: "GET", up: "/healthz"},
		{method: "DELETE", target: "/v1/apps/x%2F..%2F..%2Fb", status: 400},
		{method: "DELETE", target: "/v1/apps;x/a", status: 400},
		{method: "DELETE", target: "/v1/apps%3Bx/a", status: 400},
		{method: "DELETE", target: `/v1\apps/a`, status: 400},
		{method: "DELETE", target: "/v1/apps%00/a", status: 400},
		{method: "DELETE", target: "/v1/%2561pps/a", status: 400},
		// With %2F allowed: names holding a slash pass, dots and empty
		// segments that only decoding makes do not.
		{method: "DELETE", target: "/v1/apps/a%2Fb", allow: true, method2: "DELETE", up: "/v1/apps/a%2Fb"},
		{method: "DELETE", target: "/v1/apps/a%2F", allow: true, method2: "DELETE", up: "/v1/apps/a%2F"},
		{method: "DELETE", target: "/v1/apps/x%2F..%2F..%2Fb", allow: true, status: 400},
		{method: "DELETE", target: "/v1/apps/x/..%2Fb", allow: true, status: 400},
		{method: "DELETE", target: "/v1/apps/x%2F.%2Fb", allow: true, status: 400},
		{method: "DELETE", target: "/v1/apps%2F%2Fx", allow: true, status: 400},
		{method: "DELETE", target: "/v1/apps/a;b", allow: true, status: 400},
	} {
		r, ok := readTarget(t, tt.method, tt.target)
		if !ok {
			t.Fatalf("%s %s: not a valid request", tt.method, tt.target)
		}
		w := httptest.NewRecorder()
		var passed bool
		next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { passed = true; return nil })
		if err := newGuard(t, tt.allow).ServeHTTP(w, r, next); err != nil {
			t.Fatal(err)
		}
		what := tt.method + " " + tt.target
		if tt.status == 0 {
			if !passed || r.Method != tt.method2 || r.URL.EscapedPath() != tt.up {
				t.Errorf("%s: passed %v as %s %s; want passed on as %s %s", what, passed, r.Method, r.URL.EscapedPath(), tt.method2, tt.up)
			}
			continue
		}
		var body map[string]string
		_ = json.Unmarshal(w.Body.Bytes(), &body)
		if passed || w.Code != tt.status || body["error"] != "invalid_request" {
			t.Errorf("%s: passed %v, %d %s; want %d invalid_request", what, passed, w.Code, w.Body, tt.status)
		}
	}
}

func TestGuardCaddyfile(t *testing.T) {
	for input, want := range map[string]GuardHandler{
		"apikey_guard": {},
		"apikey_guard {\n allow_encoded_slash\n}": {AllowEncodedSlash: true},
	} {
		var g GuardHandler
		if err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil || g != want {
			t.Errorf("%q: %+v, %v; want %+v", input, g, err, want)
		}
	}
	for input, want := range map[string]string{
		"apikey_guard x":                              "unexpected argument",
		"apikey_guard {\n header X\n}":                "unknown option",
		"apikey_guard {\n allow_encoded_slash yes\n}": "wrong argument count",
	} {
		var g GuardHandler
		if err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", input, err, want)
		}
	}
}

// TestAuthMatchReadsCanonicalRequest: with its own matchers, apikey_auth
// refuses non-canonical requests whether or not they match, and its
// matchers read the canonical method and path: "post" is POST to a method
// matcher, x%2F..%2F..%2Fb never reaches a path matcher.
func TestAuthMatchReadsCanonicalRequest(t *testing.T) {
	h := &AuthHandler{ScopeTable: ScopeTable{Require: []string{"apps:write"}}, matchers: caddyhttp.MatcherSets{
		{caddyhttp.MatchMethod{"POST", "DELETE"}},
		{caddyhttp.MatchPath{"/v1/apps/*"}},
	}}
	if err := h.compile(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		method, target string
		status         int // 0: passed on, unchecked
	}{
		{"GET", "/healthz", 0},
		{"get", "/v1/runs/x", 0},
		{"post", "/v1/runs/x", 401},
		{"dElEtE", "/v1/runs/x", 401},
		{"GET", "/v1/x/../apps/a", 401},
		{"GET", "/V1/APPS/a", 401}, // Caddy's path matcher ignores case
		{"GET", "/v1/apps/x%2F..%2F..%2Fb", 400},
		{"GET", "/v1/apps;x/a", 400},
		{"GET", "/healthz;x", 400},
	} {
		r, ok := readTarget(t, tt.method, tt.target)
		if !ok {
			t.Fatalf("%s %s: not a valid request", tt.method, tt.target)
		}
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
		r.Header.Set("X-API-Key", "not-a-token")
		w := httptest.NewRecorder()
		var passed bool
		next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { passed = true; return nil })
		if err := h.ServeHTTP(w, r, next); err != nil {
			t.Fatal(err)
		}
		what := tt.method + " " + tt.target
		switch {
		case tt.status == 0 && (!passed || r.Header.Get("X-API-Key") == ""):
			t.Errorf("%s: passed %v, key header %q; want passed on untouched", what, passed, r.Header.Get("X-API-Key"))
		case tt.status == 401 && (passed || w.Code != 401):
			// No key check reaches the store here: "not-a-token" fails
			// the format check, so 401 shows the matcher matched.
			t.Errorf("%s: passed %v, %d; want 401", what, passed, w.Code)
		case tt.status == 400 && (passed || w.Code != 400 || r.Header.Get("X-API-Key") != ""):
			t.Errorf("%s: passed %v, %d, key header %q; want 400 with the key stripped", what, passed, w.Code, r.Header.Get("X-API-Key"))
		}
	}
}

// BenchmarkGuard is what a guard adds to each request: an ordinary method
// and path, checked and left as they are.
func BenchmarkGuard(b *testing.B) {
	g := newGuard(b, false)
	r := httptest.NewRequest("POST", "/v1/apps/web/runs", nil)
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	b.ReportAllocs()
	for b.Loop() {
		if err := g.ServeHTTP(nil, r, next); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuthUnmatched is what apikey_auth with a matcher costs a
// request its matcher does not match: the method and path made canonical,
// then the path matcher.
func BenchmarkAuthUnmatched(b *testing.B) {
	h := &AuthHandler{ScopeTable: ScopeTable{Require: []string{"apps:read"}}, matchers: caddyhttp.MatcherSets{{caddyhttp.MatchPath{"/v1/apps/*"}}}}
	if err := h.compile(); err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest("POST", "/v1/runs/web", nil)
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	var passed int
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { passed++; return nil })
	b.ReportAllocs()
	for b.Loop() {
		if err := h.ServeHTTP(nil, r, next); err != nil {
			b.Fatal(err)
		}
	}
	if passed == 0 {
		b.Fatal("the request was not passed on")
	}
}
