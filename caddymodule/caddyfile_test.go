package caddymodule

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestAuthCaddyfile(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  AuthHandler
	}{
		{"bare", `apikey_auth`, AuthHandler{}},
		{"empty block", `apikey_auth {
		}`, AuthHandler{}},
		{"table", `apikey_auth {
			header X-API-Key
			header Authorization
			realm "Example API"
			scope GET /v1/apps apps:read
			scope GET,POST /v1/apps/{app} apps
			scope * /v1/secrets/* secrets
			scope GET /healthz public
			scope GET /v1/me authenticated
			default deny
		}`, AuthHandler{
			Authenticator: Authenticator{Headers: []string{"X-API-Key", "Authorization"}, Realm: "Example API"},
			ScopeTable: ScopeTable{
				Routes: []RouteRule{
					{Methods: []string{"GET"}, Path: "/v1/apps", Scope: "apps:read"},
					{Methods: []string{"GET", "POST"}, Path: "/v1/apps/{app}", Scope: "apps"},
					{Path: "/v1/secrets/*", Scope: "secrets"},
					{Methods: []string{"GET"}, Path: "/healthz", Scope: "public"},
					{Methods: []string{"GET"}, Path: "/v1/me", Scope: "authenticated"},
				},
				Default: "deny",
			},
		}},
		{"default scope", `apikey_auth {
			scope GET /a x
			default apps:read
		}`, AuthHandler{ScopeTable: ScopeTable{Routes: []RouteRule{{Methods: []string{"GET"}, Path: "/a", Scope: "x"}}, Default: "apps:read"}}},
		{"default authenticated", `apikey_auth {
			default authenticated
		}`, AuthHandler{ScopeTable: ScopeTable{Default: "authenticated"}}},
		{"require", `apikey_auth {
			require apps:run runs
		}`, AuthHandler{ScopeTable: ScopeTable{Require: []string{"apps:run", "runs"}}}},
		{"require nothing", `apikey_auth {
			require
		}`, AuthHandler{ScopeTable: ScopeTable{Require: []string{"authenticated"}}}},
		{"same shape other methods", `apikey_auth {
			scope GET /a/{x} r
			scope POST /a/{y} w
			scope * /a/{z} all
		}`, AuthHandler{ScopeTable: ScopeTable{Routes: []RouteRule{
			{Methods: []string{"GET"}, Path: "/a/{x}", Scope: "r"},
			{Methods: []string{"POST"}, Path: "/a/{y}", Scope: "w"},
			{Path: "/a/{z}", Scope: "all"},
		}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got AuthHandler
			if err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input)); err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(exported(got), exported(tt.want)) {
				t.Fatalf("got %+v\nwant %+v", exported(got), exported(tt.want))
			}
		})
	}
}

// exported returns the JSON form of h: what the Caddyfile produces.
func exported(h AuthHandler) string {
	b, _ := json.Marshal(h)
	return string(b)
}

