package tests

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
)

// Usage policies behind a proxy that asks Keygate: the README's verifier
// (trusted_proxies 127.0.0.1, strict) behind real nginx (auth_request)
// and real Caddy (forward_auth), each configured as the README says.
// Clients connect from other loopback addresses (127.0.0.2, 127.0.0.3),
// the proxies from 127.0.0.1: an allowlist checked against the proxy's
// address instead of the client's would show.

// clientFrom returns an HTTP client whose connections come from the
// loopback address ip.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}

// TestVerifyPoliciesThroughNginx: nginx auth_request → apikey_verify
// (mode nginx) → upstream, with the README's blocks.
func TestVerifyPoliciesThroughNginx(t *testing.T) {
	nginxBinary(t)
	env := startVerifier(t, pgtest.DSN(t), "nginx", nil)
	n := startNginx(t, readmeAddresses(readmeBlock(t, "# nginx: the API behind auth_request (inside http { })"),
		fmt.Sprintf("127.0.0.1:%d", env.gw.HTTPPort), env.up.URL, "{port}"))
	checkPoliciesThroughProxy(t, env, n.URL, true)
}

// TestVerifyPoliciesThroughCaddyForwardAuth: Caddy's forward_auth →
// apikey_verify (mode caddy) → upstream, with the README's site block on
// a server of its own (which trusts no proxy).
func TestVerifyPoliciesThroughCaddyForwardAuth(t *testing.T) {
	port := pgtest.FreePort(t)
	env := startVerifier(t, pgtest.DSN(t), "caddy", func(upstream string) string {
		return readmeAddresses(readmeBlock(t, "# Caddy: the API behind forward_auth"), "127.0.0.1:{http_port}", upstream, fmt.Sprint(port))
	})
	checkPoliciesThroughProxy(t, env, fmt.Sprintf("http://127.0.0.1:%d", port), false)
}

// checkPoliciesThroughProxy checks what a client of keys with usage
// policies sees through the proxy at proxyURL, and what reaches the
// upstream. nginx says whether the proxy is the README's nginx, which
// also copies a passing answer's RateLimit fields to the client (Caddy's
// forward_auth copies them onto the upstream's request).
func checkPoliciesThroughProxy(t *testing.T, env *verifyEnv, proxyURL string, nginx bool) {
	t.Helper()
	gw, up := env.gw, env.up
	from2, from3 := clientFrom("127.0.0.2"), clientFrom("127.0.0.3")
	get := func(c *http.Client, path, key string, headers ...string) response {
		t.Helper()
		return doWith(t, c, "GET", proxyURL+path, nil, append([]string{"X-API-Key", key}, headers...)...)
	}
	checkRefused := func(name string, r response, hits, status int, code string) map[string]any {
		t.Helper()
		if r.Status != status || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("%s: %d %v %s, want %d %s", name, r.Status, r.Header, r.Body, status, code)
		}
		body := r.JSON(t)
		if body["error"] != code {
			t.Errorf("%s: body %s, want error %s", name, r.Body, code)
		}
		if r.Header.Get("X-Keygate-Status") != "" || r.Header.Get("X-Keygate-Error") != "" {
			t.Errorf("%s: the client sees nginx mode's headers: %v", name, r.Header)
		}
		if up.hitCount() != hits {
			t.Errorf("%s: the upstream got the refused request", name)
		}
		return body
	}

	// A rate window: 3 pass, with the RateLimit fields; the 4th is a 429
	// with Retry-After and the fields, restored by the README's nginx.
	_, windowed := gw.createKey(env.accID, nil, "limits", []map[string]any{{"name": "burst", "limit": 3, "window": "1h"}})
	for i := range 3 {
		hits := up.hitCount()
		r := get(from2, "/v1/apps/web", windowed)
		if r.Status != 200 || up.hitCount() != hits+1 {
			t.Fatalf("windowed request %d: %d %s", i+1, r.Status, r.Body)
		}
		fields := r.Header
		if !nginx {
			fields = up.lastHeader() // copy_headers puts them on the upstream's request
		}
		if got, want := fields.Get("RateLimit"), fmt.Sprintf(`"burst";r=%d;t=`, 2-i); !strings.HasPrefix(got, want) ||
			fields.Get("RateLimit-Policy") != `"burst";q=3;w=3600` {
			t.Errorf("windowed request %d: RateLimit %q, RateLimit-Policy %q", i+1, got, fields.Get("RateLimit-Policy"))
		}
		checkUpstreamClean(t, up.lastHeader())
	}
	hits := up.hitCount()
	r := get(from2, "/v1/apps/web", windowed)
	if body := checkRefused("window full", r, hits, http.StatusTooManyRequests, "rate_limited"); body["limit"] != "burst" {
		t.Errorf("window full: body %s", r.Body)
	}
	if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 7200 {
		t.Errorf("window full: Retry-After %q", r.Header.Get("Retry-After"))
	}
	if !strings.HasPrefix(r.Header.Get("RateLimit"), `"burst";r=0;t=`) || r.Header.Get("RateLimit-Policy") != `"burst";q=3;w=3600` {
		t.Errorf("window full: RateLimit %q, RateLimit-Policy %q", r.Header.Get("RateLimit"), r.Header.Get("RateLimit-Policy"))
	}
	// A key without a policy passes, without RateLimit fields.
	if r := get(from2, "/v1/apps/web", env.reader); r.Status != 200 || r.Header.Get("RateLimit") != "" || up.lastHeader().Get("RateLimit") != "" {
		t.Errorf("a key without a policy: %d, RateLimit %q", r.Status, r.Header.Get("RateLimit"))
	}

	// Credits are charged exactly at check time: 4 credits are 4 passes
	// on a route of cost 1, then 429 usage_exceeded with the refill's
	// Retry-After; 12 credits are 2 passes on a route of cost 5.
	_, metered := gw.createKey(env.accID, nil, "credits", map[string]any{"remaining": 4, "refill": map[string]any{"amount": 4, "interval": "daily"}})
	passed := 0
	for range 6 {
		hits := up.hitCount()
		switch r := get(from3, "/v1/apps/web", metered); r.Status {
		case 200:
			passed++
		default:
			checkRefused("credits spent", r, hits, http.StatusTooManyRequests, "usage_exceeded")
			if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 86400 {
				t.Errorf("credits spent: Retry-After %q, want the next daily refill", r.Header.Get("Retry-After"))
			}
		}
	}
	if passed != 4 {
		t.Errorf("4 credits let %d of 6 requests pass", passed)
	}
	_, priced := gw.createKey(env.accID, nil, "credits", map[string]any{"remaining": 12})
	passed = 0
	for range 4 {
		hits := up.hitCount()
		switch r := doWith(t, from3, "POST", proxyURL+"/v1/runs", nil, "X-API-Key", priced); r.Status {
		case 200:
			passed++
		default:
			checkRefused("priced credits spent", r, hits, http.StatusTooManyRequests, "usage_exceeded")
			if r.Header.Get("Retry-After") != "" {
				t.Errorf("credits without a refill: Retry-After %q", r.Header.Get("Retry-After"))
			}
		}
	}
	if passed != 2 {
		t.Errorf("12 credits at cost 5 let %d of 4 requests pass, want 2", passed)
	}

	// Allowlists: checked against the client the proxy saw, never the
	// proxy's own address (127.0.0.1, the verifier's trusted peer), nor
	// an X-Forwarded-For the client sends.
	_, fenced := gw.createKey(env.accID, nil, "allowed_ips", []string{"127.0.0.2/32"})
	_, proxyOnly := gw.createKey(env.accID, nil, "allowed_ips", []string{"127.0.0.1/32"})
	if r := get(from2, "/v1/apps/web", fenced); r.Status != 200 {
		t.Errorf("allowed client: %d %s", r.Status, r.Body)
	}
	for _, tt := range []struct {
		name    string
		c       *http.Client
		key     string
		headers []string
	}{
		{"another client", from3, fenced, nil},
		{"a client spoofing X-Forwarded-For", from3, fenced, []string{"X-Forwarded-For", "127.0.0.2"}},
		{"a key allowed only from the proxy's address", from2, proxyOnly, nil},
		{"the proxy's address, spoofed", from2, proxyOnly, []string{"X-Forwarded-For", "127.0.0.1"}},
	} {
		hits := up.hitCount()
		checkRefused(tt.name, get(tt.c, "/v1/apps/web", tt.key, tt.headers...), hits, http.StatusForbidden, "ip_not_allowed")
	}
}

