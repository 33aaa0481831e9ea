package tests

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/pgtest"
)

// Traefik and Envoy are not run here (Traefik does not build from the Go
// module proxy; there is no Envoy binary): these tests send a real Keygate
// the check requests they send, as their code and documentation describe,
// and read the answers as they read them.

// traefikForward is what Traefik v3.7.13's ForwardAuth middleware does
// with a client request (pkg/middlewares/auth/forward.go, ServeHTTP and
// oldWriteHeader, trustForwardHeader unset): a GET to address with the
// client's headers less hop-by-hop ones, X-Forwarded-For/-Proto/-Method/
// -Host/-Uri set (replacing the client's), then, on a 2xx, each of
// authResponseHeaders deleted from the client request and set from the
// answer when the answer has it; on any other status, the answer's
// status, headers and body to the client as they are. It returns the
// headers the upstream would get (nil when refused) and the client's
// answer.
func traefikForward(t *testing.T, address string, client *http.Request, authResponseHeaders []string) (http.Header, response) {
	t.Helper()
	fwd, err := http.NewRequest(http.MethodGet, address, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range client.Header {
		fwd.Header[k] = append([]string(nil), v...)
	}
	for _, hop := range []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailers", "Transfer-Encoding", "Upgrade"} {
		fwd.Header.Del(hop)
	}
	fwd.Header.Set("X-Forwarded-For", "127.0.0.1")
	fwd.Header.Set("X-Forwarded-Proto", "http")
	fwd.Header.Set("X-Forwarded-Method", client.Method)
	fwd.Header.Set("X-Forwarded-Host", client.Host)
	fwd.Header.Set("X-Forwarded-Uri", client.URL.RequestURI())
	resp, err := http.DefaultClient.Do(fwd)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	answer := response{Status: resp.StatusCode, Header: resp.Header, Body: body}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, answer
	}
	up := client.Header.Clone()
	for _, name := range authResponseHeaders {
		key := http.CanonicalHeaderKey(name)
		up.Del(key)
		if v := resp.Header[key]; len(v) > 0 {
			up[key] = append([]string(nil), v...)
		}
	}
	// The README's no-credential headers middleware, after ForwardAuth.
	up.Del("X-Api-Key")
	up.Del("Authorization")
	return up, answer
}

