package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
)

// logWarning is the message of Keygate's start-up warning about logs that
// would print API keys.
const logWarning = "API keys would be written to logs in clear text"

// startSites runs Caddy with a global block and sites, each site on a
// free port and in a server of its name (sites maps a server name to its
// site block's body), until it has started every app, and returns what
// it printed. The file store lives in a temporary dir.
func startSites(t *testing.T, global string, sites map[string]string) string {
	t.Helper()
	// Eight ports free a moment ago: on a busy machine another process may
	// take one before Caddy binds it. Only that is retried.
	for attempt := 1; ; attempt++ {
		out, err := runSites(t, global, sites)
		if err == nil {
			return out
		}
		if attempt == 3 || !strings.Contains(out, "address already in use") {
			t.Fatalf("caddy: %v\n%s", err, out)
		}
		t.Logf("attempt %d: a port was taken, again on other ports", attempt)
	}
}

// runSites is one attempt of startSites.
func runSites(t *testing.T, global string, sites map[string]string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	var servers, blocks strings.Builder
	for name, body := range sites {
		port := pgtest.FreePort(t)
		fmt.Fprintf(&servers, "\tservers :%d {\n\t\tname %s\n\t}\n", port, name)
		fmt.Fprintf(&blocks, "\n:%d {\n%s\n\trespond ok\n}\n", port, body)
	}
	caddyfile := fmt.Sprintf("{\n\tadmin off\n\tpersist_config off\n%s%s}\n%s", servers.String(), global, blocks.String())
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(caddyBin, "run", "--config", path, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	out := new(lockedBuffer)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			<-exited
		}
	}()
	// The apikeys app may start after the servers listen: wait for the
	// line Caddy prints once every app has started.
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(out.String(), "serving initial configuration"); {
		select {
		case err := <-exited:
			return out.String(), fmt.Errorf("exited during start: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy did not finish starting within 60s:\n%s", out.String())
		}
	}
	return out.String(), nil
}

// logWarnings returns the lines of Caddy's output that carry the warning
// for server.
func logWarnings(output, server string) []string {
	var lines []string
	for line := range strings.Lines(output) {
		if strings.Contains(line, logWarning) && strings.Contains(line, fmt.Sprintf(`"server":%q`, server)) {
			lines = append(lines, strings.TrimSpace(line))
		}
	}
	return lines
}

const (
	siteFilter    = "\tlog {\n\t\tformat filter {\n\t\t\trequest>headers>X-Api-Key replace REDACTED\n\t\t}\n\t}\n"
	defaultFilter = "\tlog default {\n\t\tformat filter {\n\t\t\trequest>headers>X-Api-Key replace REDACTED\n\t\t}\n\t}\n"
)

// TestLogCheckWarnsUnredactedLogs: Caddy copies each request for its logs
// before any handler runs, so a server running apikey_auth, apikey_verify or apikey_admin
// whose access log, or whose error log (Caddy's default log, which prints
// the request of a failed upstream), has no filter for the credential
// headers would log every key. Keygate says so once per such server at
// start, naming the server and the fix, and says nothing of servers
// without its handlers.
func TestLogCheckWarnsUnredactedLogs(t *testing.T) {
	out := startSites(t, "", map[string]string{
		// A plain log, and the default log unfiltered: access and error logs.
		"plain": "\tlog\n\tapikey_auth\n",
		// No access log, but the default log prints failed requests.
		"nolog": "\tapikey_auth\n",
		// The admin handler reads keys too, here under a matcher.
		"admin": "\tlog\n\thandle /keys* {\n\t\tapikey_admin\n\t}\n",
		// The verifier reads the keys a proxy passes on.
		"verify": "\tlog\n\thandle /verify {\n\t\tapikey_verify {\n\t\t\tmode nginx\n\t\t}\n\t}\n",
		// Not Keygate's: no warning, whatever its logs.
		"other": "\tlog\n",
	})
	for server, loggers := range map[string][]string{
		"plain":  {"http.log.access", "http.log.error"},
		"nolog":  {"http.log.error"},
		"admin":  {"http.log.access", "http.log.error"},
		"verify": {"http.log.access", "http.log.error"},
	} {
		lines := logWarnings(out, server)
		if len(lines) != 1 {
			t.Errorf("server %s: %d warnings, want 1:\n%s\n%s", server, len(lines), strings.Join(lines, "\n"), out)
			continue
		}
		t.Logf("server %s: %s", server, lines[0])
		for _, want := range append(loggers, `"level":"warn"`, "X-Api-Key", "request>headers>X-Api-Key replace REDACTED") {
			if !strings.Contains(lines[0], want) {
				t.Errorf("server %s: the warning does not say %q: %s", server, want, lines[0])
			}
		}
	}
	if lines := logWarnings(out, "other"); len(lines) != 0 {
		t.Errorf("a server without Keygate's handlers is warned about:\n%s", strings.Join(lines, "\n"))
	}
}

// TestLogCheckQuietWithFilters: with the filters of the README on the
// site's log and on the default log (replace, delete or hash; a site
// without an access log needs only the default one), nothing is said; a
// filter naming the header in another case than Caddy's canonical
// X-Api-Key, or a credential header the filter does not name, is warned
// about.
func TestLogCheckQuietWithFilters(t *testing.T) {
	out := startSites(t, defaultFilter, map[string]string{
		"replaced": siteFilter + "\tapikey_auth\n",
		"deleted":  "\tlog {\n\t\tformat filter {\n\t\t\trequest>headers>X-Api-Key delete\n\t\t}\n\t}\n\tapikey_auth\n",
		"hashed":   "\tlog {\n\t\toutput stderr\n\t\tformat filter {\n\t\t\trequest>headers>X-Api-Key hash\n\t\t}\n\t}\n\tapikey_admin\n",
		"nolog":    "\tapikey_auth\n",
		// Through the default log, which has the filter.
		"plain": "\tlog\n\tapikey_auth\n",
		// Filter keys are case-sensitive: this one never matches.
		"wrongcase": "\tlog {\n\t\tformat filter {\n\t\t\trequest>headers>X-API-Key replace REDACTED\n\t\t}\n\t}\n\tapikey_auth\n",
		// Keys also come in X-Token, which nothing redacts.
		"custom": siteFilter + "\tapikey_auth {\n\t\theader X-Token\n\t\theader X-Api-Key\n\t}\n",
	})
	for _, server := range []string{"replaced", "deleted", "hashed", "nolog", "plain"} {
		if lines := logWarnings(out, server); len(lines) != 0 {
			t.Errorf("server %s, whose logs redact X-Api-Key, is warned about:\n%s", server, strings.Join(lines, "\n"))
		}
	}
	wrong := logWarnings(out, "wrongcase")
	if len(wrong) != 1 || !strings.Contains(wrong[0], "X-API-Key") || !strings.Contains(wrong[0], "http.log.access") {
		t.Errorf("server wrongcase: want one warning about its access log naming the misspelt X-API-Key rule, got:\n%s", strings.Join(wrong, "\n"))
	}
	custom := logWarnings(out, "custom")
	if len(custom) != 1 || !strings.Contains(custom[0], "X-Token") || strings.Contains(custom[0], `"X-Api-Key"`) {
		t.Errorf("server custom: want one warning about X-Token alone, got:\n%s", strings.Join(custom, "\n"))
	}
	for _, l := range append(wrong, custom...) {
		t.Log(l)
	}
}
