package caddymodule

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// readTarget parses a request line as net/http's server does.
func readTarget(t testing.TB, method, target string) (*http.Request, bool) {
	t.Helper()
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(method + " " + target + " HTTP/1.1\r\nHost: x\r\n\r\n")))
	return r, err == nil
}

func TestCanonicalPath(t *testing.T) {
	for _, tt := range []struct {
		target string
		allow  bool
		fault  pathFault
		match  string // path to match
		esc    bool   // match is escaped
		up     string // EscapedPath afterwards: what goes upstream
	}{
		{target: "/v1/apps/web", match: "/v1/apps/web", up: "/v1/apps/web"},
		{target: "/v1/apps/a%20b", match: "/v1/apps/a b", up: "/v1/apps/a%20b"},
		{target: "/v1/apps/a%3Ab", match: "/v1/apps/a:b", up: "/v1/apps/a%3Ab"},
		{target: "/v1/apps/caf%C3%A9", match: "/v1/apps/café", up: "/v1/apps/caf%C3%A9"},
		{target: "/v1/apps/100%25", match: "/v1/apps/100%", up: "/v1/apps/100%25"},
		{target: "/v1/apps/100%25x", match: "/v1/apps/100%x", up: "/v1/apps/100%25x"},
		{target: "/", match: "/", up: "/"},
		{target: "*", match: "*", up: "*"},
		// Dot segments and repeated slashes, raw or encoded.
		{target: "/v1/apps/../secrets/x", match: "/v1/secrets/x", up: "/v1/secrets/x"},
		{target: "/v1/apps/%2e%2E/secrets/x", match: "/v1/secrets/x", up: "/v1/secrets/x"},
		{target: "//v1//secrets/./x/", match: "/v1/secrets/x/", up: "/v1/secrets/x/"},
		{target: "/v1/../../x", match: "/x", up: "/x"},
		{target: "/v1//apps/a%3Ab", match: "/v1/apps/a:b", up: "/v1/apps/a%3Ab"}, // other escapes kept
		{target: "/v1/apps/a%2Eb", match: "/v1/apps/a.b", up: "/v1/apps/a%2Eb"},
		// The family, refused by default.
		{target: "/v1/apps/a%2Fb", fault: pathEncodedSlash},
		{target: "/v1/apps/a%2fb", fault: pathEncodedSlash},
		{target: "/v1/apps/x%2F..%2F..%2Fsecrets", fault: pathEncodedSlash},
		{target: "/v1/apps/a%5Cb", fault: pathBackslash},
		{target: "/v1/apps/a%5cb", fault: pathBackslash},
		{target: `/v1/apps/a\b`, fault: pathBackslash},
		{target: `/v1/apps/a\b`, allow: true, fault: pathBackslash},
		{target: "/v1/secrets;x/y", fault: pathParameter},
		{target: "/v1/secrets%3bx/y", fault: pathParameter},
		{target: "/v1/apps/a%00", fault: pathControl},
		{target: "/v1/apps/a%0d%0a", fault: pathControl},
		{target: "/v1/apps/a%1F", fault: pathControl},
		{target: "/v1/apps/a%7f", fault: pathControl},
		{target: "/v1/apps/a%252Fb", fault: pathDoubleEncoded},
		{target: "/v1/apps/a%252fb", allow: true, fault: pathDoubleEncoded},
		{target: "/v1/apps/%252e%252e/x", fault: pathDoubleEncoded},
		{target: "/v1/apps/a%25ab", fault: pathDoubleEncoded},
		{target: "/v1/apps/a%2F%00", allow: true, fault: pathControl},
		// With the opt-in, a%2Fb is one segment, matched escaped.
		{target: "/v1/apps/a%2Fb", allow: true, match: "/v1/apps/a%2Fb", esc: true, up: "/v1/apps/a%2Fb"},
		{target: "/v1/apps/a%2fb/", allow: true, match: "/v1/apps/a%2fb/", esc: true, up: "/v1/apps/a%2fb/"},
		{target: "/v1/apps/x/..%2F..%2Fsecrets", allow: true, match: "/v1/apps/x/..%2F..%2Fsecrets", esc: true, up: "/v1/apps/x/..%2F..%2Fsecrets"},
		{target: "/v1/apps/x/../a%2Fb", allow: true, match: "/v1/apps/a%2Fb", esc: true, up: "/v1/apps/a%2Fb"},
		{target: "/v1//apps/%2e/a%2Fb/%2E%2e/c%20d", allow: true, match: "/v1/apps/c%20d", esc: true, up: "/v1/apps/c%20d"},
		{target: "/v1/apps/a%20b", allow: true, match: "/v1/apps/a b", up: "/v1/apps/a%20b"}, // no %2F: the ordinary way
		{target: "/v1/apps/../secrets", allow: true, match: "/v1/secrets", up: "/v1/secrets"},
	} {
		r, ok := readTarget(t, "GET", tt.target)
		if !ok {
			t.Fatalf("%q: net/http refuses it", tt.target)
		}
		match, esc, fault := canonicalPath(r, tt.allow)
		if fault != tt.fault {
			t.Errorf("%q (allow %v): fault %d, want %d", tt.target, tt.allow, fault, tt.fault)
			continue
		}
		if fault != pathOK {
			continue
		}
		if match != tt.match || esc != tt.esc || r.URL.EscapedPath() != tt.up {
			t.Errorf("%q (allow %v): match %q (escaped %v), upstream %q; want %q (%v), %q",
				tt.target, tt.allow, match, esc, r.URL.EscapedPath(), tt.match, tt.esc, tt.up)
		}
		// Canonical is a fixed point: the upstream's path is checked as is.
		again := &http.Request{URL: &url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath}}
		m2, e2, f2 := canonicalPath(again, tt.allow)
		want2 := again.URL.Path
		if e2 {
			want2 = again.URL.EscapedPath()
		}
		if m2 != want2 || f2 != pathOK || again.URL.EscapedPath() != tt.up {
			t.Errorf("%q: second pass %q %v %d %q", tt.target, m2, e2, f2, again.URL.EscapedPath())
		}
	}
}