// TestVerifyTraefikContract: Keygate in mode traefik answers ForwardAuth's
// check requests: identity to the upstream through authResponseHeaders,
// smuggled identities replaced, refusals passed to the client as they are.
func TestVerifyTraefikContract(t *testing.T) {
	env := startVerifier(t, pgtest.DSN(t), "traefik", nil)
	address := fmt.Sprintf("http://127.0.0.1:%d/verify", env.gw.HTTPPort)
	req := func(method, target string, headers ...string) *http.Request {
		r, err := http.NewRequest(method, "http://api.example"+target, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(headers); i += 2 {
			r.Header.Add(headers[i], headers[i+1])
		}
		return r
	}

	// The client's own X-Forwarded-Uri is replaced by Traefik's.
	up, r := traefikForward(t, address, req("GET", "/v1/apps/web?x=1", append(smuggled(), "X-API-Key", env.reader, "X-Forwarded-Uri", "/public/x")...), identityHeaders)
	if r.Status != 200 || up == nil {
		t.Fatalf("reader: %d %s", r.Status, r.Body)
	}
	checkUpstreamClean(t, up)
	if up.Get("X-Keygate-Account") != env.accID || up.Get("X-Keygate-Key") != env.readerID || up.Get("X-Keygate-Scopes") != "apps:read" {
		t.Errorf("upstream identity %v", up)
	}
	// A public route: every identity header answered, empty, so none of
	// the client's survives.
	up, r = traefikForward(t, address, req("GET", "/public/doc", smuggled()...), identityHeaders)
	if r.Status != 200 {
		t.Fatalf("public: %d %s", r.Status, r.Body)
	}
	checkUpstreamClean(t, up)

	for _, tt := range []struct {
		name, method, target string
		headers              []string
		status               int
		code                 string
	}{
		{"no key", "GET", "/v1/apps/web", nil, 401, "unauthorized"},
		{"scope", "DELETE", "/v1/admin/users", []string{"X-API-Key", env.reader}, 403, "insufficient_scope"},
		{"encoded slash", "GET", "/v1/apps/x%2F..%2F..%2Fadmin%2Fusers", []string{"X-API-Key", env.reader}, 400, "invalid_request"},
		{"lower-case method is POST", "post", "/v1/admin/users", []string{"X-API-Key", env.reader}, 403, "insufficient_scope"},
	} {
		up, r := traefikForward(t, address, req(tt.method, tt.target, tt.headers...), identityHeaders)
		if up != nil || r.Status != tt.status || r.JSON(t)["error"] != tt.code {
			t.Errorf("%s: %d %s, want %d %s", tt.name, r.Status, r.Body, tt.status, tt.code)
		}
		if tt.status == 401 && r.Header.Get("Www-Authenticate") == "" {
			t.Errorf("%s: no challenge", tt.name)
		}
	}
}

// TestVerifyEnvoyContract: Keygate in mode envoy answers the HTTP
// ext_authz check request: the original method, path_prefix + the
// original path and query, the allowed headers (Host, Authorization,
// x-api-key as the README allows) and Envoy's own, no body.
func TestVerifyEnvoyContract(t *testing.T) {
	envoyPort := pgtest.FreePort(t)
	env := startVerifier(t, pgtest.DSN(t), "caddy", func(string) string {
		site := strings.Replace(verifierSite(t, "caddy"), "mode caddy", "mode envoy\n\t\tpath_prefix /verify", 1)
		return fmt.Sprintf(":%d {\n%s}\n", envoyPort, site)
	})
	check := func(method, path string, headers ...string) response {
		t.Helper()
		r, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d/verify%s", envoyPort, path), nil)
		if err != nil {
			t.Fatal(err)
		}
		r.Host = "api.example"
		r.ContentLength = 0
		r.Header.Set("Content-Length", "0")
		r.Header.Set("X-Forwarded-Proto", "http")
		r.Header.Set("X-Request-Id", "4c1a6d0e-8a4b-4f61-9b5e-0d5b1f0c2e11")
		r.Header.Set("X-Envoy-Expected-Rq-Timeout-Ms", "1000")
		for i := 0; i+1 < len(headers); i += 2 {
			r.Header.Add(headers[i], headers[i+1])
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return response{Status: resp.StatusCode, Header: resp.Header, Body: body}
	}

	r := check("POST", "/v1/admin/users?dry=1", "x-api-key", env.admin)
	if r.Status != 200 || r.Header.Get("X-Keygate-Account") != env.accID || len(r.Body) != 0 {
		t.Fatalf("admin key: %d %v %s", r.Status, r.Header, r.Body)
	}
	for _, name := range identityHeaders {
		if _, ok := r.Header[name]; !ok {
			t.Errorf("200 without %s", name)
		}
	}
	for _, tt := range []struct {
		name, method, path string
		headers            []string
		status             int
		code               string
	}{
		{"reader on admin", "POST", "/v1/admin/users", []string{"Authorization", "Bearer " + env.reader}, 403, "insufficient_scope"},
		{"no key", "GET", "/v1/apps/web", nil, 401, "unauthorized"},
		{"headers do not name the request", "GET", "/v1/apps/web", []string{"X-Forwarded-Uri", "/public/x", "X-Forwarded-Method", "GET"}, 401, "unauthorized"},
		{"encoded slash", "GET", "/v1/apps/a%2Fb", []string{"x-api-key", env.reader}, 400, "invalid_request"},
		{"double encoding", "GET", "/v1/apps/a%252Fb", []string{"x-api-key", env.reader}, 400, "invalid_request"},
	} {
		r := check(tt.method, tt.path, tt.headers...)
		if r.Status != tt.status || r.JSON(t)["error"] != tt.code {
			t.Errorf("%s: %d %s, want %d %s", tt.name, r.Status, r.Body, tt.status, tt.code)
		}
	}
	if r := check("GET", "/public/doc"); r.Status != 200 || r.Header.Get("X-Keygate-Account") != "" {
		t.Errorf("public: %d %v", r.Status, r.Header)
	}
	// A check request outside path_prefix is refused, not read as "/".
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", envoyPort))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /public/doc HTTP/1.1\r\nHost: api.example\r\nConnection: close\r\n\r\n")
	raw, _ := io.ReadAll(c)
	if !strings.HasPrefix(string(raw), "HTTP/1.1 400 ") || !strings.Contains(string(raw), "path_prefix /verify") {
		t.Errorf("outside path_prefix: %s", raw)
	}
}
