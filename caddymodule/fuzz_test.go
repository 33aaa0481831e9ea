package caddymodule

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"hash/crc32"
	"net/http"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"golang.org/x/net/http/httpguts"

	"github.com/keygate/keygate/internal/routetable"
	"github.com/keygate/keygate/internal/scope"
	"github.com/keygate/keygate/storage/postgres"
	"github.com/keygate/keygate/storage/token"
)

// Fuzz targets for what a gateway reads from outside: credential headers
// and the Caddyfile syntax of apikey_auth, apikey_admin and the apikeys
// global option.

// fuzzTokens is the default token format.
var fuzzTokens, _ = token.NewFormat(token.DefaultPrefix)

// fuzzAuthToken is the reference reading of one non-empty, trimmed
// Authorization value, from DESIGN.md: "Bearer <t>", Basic with <t> as
// user name, or as password when the user name is not a token, and a bare
// "<t>". Schemes are case-insensitive; a malformed Basic value or a Bearer
// without a token yields "" (a credential that is not a valid token).
func fuzzAuthToken(v string) string {
	scheme, rest, _ := strings.Cut(v, " ")
	rest = strings.TrimSpace(rest)
	switch {
	case fuzzASCIILower(scheme) == "bearer":
		return rest
	case fuzzASCIILower(scheme) == "basic":
		raw, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return ""
		}
		user, pass, _ := strings.Cut(string(raw), ":")
		if fuzzTokens.Valid(user) || pass == "" {
			return user
		}
		return pass
	}
	return v
}

// fuzzASCIILower lowers A-Z only, as scheme names compare (RFC 9110).
func fuzzASCIILower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// fuzzExtract is the reference of extractCredential: every non-empty
// value of every source is one credential; equal ones count once.
func fuzzExtract(h http.Header, sources []string) (string, credentialResult) {
	var creds []string
	for _, name := range sources {
		for _, v := range h[name] {
			v = strings.TrimSpace(v)
			if v == "" {
				continue
			}
			if name == "Authorization" {
				v = fuzzAuthToken(v)
			}
			creds = append(creds, v)
		}
	}
	if len(creds) == 0 {
		return "", credentialNone
	}
	for _, c := range creds {
		if c != creds[0] {
			return "", credentialConflict
		}
	}
	return creds[0], credentialOne
}

// fuzzSeededToken is a valid token whose random part comes from seed,
// with its checksum computed as DESIGN.md says: CRC32-IEEE in base62,
// most significant digit first, left-padded with '0' to 6 characters.
func fuzzSeededToken(seed string) string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := []byte("sk-")
	for i := range 43 {
		c := byte(i)
		if seed != "" {
			c += seed[i%len(seed)]
		}
		b = append(b, alphabet[int(c)%62])
	}
	sum := make([]byte, 6)
	v := crc32.ChecksumIEEE(b)
	for i := 5; i >= 0; i-- {
		sum[i] = alphabet[v%62]
		v /= 62
	}
	return string(append(b, sum...))
}

