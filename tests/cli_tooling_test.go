package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
)

// TestCLIHelp: the usage line names every command, the help documents the
// exit codes and ends with the README's address, not Caddy's docs.
func TestCLIHelp(t *testing.T) {
	const readme = "Full documentation: https://github.com/keygate/keygate#readme\n"
	r := runAPIKeyCLI(t, "", "--help")
	if r.Code != 0 || !strings.HasSuffix(r.Stdout, readme) || strings.Contains(r.Stdout, "caddyserver.com/docs/command-line") {
		t.Errorf("apikey --help:\n%s", r)
	}
	var usage string
	for line := range strings.SplitSeq(r.Stdout, "\n") {
		if strings.HasPrefix(line, "  caddy apikey <") {
			usage = line
		}
	}
	for _, name := range []string{"account", "create", "list", "get", "update", "rotate", "revoke", "token", "audit", "whoami", "export", "import"} {
		if !strings.Contains(usage, name) {
			t.Errorf("the usage line %q lacks %s", usage, name)
		}
		if !strings.Contains(r.Stdout, "\n  "+name+" ") {
			t.Errorf("apikey --help lists no %s command", name)
		}
	}
	for _, code := range []string{"0 done", "1 error", "2 usage error", "3 not found"} {
		if !strings.Contains(r.Stdout, code) {
			t.Errorf("apikey --help does not document exit status %q", code)
		}
	}
	for _, args := range [][]string{{"token", "add", "--help"}, {"account", "--help"}, {"audit", "-h"}} {
		if r := runAPIKeyCLI(t, "", args...); r.Code != 0 || !strings.HasSuffix(r.Stdout, readme) {
			t.Errorf("%q:\n%s", args, r)
		}
	}
	// Caddy's own commands keep their footer.
	if out, err := runCaddy(t, nil, "stop", "--help"); err != nil || !strings.Contains(out, "caddyserver.com/docs/command-line") {
		t.Errorf("caddy stop --help: %v\n%s", err, out)
	}
}

// complete runs cobra's hidden completion command as a shell would.
func complete(t testing.TB, args ...string) []string {
	t.Helper()
	out, err := runCaddy(t, nil, append([]string{"__complete"}, args...)...)
	if err != nil {
		t.Fatalf("__complete %q: %v\n%s", args, err, out)
	}
	var got []string
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(line, ":") && !strings.HasPrefix(line, "Completion ended") {
			got = append(got, line)
		}
	}
	return got
}

// TestCLICompletion: Caddy's completion covers the apikey tree, and ids
// and names complete from the running Caddy.
func TestCLICompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		if out, err := runCaddy(t, nil, "completion", shell); err != nil || !strings.Contains(out, "caddy") {
			t.Errorf("completion %s: %v", shell, err)
		}
	}
	var subs []string
	for _, c := range complete(t, "apikey", "") {
		subs = append(subs, strings.Split(c, "\t")[0])
	}
	for _, name := range []string{"account", "create", "get", "token", "audit", "whoami", "import"} {
		if !slices.Contains(subs, name) {
			t.Errorf("apikey <Tab> lacks %s: %q", name, subs)
		}
	}
	if got := complete(t, "apikey", "account", "create", "--kind", ""); !slices.Equal(got, []string{"user", "service"}) {
		t.Errorf("--kind <Tab> = %q", got)
	}

	gw := startTower(t, pgtest.DSN(t)).gw
	addr := strings.TrimPrefix(gw.AdminURL, "http://")
	gw.mustCLI("account", "create", "--name", "ci-bot")
	r := gw.mustCLI("create", "--account", "ci-bot", "--name", "deploy")
	keyID, tokID := r.Row(t, "key_")[0], r.Row(t, "tok_")[0]
	if got := complete(t, "apikey", "get", "--address", addr, ""); len(got) != 1 || got[0] != keyID+"\tdeploy (ci-bot)" {
		t.Errorf("get <Tab> = %q", got)
	}
	if got := complete(t, "apikey", "token", "delete", "--address", addr, keyID, ""); len(got) != 1 || !strings.HasPrefix(got[0], tokID+"\tdefault ") {
		t.Errorf("token delete <key> <Tab> = %q", got)
	}
	if got := complete(t, "apikey", "list", "--address", addr, "--account", "ci"); len(got) != 1 || !strings.HasPrefix(got[0], "ci-bot\t") {
		t.Errorf("list --account ci<Tab> = %q", got)
	}
	// An unreachable endpoint completes nothing, quietly.
	dead := fmt.Sprintf("127.0.0.1:%d", pgtest.FreePort(t))
	if got := complete(t, "apikey", "get", "--address", dead, ""); len(got) != 0 {
		t.Errorf("get <Tab> without Caddy = %q", got)
	}
}

// TestCLIUnixSocketAdmin: the CLI reaches an admin endpoint on a unix
// socket, as 'caddy reload' does.
func TestCLIUnixSocketAdmin(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")
	caddyfile := fmt.Sprintf(`{
	admin unix/%s
	persist_config off
	apikeys {
		storage file %s
	}
}
`, sock, filepath.Join(dir, "keys.db"))
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
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})

	// Wait for the socket, then use it through --address and --config.
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case <-done:
			t.Fatalf("caddy exited:\n%s", out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no admin socket after 60s:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var r cliRun
	for {
		r = runAPIKeyCLI(t, "", "account", "create", "--name", "over-unix", "--address", "unix/"+sock)
		if r.Code == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r.Code != 0 || r.Row(t, "acc_")[1] != "over-unix" {
		t.Fatalf("account create over a unix socket: %s\n%s", r, out)
	}
	r = runAPIKeyCLI(t, "", "account", "list", "--config", path, "--adapter", "caddyfile")
	if r.Code != 0 || !strings.Contains(r.Stdout, "over-unix") {
		t.Errorf("account list with --config naming a unix socket: %s", r)
	}
	r = runAPIKeyCLI(t, "", "whoami", "--address", "unix/"+sock)
	if r.Code != 0 || !strings.Contains(r.Stdout, "unix/"+sock) {
		t.Errorf("whoami over a unix socket: %s", r)
	}
}
