package tests

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/storage/bolt"
	"github.com/keygate/keygate/storage/postgres"
)

// checkJSON runs "caddy apikey check --json" and decodes what it printed.
func checkJSON(t *testing.T, gw *gateway, wantCode int) admin.Check {
	t.Helper()
	r := gw.cli("check", "--json")
	if r.Code != wantCode {
		t.Fatalf("check --json: exit %d, want %d: %s", r.Code, wantCode, r)
	}
	var c admin.Check
	decodeJSON(t, r, &c)
	return c
}

// lintMetrics runs promlint over Keygate's families of a gateway's
// /metrics and returns their names.
func lintMetrics(t *testing.T, gw *gateway) map[string]bool {
	t.Helper()
	var ours strings.Builder
	for line := range strings.SplitSeq(string(do(t, "GET", gw.AdminURL+"/metrics", nil).Body), "\n") {
		if strings.HasPrefix(line, "caddy_apikeys_") || strings.HasPrefix(line, "# HELP caddy_apikeys_") ||
			strings.HasPrefix(line, "# TYPE caddy_apikeys_") {
			ours.WriteString(line + "\n")
		}
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(ours.String()))
	if err != nil {
		t.Fatalf("parsing Keygate's metrics: %v\n%s", err, ours.String())
	}
	names := map[string]bool{}
	for name := range families {
		names[name] = true
	}
	problems, err := promlint.New(strings.NewReader(ours.String())).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	if !names["caddy_apikeys_decisions_total"] || !names["caddy_apikeys_store_query_duration_seconds"] {
		t.Errorf("Keygate's metrics are missing from /metrics: %v", names)
	}
	return names
}

// TestCheckPostgres: "caddy apikey check" on a gateway over PostgreSQL
// reports the store, its round trip, schema version, connected listener and
// record counts (exit 0); with the server stopped it says the store is
// unreachable and exits 1; once it is back, 0 again. The metrics pass
// promlint and listener_connected follows the listener.
func TestCheckPostgres(t *testing.T) {
	pg := pgtest.Dedicated(t)
	env := startTower(t, pg.DSN())
	gw := env.gw
	acc := gw.createAccount("checked", "apps")
	gw.createKey(acc, nil)

	r := gw.mustCLI("check")
	for _, want := range []string{"postgres (schema t_testcheckpostgres_", "Reachable  yes, in ", "Listener   connected since ",
		"Records    1 account, 1 key, 1 token"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("check lacks %q: %s", want, r)
		}
	}
	if row := r.Row(t, "Schema"); row[2] != strconv.Itoa(postgres.SchemaVersion()) {
		t.Errorf("check schema row %q, want version %d", row, postgres.SchemaVersion())
	}
	c := checkJSON(t, gw, 0)
	if c.Store != "postgres" || !c.Reachable || c.Latency == "" || c.SchemaVersion != postgres.SchemaVersion() ||
		c.LatestSchemaVersion != postgres.SchemaVersion() || c.Listener == nil || !c.Listener.Connected ||
		c.Counts == nil || *c.Counts != (admin.Counts{Accounts: 1, Keys: 1, Tokens: 1}) || c.Error != "" {
		t.Errorf("check --json = %+v", c)
	}
	if d, err := time.ParseDuration(c.Latency); err != nil || d <= 0 || d > 5*time.Second {
		t.Errorf("check latency %q: %v", c.Latency, err)
	}
	if strings.Contains(r.Stdout, "postgres://") || strings.Contains(c.Location, "postgres://") {
		t.Errorf("check shows the connection string: %s", r)
	}
	if names := lintMetrics(t, gw); !names["caddy_apikeys_listener_connected"] {
		t.Errorf("no listener_connected metric on a PostgreSQL store: %v", names)
	}
	if v, _ := metric(t, gw, "caddy_apikeys_listener_connected"); v != 1 {
		t.Errorf("listener_connected = %v with the listener connected", v)
	}

	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	r = gw.cli("check")
	wantCode(t, r, 1, "caddy apikey check: the key store is unreachable")
	for _, want := range []string{"postgres (schema ", "Reachable  no: ", "Listener   disconnected since "} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("check with the store down lacks %q: %s", want, r)
		}
	}
	c = checkJSON(t, gw, 1)
	if c.Store != "postgres" || c.Reachable || c.Error != "unavailable" || c.Message == "" || c.Counts != nil ||
		c.Listener == nil || c.Listener.Connected {
		t.Errorf("check --json with the store down = %+v", c)
	}
	if v, ok := metric(t, gw, "caddy_apikeys_listener_connected"); !ok || v != 0 {
		t.Errorf("listener_connected = %v (exported: %v) with the store down, want 0", v, ok)
	}

	if err := pg.Restart(); err != nil {
		t.Fatal(err)
	}
	awaitCondition(t, 10*time.Second, "check passing again", func() bool { return gw.cli("check").Code == 0 })
}

// TestCheckFileStore: on the file store, check names the file and its
// format version, shows no listener (there is none), and the metrics pass
// promlint without a listener_connected, which would read as a lost
// listener.
func TestCheckFileStore(t *testing.T) {
	gw, _ := startExample(t)
	gw.mustCLI("account", "create", "--name", "demo", "--scopes", "apps:read")
	r := gw.mustCLI("check")
	for _, want := range []string{"Store      file (" + gw.dir, "keygate/keys.db)", "Reachable  yes, in ",
		"Records    1 account, 0 keys, 0 tokens"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("check lacks %q: %s", want, r)
		}
	}
	if strings.Contains(r.Stdout, "Listener") {
		t.Errorf("check shows a listener on the file store: %s", r)
	}
	c := checkJSON(t, gw, 0)
	if c.Store != "file" || !c.Reachable || c.SchemaVersion != bolt.FormatVersion || c.Listener != nil ||
		c.Counts == nil || c.Counts.Accounts != 1 {
		t.Errorf("check --json = %+v", c)
	}
	if names := lintMetrics(t, gw); names["caddy_apikeys_listener_connected"] {
		t.Errorf("listener_connected is exported on the file store, which has no listener")
	}
	// Only the admin endpoint has /check: a site's apikey_admin does not.
	if r := do(t, "GET", gw.URL+"/check", nil); r.Status == http.StatusOK {
		t.Errorf("the protected site answers /check: %d %s", r.Status, r.Body)
	}
}