// FuzzCredential feeds header values to extractCredential and
// tokenFromAuthorization in every credential form: X-API-Key, Bearer, raw,
// Basic with the token as user or password. It checks no panic, agreement
// with the reference reading, that the same value twice is one credential
// and two different ones a conflict, and that a valid token is found in
// every form it can be sent in.
func FuzzCredential(f *testing.F) {
	tok := fuzzTokens.Generate()
	b64 := base64.StdEncoding.EncodeToString
	f.Add(tok, "Bearer "+tok, "user")
	f.Add(tok, "Basic "+b64([]byte(tok+":")), "")
	f.Add(tok, "Basic "+b64([]byte("me:"+tok)), "me")
	f.Add(" "+tok+" ", "bearer   "+tok, "")
	f.Add("", "Bearer", "x")
	f.Add("a", "Bearer b", "")
	f.Add("x", "Basic !!!", "")
	f.Add("sk-abc", "Basic "+b64([]byte("sk-abc")), ":")
	f.Add("a:b", "Basic "+b64([]byte("a:b:c")), "a")
	f.Add("\t", "BASIC "+b64([]byte(tok+":"+fuzzTokens.Generate())), "")
	f.Add("Bearer x", "Token x", "")
	f.Add(tok, "Basic  "+b64([]byte(":"+tok)), "")
	f.Add(tok, "Bearer "+tok, "")
	f.Add(tok, "Baſic "+b64([]byte(tok+":")), "")
	f.Fuzz(func(t *testing.T, v1, v2, user string) {
		// tokenFromAuthorization on anything non-empty and trimmed.
		for _, v := range []string{v1, v2} {
			if v = strings.TrimSpace(v); v != "" {
				if got, want := tokenFromAuthorization(v, fuzzTokens), fuzzAuthToken(v); got != want {
					t.Fatalf("tokenFromAuthorization(%q) = %q, want %q", v, got, want)
				}
			}
		}
		check := func(h http.Header, sources []string) {
			t.Helper()
			got, gr := extractCredential(h, sources, fuzzTokens)
			want, wr := fuzzExtract(h, sources)
			if got != want || gr != wr {
				t.Fatalf("extractCredential(%q, %q) = %q, %d; want %q, %d", h, sources, got, gr, want, wr)
			}
		}
		both := []string{"X-Api-Key", "Authorization"}
		for _, name := range both {
			for _, vals := range [][]string{{v1}, {v1, v1}, {v1, v2}, {v2, v1}, {v1, "", v2}} {
				check(http.Header{name: vals}, both)
			}
			// The same value twice is one credential; two whose
			// credentials differ are a conflict.
			_, r1 := extractCredential(http.Header{name: {v1}}, both, fuzzTokens)
			c, r2 := extractCredential(http.Header{name: {v1, v1}}, both, fuzzTokens)
			if r1 != r2 {
				t.Fatalf("%s: %q once is %d, twice is %d (%q)", name, v1, r1, r2, c)
			}
		}
		check(http.Header{"X-Api-Key": {v1}, "Authorization": {v2}}, both)
		check(http.Header{"X-Api-Key": {v2}, "Authorization": {v1, v2}}, both)
		check(http.Header{"X-Custom": {v1, v2}, "Authorization": {v1}}, []string{"X-Custom"})

		// A valid token is found in every form, alone or sent twice in
		// two forms; with another credential beside it, it is a conflict.
		for _, tok := range []string{tok, fuzzSeededToken(v1)} {
			if !fuzzTokens.Valid(tok) {
				t.Fatalf("token %q is not valid", tok)
			}
			forms := map[string][]string{
				"X-Api-Key":     {tok, "  " + tok + "\t"},
				"Authorization": {tok, "Bearer " + tok, "bEaReR   " + tok + " ", "Basic " + b64([]byte(tok+":")), "basic " + b64([]byte(tok+":"+user))},
			}
			if !fuzzTokens.Valid(user) && !strings.Contains(user, ":") {
				forms["Authorization"] = append(forms["Authorization"], "Basic "+b64([]byte(user+":"+tok)))
			}
			var all []http.Header
			for name, values := range forms {
				for _, v := range values {
					all = append(all, http.Header{name: {v}})
				}
			}
			for i, h := range all {
				if got, r := extractCredential(h, both, fuzzTokens); got != tok || r != credentialOne {
					t.Fatalf("extractCredential(%q) = %q, %d; want the token", h, got, r)
				}
				other := all[(i+1)%len(all)]
				pair := http.Header{}
				for k, v := range h {
					pair[k] = append(pair[k], v...)
				}
				for k, v := range other {
					pair[k] = append(pair[k], v...)
				}
				if got, r := extractCredential(pair, both, fuzzTokens); got != tok || r != credentialOne {
					t.Fatalf("extractCredential(%q) = %q, %d; want the token once", pair, got, r)
				}
				pair.Add("X-Api-Key", v1)
				_, r := extractCredential(pair, both, fuzzTokens)
				if strings.TrimSpace(v1) != "" && strings.TrimSpace(v1) != tok && r != credentialConflict {
					t.Fatalf("extractCredential(%q) = %d, want a conflict", pair, r)
				}
			}
		}
	})
}