// TestVerifyAllowlistNeedsTrustedProxy: a check request says who the
// client is only when it comes from one of the verifier's
// trusted_proxies and names the client; otherwise a key with an
// allowlist is refused, whatever X-Forwarded-For claims.
func TestVerifyAllowlistNeedsTrustedProxy(t *testing.T) {
	env := startVerifier(t, pgtest.DSN(t), "caddy", nil)
	_, fenced := env.gw.createKey(env.accID, nil, "allowed_ips", []string{"127.0.0.0/8"})
	check := func(c *http.Client, headers ...string) response {
		t.Helper()
		return doWith(t, c, "GET", env.gw.URL+"/verify", nil, append([]string{"X-API-Key", fenced,
			"X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/v1/apps/web"}, headers...)...)
	}
	trusted, untrusted := clientFrom("127.0.0.1"), clientFrom("127.0.0.2")
	if r := check(trusted, "X-Forwarded-For", "127.0.0.9"); r.Status != 200 || r.Header.Get("X-Keygate-Account") != env.accID {
		t.Fatalf("a trusted proxy naming an allowed client: %d %s", r.Status, r.Body)
	}
	for _, tt := range []struct {
		name    string
		c       *http.Client
		headers []string
	}{
		{"a trusted proxy naming a client outside", trusted, []string{"X-Forwarded-For", "10.1.2.3"}},
		{"a trusted proxy naming nobody", trusted, nil},
		{"an untrusted peer", untrusted, nil},
		{"an untrusted peer claiming an allowed client", untrusted, []string{"X-Forwarded-For", "127.0.0.9"}},
	} {
		r := check(tt.c, tt.headers...)
		if r.Status != http.StatusForbidden || r.JSON(t)["error"] != "ip_not_allowed" {
			t.Errorf("%s: %d %s, want 403 ip_not_allowed", tt.name, r.Status, r.Body)
		}
	}
	if !strings.Contains(env.gw.Output(), "did not name the client") {
		t.Error("the verifier did not warn about check requests that name no client")
	}
	// A key without an allowlist passes from anywhere.
	if r := doWith(t, untrusted, "GET", env.gw.URL+"/verify", nil, "X-API-Key", env.reader,
		"X-Forwarded-Method", "GET", "X-Forwarded-Uri", "/v1/apps/web"); r.Status != 200 {
		t.Errorf("a key without an allowlist from an untrusted peer: %d %s", r.Status, r.Body)
	}
}