func TestAuthCaddyfileErrors(t *testing.T) {
	tests := []struct{ name, input, want string }{
		{"argument", `apikey_auth apps:read`, "options go in a block"},
		{"unknown option", "apikey_auth {\n bogus x\n}", `unknown option "bogus"`},
		{"header without name", "apikey_auth {\n header\n}", "wrong argument count"},
		{"header two names", "apikey_auth {\n header A B\n}", "wrong argument count"},
		{"header bad name", "apikey_auth {\n header \"X Key\"\n}", "not a valid header name"},
		{"header separator", "apikey_auth {\n header X-Key,Y\n}", "not a valid header name"},
		{"header non-ASCII", "apikey_auth {\n header X-Kéy\n}", "not a valid header name"},
		{"realm missing", "apikey_auth {\n realm\n}", "wrong argument count"},
		{"realm quote", "apikey_auth {\n realm `a\"b`\n}", "must not contain quotes"},
		{"scope too few", "apikey_auth {\n scope GET /a\n}", "expected <methods> <path>"},
		{"scope too many", "apikey_auth {\n scope GET /a b c\n}", "expected <methods> <path>"},
		{"scope bad scope", "apikey_auth {\n scope GET /a Apps\n}", "invalid character"},
		{"scope empty segment", "apikey_auth {\n scope GET /a a::b\n}", "empty segment"},
		{"scope bad path", "apikey_auth {\n scope GET a b\n}", "pattern"},
		{"scope star inside", "apikey_auth {\n scope GET /a*/b x\n}", "pattern"},
		{"scope star not last", "apikey_auth {\n scope GET /*/b x\n}", "pattern"},
		{"scope shorthand param", "apikey_auth {\n scope GET /a/{path} x\n}", "placeholder"},
		{"scope host shorthand", "apikey_auth {\n scope GET /a/{host} x\n}", "placeholder"},
		{"scope bad method", "apikey_auth {\n scope G@T /a x\n}", "method"},
		{"scope conflict", "apikey_auth {\n scope GET /a/{x} r\n scope GET /a/{y} w\n}", "conflicts"},
		{"scope any conflict", "apikey_auth {\n scope * /a r\n scope * /a w\n}", "conflicts"},
		{"default missing", "apikey_auth {\n default\n}", "wrong argument count"},
		{"default twice", "apikey_auth {\n default deny\n default deny\n}", "already set"},
		{"default bad", "apikey_auth {\n default Allow\n}", "want deny, authenticated, public or a scope"},
		{"default extra", "apikey_auth {\n default deny x\n}", "wrong argument count"},
		{"require bad", "apikey_auth {\n require apps:\n}", "empty segment"},
		{"require with table", "apikey_auth {\n require apps\n scope GET /a b\n}", "cannot be combined"},
		{"require with default", "apikey_auth {\n require apps\n default deny\n}", "cannot be combined"},
		{"require public", "apikey_auth {\n require public\n}", "require lists scopes"},
		{"require deny", "apikey_auth {\n require deny\n}", "require lists scopes"},
		{"require authenticated and a scope", "apikey_auth {\n require authenticated apps\n}", "require lists scopes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h AuthHandler
			err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestShorthandIsRejectedThroughAdapter checks the error a user sees when
// the Caddyfile adapter has already replaced {path} in a pattern.
func TestShorthandIsRejectedThroughAdapter(t *testing.T) {
	var h AuthHandler
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("apikey_auth {\n scope GET /a/{http.request.uri.path} x\n}"))
	if err == nil || !strings.Contains(err.Error(), "placeholder") {
		t.Fatalf("error = %v, want a placeholder error", err)
	}
}

func TestAppCaddyfile(t *testing.T) {
	var a App
	err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`apikeys {
		storage postgres {env.DATABASE_URL} {
			schema tenant_a
		}
		key_prefix live
		cache {
			max_entries 5000
			ttl 1m
			negative_ttl 10s
		}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	want := App{
		Storage:   json.RawMessage(`{"dsn":"{env.DATABASE_URL}","module":"postgres","schema":"tenant_a"}`),
		KeyPrefix: "live",
		Cache:     &CacheConfig{MaxEntries: 5000, TTL: caddy.Duration(time.Minute), NegativeTTL: caddy.Duration(10 * time.Second)},
	}
	if string(a.Storage) != string(want.Storage) || a.KeyPrefix != want.KeyPrefix || !reflect.DeepEqual(a.Cache, want.Cache) {
		t.Fatalf("got %+v %+v %+v", a.Storage, a.KeyPrefix, a.Cache)
	}
}

func TestAppCaddyfileErrors(t *testing.T) {
	tests := []struct{ name, input, want string }{
		{"argument", `apikeys x`, "wrong argument count"},
		{"unknown option", "apikeys {\n bogus\n}", `unknown option "bogus"`},
		{"storage no type", "apikeys {\n storage\n}", "expected a type"},
		{"storage bad type", "apikeys {\n storage redis x\n}", `unknown type "redis"`},
		{"storage file no path", "apikeys {\n storage file\n}", "expected a path"},
		{"storage file extra", "apikeys {\n storage file a b\n}", "wrong argument count"},
		{"storage no dsn", "apikeys {\n storage postgres\n}", "expected a connection string"},
		{"storage extra", "apikeys {\n storage postgres a b\n}", "wrong argument count"},
		{"storage twice", "apikeys {\n storage postgres a\n storage postgres b\n}", "already set"},
		{"schema bad", "apikeys {\n storage postgres a {\n schema Bad-Name\n }\n}", "schema"},
		{"schema pg_", "apikeys {\n storage postgres a {\n schema pg_x\n }\n}", "schema"},
		{"schema missing", "apikeys {\n storage postgres a {\n schema\n }\n}", "wrong argument count"},
		{"storage option unknown", "apikeys {\n storage postgres a {\n pool 5\n }\n}", `unknown option "pool"`},
		{"prefix missing", "apikeys {\n key_prefix\n}", "wrong argument count"},
		{"prefix bad", "apikeys {\n key_prefix SK\n}", "invalid character"},
		{"prefix long", "apikeys {\n key_prefix abcdefghijklmnopq\n}", "1 to 16"},
		{"cache arg", "apikeys {\n cache 5\n}", "wrong argument count"},
		{"cache twice", "apikeys {\n cache {\n }\n cache {\n }\n}", "already set"},
		{"cache entries bad", "apikeys {\n cache {\n max_entries lots\n }\n}", "not a positive integer"},
		{"cache entries zero", "apikeys {\n cache {\n max_entries 0\n }\n}", "not a positive integer"},
		{"cache ttl bad", "apikeys {\n cache {\n ttl forever\n }\n}", "not a positive duration"},
		{"cache ttl negative", "apikeys {\n cache {\n negative_ttl -1s\n }\n}", "not a positive duration"},
		{"cache option unknown", "apikeys {\n cache {\n size 5\n }\n}", `unknown option "size"`},
		{"cache option no value", "apikeys {\n cache {\n ttl\n }\n}", "wrong argument count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a App
			err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestAdminCaddyfile(t *testing.T) {
	var h AdminHandler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("apikey_admin {\n header X-Admin-Key\n realm Admin\n}")); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(h.Auth.Headers, []string{"X-Admin-Key"}) || h.Auth.Realm != "Admin" {
		t.Fatalf("got %+v", h.Auth)
	}
	for input, want := range map[string]string{
		"apikey_admin x":                    "wrong argument count",
		"apikey_admin {\n scope GET / x\n}": `unknown option "scope"`,
		"apikey_admin {\n header\n}":        "wrong argument count",
		"apikey_admin {\n header A B\n}":    "wrong argument count",
		"apikey_admin {\n header X(Key)\n}": "not a valid header name",
		"apikey_admin {\n header X-Kéy\n}":  "not a valid header name",
		"apikey_admin {\n realm `a\"b`\n}":  "must not contain quotes",
	} {
		var h AdminHandler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error = %v, want one containing %q", input, err, want)
		}
	}
}
