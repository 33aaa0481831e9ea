package cli

import (
	"bytes"
	"encoding/json"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/spf13/cobra"
)

func TestBuildVersion(t *testing.T) {
	caddyDep := &debug.Module{Path: caddy.ImportPath, Version: "v2.11.9", Sum: "h1:caddy="}
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		want BuildVersion
		line string
	}{
		{"no build info", nil, BuildVersion{Version: "unknown"}, "unknown"},
		{
			"built from the repository",
			&debug.BuildInfo{
				Main: debug.Module{Path: modulePath, Version: "(devel)"},
				Deps: []*debug.Module{caddyDep},
				Settings: []debug.BuildSetting{
					{Key: "vcs", Value: "git"},
					{Key: "vcs.revision", Value: "35c1a11d0a3b9e6d3f0c2b8a7e4d5c6b7a8f9e0d"},
					{Key: "vcs.time", Value: "2026-12-03T08:48:00Z"},
					{Key: "vcs.modified", Value: "true"},
				},
			},
			BuildVersion{Version: "(devel)", Revision: "35c1a11d0a3b9e6d3f0c2b8a7e4d5c6b7a8f9e0d", Time: "2026-12-03T08:48:00Z", Modified: true},
			"(devel) 35c1a11d0a3b9e6d3f0c2b8a7e4d5c6b7a8f9e0d 2026-12-03T08:48:00Z +modified",
		},
		{
			"built from a tagged checkout (go >= 1.24 stamps the tag)",
			&debug.BuildInfo{
				Main:     debug.Module{Path: modulePath, Version: "v0.2.0"},
				Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "false"}},
			},
			BuildVersion{Version: "v0.2.0", Revision: "abc"},
			"v0.2.0 abc",
		},
		{
			"built without VCS stamping",
			&debug.BuildInfo{Main: debug.Module{Path: modulePath}},
			BuildVersion{Version: "(devel)"},
			"(devel)",
		},
		{
			"a dependency (xcaddy build --with github.com/keygate/keygate@v0.2.0)",
			&debug.BuildInfo{
				Main: debug.Module{Path: "caddy"},
				Deps: []*debug.Module{caddyDep, {Path: modulePath, Version: "v0.2.0", Sum: "h1:kg="}},
				// The settings are the main module's, not Keygate's.
				Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "other"}},
			},
			BuildVersion{Version: "v0.2.0", Sum: "h1:kg="},
			"v0.2.0",
		},
		{
			"a replaced dependency (xcaddy build --with github.com/keygate/keygate=./)",
			&debug.BuildInfo{
				Main: debug.Module{Path: "caddy"},
				Deps: []*debug.Module{{Path: modulePath, Version: "v0.0.0-00010101000000-000000000000",
					Replace: &debug.Module{Path: "/src/keygate"}}},
			},
			BuildVersion{Version: "v0.0.0-00010101000000-000000000000 => /src/keygate"},
			"v0.0.0-00010101000000-000000000000 => /src/keygate",
		},
		{
			"replaced by another module version",
			&debug.BuildInfo{
				Main: debug.Module{Path: "caddy"},
				Deps: []*debug.Module{{Path: modulePath, Version: "v0.2.0", Sum: "h1:kg=",
					Replace: &debug.Module{Path: "example.com/fork/keygate", Version: "v0.2.1", Sum: "h1:fork="}}},
			},
			BuildVersion{Version: "v0.2.0 => example.com/fork/keygate@v0.2.1", Sum: "h1:fork="},
			"v0.2.0 => example.com/fork/keygate@v0.2.1",
		},
		{
			"a binary without Keygate",
			&debug.BuildInfo{Main: debug.Module{Path: "caddy"}, Deps: []*debug.Module{caddyDep}},
			BuildVersion{Version: "unknown"},
			"unknown",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := buildVersion(tc.bi)
			if got != tc.want {
				t.Errorf("buildVersion = %+v, want %+v", got, tc.want)
			}
			if got.String() != tc.line {
				t.Errorf("String() = %q, want %q", got.String(), tc.line)
			}
		})
	}
}

// runVersion runs "caddy apikey version args…" in a command tree built by
// Setup, as Caddy builds it.
func runVersion(t *testing.T, args ...string) string {
	t.Helper()
	root := &cobra.Command{Use: "apikey"}
	Setup(root)
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"version"}, args...))
	if err := root.Execute(); err != nil {
		t.Fatalf("apikey version %q: %v\n%s", args, err, errOut.String())
	}
	return out.String()
}

// TestVersionCommand: the command prints this test binary's Keygate
// version (the main module here) and the Caddy and Go versions, without
// an admin endpoint.
func TestVersionCommand(t *testing.T) {
	_, caddyVersion := caddy.Version()
	want := Version().String()
	if want == "unknown" {
		t.Fatalf("the test binary's build info names no Keygate module")
	}

	out := runVersion(t, "--address", "localhost:1") // never contacted
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines, got:\n%s", out)
	}
	for i, w := range [][2]string{{"Keygate", want}, {"Caddy", caddyVersion}, {"Go", "go1."}} {
		name, value, _ := strings.Cut(lines[i], " ")
		if name != w[0] || !strings.HasPrefix(strings.TrimSpace(value), w[1]) {
			t.Errorf("line %d = %q, want %s %s…", i+1, lines[i], w[0], w[1])
		}
	}

	var r versionReport
	if err := json.Unmarshal([]byte(runVersion(t, "--json")), &r); err != nil {
		t.Fatalf("--json: %v", err)
	}
	if r.Keygate != Version() || r.Caddy != caddyVersion || !strings.HasPrefix(r.Go, "go1.") {
		t.Errorf("--json = %+v", r)
	}
}
