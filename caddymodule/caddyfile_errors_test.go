package caddymodule

import (
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// TestCaddyfileErrorLines: an error found only once the block is read
// points at the line that wrote the setting at fault, not at the closing
// brace, and a likely typo of a keyword is an error that names the
// keyword.
func TestCaddyfileErrorLines(t *testing.T) {
	tests := []struct {
		name, input, want string
		line              int
	}{
		{"conflicting rule", "apikey_auth {\n scope GET /a/{x} r\n scope GET /a/{y} w\n realm X\n}",
			`conflicts with existing rule "GET /a/{x}"`, 3},
		{"conflicting any-method rule", "apikey_auth {\n scope * /a r\n header X-Key\n scope * /a w\n}", "conflicts", 4},
		{"bad scope", "apikey_auth {\n realm X\n scope GET /a Apps\n}", "invalid character", 3},
		{"bad pattern", "apikey_auth {\n scope GET /a x\n scope GET a x\n}", "pattern", 3},
		{"bad header", "apikey_auth {\n scope GET /a x\n header \"X Key\"\n}", "not a valid header name", 3},
		{"second header bad", "apikey_auth {\n header A\n\n header X(Key)\n}", "not a valid header name", 4},
		{"bad realm", "apikey_auth {\n realm `a\"b`\n scope GET /a x\n}", "must not contain quotes", 2},
		{"require with table", "apikey_auth {\n scope GET /a b\n require apps\n}", "cannot be combined", 3},
		{"require public", "apikey_auth {\n require apps\n require public\n}", "require lists scopes", 3},
		{"bad default", "apikey_auth {\n default Allow\n scope GET /a x\n}", "want deny, authenticated, public or a scope", 2},

		{"default denyy", "apikey_auth {\n scope GET /a x\n default denyy\n}", "did you mean deny?", 3},
		{"default pubic", "apikey_auth {\n default pubic\n}", "did you mean public?", 2},
		{"default den", "apikey_auth {\n default den\n}", "did you mean deny?", 2},
		{"default swapped letters", "apikey_auth {\n default pulbic\n}", "did you mean public?", 2},
		{"default authenticatd", "apikey_auth {\n\n default authenticatd\n}", "did you mean authenticated?", 3},
		{"default two typos", "apikey_auth {\n default athenticatd\n}", "did you mean authenticated?", 2},
		{"default allow", "apikey_auth {\n default allow\n}", "did you mean public (no key needed) or authenticated (any valid key)?", 2},
		{"default forbidden", "apikey_auth {\n default forbidden\n}", "did you mean deny?", 2},
		{"rule pubic", "apikey_auth {\n scope GET /a x\n scope GET /healthz pubic\n}", "did you mean public?", 3},
		{"rule auth", "apikey_auth {\n scope GET /me auth\n}", "did you mean authenticated?", 2},
		{"require typo", "apikey_auth {\n require apps:run\n require authenticted\n}", "did you mean authenticated?", 3},
		{"require typo same line", "apikey_auth {\n require apps:run\n require apps denyy\n}", "did you mean deny?", 3},
		{"method typo", "apikey_auth {\n scope GET /a x\n scope GTE /b x\n}", `method "GTE": did you mean GET?`, 3},
		{"method typo in a list", "apikey_auth {\n scope GET,POTS /b x\n}", `method "POTS": did you mean POST?`, 2},
		{"method any", "apikey_auth {\n scope ANY /b x\n}", "did you mean * (any method)?", 2},
		{"method lower typo", "apikey_auth {\n scope delet /b x\n}", "did you mean DELETE?", 2},

		{"option typo", "apikey_auth {\n scope GET /a x\n defualt deny\n}", `unknown option "defualt"; did you mean default?`, 3},
		{"option unlike any", "apikey_auth {\n bogus x\n}", `unknown option "bogus"`, 2},
		{"admin option typo", "apikey_admin {\n\n relm X\n}", `unknown option "relm"; did you mean realm?`, 3},
		{"admin bad realm", "apikey_admin {\n header X-Key\n realm `a\"b`\n}", "must not contain quotes", 3},
		{"admin bad header", "apikey_admin {\n realm X\n header X(Key)\n}", "not a valid header name", 3},
		{"guard option typo", "apikey_guard {\n allow_encoded_slashes\n}", "did you mean allow_encoded_slash?", 2},
		{"app option typo", "apikeys {\n key_prefx sk\n}", "did you mean key_prefix?", 2},
		{"cache option typo", "apikeys {\n cache {\n  max_entires 5\n }\n}", "did you mean max_entries?", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := caddyfile.NewTestDispenser(tt.input)
			var err error
			switch {
			case strings.HasPrefix(tt.input, "apikey_auth"):
				err = new(AuthHandler).UnmarshalCaddyfile(d)
			case strings.HasPrefix(tt.input, "apikey_admin"):
				err = new(AdminHandler).UnmarshalCaddyfile(d)
			case strings.HasPrefix(tt.input, "apikey_guard"):
				err = new(GuardHandler).UnmarshalCaddyfile(d)
			default:
				err = new(App).UnmarshalCaddyfile(d)
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
			if at := ", at Testfile:" + strconv.Itoa(tt.line); !strings.HasSuffix(err.Error(), at) {
				t.Fatalf("error = %v, want it to end %q", err, at)
			}
		})
	}
}

// TestCaddyfileNearKeywordScopes: one-segment scopes that are not close to
// a keyword, scopes with ":" and registered methods stay what they were.
func TestCaddyfileNearKeywordScopes(t *testing.T) {
	input := `apikey_auth {
		scope GET /a dev
		scope GET /b demo
		scope GET /c publish
		scope GET /d all
		scope GET /e deny:x
		scope GET /f public:read
		scope GET /g any
		scope PROPFIND,MKCOL,PURGE /h x
		scope get,Post /i x
		scope GET /j deny
		default apps:read
	}`
	var h AuthHandler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil {
		t.Fatal(err)
	}
	if len(h.Routes) != 10 || h.Routes[4].Scope != "deny:x" || h.Default != "apps:read" {
		t.Fatalf("got %+v", h)
	}
}

// TestTypoRefusedInJSON: the rule is the handler's, so a JSON config
// (written by hand, or adapted by an older Keygate) is refused too.
func TestTypoRefusedInJSON(t *testing.T) {
	for _, h := range []AuthHandler{
		{ScopeTable: ScopeTable{Default: "pubic"}},
		{ScopeTable: ScopeTable{Routes: []RouteRule{{Path: "/a", Scope: "denyy"}}}},
		{ScopeTable: ScopeTable{Routes: []RouteRule{{Methods: []string{"GTE"}, Path: "/a", Scope: "x"}}}},
		{ScopeTable: ScopeTable{Require: []string{"authenticatd"}}},
	} {
		if err := h.compile(); err == nil || !strings.Contains(err.Error(), "did you mean") {
			t.Errorf("%s: compile error %v, want a typo", exported(h), err)
		}
	}
}

// TestCaddyfileErrorLineThroughAdapter: through the Caddyfile adapter, as
// `caddy run` and `caddy validate` read a file, the error names the file
// and the rule's line.
func TestCaddyfileErrorLineThroughAdapter(t *testing.T) {
	src := `:8080 {
	apikey_auth {
		scope GET /v1/apps/{app} apps:read
		scope GET /v1/apps/{name} apps:write
		default deny
	}
	respond ok
}
`
	_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
	if err == nil || !strings.Contains(err.Error(), "conflicts") || !strings.Contains(err.Error(), "Caddyfile:4") {
		t.Fatalf("error = %v, want the conflict at Caddyfile:4", err)
	}
}
