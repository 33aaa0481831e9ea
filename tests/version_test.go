package tests

import (
	"encoding/json"
	"os/exec"
	"runtime/debug"
	"strings"
	"testing"
)

// TestCLIVersion: "caddy apikey version" of the built binary reports
// Keygate's module version from the binary's build info, the Caddy it was
// built with, and needs no admin endpoint.
func TestCLIVersion(t *testing.T) {
	r := runAPIKeyCLI(t, "", "version", "--json", "--address", "localhost:1") // never contacted
	if r.Code != 0 {
		t.Fatalf("apikey version: %s", r)
	}
	var got struct {
		Keygate struct {
			Version  string `json:"version"`
			Revision string `json:"revision"`
		} `json:"keygate"`
		Caddy string `json:"caddy"`
		Go    string `json:"go"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &got); err != nil {
		t.Fatalf("apikey version --json: %v\n%s", err, r.Stdout)
	}
	// Built from this repository: the main module's version, "(devel)"
	// or one Go derived from the VCS.
	if v := got.Keygate.Version; v != "(devel)" && !strings.HasPrefix(v, "v") {
		t.Errorf("keygate version %q, want (devel) or v…", v)
	}
	// The binary was built from this module's go.mod, as this test was.
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		t.Fatal("no build info in the test binary")
	}
	for _, dep := range bi.Deps {
		if dep.Path == "github.com/caddyserver/caddy/v2" && !strings.HasPrefix(got.Caddy, dep.Version+" ") {
			t.Errorf("caddy version %q, want %s", got.Caddy, dep.Version)
		}
	}
	if !strings.HasPrefix(got.Go, "go1.") {
		t.Errorf("go version %q", got.Go)
	}
	// A stamped revision is the checkout's.
	if rev := got.Keygate.Revision; rev != "" {
		if head, err := exec.Command("git", "rev-parse", "HEAD").Output(); err == nil && strings.TrimSpace(string(head)) != rev {
			t.Errorf("revision %s, but HEAD is %s", rev, head)
		}
	}

	r = runAPIKeyCLI(t, "", "version")
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, "Keygate  "+got.Keygate.Version) || !strings.Contains(r.Stdout, "\nCaddy    "+got.Caddy+"\n") {
		t.Errorf("apikey version:\n%s", r)
	}
}
