// Package tests holds Keygate's end-to-end tests: a real Caddy binary built
// from cmd/caddy, a real PostgreSQL and real HTTP.
package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
)

// caddyBin is the Caddy binary with Keygate, built once by TestMain.
var caddyBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "keygate-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	caddyBin = filepath.Join(dir, "caddy")
	args := []string{"build", "-o", caddyBin}
	if raceEnabled {
		// Run the gateway under the race detector too.
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/caddy")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building caddy:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	pgtest.Main(m)
}

// gateway is one running Caddy process.
type gateway struct {
	t         testing.TB
	cmd       *exec.Cmd
	dir       string
	AdminURL  string
	URL       string // the protected site
	HTTPPort  int
	AccessLog string // path of the JSON access log
	output    *lockedBuffer
	done      chan struct{}

	cleanupSet bool
}

// lockedBuffer collects a process's output safely.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// gatewayConfig fills the Caddyfile template of a gateway.
type gatewayConfig struct {
	// Schema is the PostgreSQL schema; DSN comes from KEYGATE_E2E_DSN.
	DSN, Schema string
	// Site is the body of the protected site block (after the log).
	Site string
	// Extra is appended to the Caddyfile (more sites).
	Extra string
	// Global is added to the global options (servers blocks).
	Global string
}

// startGateway runs Caddy with the Caddyfile built from cfg, on free
// ports, and waits until it serves. {http_port} in Site and Extra is the
// site's port.
func startGateway(t testing.TB, cfg gatewayConfig) *gateway {
	t.Helper()
	dir := t.TempDir()
	g := &gateway{
		t: t, dir: dir, HTTPPort: pgtest.FreePort(t), output: new(lockedBuffer), done: make(chan struct{}),
		AccessLog: filepath.Join(dir, "access.log"),
	}
	adminPort := pgtest.FreePort(t)
	g.AdminURL = fmt.Sprintf("http://127.0.0.1:%d", adminPort)
	g.URL = fmt.Sprintf("http://127.0.0.1:%d", g.HTTPPort)

	site := strings.ReplaceAll(cfg.Site, "{http_port}", fmt.Sprint(g.HTTPPort))
	extra := strings.ReplaceAll(cfg.Extra, "{http_port}", fmt.Sprint(g.HTTPPort))
	global := strings.ReplaceAll(cfg.Global, "{http_port}", fmt.Sprint(g.HTTPPort))
	// The two log filters are README's: Caddy copies each request for its
	// logs before any handler runs, so only a filter keeps X-API-Key out.
	caddyfile := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
%s
	log default {
		level DEBUG
		format filter {
			request>headers>X-Api-Key replace REDACTED
		}
	}
	apikeys {
		storage postgres {env.KEYGATE_E2E_DSN} {
			schema %s
		}
	}
}

