package tests

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
)

// The tests in this file send requests whose path or method an upstream may
// read differently from the scope table (encoded slashes and backslashes,
// path parameters, NUL, double encoding, method case) and check, at the
// upstream, that no handler the key's scope does not cover ever runs.

// bypassTable is the scope table of the issue: reading an app's subtree
// needs less than deleting the app.
const bypassTable = `
		scope GET    /healthz            public
		scope GET    /v1/apps/{app}      apps:read
		scope DELETE /v1/apps/{app}      apps:delete
		scope *      /v1/apps/{app}/*    apps:read
		scope POST   /v1/apps/{app}/runs apps:run
		scope *      /v1/secrets/*       secrets
`

// muxUpstream is a Go API routed by http.ServeMux patterns, which match the
// escaped path segment by segment (a%2Fb is one segment). In front of the
// mux it does what common frameworks do: it upper-cases the method
// (Werkzeug, Django) and drops ";params" from each segment (Servlet
// containers, Spring). It records the request line it received and which
// handler ran.
type muxUpstream struct {
	URL string

	mu       sync.Mutex
	ran      map[string]int // handler name → runs
	requests int
	method   string // last method, as received
	path     string // last path, as received (escaped)
	app      string // last {app} value
}

func newMuxUpstream(t *testing.T) *muxUpstream {
	t.Helper()
	u := &muxUpstream{ran: map[string]int{}}
	mux := http.NewServeMux()
	for pattern, name := range map[string]string{
		"GET /healthz":                 "healthz",
		"GET /v1/apps/{app}":           "get-app",
		"DELETE /v1/apps/{app}":        "delete-app",
		"GET /v1/apps/{app}/{r...}":    "read-app-subtree",
		"POST /v1/apps/{app}/runs":     "run-app",
		"/v1/secrets/{r...}":           "secrets",
		"/v1/secrets":                  "secrets",
		"DELETE /v1/apps/{app}/{r...}": "delete-app-subtree",
	} {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			u.mu.Lock()
			u.ran[name]++
			u.app = r.PathValue("app")
			u.mu.Unlock()
			fmt.Fprintf(w, `{"upstream":%q}`, name)
		})
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.requests++
		u.method, u.path = r.Method, r.URL.EscapedPath()
		u.mu.Unlock()
		r.Method = strings.ToUpper(r.Method)
		if esc := r.URL.EscapedPath(); strings.Contains(esc, ";") {
			segs := strings.Split(esc, "/")
			for i, s := range segs {
				segs[i], _, _ = strings.Cut(s, ";")
			}
			esc = strings.Join(segs, "/")
			p, err := url.PathUnescape(esc)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			r.URL.Path, r.URL.RawPath = p, esc
		}
		mux.ServeHTTP(w, r)
	})}
	go srv.Serve(l) //nolint:errcheck // ends with Close
	t.Cleanup(func() { srv.Close() })
	u.URL = l.Addr().String()
	return u
}

// snapshot returns how many requests arrived and a copy of the handler runs.
func (u *muxUpstream) snapshot() (int, map[string]int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	ran := make(map[string]int, len(u.ran))
	for k, v := range u.ran {
		ran[k] = v
	}
	return u.requests, ran
}

// last returns the method, escaped path and {app} of the last request.
func (u *muxUpstream) last() (method, path, app string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.method, u.path, u.app
}

