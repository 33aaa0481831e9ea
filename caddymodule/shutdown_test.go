package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/cache"
	"github.com/keygate/keygate/storage/postgres"
	"github.com/keygate/keygate/storage/token"
)

// TestGracefulShutdown runs Caddy in-process with the apikeys app on a
// PostgreSQL database of its own, serves a few requests with a key, stops
// Caddy and checks that the shutdown was clean: the pending last_used_at
// batch was written (long before the periodic flush would have), the pool
// and the LISTEN connection are closed, and no goroutine is left behind.
func TestGracefulShutdown(t *testing.T) {
	// A database of its own: every "keygate" connection to it is this
	// test's.
	dsn := pgtest.Database(t)
	schema := pgtest.Schema(t, dsn)
	// Keep Caddy's data and config directories out of the user's home.
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())

	tokenID, secret := seedShutdownKey(t, dsn, schema)
	db := shutdownDB{t: t, dsn: dsn, schema: schema}
	if n := db.waitNoKeygateConns(3 * time.Second); n != 0 {
		t.Fatalf("%d keygate connections before Caddy started (seeding store not closed?):\n%s", n, db.describeConns())
	}

	port := pgtest.FreePort(t)
	cfg := shutdownConfig(t, dsn, schema, port)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	url := fmt.Sprintf("http://127.0.0.1:%d/v1/apps", port)

	before := goroutineStacks()
	started := time.Now()
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading the config: %v", err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = caddy.Stop()
		}
	})

	// While it runs: one pool and one LISTEN connection, and the key works.
	if n := db.keygateConns(); n < 2 {
		t.Errorf("while running: %d keygate connections, want at least 2 (pool and listener)", n)
	}
	if n := db.listeners(); n != 1 {
		t.Errorf("while running: %d LISTEN connections, want 1", n)
	}
	for i := range 5 {
		if status := shutdownGet(t, client, url, secret); status != http.StatusOK {
			t.Fatalf("request %d with the key: %d, want 200", i, status)
		}
	}
	usedBy := time.Now()
	if status := shutdownGet(t, client, url, ""); status != http.StatusUnauthorized {
		t.Fatalf("request without a key: %d, want 401", status)
	}
	client.CloseIdleConnections()

	// The periodic flush runs every cache.UseFlushInterval from the
	// start: before it, the use is only pending in memory.
	lastUsed := db.lastUsed(tokenID)
	pending := time.Since(started) < cache.UseFlushInterval-time.Second
	switch {
	case pending && lastUsed != nil:
		t.Fatalf("last_used_at is already set %v after start, before any periodic flush: %v",
			time.Since(started).Round(time.Millisecond), lastUsed)
	case !pending:
		t.Logf("start and requests took %v: a periodic flush may have run, the flush-at-stop check is weaker",
			time.Since(started).Round(time.Millisecond))
	}

	stopStart := time.Now()
	if err := caddy.Stop(); err != nil {
		t.Fatalf("stopping Caddy: %v", err)
	}
	stopped = true
	stopTook := time.Since(stopStart)
	t.Logf("caddy.Stop took %v", stopTook.Round(time.Millisecond))
	if stopTook > 5*time.Second {
		t.Errorf("caddy.Stop took %v", stopTook)
	}

	// The pending batch was written by the stop, not by a later tick: read
	// right away, well before the next periodic flush.
	lastUsed = db.lastUsed(tokenID)
	switch {
	case lastUsed == nil:
		t.Errorf("last_used_at is still NULL right after stop (%v after start): the pending batch was not flushed",
			time.Since(started).Round(time.Millisecond))
	case lastUsed.Before(started.Add(-2*time.Second)) || lastUsed.After(usedBy.Add(2*time.Second)):
		t.Errorf("last_used_at = %v, want the time of the requests (%v .. %v)", lastUsed, started, usedBy)
	}

	// The pool and the listener are closed: PostgreSQL sees no keygate
	// connection (a backend may take a moment to exit after the client
	// said goodbye).
	if n := db.waitNoKeygateConns(3 * time.Second); n != 0 {
		t.Errorf("3s after stop, PostgreSQL still has %d keygate connections:\n%s", n, db.describeConns())
	}

	// No goroutine leak: the count returns to what it was before the
	// start. Goroutines that Caddy or the runtime start once per process
	// and keep are tolerated, but never one running Keygate, pgx or
	// ristretto code.
	const tolerance = 2
	var extra []goroutine
	settleStart := time.Now()
	deadline := settleStart.Add(5 * time.Second)
	for {
		extra = newGoroutines(before, goroutineStacks())
		if len(extra) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var ours []goroutine
	for _, g := range extra {
		if ourGoroutine.MatchString(g.stack) {
			ours = append(ours, g)
		}
	}
	t.Logf("goroutines: %d before start, %d new ones left %v after stop (%d of Keygate, pgx or ristretto); runtime.NumGoroutine() = %d",
		len(before), len(extra), time.Since(settleStart).Round(time.Millisecond), len(ours), runtime.NumGoroutine())
	if len(ours) > 0 || len(extra) > tolerance {
		var b strings.Builder
		for _, g := range extra {
			b.WriteString(g.stack)
			b.WriteString("\n\n")
		}
		t.Errorf("%d goroutines started while Caddy ran are still alive after stop (%d of Keygate, pgx or ristretto; tolerance %d for others):\n%s",
			len(extra), len(ours), tolerance, b.String())
	}
}