// fuzzDispenser tokenizes input as a Caddyfile does. NewTestDispenser
// would log.Fatal on a lexer error, which kills the fuzzing worker, so the
// lexer's verdict is taken first; lexer errors are not ours to fuzz.
func fuzzDispenser(input string) (*caddyfile.Dispenser, bool) {
	tokens, err := caddyfile.Tokenize([]byte(input), "Testfile")
	if err != nil {
		return nil, false
	}
	return caddyfile.NewDispenser(tokens), true
}

// fuzzCheckAnswers checks the rendered refusals of a compiled handler:
// JSON bodies with an error code, and challenge headers that are valid
// header values.
func fuzzCheckAnswers(t *testing.T, h *AuthHandler) {
	t.Helper()
	ds := fuzzAuthenticatorDenials(&h.Authenticator)
	accs := []*access{h.fallback}
	for _, path := range []string{"/", "/v1/apps/x", "/a/b/c"} {
		if acc, ok := h.table.Match("GET", path); ok {
			accs = append(accs, acc)
		}
	}
	for _, acc := range accs {
		if acc == nil {
			t.Fatal("nil access")
		}
		ds = append(ds, acc.insufficient...)
	}
	fuzzCheckDenials(t, ds)
}

// fuzzAuthenticatorDenials returns the answers of a compiled authenticator.
func fuzzAuthenticatorDenials(a *Authenticator) []*denial {
	ds := []*denial{a.answers.unauthorized, a.answers.invalidToken, a.answers.expired, a.answers.disabled,
		a.answers.invalidRequest, a.answers.forbidden, a.answers.unavailable}
	return append(ds, a.answers.badPath[pathOK+1:]...)
}

// fuzzCheckDenials checks that each answer is a JSON error with valid
// challenge headers.
func fuzzCheckDenials(t *testing.T, ds []*denial) {
	t.Helper()
	for _, d := range ds {
		var body map[string]string
		if err := json.Unmarshal(d.body, &body); err != nil || body["error"] == "" {
			t.Fatalf("denial body %q: %v", d.body, err)
		}
		for _, v := range d.wwwAuthenticate {
			if !httpguts.ValidHeaderFieldValue(v) {
				t.Fatalf("WWW-Authenticate %q is not a valid header value", v)
			}
		}
	}
}