// rawDo sends one HTTP/1.1 request with the request line exactly as given
// (Go's client would re-encode a backslash or reject odd targets) and
// returns the response.
func rawDo(t *testing.T, addr, method, target string, headers ...string) response {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, target, addr)
	for i := 0; i+1 < len(headers); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", headers[i], headers[i+1])
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	// The request tells ReadResponse whether a body follows (not for HEAD).
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: strings.ToUpper(method)})
	if err != nil {
		t.Fatalf("%s %s: reading the response: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

// bypassEnv is one gateway with three sites in front of one muxUpstream:
// the scope table under default deny, the same table under default
// authenticated, and the require form under a path matcher.
type bypassEnv struct {
	gw                    *gateway
	up                    *muxUpstream
	deny, authn, required string // host:port of each site
	keys                  map[string]string
}

func startBypass(t *testing.T) *bypassEnv {
	t.Helper()
	dsn := pgtest.DSN(t)
	up := newMuxUpstream(t)
	authnPort, requirePort := pgtest.FreePort(t), pgtest.FreePort(t)
	gw := startGateway(t, gatewayConfig{
		DSN: dsn, Schema: pgtest.Schema(t, dsn),
		Site: fmt.Sprintf(`
	apikey_auth {
%s
		default deny
	}
	reverse_proxy %s
`, bypassTable, up.URL),
		Extra: fmt.Sprintf(`
:%d {
	apikey_auth {
%s
		default authenticated
	}
	reverse_proxy %s
}

:%d {
	@apps path /v1/apps/*
	apikey_auth @apps {
		require apps:read
	}
	reverse_proxy %s
}
`, authnPort, bypassTable, up.URL, requirePort, up.URL),
	})
	acc := gw.createAccount("bypass", "*")
	keys := map[string]string{}
	for _, s := range []string{"apps:read", "apps:run", "apps:delete"} {
		_, keys[s] = gw.createKey(acc, []string{s})
	}
	return &bypassEnv{
		gw: gw, up: up, keys: keys,
		deny:     fmt.Sprintf("127.0.0.1:%d", gw.HTTPPort),
		authn:    fmt.Sprintf("127.0.0.1:%d", authnPort),
		required: fmt.Sprintf("127.0.0.1:%d", requirePort),
	}
}

// encodedFamily are request targets whose segments an upstream may split,
// join, truncate or decode differently from the scope table; the gateway
// refuses each of them with 400 invalid_request before any route is chosen.
var encodedFamily = []string{
	"/v1/apps/a%2Fb",           // encoded slash: the table saw two segments, ServeMux sees one
	"/v1/apps/a%2fb",           // lower-case hex
	"/v1/apps/a%5Cb",           // encoded backslash: a separator for some servers
	"/v1/apps/a%5cb",           //
	`/v1/apps/a\b`,             // raw backslash
	"/v1/apps/a;x",             // path parameter: dropped by Servlet containers
	"/v1/apps/a%3Bx",           // encoded semicolon
	"/v1/apps/a%00",            // NUL: truncates the path in C upstreams
	"/v1/apps/a%0A",            // other control bytes
	"/v1/apps/a%7F",            //
	"/v1/apps/a%252Fb",         // double encoding: %2F after one decoding
	"/v1/apps/a%252F..%252Fb",  //
	"/v1/apps/x%2F..%2F..%2Fb", // encoded slash hiding dot segments
}

// TestEncodedPathFamilyRefused sends every member of the family, with a
// key that covers reading apps but not deleting them, to each site, as
// DELETE (which the scope does not cover) and GET: always 400
// invalid_request, and nothing reaches the upstream.
func TestEncodedPathFamilyRefused(t *testing.T) {
	env := startBypass(t)
	reader := env.keys["apps:read"]
	targets := append([]string{}, encodedFamily...)
	targets = append(targets, "/v1/secrets;x/y", "/v1/secrets%3Bx/y", "/healthz;x", "/healthz%2F..%2Fv1%2Fsecrets%2Fx")
	for site, addr := range map[string]string{"default deny": env.deny, "default authenticated": env.authn, "require": env.required} {
		for _, target := range targets {
			// The require site checks keys under a path matcher only, but
			// refuses these outside it too (matcherbypass_test.go).
			for _, method := range []string{"DELETE", "GET", "delete"} {
				for _, headers := range [][]string{{"X-API-Key", reader}, nil} {
					before, ran := env.up.snapshot()
					r := rawDo(t, addr, method, target, headers...)
					after, ranAfter := env.up.snapshot()
					what := fmt.Sprintf("%s: %s %s (key: %v)", site, method, target, headers != nil)
					if r.Status != http.StatusBadRequest {
						t.Errorf("%s: status %d, want 400: %s", what, r.Status, r.Body)
					} else if code := r.JSON(t)["error"]; code != "invalid_request" {
						t.Errorf("%s: error %q, want invalid_request", what, code)
					}
					if after != before {
						t.Errorf("%s: reached the upstream (handlers before %v, after %v)", what, ran, ranAfter)
					}
				}
			}
		}
	}
	if _, ran := env.up.snapshot(); ran["delete-app"] != 0 {
		t.Errorf("the delete handler ran %d times for a key without apps:delete", ran["delete-app"])
	}
}

// TestOrdinaryPathsStillPass: paths with encodings that every reader agrees
// on go through, to the handler the table chose, with the path as sent.
func TestOrdinaryPathsStillPass(t *testing.T) {
	env := startBypass(t)
	reader := env.keys["apps:read"]
	for _, c := range []struct{ target, handler, app string }{
		{"/v1/apps/a%20b", "get-app", "a b"},
		{"/v1/apps/100%25", "get-app", "100%"},
		{"/v1/apps/caf%C3%A9", "get-app", "café"},
		{"/v1/apps/a%3Ab", "get-app", "a:b"},
		{"/v1/apps/x/logs", "read-app-subtree", "x"},
	} {
		for site, addr := range map[string]string{"default deny": env.deny, "default authenticated": env.authn, "require": env.required} {
			_, ran := env.up.snapshot()
			r := rawDo(t, addr, "GET", c.target, "X-API-Key", reader)
			_, ranAfter := env.up.snapshot()
			_, path, app := env.up.last()
			if r.Status != http.StatusOK || ranAfter[c.handler] != ran[c.handler]+1 || path != c.target || app != c.app {
				t.Errorf("%s: GET %s: %d %s; upstream path %q, app %q, handler runs %v → %v; want 200 from %s with the path as sent and app %q",
					site, c.target, r.Status, r.Body, path, app, ran, ranAfter, c.handler, c.app)
			}
		}
	}
}

// TestMethodCaseCannotBypassScopes sends lower- and mixed-case methods: they
// are authorized as their upper-case form, which is what the upstream
// receives.
func TestMethodCaseCannotBypassScopes(t *testing.T) {
	env := startBypass(t)
	sites := map[string]string{"default deny": env.deny, "default authenticated": env.authn}
	for site, addr := range sites {
		for _, c := range []struct {
			method, target, key string
			status              int
			code, handler       string // code of a refusal; handler that must run on 200
		}{
			{"post", "/v1/apps/a/runs", "apps:read", 403, "insufficient_scope", ""},
			{"Post", "/v1/apps/a/runs", "apps:read", 403, "insufficient_scope", ""},
			{"delete", "/v1/apps/a", "apps:read", 403, "insufficient_scope", ""},
			{"dElEtE", "/v1/apps/a", "apps:run", 403, "insufficient_scope", ""},
			{"post", "/v1/apps/a/runs", "apps:run", 200, "", "run-app"},
			{"delete", "/v1/apps/a", "apps:delete", 200, "", "delete-app"},
			{"get", "/v1/apps/a", "apps:read", 200, "", "get-app"},
			{"head", "/v1/apps/a", "apps:read", 200, "", "get-app"},
		} {
			before, ran := env.up.snapshot()
			r := rawDo(t, addr, c.method, c.target, "X-API-Key", env.keys[c.key])
			after, ranAfter := env.up.snapshot()
			method, _, _ := env.up.last()
			what := fmt.Sprintf("%s: %s %s with %s", site, c.method, c.target, c.key)
			if r.Status != c.status {
				t.Errorf("%s: status %d, want %d: %s", what, r.Status, c.status, r.Body)
				continue
			}
			if c.status != 200 {
				if after != before {
					t.Errorf("%s: refused but reached the upstream (handlers %v → %v)", what, ran, ranAfter)
				}
				if c.method != "head" {
					if code := r.JSON(t)["error"]; code != c.code {
						t.Errorf("%s: error %q, want %q", what, code, c.code)
					}
				}
				continue
			}
			if ranAfter[c.handler] != ran[c.handler]+1 || method != strings.ToUpper(c.method) {
				t.Errorf("%s: upstream got method %q, handler runs %v → %v; want %s to run on %s",
					what, method, ran, ranAfter, c.handler, strings.ToUpper(c.method))
			}
		}
	}
	// The require form forwards the upper-case method too.
	r := rawDo(t, env.required, "post", "/v1/apps/a/runs", "X-API-Key", env.keys["apps:read"])
	if method, _, _ := env.up.last(); r.Status != 200 || method != "POST" {
		t.Errorf("require: post /v1/apps/a/runs: %d, upstream method %q; want 200 and POST", r.Status, method)
	}
	if _, ran := env.up.snapshot(); ran["run-app"] != 2+1 || ran["delete-app"] != 2 {
		t.Errorf("handler runs %v: want run-app 3 (apps:run twice, require once) and delete-app 2 (apps:delete only)", ran)
	}
}

// TestEncodedSlashOptIn: with allow_encoded_slash, a%2Fb is one segment for
// the table as for the upstream, matched as {app} and against literals
// after decoding that segment only; the other members of the family stay
// refused.
func TestEncodedSlashOptIn(t *testing.T) {
	dsn := pgtest.DSN(t)
	up := newMuxUpstream(t)
	gw := startGateway(t, gatewayConfig{
		DSN: dsn, Schema: pgtest.Schema(t, dsn),
		Site: fmt.Sprintf(`
	apikey_auth {
		allow_encoded_slash
%s
		default deny
	}
	reverse_proxy %s
`, bypassTable, up.URL),
	})
	acc := gw.createAccount("optin", "*")
	keys := map[string]string{}
	for _, s := range []string{"apps:read", "apps:delete", "secrets"} {
		_, keys[s] = gw.createKey(acc, []string{s})
	}
	addr := fmt.Sprintf("127.0.0.1:%d", gw.HTTPPort)
	for _, c := range []struct {
		method, target, key string
		status              int
		path, app           string // what the upstream received on 200
	}{
		{"DELETE", "/v1/apps/a%2Fb", "apps:read", 403, "", ""},
		{"DELETE", "/v1/apps/a%2Fb", "apps:delete", 200, "/v1/apps/a%2Fb", "a/b"},
		{"DELETE", "/v1/apps/a%2fb", "apps:delete", 200, "/v1/apps/a%2fb", "a/b"},
		{"GET", "/v1/apps/a%2Fb/logs", "apps:read", 200, "/v1/apps/a%2Fb/logs", "a/b"},
		// Dot segments are resolved on the escaped path: ..%2F is no dot segment.
		{"GET", "/v1/apps/x/..%2F..%2Fsecrets", "apps:read", 200, "/v1/apps/x/..%2F..%2Fsecrets", "x"},
		{"GET", "/v1/apps/x/../../secrets/y", "apps:read", 403, "", ""},
		{"GET", "/v1/apps/x/%2e%2e/%2E%2E/secrets/y", "secrets", 200, "/v1/secrets/y", ""},
		{"GET", "/v1/apps//a%2Fb/./logs", "apps:read", 200, "/v1/apps/a%2Fb/logs", "a/b"},
		// A literal segment matches the decoded segment: %61pps is apps.
		{"DELETE", "/v1/%61pps/a%2Fb", "apps:read", 403, "", ""},
		{"DELETE", "/v1/%61pps/a%2Fb", "apps:delete", 200, "/v1/%61pps/a%2Fb", "a/b"},
		// Unmatched under default deny.
		{"GET", "/v1/a%2Fpps/x", "apps:read", 403, "", ""},
		// The rest of the family stays refused.
		{"DELETE", "/v1/apps/a%5Cb", "apps:delete", 400, "", ""},
		{"DELETE", "/v1/apps/a%252Fb", "apps:delete", 400, "", ""},
		{"DELETE", "/v1/apps/a;b", "apps:delete", 400, "", ""},
		{"DELETE", "/v1/apps/a%2F%00", "apps:delete", 400, "", ""},
	} {
		before, _ := up.snapshot()
		r := rawDo(t, addr, c.method, c.target, "X-API-Key", keys[c.key])
		after, _ := up.snapshot()
		method, path, app := up.last()
		what := fmt.Sprintf("%s %s with %s", c.method, c.target, c.key)
		switch {
		case r.Status != c.status:
			t.Errorf("%s: status %d, want %d: %s", what, r.Status, c.status, r.Body)
		case (c.status == 403 || c.status == 400) && after != before:
			t.Errorf("%s: refused but reached the upstream", what)
		case c.status == 200 && (path != c.path || app != c.app || method != c.method):
			t.Errorf("%s: upstream got %s %q with app %q, want %s %q with app %q", what, method, path, app, c.method, c.path, c.app)
		}
	}
}
