package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/keygate/keygate/storage/token"
)

// newTestVerifier compiles v with an app whose cache is not open: a
// well-formed token then gets the 503 of a store that cannot be reached.
func newTestVerifier(t *testing.T, v *VerifyHandler) (*VerifyHandler, string) {
	t.Helper()
	tokens, _ := token.NewFormat("sk")
	v.app = &App{tokens: tokens, cache: &sharedCache{}}
	v.tokens, v.logger = tokens, zap.NewNop()
	if err := v.compile(); err != nil {
		t.Fatal(err)
	}
	return v, tokens.Generate()
}

// check sends a check request to v and returns the answer.
func check(v *VerifyHandler, method, target string, header http.Header) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	for k, vals := range header {
		r.Header[k] = vals
	}
	w := httptest.NewRecorder()
	if err := v.ServeHTTP(w, r, nil); err != nil {
		panic(err)
	}
	return w
}

func bodyField(t *testing.T, w *httptest.ResponseRecorder, field string) string {
	t.Helper()
	var body map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", w.Body, err)
	}
	s, _ := body[field].(string)
	return s
}

// TestVerifyReadsOriginalRequest: each mode reads the original method and
// URI where its proxy puts them, through the canonical-request rules, and
// never authorizes a check request that does not say which request it is.
func TestVerifyReadsOriginalRequest(t *testing.T) {
	table := ScopeTable{Routes: []RouteRule{
		{Methods: []string{"GET"}, Path: "/public/*", Scope: AccessPublic},
		{Path: "/v1/*", Scope: "apps"},
	}}
	caddyMode, _ := newTestVerifier(t, &VerifyHandler{ScopeTable: table})
	nginxMode, _ := newTestVerifier(t, &VerifyHandler{ScopeTable: table, Mode: ModeNginx})
	envoyMode, _ := newTestVerifier(t, &VerifyHandler{ScopeTable: table, Mode: ModeEnvoy, PathPrefix: "/auth"})
	renamed, _ := newTestVerifier(t, &VerifyHandler{ScopeTable: table, MethodHeader: "X-M", URIHeader: "X-U"})

	fwd := func(method, uri string) http.Header {
		return http.Header{"X-Forwarded-Method": {method}, "X-Forwarded-Uri": {uri}}
	}
	for _, tt := range []struct {
		name           string
		v              *VerifyHandler
		method, target string
		header         http.Header
		status         int
		message        string // in the 400's message
	}{
		{"caddy public", caddyMode, "GET", "/verify", fwd("GET", "/public/a?x=1"), 200, ""},
		{"caddy lower-case method", caddyMode, "GET", "/verify", fwd("get", "/public/a"), 200, ""},
		{"caddy absolute form", caddyMode, "GET", "/verify", fwd("GET", "http://api.example/public/a"), 200, ""},
		{"caddy dot segments resolved", caddyMode, "GET", "/verify", fwd("GET", "/public/../v1/a"), 401, ""},
		{"caddy method not public", caddyMode, "GET", "/verify", fwd("POST", "/public/a"), 401, ""},
		{"caddy check path ignored", caddyMode, "GET", "/public/x", fwd("GET", "/v1/a"), 401, ""},
		{"caddy no method", caddyMode, "GET", "/verify", http.Header{"X-Forwarded-Uri": {"/public/a"}}, 400, "X-Forwarded-Method header is missing"},
		{"caddy no uri", caddyMode, "GET", "/public/a", http.Header{"X-Forwarded-Method": {"GET"}}, 400, "X-Forwarded-Uri header is missing"},
		{"caddy empty uri", caddyMode, "GET", "/public/a", fwd("GET", ""), 400, "X-Forwarded-Uri header is missing"},
		{"caddy two uris", caddyMode, "GET", "/verify", http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/public/a", "/v1/a"}}, 400, "more than once"},
		{"caddy star", caddyMode, "GET", "/verify", fwd("GET", "*"), 400, "not a request target"},
		{"caddy relative", caddyMode, "GET", "/verify", fwd("GET", "public/a"), 400, "not a request target"},
		{"caddy other scheme", caddyMode, "GET", "/verify", fwd("GET", "ftp://h/public/a"), 400, "not a request target"},
		{"caddy encoded slash", caddyMode, "GET", "/verify", fwd("GET", "/public/a%2Fb"), 400, "encoded slash"},
		{"caddy double encoding", caddyMode, "GET", "/verify", fwd("GET", "/public/a%252Fb"), 400, "percent-encoded twice"},
		{"caddy semicolon", caddyMode, "GET", "/verify", fwd("GET", "/public;x/a"), 400, "semicolon"},
		{"caddy backslash", caddyMode, "GET", "/verify", fwd("GET", "/public/a%5Cb"), 400, "backslash"},
		{"caddy bad method", caddyMode, "GET", "/verify", fwd("GE T", "/public/a"), 400, "method"},
		{"nginx public", nginxMode, "GET", "/verify", http.Header{"X-Original-Method": {"GET"}, "X-Original-Uri": {"/public/a"}}, 200, ""},
		{"nginx reads its own headers", nginxMode, "GET", "/verify", fwd("GET", "/public/a"), 403, "X-Original-Method header is missing"},
		{"renamed", renamed, "GET", "/verify", http.Header{"X-M": {"GET"}, "X-U": {"/public/a"}}, 200, ""},
		{"renamed ignores defaults", renamed, "GET", "/verify", fwd("GET", "/public/a"), 400, "X-M header is missing"},
		{"envoy public", envoyMode, "GET", "/auth/public/a?x=1", nil, 200, ""},
		{"envoy method", envoyMode, "POST", "/auth/public/a", nil, 401, ""},
		{"envoy ignores headers", envoyMode, "GET", "/auth/v1/a", fwd("GET", "/public/a"), 401, ""},
		{"envoy prefix missing", envoyMode, "GET", "/public/a", nil, 400, "path_prefix /auth"},
		{"envoy encoded slash", envoyMode, "GET", "/auth/public/a%2Fb", nil, 400, "encoded slash"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := check(tt.v, tt.method, tt.target, tt.header)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d: %s %v", w.Code, tt.status, w.Body, w.Header())
			}
			if tt.message != "" && !strings.Contains(bodyField(t, w, "message"), tt.message) {
				t.Errorf("message %q, want it to say %q", bodyField(t, w, "message"), tt.message)
			}
		})
	}
}

