package tests

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/storage/postgres"
)

// TestRevocationThroughDeadListener: the network path of node B's change
// listener dies silently (no FIN, no RST) and node A revokes tokens node B
// has cached. Node B must refuse them well within the time an idle-time
// ping took to notice (10-15 s before); the bound here is a generous 5 s
// for a property of one second. First the listener comes back at once;
// then it cannot reconnect for a while, but the store still answers
// through B's open pool connection: B must ask it rather than serve what
// it cached. Then the listener reconnects and notices flow again.
func TestRevocationThroughDeadListener(t *testing.T) {
	dsn := pgtest.DSN(t)
	proxy := pgtest.StartProxy(t, dsn)
	schema := pgtest.Schema(t, dsn)
	a := startTowerOn(t, dsn, schema)
	b := startTowerOn(t, proxy.DSN(), schema)
	acc := a.gw.createAccount("partitioned", "apps")
	secrets := make([]string, 3)
	for i := range secrets {
		_, secrets[i] = a.gw.createKey(acc, nil)
		if r := do(t, "GET", b.gw.URL+"/v1/apps", nil, "X-API-Key", secrets[i]); r.Status != http.StatusOK {
			t.Fatalf("node B before the revocations: %d %s", r.Status, r.Body)
		}
	}
	listener := func() int {
		t.Helper()
		ports := proxy.ServerPortsOf(t, dsn, postgres.ListenerApplicationName)
		if len(ports) == 0 {
			t.Fatal("node B has no listening connection through the proxy")
		}
		return ports[len(ports)-1] // the newest
	}
	connected := func(want float64, bound time.Duration) {
		t.Helper()
		deadline := time.Now().Add(bound)
		for {
			if v, _ := metric(t, b.gw, "caddy_apikeys_listener_connected"); v == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("listener_connected on node B did not become %v within %v", want, bound)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// The listener's path dies; it reconnects on a new one.
	dead := listener()
	proxy.Blackhole(dead)
	a.gw.mustAdmin("POST", "/revoke", map[string]any{"token": secrets[0]}, http.StatusNoContent)
	awaitRefusal(t, b.gw, secrets[0], 5*time.Second)
	awaitCondition(t, 15*time.Second, "node B's listener reconnecting", func() bool {
		return slices.ContainsFunc(proxy.ServerPortsOf(t, dsn, postgres.ListenerApplicationName), func(p int) bool { return p != dead })
	})
	connected(1, 5*time.Second)
	cache := func(secret string) {
		t.Helper()
		// The reconnection forgot every cached entry: cache it again,
		// until a request is a cache hit (ristretto's Set is asynchronous).
		awaitCondition(t, 5*time.Second, "node B caching a token", func() bool {
			hits, _ := metric(t, b.gw, "caddy_apikeys_cache_hits_total")
			if r := do(t, "GET", b.gw.URL+"/v1/apps", nil, "X-API-Key", secret); r.Status != http.StatusOK {
				t.Fatalf("node B: %d %s", r.Status, r.Body)
			}
			after, _ := metric(t, b.gw, "caddy_apikeys_cache_hits_total")
			return after > hits
		})
	}
	cache(secrets[1])

	// Dies again, and cannot come back: B asks the store.
	proxy.RefuseNew(true)
	proxy.Blackhole(listener())
	a.gw.mustAdmin("POST", "/revoke", map[string]any{"token": secrets[1]}, http.StatusNoContent)
	awaitRefusal(t, b.gw, secrets[1], 5*time.Second)
	connected(0, 5*time.Second)

	proxy.RefuseNew(false)
	connected(1, 15*time.Second)
	cache(secrets[2])
	a.gw.mustAdmin("POST", "/revoke", map[string]any{"token": secrets[2]}, http.StatusNoContent)
	awaitRefusal(t, b.gw, secrets[2], 5*time.Second)
}

// awaitRefusal polls node until it refuses secret with 401, failing the test
// after bound or on any answer but 200 and 401.
func awaitRefusal(t *testing.T, node *gateway, secret string, bound time.Duration) {
	t.Helper()
	since := time.Now()
	for {
		r := do(t, "GET", node.URL+"/v1/apps", nil, "X-API-Key", secret)
		if r.Status == http.StatusUnauthorized {
			t.Logf("node B refused the revoked token %v after the revocation", time.Since(since))
			return
		}
		if r.Status != http.StatusOK {
			t.Fatalf("node B answered %d: %s", r.Status, r.Body)
		}
		if time.Since(since) > bound {
			t.Fatalf("node B still serves a token revoked on node A %v ago", bound)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// awaitCondition polls cond until it holds, failing the test after bound.
func awaitCondition(t *testing.T, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, bound)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
