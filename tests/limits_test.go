package tests

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/pgtest"
)

// limitsSite is a site whose routes cost credits: GET /v1/free costs 1,
// POST /v1/runs 2, and the upstream may state another cost in
// X-Keygate-Cost; only 2xx answers are charged.
const limitsSite = `
	apikey_auth {
		scope GET  /v1/free  apps:read
		scope POST /v1/runs  apps:run cost 2
		scope GET  /v1/fail  apps:read
		scope GET  /v1/priced apps:read
		cost_header X-Keygate-Cost
		charge_on 2xx
	}
	reverse_proxy %s
`

// costUpstream answers 200, except /v1/fail (500) and /v1/priced (200 with
// X-Keygate-Cost: 3).
func costUpstream(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/fail":
			w.WriteHeader(http.StatusInternalServerError)
		case "/v1/priced":
			w.Header().Set("X-Keygate-Cost", "3")
			fmt.Fprint(w, "priced")
		default:
			fmt.Fprint(w, "ok")
		}
	})}
	go srv.Serve(l) //nolint:errcheck // ends with Close
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}

func startLimitsGateway(t *testing.T) *gateway {
	t.Helper()
	dsn := pgtest.DSN(t)
	return startGateway(t, gatewayConfig{DSN: dsn, Schema: pgtest.Schema(t, dsn), Site: fmt.Sprintf(limitsSite, costUpstream(t))})
}

// TestRateWindowsOnRequests: a key's window admits its limit and then
// answers 429 rate_limited with Retry-After and the IETF fields; passing
// answers carry the fields too; an account's window is shared by its keys;
// another key is not affected.
func TestRateWindowsOnRequests(t *testing.T) {
	gw := startLimitsGateway(t)
	acc := gw.createAccount("limited", "apps")
	_, key := gw.createKey(acc, nil, "limits", []map[string]any{{"name": "burst", "limit": 3, "window": "1h"}})
	_, other := gw.createKey(acc, nil)

	for i := range 3 {
		r := do(t, "GET", gw.URL+"/v1/free", nil, "X-API-Key", key)
		if r.Status != 200 {
			t.Fatalf("request %d: %d %s", i+1, r.Status, r.Body)
		}
		if got, want := r.Header.Get("RateLimit-Policy"), `"burst";q=3;w=3600`; got != want {
			t.Errorf("request %d: RateLimit-Policy %q, want %q", i+1, got, want)
		}
		if got, want := r.Header.Get("RateLimit"), fmt.Sprintf(`"burst";r=%d;t=`, 2-i); !strings.HasPrefix(got, want) {
			t.Errorf("request %d: RateLimit %q, want it to start %q", i+1, got, want)
		}
	}
	r := do(t, "GET", gw.URL+"/v1/free", nil, "X-API-Key", key)
	if r.Status != http.StatusTooManyRequests {
		t.Fatalf("request 4: %d %s, want 429", r.Status, r.Body)
	}
	body := r.JSON(t)
	if body["error"] != "rate_limited" || body["limit"] != "burst" {
		t.Errorf("429 body %s", r.Body)
	}
	// A sliding window has room again once the count it weighs in from
	// the full period has decayed enough: within two lengths.
	if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 7200 {
		t.Errorf("429 Retry-After %q, want 1..7200 seconds", r.Header.Get("Retry-After"))
	}
	if !strings.HasPrefix(r.Header.Get("RateLimit"), `"burst";r=0;t=`) || r.Header.Get("RateLimit-Policy") == "" {
		t.Errorf("429 RateLimit %q, RateLimit-Policy %q", r.Header.Get("RateLimit"), r.Header.Get("RateLimit-Policy"))
	}
	if r := do(t, "GET", gw.URL+"/v1/free", nil, "X-API-Key", other); r.Status != 200 || r.Header.Get("RateLimit") != "" {
		t.Errorf("a key without limits: %d, RateLimit %q", r.Status, r.Header.Get("RateLimit"))
	}

	// An account's window is shared by all its keys.
	shared := gw.createAccount("shared", "apps")
	gw.mustAdmin("PATCH", "/accounts/"+shared, map[string]any{"limits": []map[string]any{{"name": "day", "limit": 4, "window": "24h"}}}, 200)
	_, k1 := gw.createKey(shared, nil)
	_, k2 := gw.createKey(shared, nil)
	passed := 0
	for i := range 6 {
		key := []string{k1, k2}[i%2]
		r := do(t, "GET", gw.URL+"/v1/free", nil, "Authorization", "Bearer "+key)
		switch {
		case r.Status == 200:
			passed++
		case r.Status == 429 && r.JSON(t)["limit"] == "account.day":
		default:
			t.Errorf("shared window, request %d: %d %s", i+1, r.Status, r.Body)
		}
	}
	if passed != 4 {
		t.Errorf("an account window of 4 let %d of 6 requests of two keys pass", passed)
	}
}