// FuzzAuthCaddyfile unmarshals apikey_auth blocks. Whatever it accepts
// must hold only well-formed patterns and scopes, compile, and compile
// again after the JSON round trip `caddy adapt` then `caddy run` make.
func FuzzAuthCaddyfile(f *testing.F) {
	for _, s := range []string{
		"apikey_auth",
		"apikey_auth {\n}",
		"apikey_auth {\n\theader X-API-Key\n\theader Authorization\n\trealm \"Example API\"\n\tscope GET /v1/apps apps:read\n\tscope GET /v1/apps/{app} apps:read\n\tscope POST /v1/apps/{app}/runs apps:run\n\tscope DELETE /v1/apps/{app} apps:delete\n\tscope * /v1/secrets/* secrets\n\tscope GET /healthz public\n\tscope GET /v1/me authenticated\n\tdefault deny\n}",
		"apikey_auth {\n\trequire apps:run runs\n}",
		"apikey_auth {\n\tallow_encoded_slash\n\tscope DELETE /v1/apps/{app} apps:delete\n}",
		"apikey_auth {\n\tallow_encoded_slash x\n}",
		"apikey_auth {\n\trequire\n}",
		"apikey_auth {\n\trequire\n\trequire apps\n}",
		"apikey_auth {\n\tscope GET /a x\n\tdefault apps:read\n}",
		"apikey_auth {\n\tscope GET /a x\n\tscope get /a y\n}",
		"apikey_auth {\n\tscope GET,POST /a/{b} x\n\tscope POST /a/{c} y\n}",
		"apikey_auth {\n\tscope GET /{path} x\n}",
		"apikey_auth {\n\tscope GET /a/* public\n\trequire x\n}",
		"apikey_auth {\n\trealm \"a\\\"b\"\n}",
		"apikey_auth {\n\theader \"X Key\"\n}",
		"apikey_auth {\n\tdefault public\n\tdefault deny\n}",
		"apikey_auth {\n\trequire public\n}",
		"apikey_auth {\n\trequire authenticated authenticated\n}",
		"apikey_auth x",
		"apikey_auth {\n\tscope GET /a\n}",
		"apikey_auth {\n\tscope , /a x\n}",
		"apikey_auth {\n\tbogus\n}",
		"apikey_auth {\n\trealm `Back\ntick`\n\theader <<EOF\n\tX-Key\n\tEOF\n}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		d, ok := fuzzDispenser(input)
		if !ok {
			return
		}
		var h AuthHandler
		if err := h.UnmarshalCaddyfile(d); err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		for _, r := range h.Routes {
			if err := routetable.ValidatePattern(r.Path); err != nil {
				t.Fatalf("accepted route %+v: %v", r, err)
			}
			if r.Scope != AccessPublic && r.Scope != AccessAuthenticated && scope.Validate(r.Scope) != nil {
				t.Fatalf("accepted route %+v with a malformed scope", r)
			}
		}
		switch h.Default {
		case "", AccessDeny, AccessAuthenticated, AccessPublic:
		default:
			if scope.Validate(h.Default) != nil {
				t.Fatalf("accepted default %q", h.Default)
			}
		}
		for _, s := range h.Require {
			if s != AccessAuthenticated && scope.Validate(s) != nil {
				t.Fatalf("accepted require %q", s)
			}
		}
		c := h
		if err := c.compile(); err != nil {
			t.Fatalf("accepted config does not compile: %v\n%+v", err, h)
		}
		fuzzCheckAnswers(t, &c)
		if err := c.compile(); err != nil {
			t.Fatalf("second compile: %v", err)
		}

		raw, err := json.Marshal(&h)
		if err != nil {
			t.Fatal(err)
		}
		var j AuthHandler
		if err := json.Unmarshal(raw, &j); err != nil {
			t.Fatalf("JSON %s: %v", raw, err)
		}
		if err := j.compile(); err != nil {
			t.Fatalf("accepted config does not compile after the JSON round trip: %v\n%s", err, raw)
		}
		if len(j.Routes) > 0 {
			for _, r := range j.Routes {
				_, _ = j.table.Match("GET", r.Path)
			}
		}
	})
}

