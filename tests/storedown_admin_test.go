package tests

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/storage"
)

// TestAdminStoreDown: with PostgreSQL stopped, every route of the admin
// endpoint answers 503 unavailable with Retry-After, export and import
// included (they answered 500), and they work again once it is back.
func TestAdminStoreDown(t *testing.T) {
	pg := pgtest.Dedicated(t)
	gw := startTower(t, pg.DSN()).gw
	acc := gw.createAccount("outage", "apps")
	gw.createKey(acc, nil)
	export := gw.adminDo("GET", "/export", nil)
	if export.Status != http.StatusOK || !bytes.Contains(export.Body, []byte(`"type":"token"`)) {
		t.Fatalf("export before the outage: %d %s", export.Status, export.Body)
	}
	// Each route is asked first after a stop: the first query on a pooled
	// connection the server closed fails unlike the ones after it.
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/export", nil},
		{"POST", "/import", export.Body},
		{"GET", "/accounts", nil},
		{"POST", "/accounts", map[string]any{"name": "during"}},
	} {
		if err := pg.Restart(); err != nil {
			t.Fatal(err)
		}
		awaitCondition(t, 10*time.Second, "the admin API answering again", func() bool {
			return gw.adminDo("GET", "/accounts", nil).Status == http.StatusOK
		})
		if err := pg.Stop(); err != nil {
			t.Fatal(err)
		}
		r := gw.adminDo(c.method, c.path, c.body)
		// The same Retry-After as the request path's 503 (it used to be 1 here, 2 there).
		if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") != storage.UnavailableRetryAfter ||
			!strings.Contains(string(r.Body), `"error":"unavailable"`) {
			t.Errorf("%s /apikeys%s with the store down: %d Retry-After %q %s, want 503 unavailable with Retry-After "+storage.UnavailableRetryAfter,
				c.method, c.path, r.Status, r.Header.Get("Retry-After"), r.Body)
		}
	}
	if strings.Contains(gw.Output(), `"level":"error"`) && strings.Contains(gw.Output(), "export") {
		t.Errorf("an outage is logged as an internal error:\n%s", gw.Output())
	}
	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	if r := gw.adminDo("POST", "/import", export.Body); r.Status != http.StatusOK {
		t.Errorf("import after the store came back: %d %s", r.Status, r.Body)
	}
	if r := gw.adminDo("GET", "/export", nil); r.Status != http.StatusOK {
		t.Errorf("export after the store came back: %d %s", r.Status, r.Body)
	}
}

// TestAdminDeadStorePath: the network path to PostgreSQL dies silently
// (no FIN, no RST: nothing arrives, nothing fails) under the admin API's
// pooled connections. Export and import (as every route) answer 503
// unavailable with Retry-After within a bound instead of hanging until the
// client gives up, and work again once the path is back. Each route is
// asked first on a dead path.
func TestAdminDeadStorePath(t *testing.T) {
	dsn := pgtest.DSN(t)
	proxy := pgtest.StartProxy(t, dsn)
	gw := startTowerOn(t, proxy.DSN(), pgtest.Schema(t, dsn)).gw
	acc := gw.createAccount("partitioned", "apps")
	gw.createKey(acc, nil)
	r := gw.adminDo("GET", "/export", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("export: %d %s", r.Status, r.Body)
	}
	export := r.Body
	hc := &http.Client{Timeout: 30 * time.Second}
	for _, c := range []struct {
		method, path string
		body         []byte
	}{
		{"GET", "/export", nil},
		{"POST", "/import", export},
	} {
		proxy.RefuseNew(false)
		awaitCondition(t, 10*time.Second, "the admin API answering", func() bool {
			return gw.adminDo("GET", "/accounts", nil).Status == http.StatusOK
		})
		// Every connection through the proxy goes dead, and new ones are
		// refused: the route meets a pooled connection that never answers.
		proxy.RefuseNew(true)
		proxy.Blackhole(proxy.ServerPorts()...)
		req, err := http.NewRequest(c.method, gw.AdminURL+"/apikeys"+c.path, bytes.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			t.Errorf("%s /apikeys%s on a dead path: %v after %v, want 503", c.method, c.path, err, time.Since(start).Round(time.Millisecond))
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Logf("%s /apikeys%s on a dead path: %d after %v", c.method, c.path, resp.StatusCode, time.Since(start).Round(time.Millisecond))
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
			!strings.Contains(string(body), `"error":"unavailable"`) {
			t.Errorf("%s /apikeys%s on a dead path: %d Retry-After %q %s, want 503 unavailable with Retry-After",
				c.method, c.path, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	proxy.RefuseNew(false)
	awaitCondition(t, 10*time.Second, "the admin API answering after the path is back", func() bool {
		return gw.adminDo("GET", "/accounts", nil).Status == http.StatusOK
	})
	if r := gw.adminDo("POST", "/import", export); r.Status != http.StatusOK {
		t.Errorf("import after the path is back: %d %s", r.Status, r.Body)
	}
}