// TestCreditsOnRequests: each route's cost is taken from the key's
// credits, the upstream's cost header overrides it and never reaches the
// client, failed answers are not charged under charge_on 2xx, and a key
// whose credits are spent gets 429 usage_exceeded.
func TestCreditsOnRequests(t *testing.T) {
	gw := startLimitsGateway(t)
	acc := gw.createAccount("metered", "apps")
	_, key := gw.createKey(acc, nil, "credits", map[string]any{"remaining": 10})
	call := func(method, path string) response {
		t.Helper()
		return do(t, method, gw.URL+path, nil, "X-API-Key", key)
	}
	// 10 credits: a failed call is free, the priced one costs 3 (the
	// header's, not the route's 1), two runs cost 2 each: 3 left.
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/v1/fail", 500}, {"GET", "/v1/fail", 500},
		{"GET", "/v1/priced", 200},
		{"POST", "/v1/runs", 200}, {"POST", "/v1/runs", 200},
	} {
		r := call(c.method, c.path)
		if r.Status != c.want {
			t.Fatalf("%s %s: %d %s, want %d", c.method, c.path, r.Status, r.Body, c.want)
		}
		if r.Header.Get("X-Keygate-Cost") != "" {
			t.Errorf("%s %s: the client sees the upstream's cost header", c.method, c.path)
		}
	}
	// 3 left: one run (2), then a run no longer fits but a free call (1) does.
	if r := call("POST", "/v1/runs"); r.Status != 200 {
		t.Fatalf("run with 3 credits left: %d %s", r.Status, r.Body)
	}
	r := call("POST", "/v1/runs")
	if r.Status != http.StatusTooManyRequests {
		t.Fatalf("run with 1 credit left: %d %s, want 429", r.Status, r.Body)
	}
	if body := r.JSON(t); body["error"] != "usage_exceeded" || body["credits_remaining"] != float64(0) {
		t.Errorf("429 body %s", r.Body)
	}
	if r := call("GET", "/v1/free"); r.Status != 200 {
		t.Fatalf("free call with 1 credit left: %d %s", r.Status, r.Body)
	}
	for i := range 3 {
		if r := call("GET", "/v1/free"); r.Status != http.StatusTooManyRequests {
			t.Fatalf("call %d with no credits: %d %s", i+1, r.Status, r.Body)
		}
	}
}

// TestAllowedIPsOnRequests: a key used from outside its allowlist, or its
// account's, gets 403 ip_not_allowed.
func TestAllowedIPsOnRequests(t *testing.T) {
	gw := startLimitsGateway(t)
	acc := gw.createAccount("fenced", "apps")
	_, far := gw.createKey(acc, nil, "allowed_ips", []string{"10.0.0.0/8", "2001:db8::/32"})
	_, near := gw.createKey(acc, nil, "allowed_ips", []string{"127.0.0.0/8"})
	r := do(t, "GET", gw.URL+"/v1/free", nil, "X-API-Key", far)
	if r.Status != http.StatusForbidden || r.JSON(t)["error"] != "ip_not_allowed" {
		t.Errorf("a key for 10/8 used from 127.0.0.1: %d %s", r.Status, r.Body)
	}
	if r := do(t, "GET", gw.URL+"/v1/free", nil, "X-API-Key", near); r.Status != 200 {
		t.Errorf("a key for 127/8 used from 127.0.0.1: %d %s", r.Status, r.Body)
	}
	// The account's list applies to its keys too.
	gw.mustAdmin("PATCH", "/accounts/"+acc, map[string]any{"allowed_ips": []string{"192.0.2.0/24"}}, 200)
	if r := do(t, "GET", gw.URL+"/v1/free", nil, "X-API-Key", near); r.Status != http.StatusForbidden {
		t.Errorf("the account's allowlist excludes 127.0.0.1: %d %s", r.Status, r.Body)
	}
}
