package tests

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/pgtest"
)

// The tests in this file put apikey_auth under a Caddy matcher (or inside
// a handle block) and send requests that the matcher reads one way and the
// upstream another: Caddy's path matcher reads the decoded, cleaned path
// (x%2F..%2F..%2Fb is "/v1/b" to it, one segment under /v1/apps/ for Go's
// ServeMux), does not match "/v1/apps;x/a" (which a Servlet container
// strips to /v1/apps/a), and the method matcher compares case-sensitively
// ("post" is not POST to it, but is to Werkzeug and Django). Each such
// request must be refused, or authorized as the upstream reads it, whether
// or not the matcher matches; the protected handler must never run for it.

// matcherCase is one request and what must come of it.
type matcherCase struct {
	method, target string
	key            string // scope of the key sent, "" for none
	status         int
	// handler must run once on 200, and the upstream must get the method
	// upper-cased and path (escaped) as given; on a refusal nothing may
	// reach the upstream.
	handler, path, app string
}

// checkMatcherCases sends each case to addr and checks the answer and what
// the upstream saw.
func checkMatcherCases(t *testing.T, site, addr string, up *muxUpstream, keys map[string]string, cases []matcherCase) {
	t.Helper()
	for _, c := range cases {
		var headers []string
		if c.key != "" {
			headers = []string{"X-API-Key", keys[c.key]}
		}
		before, ran := up.snapshot()
		r := rawDo(t, addr, c.method, c.target, headers...)
		after, ranAfter := up.snapshot()
		what := fmt.Sprintf("%s: %s %s (key %q)", site, c.method, c.target, c.key)
		if r.Status != c.status {
			t.Errorf("%s: status %d, want %d: %s (upstream handlers %v → %v)", what, r.Status, c.status, r.Body, ran, ranAfter)
			continue
		}
		if c.status != http.StatusOK {
			if after != before {
				t.Errorf("%s: refused but reached the upstream (handlers %v → %v)", what, ran, ranAfter)
			}
			if c.status == http.StatusBadRequest {
				if code := r.JSON(t)["error"]; code != "invalid_request" {
					t.Errorf("%s: error %q, want invalid_request", what, code)
				}
			}
			continue
		}
		method, path, app := up.last()
		if ranAfter[c.handler] != ran[c.handler]+1 || method != strings.ToUpper(c.method) || path != c.path || app != c.app {
			t.Errorf("%s: upstream got %s %q (app %q), handlers %v → %v; want %s to run on %s %q (app %q)",
				what, method, path, app, ran, ranAfter, c.handler, strings.ToUpper(c.method), c.path, c.app)
		}
	}
}

// matcherKeys creates one key per scope on gw.
func matcherKeys(gw *gateway, scopes ...string) map[string]string {
	acc := gw.createAccount("matcher", "*")
	keys := map[string]string{}
	for _, s := range scopes {
		_, keys[s] = gw.createKey(acc, []string{s})
	}
	return keys
}

