package tests

import (
	"net/http"
	"testing"

	"github.com/keygate/keygate/internal/pgtest"
)

// TestVerifyRefusesKeysWithPolicies: apikey_verify does not apply usage
// policies yet, so a key with limits, credits or an allowlist is refused
// there (403) instead of passing unmetered; a key without one passes.
func TestVerifyRefusesKeysWithPolicies(t *testing.T) {
	env := startVerifier(t, pgtest.DSN(t), "caddy", nil)
	_, fenced := env.gw.createKey(env.accID, nil, "allowed_ips", []string{"127.0.0.0/8"})
	_, limited := env.gw.createKey(env.accID, nil, "limits", []map[string]any{{"name": "burst", "limit": 1000, "window": "1s"}})
	check := func(key string) response {
		t.Helper()
		return do(t, "GET", env.gw.URL+"/", nil, "X-API-Key", key,
			"X-Forwarded-Method", "POST", "X-Forwarded-Uri", "/v1/admin/users?dry=1")
	}
	if r := check(env.admin); r.Status != http.StatusOK {
		t.Fatalf("a key without a policy: %d %s", r.Status, r.Body)
	}
	for name, key := range map[string]string{"allowed_ips": fenced, "limits": limited} {
		if r := check(key); r.Status != http.StatusForbidden || r.JSON(t)["error"] != "forbidden" {
			t.Errorf("a key with %s: %d %s, want 403 forbidden", name, r.Status, r.Body)
		}
	}
}