func TestCanonicalMethod(t *testing.T) {
	for in, want := range map[string]string{
		"GET": "GET", "get": "GET", "post": "POST", "Post": "POST", "dElEtE": "DELETE",
		"M-SEARCH": "M-SEARCH", "m-search": "M-SEARCH", "PROPFIND": "PROPFIND", "x_1!": "X_1!",
		// Not tokens: refused, not folded (strings.ToUpper("poſt") is "POST").
		"poſt": "", "PO ST": "", "": "", "GET\x00": "", "DELETE\n": "", "dél": "",
	} {
		got, ok := canonicalMethod(in)
		if got != want || ok != (want != "") {
			t.Errorf("canonicalMethod(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

// TestCanonicalRequestAllocations: ordinary requests cost no allocation.
func TestCanonicalRequestAllocations(t *testing.T) {
	for _, target := range []string{"/v1/apps/web/runs", "/v1/apps/a%20b", "/v1/apps/a%2Fb"} {
		r, _ := readTarget(t, "POST", target)
		allow := strings.Contains(target, "%2F")
		allocs := testing.AllocsPerRun(100, func() {
			r.Method, _ = canonicalMethod(r.Method)
			_, _, _ = canonicalPath(r, allow)
		})
		if allocs != 0 && !allow {
			t.Errorf("%s: %v allocations, want 0", target, allocs)
		}
	}
}

// TestAuthorizeRefusesPathFamily runs the handler itself: each fault is a
// 400 invalid_request JSON answer on every kind of route, public included,
// and the credential is stripped; the method goes on upper-cased.
func TestAuthorizeRefusesPathFamily(t *testing.T) {
	for _, h := range []*AuthHandler{
		{ScopeTable: ScopeTable{Routes: []RouteRule{{Path: "/*", Scope: AccessPublic}}}},
		{ScopeTable: ScopeTable{Routes: []RouteRule{{Path: "/v1/*", Scope: "apps"}}, Default: AccessAuthenticated}},
		{ScopeTable: ScopeTable{Require: []string{"apps"}}},
		{ScopeTable: ScopeTable{Default: AccessPublic}},
		{},
	} {
		if err := h.compile(); err != nil {
			t.Fatal(err)
		}
		for _, target := range []string{"/v1/a%2Fb", "/v1/a%5Cb", `/v1/a\b`, "/v1/a;b", "/v1/a%00", "/v1/a%252Fb"} {
			r, ok := readTarget(t, "get", target)
			if !ok {
				t.Fatalf("%q: net/http refuses it", target)
			}
			r.Header.Set("X-Api-Key", "sk-x")
			cred, _, d := h.authorize(r)
			if cred != nil || d == nil || d.status != http.StatusBadRequest {
				t.Fatalf("%+v: %s: %v %+v, want a 400", h, target, cred, d)
			}
			if r.Header.Get("X-Api-Key") != "" {
				t.Errorf("%s: credential not stripped", target)
			}
			w := httptest.NewRecorder()
			if err := d.serve(w, r); err != nil {
				t.Fatal(err)
			}
			var body map[string]string
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["error"] != "invalid_request" || body["message"] == "" {
				t.Errorf("%s: body %s (%v)", target, w.Body, err)
			}
			if w.Code != 400 || w.Header().Get("Content-Type") != "application/json" || w.Header().Get("Www-Authenticate") != "" {
				t.Errorf("%s: %d %v", target, w.Code, w.Header())
			}
		}
	}
	// A method that is not a token (HTTP/2 passes :method on unchecked) is
	// a 400 too, on a public route as well.
	pub := &AuthHandler{ScopeTable: ScopeTable{Default: AccessPublic}}
	if err := pub.compile(); err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/v1/a", nil)
	r.Method = "poſt"
	if _, _, d := pub.authorize(r); d == nil || d.status != http.StatusBadRequest {
		t.Fatalf("method poſt: %+v, want a 400", d)
	}

	// A public route: passes, with the canonical method and path.
	h := &AuthHandler{ScopeTable: ScopeTable{Routes: []RouteRule{{Methods: []string{"POST"}, Path: "/v1/*", Scope: AccessPublic}}}}
	if err := h.compile(); err != nil {
		t.Fatal(err)
	}
	r, _ = readTarget(t, "post", "/x/../v1/a")
	if cred, _, d := h.authorize(r); cred != nil || d != nil || r.Method != "POST" || r.URL.EscapedPath() != "/v1/a" {
		t.Fatalf("post /x/../v1/a: %v %v, goes on as %s %s", cred, d, r.Method, r.URL.EscapedPath())
	}
}

func TestAllowEncodedSlashCaddyfile(t *testing.T) {
	var h AuthHandler
	d := caddyfile.NewTestDispenser("apikey_auth {\n allow_encoded_slash\n scope GET /v1/{name} files\n}")
	if err := h.UnmarshalCaddyfile(d); err != nil || !h.AllowEncodedSlash {
		t.Fatalf("allow_encoded_slash: %v, set %v", err, h.AllowEncodedSlash)
	}
	d = caddyfile.NewTestDispenser("apikey_auth {\n allow_encoded_slash yes\n}")
	if err := new(AuthHandler).UnmarshalCaddyfile(d); err == nil {
		t.Fatal("allow_encoded_slash with an argument was accepted")
	}
}

// upstreamSegments splits an escaped path as Go's ServeMux and Express
// do: on "/" first, then each segment decoded.
func upstreamSegments(t *testing.T, esc string) []string {
	t.Helper()
	segs := strings.Split(esc, "/")
	for i, s := range segs {
		d, err := url.PathUnescape(s)
		if err != nil {
			t.Fatalf("segment %q of %q: %v", s, esc, err)
		}
		segs[i] = d
	}
	return segs
}

// FuzzCanonicalPath parses request targets as net/http does and checks
// what canonicalPath lets through: the upstream's segments (escaped path
// split, then decoded) are the ones the table matched; no segment is a dot
// segment or empty (but a trailing one), none holds a backslash, ";", a
// control byte or a "%XX" after decoding, and an encoded slash only with the
// opt-in; and a second pass changes nothing.
func FuzzCanonicalPath(f *testing.F) {
	for _, s := range []string{"/v1/apps/a%2Fb", "/v1/apps/x/..%2F..%2Fs", "/a/%2e%2E/b//c/", `/a\b`, "/a;b", "/a%00",
		"/a%252F", "/v1/apps/caf%C3%A9", "*", "/", "//", "/%2e", "/a%2F%2E%2E/b", "/.%2e/x"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, target string, allow bool) {
		r, ok := readTarget(t, "GET", target)
		if !ok || !strings.HasPrefix(r.URL.Path, "/") || r.URL.Host != "" {
			return
		}
		match, esc, fault := canonicalPath(r, allow)
		if fault != pathOK {
			return
		}
		up := r.URL.EscapedPath()
		var table []string
		if esc {
			table = upstreamSegments(t, match)
		} else {
			table = strings.Split(match, "/")
		}
		got := upstreamSegments(t, up)
		if strings.Join(got, "\x00") != strings.Join(table, "\x00") || len(got) != len(table) {
			t.Fatalf("%q: table segments %q, upstream %q (%q)", target, table, got, up)
		}
		for i, s := range got {
			switch {
			case s == "." || s == "..":
				t.Fatalf("%q: dot segment upstream: %q", target, up)
			case s == "" && i != 0 && i != len(got)-1:
				t.Fatalf("%q: empty segment upstream: %q", target, up)
			case strings.ContainsAny(s, "\\;") || strings.ContainsFunc(s, func(c rune) bool { return c < 0x20 || c == 0x7f }):
				t.Fatalf("%q: segment %q goes upstream", target, s)
			case strings.Contains(s, "/") && !allow:
				t.Fatalf("%q: encoded slash upstream without the opt-in: %q", target, up)
			}
			for j := 0; j+2 < len(s); j++ {
				if s[j] == '%' && isHex(s[j+1]) && isHex(s[j+2]) {
					t.Fatalf("%q: double encoding upstream: %q", target, up)
				}
			}
		}
		again := &http.Request{URL: &url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath}}
		if _, _, f2 := canonicalPath(again, allow); f2 != pathOK || again.URL.EscapedPath() != up {
			t.Fatalf("%q: second pass: fault %d, %q → %q", target, f2, up, again.URL.EscapedPath())
		}
	})
}

// BenchmarkCanonicalRequest is what the path and method rule adds to every
// request: an ordinary path and method, checked and left as they are.
func BenchmarkCanonicalRequest(b *testing.B) {
	r := httptest.NewRequest("POST", "/v1/apps/web/runs", nil)
	b.ReportAllocs()
	for b.Loop() {
		r.Method, _ = canonicalMethod(r.Method)
		if _, _, f := canonicalPath(r, false); f != pathOK {
			b.Fatal(f)
		}
	}
}
