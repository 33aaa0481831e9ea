package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
)

// TestReloadsUnderLoad reloads the gateway's config 20 times through
// Caddy's admin API while several clients send requests with valid keys,
// alternating between the Tower scope table and one where GET
// /v1/apps/{app} needs a scope the keys lack. No request fails other than
// those the new table denies; PostgreSQL sees as many Keygate connections
// after the reloads as before (no pool or listener leak); the store, its
// cache and the metrics carry over.
func TestReloadsUnderLoad(t *testing.T) {
	dsn := pgtest.Database(t)
	// The pool's size is set, so that the test knows the most connections
	// one open store may hold: a pool grows with demand up to its cap,
	// which is not a leak; a store opened per config is.
	const poolCap = 3
	env := startTowerOn(t, withPoolCap(t, dsn, poolCap), pgtest.Schema(t, dsn))
	gw := env.gw
	db := reloadDB{t: t, dsn: dsn}

	// The two configs: the harness's Caddyfile, and the same with one
	// route of the table changed.
	raw, err := os.ReadFile(filepath.Join(gw.dir, "Caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	allowing := string(raw)
	const allowLine, denyLine = "scope GET    /v1/apps/{app}      apps:read", "scope GET    /v1/apps/{app}      apps:write"
	if strings.Count(allowing, allowLine) != 1 {
		t.Fatalf("the harness's Caddyfile has no line %q:\n%s", allowLine, allowing)
	}
	denying := strings.Replace(allowing, allowLine, denyLine, 1)
	// A change to a route the traffic does not use, too.
	const otherLine = "scope DELETE /v1/apps/{app}      apps:delete"
	if strings.Count(denying, otherLine) != 1 {
		t.Fatalf("the harness's Caddyfile has no line %q:\n%s", otherLine, allowing)
	}
	denying = strings.Replace(denying, otherLine, "scope DELETE /v1/apps/{app}      apps:admin", 1)

	acc := gw.createAccount("reload", "apps")
	const nkeys = 4
	keys := make([]string, nkeys)
	for i := range keys {
		_, keys[i] = gw.createKey(acc, []string{"apps:read"})
	}

	// Traffic: workers send GET /v1/apps (allowed by both tables) and GET
	// /v1/apps/web (denied by one) until told to stop.
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()
	// Caddy replaces its admin server on every load and closes the old
	// one's connections in the background: a POST on a kept-alive
	// connection to it may get EOF (Go retries only idempotent requests).
	// Admin calls use a connection each.
	admin := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	var (
		sent, answered, ok, denied, failed atomic.Int64
		handover                           atomic.Int64 // fresh connections reset by Caddy's listener handover
		failMu                             sync.Mutex
		failures                           []string
	)
	fail := func(msg string) {
		if failed.Add(1) <= 10 {
			failMu.Lock()
			failures = append(failures, msg)
			failMu.Unlock()
		}
	}
	stop := make(chan struct{})
	var traffic sync.WaitGroup
	const workers, maxPerWorker = 6, 20_000 // bounded even if the reloads hang
	for w := range workers {
		traffic.Go(func() {
			for i := range maxPerWorker {
				select {
				case <-stop:
					return
				default:
				}
				key := keys[(w+i)%nkeys]
				path := "/v1/apps"
				if i%2 == 1 {
					path = "/v1/apps/web"
				}
				headers := []string{"X-API-Key", key}
				if i%3 == 0 {
					headers = []string{"Authorization", "Bearer " + key}
				}
				sent.Add(1)
				status, body, fresh, err := reloadTrafficGet(client, gw.URL+path, headers...)
				if err != nil && fresh && listenerHandoverDrop(err) {
					// Not Keygate's: see listenerHandoverDrop. A client
					// retries this; the retry must succeed.
					handover.Add(1)
					status, body, _, err = reloadTrafficGet(client, gw.URL+path, headers...)
				}
				if err == nil {
					answered.Add(1)
				}
				switch {
				case err != nil:
					fail(fmt.Sprintf("GET %s: %v", path, err))
				case status == 200:
					ok.Add(1)
				case status == 403 && path == "/v1/apps/web" && strings.Contains(body, `"insufficient_scope"`):
					denied.Add(1) // the denying table's decision
				default:
					fail(fmt.Sprintf("GET %s: %d %s", path, status, body))
				}
			}
		})
	}
	stopTraffic := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		traffic.Wait()
	}
	defer stopTraffic()

	// Warm up, then take the figures the reloads must not change.
	time.Sleep(300 * time.Millisecond)
	connsBefore := db.settledConns()
	listenersBefore := db.listeners()
	decisionsBefore := reloadMetric(t, admin, gw, "caddy_apikeys_decisions_total")
	queriesBefore := reloadMetric(t, admin, gw, "caddy_apikeys_store_queries_total")
	answeredBefore := answered.Load()
	if listenersBefore != 1 {
		t.Errorf("before the reloads: %d LISTEN connections, want 1", listenersBefore)
	}

	const reloads = 20
	maxConns := connsBefore
	lastDecisions := decisionsBefore
	reloadStart := time.Now()
	for i := range reloads {
		deny := i%2 == 0 // the last reload goes back to the allowing table
		cfg := allowing
		if deny {
			cfg = denying
		}
		start := time.Now()
		status, body, err := reloadLoad(admin, gw.AdminURL, cfg)
		if err != nil || status != 200 {
			t.Fatalf("reload %d: %d %s %v\n%s", i+1, status, body, err, gw.Output())
		}
		took := time.Since(start)

		// The new table is in force as soon as /load answers.
		want := 200
		if deny {
			want = 403
		}
		if status, body, err := reloadCheck(client, gw.URL+"/v1/apps/web", keys[0]); err != nil || status != want {
			t.Errorf("after reload %d: GET /v1/apps/web = %d %s %v, want %d", i+1, status, body, err, want)
		}
		// The store works in the new config: a new key is verified.
		fresh := reloadCreateKey(t, admin, gw, acc)
		if status, body, err := reloadCheck(client, gw.URL+"/v1/apps", fresh); err != nil || status != 200 {
			t.Errorf("after reload %d: a key created after it: %d %s %v", i+1, status, body, err)
		}
		// The decision counter survives the reload.
		d := reloadMetric(t, admin, gw, "caddy_apikeys_decisions_total")
		if d < lastDecisions {
			t.Errorf("after reload %d: caddy_apikeys_decisions_total went down from %v to %v", i+1, lastDecisions, d)
		}
		lastDecisions = d
		maxConns = max(maxConns, db.conns())
		t.Logf("reload %d (%s table) took %v; %d requests so far", i+1, map[bool]string{true: "denying", false: "allowing"}[deny],
			took.Round(time.Millisecond), sent.Load())
		time.Sleep(50 * time.Millisecond) // some traffic on each config
	}
	reloadsTook := time.Since(reloadStart)
	stopTraffic()
	answeredDuring := answered.Load() - answeredBefore

	decisionsAfter := reloadMetric(t, admin, gw, "caddy_apikeys_decisions_total")
	queriesAfter := reloadMetric(t, admin, gw, "caddy_apikeys_store_queries_total")
	connsAfter := db.settledConns()
	listenersAfter := db.listeners()

	t.Logf("%d reloads in %v under load: %d requests (%d answered during the reloads), %d ok, %d denied by the denying table, %d failed; %d new connections reset by Caddy's listener handover (retried)",
		reloads, reloadsTook.Round(time.Millisecond), sent.Load(), answeredDuring, ok.Load(), denied.Load(), failed.Load(), handover.Load())
	t.Logf("keygate connections: %d before, at most %d during, %d after; LISTEN connections %d before, %d after",
		connsBefore, maxConns, connsAfter, listenersBefore, listenersAfter)
	t.Logf("decisions_total %v -> %v; store_queries_total %v -> %v", decisionsBefore, decisionsAfter, queriesBefore, queriesAfter)

	if failed.Load() != 0 {
		t.Errorf("%d requests with valid keys failed during the reloads; first ones:\n%s", failed.Load(), strings.Join(failures, "\n"))
	}
	if ok.Load() == 0 || denied.Load() == 0 {
		t.Errorf("the traffic saw %d successes and %d denials: want both tables to have served it", ok.Load(), denied.Load())
	}
	// One store's connections: its pool, up to its cap, and its listener.
	oneStore := max(connsBefore, poolCap+1)
	if connsAfter > oneStore || listenersAfter != 1 {
		t.Errorf("PostgreSQL connections grew across %d reloads: %d keygate connections before, %d after, one store holds at most %d (%d LISTEN before, %d after):\n%s",
			reloads, connsBefore, connsAfter, oneStore, listenersBefore, listenersAfter, db.describe())
	}
	if maxConns > oneStore+1 {
		t.Errorf("during the reloads PostgreSQL saw up to %d keygate connections, %d before, one store holds at most %d: a store is opened per config", maxConns, connsBefore, oneStore)
	}
	// Every request of the traffic and of the checks was counted.
	if decisionsAfter-decisionsBefore < float64(answeredDuring) {
		t.Errorf("caddy_apikeys_decisions_total grew by %v over %d answered requests: the counter was reset by a reload",
			decisionsAfter-decisionsBefore, answeredDuring)
	}
	// The cache carries over too: only the keys created after each reload
	// were looked up, not the traffic's keys again and again.
	if q := queriesAfter - queriesBefore; q > 2*reloads+nkeys {
		t.Errorf("%v store queries during %d reloads with %d keys created: the token cache was dropped by reloads", q, reloads, reloads)
	}
}

// reloadGet sends a GET and returns its status and body.
func reloadGet(client *http.Client, url string, headers ...string) (int, string, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return 0, "", err
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	return reloadSend(client, req)
}

// reloadCheck sends a GET with key, once more if Caddy's listener
// handover dropped the connection (see listenerHandoverDrop).
func reloadCheck(client *http.Client, url, key string) (int, string, error) {
	status, body, fresh, err := reloadTrafficGet(client, url, "X-API-Key", key)
	if err != nil && fresh && listenerHandoverDrop(err) {
		status, body, _, err = reloadTrafficGet(client, url, "X-API-Key", key)
	}
	return status, body, err
}

// reloadTrafficGet is reloadGet that also tells whether the request went
// on a new connection (not one kept alive from an earlier request).
func reloadTrafficGet(client *http.Client, url string, headers ...string) (status int, body string, fresh bool, err error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return 0, "", false, err
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	fresh = true
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { fresh = !info.Reused },
	}))
	status, body, err = reloadSend(client, req)
	return status, body, fresh, err
}

