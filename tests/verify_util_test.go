package tests

import (
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/pgtest"
)

// The README's section "Using Keygate from nginx, Traefik, Envoy" holds
// the configurations these tests run: the verifier, the nginx server
// block and Caddy's forward_auth site. Their addresses are the README's
// (the verifier at 127.0.0.1:8080, the upstream at 127.0.0.1:9000, the
// proxy on port 8000), replaced by the test's.

// readmeBlock returns the fenced code block of README.md whose first line
// is the comment first.
func readmeBlock(t testing.TB, first string) string {
	t.Helper()
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	i := strings.Index(text, "\n"+first+"\n")
	if i < 0 {
		t.Fatalf("README.md has no code block starting with %q", first)
	}
	block := text[i+len(first)+2:]
	end := strings.Index(block, "\n```")
	if end < 0 {
		t.Fatalf("README.md: the block %q does not end", first)
	}
	return block[:end+1]
}

// verifierSite returns the body of the README's verifier site block
// (its apikey_verify), with mode nginx replaced by mode.
func verifierSite(t testing.TB, mode string) string {
	t.Helper()
	_, site := verifierConfig(t, mode)
	return site
}

// verifierConfig returns the README's verifier block: its global options
// (the servers block, for the port {http_port}) and the body of its site
// (its apikey_verify, with mode nginx replaced by mode).
func verifierConfig(t testing.TB, mode string) (global, site string) {
	t.Helper()
	block := readmeBlock(t, "# Keygate, the verifier")
	end := strings.Index(block, "\n}\n")
	if !strings.HasPrefix(block, "{\n") || end < 0 {
		t.Fatalf("README verifier block does not start with global options:\n%s", block)
	}
	global = strings.ReplaceAll(block[2:end+1], "servers :8080 {", "servers :{http_port} {")
	rest := block[end+3:]
	open, last := strings.Index(rest, "{\n"), strings.LastIndex(rest, "}")
	if open < 0 || last < open {
		t.Fatalf("README verifier block:\n%s", block)
	}
	return global, strings.Replace(rest[open+2:last], "mode nginx", "mode "+mode, 1)
}

// readmeAddresses replaces the README's addresses in a block; port is
// the proxy's (startNginx's "{port}", or a number).
func readmeAddresses(block string, verifier, upstream string, port string) string {
	block = strings.ReplaceAll(block, "127.0.0.1:8080", verifier)
	block = strings.ReplaceAll(block, "127.0.0.1:9000", upstream)
	block = strings.ReplaceAll(block, "listen 8000;", "listen 127.0.0.1:"+port+";")
	return strings.ReplaceAll(block, ":8000 {", ":"+port+" {")
}

// verifyEnv is a Keygate verifier with keys, and an upstream.
type verifyEnv struct {
	gw       *gateway
	up       *upstream
	reader   string // apps:read
	admin    string // admin and apps
	accID    string
	readerID string
}

// startVerifier runs the README's verifier in mode on the store dsn, with
// the sites extra returns for the upstream's address (nil: none), and
// creates an account with two keys.
func startVerifier(t *testing.T, dsn, mode string, extra func(upstream string) string) *verifyEnv {
	t.Helper()
	env := &verifyEnv{up: newUpstream(t)}
	global, site := verifierConfig(t, mode)
	cfg := gatewayConfig{DSN: dsn, Schema: pgtest.Schema(t, dsn), Site: site, Global: global}
	if extra != nil {
		cfg.Extra = extra(env.up.URL)
	}
	env.gw = startGateway(t, cfg)
	env.accID = env.gw.createAccount("verify-ci", "apps", "admin")
	env.readerID, env.reader = env.gw.createKey(env.accID, []string{"apps:read"})
	_, env.admin = env.gw.createKey(env.accID, nil)
	return env
}

// identityHeaders are the README's identity headers.
var identityHeaders = []string{"X-Keygate-Account", "X-Keygate-Key", "X-Keygate-Token", "X-Keygate-Scopes", "X-Keygate-Account-Name", "X-Keygate-Team"}

// smuggled are identity headers a client sends, hoping the proxy passes
// them on.
func smuggled() []string {
	var h []string
	for _, name := range identityHeaders {
		h = append(h, name, "smuggled")
	}
	return h
}

// checkUpstreamClean fails unless the upstream's last request carries no
// credential and no smuggled identity header.
func checkUpstreamClean(t *testing.T, h http.Header) {
	t.Helper()
	for _, name := range []string{"X-Api-Key", "Authorization"} {
		if v := h.Values(name); len(v) > 0 {
			t.Errorf("the credential reached the upstream: %s: %q", name, v)
		}
	}
	for _, name := range identityHeaders {
		for _, v := range h.Values(name) {
			if v == "smuggled" {
				t.Errorf("a smuggled %s reached the upstream", name)
			}
		}
	}
}
