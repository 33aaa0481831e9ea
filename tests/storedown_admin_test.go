package tests

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
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
		if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" ||
			!strings.Contains(string(r.Body), `"error":"unavailable"`) {
			t.Errorf("%s /apikeys%s with the store down: %d Retry-After %q %s, want 503 unavailable with Retry-After",
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