// ourGoroutine matches the stack of a goroutine that belongs to the key
// store, its cache or its listener.
var ourGoroutine = regexp.MustCompile(`github\.com/keygate/keygate|github\.com/jackc/pgx|github\.com/dgraph-io/ristretto`)

// shutdownConfig is a JSON config with the apikeys app on PostgreSQL and
// one HTTP server on port protected by apikey_auth; Caddy's admin endpoint
// is off.
func shutdownConfig(t *testing.T, dsn, schema string, port int) []byte {
	t.Helper()
	cfg := map[string]any{
		"admin": map[string]any{"disabled": true, "config": map[string]any{"persist": false}},
		"logging": map[string]any{"logs": map[string]any{
			"default": map[string]any{"level": "WARN"},
		}},
		"apps": map[string]any{
			// No storage cleaning: its lock file goroutine outlives the
			// config by up to 5s, which would blur the goroutine count.
			"tls": map[string]any{"disable_storage_clean": true, "disable_storage_check": true},
			"apikeys": map[string]any{
				"storage": map[string]any{"module": "postgres", "dsn": dsn, "schema": schema},
			},
			"http": map[string]any{
				"servers": map[string]any{
					"shutdown": map[string]any{
						"listen":          []string{fmt.Sprintf("127.0.0.1:%d", port)},
						"automatic_https": map[string]any{"disable": true},
						"routes": []any{map[string]any{
							"handle": []any{
								map[string]any{
									"handler": "apikey_auth",
									"routes": []any{
										map[string]any{"methods": []string{"GET"}, "path": "/v1/apps", "scope": "apps:read"},
									},
									"default": "deny",
								},
								map[string]any{"handler": "static_response", "body": "ok"},
							},
						}},
					},
				},
			},
		},
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// seedShutdownKey creates an account and a key with one token directly in
// the store, closes the store, and returns the token's id and value.
func seedShutdownKey(t *testing.T, dsn, schema string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := postgres.Open(ctx, dsn, schema)
	if err != nil {
		t.Fatal(err)
	}
	st := storage.New(b)
	defer st.Close()
	tokens, err := token.NewFormat(token.DefaultPrefix)
	if err != nil {
		t.Fatal(err)
	}
	acc, err := st.CreateAccount(ctx, storage.Trusted, storage.NewAccount{Name: "shutdown", Kind: storage.KindService, Scopes: []string{"apps"}})
	if err != nil {
		t.Fatal(err)
	}
	secret := tokens.Generate()
	key, err := st.CreateKey(ctx, storage.Trusted, storage.NewKey{Account: acc.ID, Name: "shutdown"}, storage.NewSecret(secret))
	if err != nil {
		t.Fatal(err)
	}
	if len(key.Tokens) != 1 {
		t.Fatalf("new key has %d tokens", len(key.Tokens))
	}
	return key.Tokens[0].ID, secret
}

// shutdownDB asks PostgreSQL about the test's store, on short-lived
// connections of its own (not named "keygate").
type shutdownDB struct {
	t           *testing.T
	dsn, schema string
}

func (d shutdownDB) query(sql string, args []any, dest ...any) {
	d.t.Helper()
	pgtest.QueryRow(d.t, d.dsn, sql, args, dest...)
}

// keygateConns counts the connections Keygate's store opened to the
// test's database.
func (d shutdownDB) keygateConns() int {
	var n int
	d.query("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'keygate%' AND datname = current_database()", nil, &n)
	return n
}

// waitNoKeygateConns waits up to timeout for Keygate's connections to be
// gone, and returns how many are left.
func (d shutdownDB) waitNoKeygateConns(timeout time.Duration) int {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := d.keygateConns()
		if n == 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// listeners counts Keygate's change listener connections.
func (d shutdownDB) listeners() int {
	var n int
	d.query(`SELECT count(*) FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, []any{postgres.ListenerApplicationName}, &n)
	return n
}

// describeConns lists Keygate's connections for a failure message.
func (d shutdownDB) describeConns() string {
	var s string
	d.query(`SELECT coalesce(string_agg(format('pid %s state %s query %s', pid, state, left(query, 60)), E'\n'), '')
		FROM pg_stat_activity WHERE application_name LIKE 'keygate%' AND datname = current_database()`, nil, &s)
	return s
}

// lastUsed reads the token's last_used_at straight from the table.
func (d shutdownDB) lastUsed(tokenID string) *time.Time {
	var at *time.Time
	d.query("SELECT last_used_at FROM "+pgx.Identifier{d.schema, "tokens"}.Sanitize()+" WHERE id = $1",
		[]any{tokenID}, &at)
	return at
}

func shutdownGet(t *testing.T, client *http.Client, url, key string) int {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// goroutine is one goroutine of a runtime.Stack dump.
type goroutine struct {
	id    string
	stack string
}

var goroutineHeader = regexp.MustCompile(`^goroutine (\d+) `)

// goroutineStacks returns every goroutine's stack.
func goroutineStacks() []goroutine {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []goroutine
	for _, block := range bytes.Split(buf, []byte("\n\n")) {
		m := goroutineHeader.FindSubmatch(block)
		if m == nil {
			continue
		}
		out = append(out, goroutine{id: string(m[1]), stack: string(block)})
	}
	return out
}

// newGoroutines returns the goroutines of after that before did not have.
func newGoroutines(before, after []goroutine) []goroutine {
	var ids []string
	for _, g := range before {
		ids = append(ids, g.id)
	}
	var out []goroutine
	for _, g := range after {
		if !slices.Contains(ids, g.id) {
			out = append(out, g)
		}
	}
	return out
}