// FuzzAdminCaddyfile unmarshals apikey_admin blocks; whatever is accepted
// must go through what Provision does (minus the app) without panicking.
func FuzzAdminCaddyfile(f *testing.F) {
	for _, s := range []string{
		"apikey_admin",
		"apikey_admin {\n}",
		"apikey_admin {\n\theader X-Admin-Key\n\trealm Admin\n}",
		"apikey_admin {\n\theader Authorization\n\theader X-API-Key\n}",
		"apikey_admin x",
		"apikey_admin {\n\tscope GET / x\n}",
		"apikey_admin {\n\theader\n}",
		"apikey_admin {\n\theader A B\n}",
		"apikey_admin {\n\trealm \"q\\\"uote\"\n}",
		"apikey_admin {\n\theader \"a:b\"\n}",
		"apikey_admin {\n\theader X-K\u0131y\n}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		d, ok := fuzzDispenser(input)
		if !ok {
			return
		}
		var h AdminHandler
		if err := h.UnmarshalCaddyfile(d); err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		raw, err := json.Marshal(&h)
		if err != nil {
			t.Fatal(err)
		}
		var j AdminHandler
		if err := json.Unmarshal(raw, &j); err != nil {
			t.Fatalf("JSON %s: %v", raw, err)
		}
		// As Provision does, without the apikeys app: what the parser
		// accepted must compile.
		if err := j.Auth.compile(); err != nil {
			t.Fatalf("accepted config does not compile: %v\n%s", err, raw)
		}
		fuzzCheckDenials(t, append(fuzzAuthenticatorDenials(&j.Auth.Authenticator), j.Auth.insufficientScope("api_keys:create")))
	})
}

// FuzzAppCaddyfile unmarshals the apikeys global option; whatever is
// accepted must survive the JSON round trip and Provision and Validate
// (which open no connection and no file) without panicking, with a valid
// key prefix and schema.
func FuzzAppCaddyfile(f *testing.F) {
	for _, s := range []string{
		"apikeys",
		"apikeys {\n}",
		"apikeys {\n\tstorage postgres {env.DATABASE_URL}\n\tkey_prefix sk\n\tcache {\n\t\tmax_entries 100000\n\t\tttl 5m\n\t\tnegative_ttl 30s\n\t}\n}",
		"apikeys {\n\tstorage postgres postgres://u@h/db {\n\t\tschema tenant_a\n\t}\n\tkey_prefix live\n}",
		"apikeys {\n\tstorage postgres \"\"\n}",
		"apikeys {\n\tstorage file /var/keys.db\n}",
		"apikeys {\n\tstorage postgres a {\n\t\tschema pg_x\n\t}\n}",
		"apikeys {\n\tkey_prefix SK\n}",
		"apikeys {\n\tcache {\n\t\tmax_entries 0\n\t\tttl 1d\n\t}\n}",
		"apikeys {\n\tcache {\n\t\tttl 9223372036854775807ns\n\t}\n}",
		"apikeys {\n\tcache\n\tcache\n}",
		"apikeys x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		d, ok := fuzzDispenser(input)
		if !ok {
			return
		}
		var a App
		if err := a.UnmarshalCaddyfile(d); err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if a.KeyPrefix != "" {
			if err := token.ValidatePrefix(a.KeyPrefix); err != nil {
				t.Fatalf("accepted key_prefix: %v", err)
			}
		}
		if a.Storage != nil {
			var st struct{ Module, Schema string }
			if err := json.Unmarshal(a.Storage, &st); err != nil {
				t.Fatalf("storage JSON %s: %v", a.Storage, err)
			}
			if st.Module != "postgres" && st.Module != "file" {
				t.Fatalf("accepted storage type %q", st.Module)
			}
			if st.Schema != "" && postgres.ValidateSchema(st.Schema) != nil {
				t.Fatalf("accepted schema %q", st.Schema)
			}
		}
		if c := a.Cache; c != nil && (c.MaxEntries < 0 || c.TTL < 0 || c.NegativeTTL < 0) {
			t.Fatalf("accepted negative cache settings %+v", *c)
		}

		raw := caddyconfig.JSON(&a, nil) // as parseGlobalOption does
		var j App
		if err := json.Unmarshal(raw, &j); err != nil {
			t.Fatalf("JSON %s: %v", raw, err)
		}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		defer cancel()
		if err := j.Provision(ctx); err != nil && !strings.Contains(err.Error(), "invalid configuration") {
			// A storage module's Validate may refuse what only the
			// environment decides (an unset {env.X}); nothing else may fail.
			t.Fatalf("accepted config fails Provision: %v\n%s", err, raw)
		}
		defer func() { _ = j.Cleanup() }()
	})
}