:%d {
	log {
		output file %s
		format filter {
			request>headers>X-Api-Key replace REDACTED
		}
	}
%s
}
%s
`, adminPort, global, cfg.Schema, g.HTTPPort, g.AccessLog, site, extra)
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}

	g.launch(path, "KEYGATE_E2E_DSN="+cfg.DSN)
	return g
}

// launch runs Caddy on the Caddyfile at path, with extra environment, and
// waits until its admin endpoint and site port answer. HOME and the XDG
// directories are the gateway's dir, so Caddy's data directory (and the
// default file store) live there across restarts.
func (g *gateway) launch(path string, env ...string) {
	t := g.t
	t.Helper()
	g.done = make(chan struct{})
	g.cmd = exec.Command(caddyBin, "run", "--config", path, "--adapter", "caddyfile")
	g.cmd.Env = append(append(os.Environ(),
		"HOME="+g.dir, "XDG_DATA_HOME="+filepath.Join(g.dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(g.dir, "config")), env...)
	g.cmd.Stdout, g.cmd.Stderr = g.output, g.output
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := g.done
	cmd := g.cmd
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	if !g.cleanupSet {
		t.Cleanup(g.stop)
		g.cleanupSet = true
	}

	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-done:
			t.Fatalf("caddy exited during start:\n%s", g.output.String())
		default:
		}
		resp, err := http.Get(g.AdminURL + "/config/")
		if err == nil {
			resp.Body.Close()
			if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", g.HTTPPort)); err == nil {
				c.Close()
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy did not start within 60s:\n%s", g.output.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill ends the process at once (SIGKILL), as a crash would.
func (g *gateway) kill() {
	_ = g.cmd.Process.Kill()
	<-g.done
}

// stop ends the process gracefully.
func (g *gateway) stop() {
	if g.cmd == nil || g.cmd.Process == nil {
		return
	}
	select {
	case <-g.done:
		return // already ended
	default:
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(20 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.done
	}
	if g.t.Failed() {
		g.t.Logf("caddy output:\n%s", g.output.String())
	}
}

// Output returns what the process printed so far (its logs).
func (g *gateway) Output() string { return g.output.String() }

// response is a finished HTTP exchange.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into a map.
func (r response) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, r.Body)
	}
	return m
}

var client = &http.Client{Timeout: 30 * time.Second}

// do sends a request with the given headers (name, value pairs) and body
// (marshalled to JSON unless nil or already []byte).
func do(t testing.TB, method, url string, body any, headers ...string) response {
	t.Helper()
	return doWith(t, client, method, url, body, headers...)
}

// doWith is do through the client c.
func doWith(t testing.TB, c *http.Client, method, url string, body any, headers ...string) response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: raw}
}

// adminDo calls the key-management API on the gateway's admin endpoint.
func (g *gateway) adminDo(method, path string, body any) response {
	g.t.Helper()
	return do(g.t, method, g.AdminURL+"/apikeys"+path, body)
}

// mustAdmin calls the admin API and fails unless it answers want.
func (g *gateway) mustAdmin(method, path string, body any, want int) map[string]any {
	g.t.Helper()
	r := g.adminDo(method, path, body)
	if r.Status != want {
		g.t.Fatalf("%s /apikeys%s = %d, want %d: %s", method, path, r.Status, want, r.Body)
	}
	if len(r.Body) == 0 {
		return nil
	}
	return r.JSON(g.t)
}

// createAccount creates an account and returns its id.
func (g *gateway) createAccount(name string, scopes ...string) string {
	g.t.Helper()
	a := g.mustAdmin("POST", "/accounts", map[string]any{"name": name, "kind": "service", "scopes": scopes}, http.StatusCreated)
	return a["id"].(string)
}

// createKey creates a key on account with scopes (nil: inherit) and
// returns its id and secret.
func (g *gateway) createKey(account string, scopes []string, extra ...any) (string, string) {
	g.t.Helper()
	body := map[string]any{"account": account, "name": "key"}
	if scopes != nil {
		body["scopes"] = scopes
	}
	for i := 0; i+1 < len(extra); i += 2 {
		body[extra[i].(string)] = extra[i+1]
	}
	k := g.mustAdmin("POST", "/keys", body, http.StatusCreated)
	return k["id"].(string), k["secret"].(string)
}

// upstream is the API behind the gateway: it records what it receives.
type upstream struct {
	URL      string
	mu       sync.Mutex
	last     http.Header
	lastPath string
	hits     int
}

func newUpstream(t testing.TB) *upstream {
	t.Helper()
	u := &upstream{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.last = r.Header.Clone()
		u.lastPath = r.URL.EscapedPath()
		u.hits++
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"upstream":true,"path":%q}`, r.URL.Path)
	})}
	go srv.Serve(l) //nolint:errcheck // ends with Close
	t.Cleanup(func() { srv.Close() })
	u.URL = l.Addr().String()
	return u
}

// lastHeader returns the headers of the last request the upstream got.
func (u *upstream) lastHeader() http.Header {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

// path returns the path of the last request the upstream got, as sent.
func (u *upstream) path() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.lastPath
}

// hitCount returns how many requests reached the upstream.
func (u *upstream) hitCount() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.hits
}