// TestVerifyIdentityHeadersAlwaysSet: a 200 sets every identity header,
// empty on a public route, under their configured names, so a proxy
// copying them overwrites what a client sent.
func TestVerifyIdentityHeadersAlwaysSet(t *testing.T) {
	v, _ := newTestVerifier(t, &VerifyHandler{
		ScopeTable:      ScopeTable{Default: AccessPublic},
		IdentityHeaders: IdentityHeaders{Account: "X-Caller", Scopes: "x-caller-scopes"},
	})
	w := check(v, "GET", "/", http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/a"}})
	if w.Code != 200 || w.Body.Len() != 0 {
		t.Fatalf("%d %q", w.Code, w.Body)
	}
	for _, name := range []string{"X-Caller", "X-Caller-Scopes", "X-Keygate-Key", "X-Keygate-Token", "X-Keygate-Account-Name", "X-Keygate-Team"} {
		if vals, ok := w.Header()[name]; !ok || len(vals) != 1 || vals[0] != "" {
			t.Errorf("%s = %q (set %v), want one empty value", name, vals, ok)
		}
	}
	if _, ok := w.Header()["X-Keygate-Account"]; ok {
		t.Error("X-Keygate-Account set though account is renamed")
	}

	cred := &verified{}
	cred.AccountID, cred.KeyID, cred.TokenID, cred.JoinedScopes, cred.AccountName, cred.Team = "acc_1", "key_1", "tok_1", "apps,runs", "ci", "infra"
	w = httptest.NewRecorder()
	v.allow(w, cred)
	want := map[string]string{"X-Caller": "acc_1", "X-Keygate-Key": "key_1", "X-Keygate-Token": "tok_1", "X-Caller-Scopes": "apps,runs",
		"X-Keygate-Account-Name": "ci", "X-Keygate-Team": "infra"}
	for name, val := range want {
		if got := w.Header()[name]; len(got) != 1 || got[0] != val {
			t.Errorf("%s = %q, want %q", name, got, val)
		}
	}
}

// TestVerifyNginxStatuses: nginx mode sends 401 and 403 as they are and
// any other refusal as 403, each with X-Keygate-Status, its body on one
// line in X-Keygate-Error and its own headers (Retry-After).
func TestVerifyNginxStatuses(t *testing.T) {
	v, secret := newTestVerifier(t, &VerifyHandler{Mode: ModeNginx, ScopeTable: ScopeTable{Routes: []RouteRule{
		{Path: "/closed", Scope: AccessDeny}, {Path: "/v1/*", Scope: AccessAuthenticated},
	}}})
	orig := func(uri string, extra ...string) http.Header {
		h := http.Header{"X-Original-Method": {"GET"}, "X-Original-Uri": {uri}}
		for i := 0; i+1 < len(extra); i += 2 {
			h.Set(extra[i], extra[i+1])
		}
		return h
	}
	for _, tt := range []struct {
		name   string
		header http.Header
		status int
		real   string
		code   string
	}{
		{"no key", orig("/v1/a"), 401, "401", "unauthorized"},
		{"forbidden", orig("/closed", "X-Api-Key", secret), 503, "503", "unavailable"}, // key checked before the deny: store down
		{"store down", orig("/v1/a", "X-Api-Key", secret), 503, "503", "unavailable"},
		{"bad path", orig("/v1/a%2Fb"), 400, "400", "invalid_request"},
		{"no uri", http.Header{"X-Original-Method": {"GET"}}, 400, "400", "invalid_request"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := check(v, "GET", "/verify", tt.header)
			sent := tt.status
			if sent != 401 && sent != 403 {
				sent = 403
			}
			h := w.Header()
			if w.Code != sent || h.Get("X-Keygate-Status") != tt.real {
				t.Fatalf("%d with X-Keygate-Status %q, want %d with %s", w.Code, h.Get("X-Keygate-Status"), sent, tt.real)
			}
			if bodyField(t, w, "error") != tt.code || strings.TrimSpace(w.Body.String()) != h.Get("X-Keygate-Error") {
				t.Errorf("body %q, X-Keygate-Error %q", w.Body, h.Get("X-Keygate-Error"))
			}
			if (tt.status == 503) != (h.Get("Retry-After") != "") {
				t.Errorf("Retry-After %q on a %d", h.Get("Retry-After"), tt.status)
			}
			if (tt.status == 401) != (h.Get("Www-Authenticate") != "") {
				t.Errorf("WWW-Authenticate %q on a %d", h.Get("Www-Authenticate"), tt.status)
			}
		})
	}

	// Other modes send the refusal as apikey_auth does, without the nginx
	// headers.
	c, _ := newTestVerifier(t, &VerifyHandler{})
	w := check(c, "GET", "/verify", http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/a"}, "X-Api-Key": {secret}})
	if w.Code != 503 || w.Header().Get("Retry-After") == "" || w.Header().Get("X-Keygate-Status") != "" || bodyField(t, w, "error") != "unavailable" {
		t.Fatalf("caddy mode: %d %v %s", w.Code, w.Header(), w.Body)
	}
}

// TestVerifyNginxWriterAnyStatus: the nginx rendering holds for any status
// a refusal is written with, such as a 429 and its headers.
func TestVerifyNginxWriterAnyStatus(t *testing.T) {
	w := httptest.NewRecorder()
	nw := (&VerifyHandler{mode: ModeNginx}).proxyWriter(w).(*nginxWriter)
	nw.Header().Set("Retry-After", "7")
	nw.Header().Set("Ratelimit", `"burst";r=0;t=7`)
	nw.WriteHeader(http.StatusTooManyRequests)
	_, _ = nw.Write([]byte(`{"error":"rate_limited"}` + "\n"))
	nw.finish()
	h := w.Header()
	if w.Code != 403 || h.Get("X-Keygate-Status") != "429" || h.Get("X-Keygate-Error") != `{"error":"rate_limited"}` ||
		h.Get("Retry-After") != "7" || h.Get("Ratelimit") == "" || w.Body.String() != `{"error":"rate_limited"}`+"\n" {
		t.Fatalf("%d %v %q", w.Code, h, w.Body)
	}
}

func TestVerifyCaddyfile(t *testing.T) {
	var v VerifyHandler
	d := caddyfile.NewTestDispenser(`apikey_verify {
		mode nginx
		uri_header X-Original-Uri-2
		realm "Example API"
		scope GET /v1/apps apps:read
		default authenticated
		identity_headers {
			account X-User
			team X-Group
		}
	}`)
	if err := v.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	want := VerifyHandler{
		Authenticator:   Authenticator{Realm: "Example API"},
		ScopeTable:      ScopeTable{Routes: []RouteRule{{Methods: []string{"GET"}, Path: "/v1/apps", Scope: "apps:read"}}, Default: "authenticated"},
		Mode:            ModeNginx,
		URIHeader:       "X-Original-Uri-2",
		IdentityHeaders: IdentityHeaders{Account: "X-User", Team: "X-Group"},
	}
	got, _ := json.Marshal(v)
	wantJSON, _ := json.Marshal(want)
	if string(got) != string(wantJSON) {
		t.Fatalf("got %s\nwant %s", got, wantJSON)
	}
	v = VerifyHandler{}
	if err := v.UnmarshalCaddyfile(caddyfile.NewTestDispenser("apikey_verify {\n rate_limit_headers off\n charge_on any\n}")); err != nil {
		t.Fatal(err)
	}
	if got, _ := json.Marshal(&v); string(got) != `{"charge_on":"any","rate_limit_headers":false}` {
		t.Errorf("usage settings: %s", got)
	}

	for _, tt := range []struct{ src, want, line string }{
		{"apikey_verify {\n mode haproxy\n}", "apikey_verify: mode \"haproxy\"", "at Testfile:2"},
		{"apikey_verify {\n mod nginx\n}", "did you mean mode?", ""},
		{"apikey_verify {\n mode envoy\n method_header X-M\n}", "apikey_verify: method_header: envoy mode", "at Testfile:3"},
		{"apikey_verify {\n path_prefix /auth\n}", "apikey_verify: path_prefix: only envoy mode", "at Testfile:2"},
		{"apikey_verify {\n mode envoy\n path_prefix auth\n}", "path_prefix", "at Testfile:3"},
		{"apikey_verify {\n identity_headers {\n  account X-A\n  key X-A\n }\n}", "apikey_verify: identity_headers: account and key both name X-A", "at Testfile:4"},
		{"apikey_verify {\n identity_headers {\n  acount X-A\n }\n}", "did you mean account?", ""},
		{"apikey_verify {\n uri_header \"X U\"\n}", "apikey_verify: uri_header \"X U\": not a valid header name", "at Testfile:2"},
		{"apikey_verify {\n scope GET /a pubic\n}", "did you mean", "at Testfile:2"},
		// A check is charged before the upstream runs: nothing can read its answer.
		{"apikey_verify {\n rate_limit_headers off\n cost_header X-Cost\n}", "apikey_verify: cost_header: apikey_verify charges a request's credits when it answers the check", "at Testfile:3"},
		{"apikey_verify {\n charge_on 2xx\n}", "apikey_verify: charge_on 2xx: apikey_verify charges", "at Testfile:2"},
		{"apikey_verify {\n charge_on some\n}", "charge_on \"some\": want any or 2xx", "at Testfile:2"},
		{"apikey_verify {\n rate_limit_headers maybe\n}", "rate_limit_headers", ""},
	} {
		var v VerifyHandler
		err := v.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.src))
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.line) {
			t.Errorf("%q: error %v, want %q %s", tt.src, err, tt.want, tt.line)
		}
	}
}

// TestVerifyCountsDecisions: decisions_total counts apikey_verify's
// answers under the same results as apikey_auth's.
func TestVerifyCountsDecisions(t *testing.T) {
	v, secret := newTestVerifier(t, &VerifyHandler{Mode: ModeNginx, ScopeTable: ScopeTable{Routes: []RouteRule{{Path: "/public", Scope: AccessPublic}}}})
	for _, tt := range []struct {
		counter prometheus.Counter
		header  http.Header
	}{
		{resultPublic, http.Header{"X-Original-Method": {"GET"}, "X-Original-Uri": {"/public"}}},
		{resultUnauthorized, http.Header{"X-Original-Method": {"GET"}, "X-Original-Uri": {"/v1"}}},
		{resultUnavailable, http.Header{"X-Original-Method": {"GET"}, "X-Original-Uri": {"/v1"}, "X-Api-Key": {secret}}},
		{resultInvalidRequest, http.Header{"X-Original-Method": {"GET"}}},
	} {
		before := counterValue(tt.counter)
		check(v, "GET", "/verify", tt.header)
		if got := counterValue(tt.counter) - before; got != 1 {
			t.Errorf("%v: counted %v times, want 1", tt.header, got)
		}
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}