// listenerHandoverDrop reports whether err is how Caddy drops a new
// connection during a reload, before any handler sees it: on Linux each
// config listens on its own SO_REUSEPORT socket, the kernel spreads new
// connections over the old and the new one, and the connections waiting
// in the old socket's accept queue when it closes are reset. A Caddy
// without Keygate (a bare respond) drops about fifty new connections over
// twenty reloads under this test's traffic. Requests on kept-alive
// connections that the old server closes are retried by Go's client
// itself (idempotent requests on a reused connection).
func listenerHandoverDrop(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// reloadLoad loads a Caddyfile through Caddy's admin API.
func reloadLoad(client *http.Client, adminURL, caddyfile string) (int, string, error) {
	req, err := http.NewRequest("POST", adminURL+"/load", strings.NewReader(caddyfile))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "text/caddyfile")
	return reloadSend(client, req)
}

func reloadSend(client *http.Client, req *http.Request) (int, string, error) {
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, string(body), fmt.Errorf("reading the body: %w", err)
	}
	return resp.StatusCode, string(body), nil
}

// reloadCreateKey creates a key with apps:read on the account through
// the admin endpoint and returns its token.
func reloadCreateKey(t *testing.T, admin *http.Client, gw *gateway, account string) string {
	t.Helper()
	body := fmt.Sprintf(`{"account": %q, "name": "fresh", "scopes": ["apps:read"]}`, account)
	req, err := http.NewRequest("POST", gw.AdminURL+"/apikeys/keys", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	status, answer, err := reloadSend(admin, req)
	if err != nil || status != http.StatusCreated {
		t.Fatalf("POST /apikeys/keys: %d %s %v", status, answer, err)
	}
	var k struct{ Secret string }
	if err := json.Unmarshal([]byte(answer), &k); err != nil || k.Secret == "" {
		t.Fatalf("POST /apikeys/keys: no secret in %s (%v)", answer, err)
	}
	return k.Secret
}

// reloadMetric reads a metric from the admin endpoint (sum over label
// sets, as metric does), failing when it is missing.
func reloadMetric(t *testing.T, admin *http.Client, gw *gateway, name string) float64 {
	t.Helper()
	status, text, err := reloadGet(admin, gw.AdminURL+"/metrics")
	if err != nil || status != 200 {
		t.Fatalf("GET /metrics: %d %v", status, err)
	}
	sum, found := sumMetric(t, text, name)
	if !found {
		t.Fatalf("no metric %s in /metrics", name)
	}
	return sum
}

// reloadDB asks PostgreSQL about Keygate's connections to the test's
// database, on short-lived connections of its own.
type reloadDB struct {
	t   *testing.T
	dsn string
}

func (d reloadDB) query(sql string, dest ...any) {
	d.t.Helper()
	pgtest.QueryRow(d.t, d.dsn, sql, nil, dest...)
}

const keygateConns = "FROM pg_stat_activity WHERE application_name LIKE 'keygate%' AND datname = current_database()"

// conns counts Keygate's connections.
func (d reloadDB) conns() int {
	var n int
	d.query("SELECT count(*) "+keygateConns, &n)
	return n
}

// settledConns counts Keygate's connections once the count has held for
// a moment (a closed connection's backend takes a moment to leave).
func (d reloadDB) settledConns() int {
	n := d.conns()
	for range 50 {
		time.Sleep(100 * time.Millisecond)
		m := d.conns()
		if m == n {
			return n
		}
		n = m
	}
	return n
}

// listeners counts Keygate's change listener connections.
func (d reloadDB) listeners() int {
	var n int
	d.query("SELECT count(*) "+keygateConns+" AND application_name = 'keygate-listener'", &n)
	return n
}

// describe lists Keygate's connections for a failure message.
func (d reloadDB) describe() string {
	var s string
	d.query(`SELECT coalesce(string_agg(format('pid %s since %s state %s query %s', pid, backend_start, state, left(query, 60)), E'\n'), '') `+keygateConns, &s)
	return s
}

// withPoolCap returns dsn with the store's pool capped at n connections.
func withPoolCap(t *testing.T, dsn string, n int) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatalf("the test database's DSN is not a URL: %v", err)
	}
	q := u.Query()
	q.Set("pool_max_conns", strconv.Itoa(n))
	u.RawQuery = q.Encode()
	return u.String()
}