// TestMatcherFormCannotBeBypassed runs three sites in front of one
// ServeMux upstream: apikey_auth under a path matcher, under a method
// matcher, and under a path matcher with allow_encoded_slash.
func TestMatcherFormCannotBeBypassed(t *testing.T) {
	dsn := pgtest.DSN(t)
	up := newMuxUpstream(t)
	methodPort, slashPort := pgtest.FreePort(t), pgtest.FreePort(t)
	gw := startGateway(t, gatewayConfig{
		DSN: dsn, Schema: pgtest.Schema(t, dsn),
		Site: fmt.Sprintf(`
	@apps path /v1/apps/*
	apikey_auth @apps {
		require apps:read
	}
	reverse_proxy %s
`, up.URL),
		Extra: fmt.Sprintf(`
:%d {
	@writes method POST PUT PATCH DELETE
	apikey_auth @writes {
		require apps:write
	}
	reverse_proxy %s
}

:%d {
	@apps path /v1/apps/*
	apikey_auth @apps {
		require apps:read
		allow_encoded_slash
	}
	reverse_proxy %s
}
`, methodPort, up.URL, slashPort, up.URL),
	})
	keys := matcherKeys(gw, "apps:read", "apps:write")
	pathSite := fmt.Sprintf("127.0.0.1:%d", gw.HTTPPort)
	methodSite := fmt.Sprintf("127.0.0.1:%d", methodPort)
	slashSite := fmt.Sprintf("127.0.0.1:%d", slashPort)

	t.Run("path matcher", func(t *testing.T) {
		checkMatcherCases(t, "path matcher", pathSite, up, keys, []matcherCase{
			// /v1/b to the matcher, DELETE /v1/apps/{app} to ServeMux.
			{method: "DELETE", target: "/v1/apps/x%2F..%2F..%2Fb", status: 400},
			{method: "DELETE", target: "/v1/apps/x%2f..%2f..%2fb", status: 400},
			{method: "GET", target: "/v1/apps/x%2F..%2F..%2Fb", key: "apps:read", status: 400},
			// Outside the matcher, /v1/apps/a once ";x" is dropped.
			{method: "DELETE", target: "/v1/apps;x/a", status: 400},
			{method: "DELETE", target: "/v1/apps%3Bx/a", status: 400},
			{method: "DELETE", target: `/v1\apps/a`, status: 400},
			{method: "DELETE", target: "/v1/apps%5Ca", status: 400},
			{method: "DELETE", target: "/v1/apps%00/a", status: 400},
			{method: "DELETE", target: "/v1/%2561pps/a", status: 400},
			// Inside the matcher: the key is checked.
			{method: "DELETE", target: "/v1/apps/a", status: 401},
			{method: "delete", target: "/v1/apps/a", status: 401},
			{method: "DELETE", target: "/v1/x/../apps/a", status: 401},
			{method: "DELETE", target: "/v1/apps/a", key: "apps:write", status: 403},
			{method: "DELETE", target: "/v1/apps/a", key: "apps:read", status: 200, handler: "delete-app", path: "/v1/apps/a", app: "a"},
			// The public part of the site passes untouched.
			{method: "GET", target: "/healthz", status: 200, handler: "healthz", path: "/healthz"},
			{method: "get", target: "/healthz", status: 200, handler: "healthz", path: "/healthz"},
			{method: "GET", target: "/v1/secrets/a%20b", status: 200, handler: "secrets", path: "/v1/secrets/a%20b"},
			{method: "GET", target: "/v1/secrets/caf%C3%A9", key: "apps:read", status: 200, handler: "secrets", path: "/v1/secrets/caf%C3%A9"},
		})
	})

	t.Run("method matcher", func(t *testing.T) {
		checkMatcherCases(t, "method matcher", methodSite, up, keys, []matcherCase{
			// "post" is POST to the upstream, so it is POST to the matcher.
			{method: "post", target: "/v1/apps/a/runs", status: 401},
			{method: "Post", target: "/v1/apps/a/runs", status: 401},
			{method: "dElEtE", target: "/v1/apps/a", status: 401},
			{method: "post", target: "/v1/apps/a/runs", key: "apps:read", status: 403},
			{method: "post", target: "/v1/apps/a/runs", key: "apps:write", status: 200, handler: "run-app", path: "/v1/apps/a/runs", app: "a"},
			{method: "DELETE", target: "/v1/apps;x/a", status: 400},
			// Reads are public on this site.
			{method: "get", target: "/v1/apps/a", status: 200, handler: "get-app", path: "/v1/apps/a", app: "a"},
			{method: "GET", target: "/v1/apps/a/logs", status: 200, handler: "read-app-subtree", path: "/v1/apps/a/logs", app: "a"},
		})
	})

	t.Run("allow_encoded_slash", func(t *testing.T) {
		checkMatcherCases(t, "allow_encoded_slash", slashSite, up, keys, []matcherCase{
			// The matcher reads decoded segments; dots that only decoding
			// makes are refused, or they would walk it out of /v1/apps/.
			{method: "DELETE", target: "/v1/apps/x%2F..%2F..%2Fb", status: 400},
			{method: "DELETE", target: "/v1/apps/x%2F..%2F..%2Fb", key: "apps:read", status: 400},
			{method: "DELETE", target: "/v1/apps/x%2F.%2F..%2F..%2Fb", status: 400},
			{method: "DELETE", target: "/v1/apps;x/a", status: 400},
			// A name holding a slash is one segment, and needs the key.
			{method: "DELETE", target: "/v1/apps/a%2Fb", status: 401},
			{method: "DELETE", target: "/v1/apps/a%2Fb", key: "apps:read", status: 200, handler: "delete-app", path: "/v1/apps/a%2Fb", app: "a/b"},
			{method: "GET", target: "/healthz", status: 200, handler: "healthz", path: "/healthz"},
		})
	})

	if _, ran := up.snapshot(); ran["delete-app"] != 2 || ran["run-app"] != 1 {
		t.Errorf("handler runs %v: want delete-app 2 and run-app 1, each with a key holding the scope", ran)
	}
}

// TestHandleFormNeedsGuard: apikey_auth inside a handle block runs after
// handle's own path matcher, which reads the decoded, cleaned path like
// any path matcher; with a public handle for the rest of the site, a
// site-level apikey_guard is what refuses the paths the two read
// differently.
func TestHandleFormNeedsGuard(t *testing.T) {
	dsn := pgtest.DSN(t)
	up := newMuxUpstream(t)
	gw := startGateway(t, gatewayConfig{
		DSN: dsn, Schema: pgtest.Schema(t, dsn),
		Site: fmt.Sprintf(`
	apikey_guard
	handle /v1/apps/* {
		apikey_auth {
			require apps:read
		}
		reverse_proxy %[1]s
	}
	handle {
		reverse_proxy %[1]s
	}
`, up.URL),
	})
	keys := matcherKeys(gw, "apps:read")
	checkMatcherCases(t, "handle", fmt.Sprintf("127.0.0.1:%d", gw.HTTPPort), up, keys, []matcherCase{
		{method: "DELETE", target: "/v1/apps/x%2F..%2F..%2Fb", status: 400},
		{method: "DELETE", target: "/v1/apps;x/a", status: 400},
		{method: "DELETE", target: "/v1/apps/a", status: 401},
		{method: "delete", target: "/v1/apps/a", key: "apps:read", status: 200, handler: "delete-app", path: "/v1/apps/a", app: "a"},
		{method: "GET", target: "/healthz", status: 200, handler: "healthz", path: "/healthz"},
	})
	if _, ran := up.snapshot(); ran["delete-app"] != 1 {
		t.Errorf("delete-app ran %d times, want once (with the key)", ran["delete-app"])
	}
}
