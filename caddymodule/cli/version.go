package cli

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/caddyserver/caddy/v2"
	"github.com/spf13/cobra"
)

// modulePath is Keygate's Go module path, as build info names it.
const modulePath = "github.com/keygate/keygate"

// BuildVersion is what a binary knows about the Keygate it was built
// with, from its build info.
type BuildVersion struct {
	// Version is Keygate's module version: a release such as v0.2.0 when
	// Keygate is a dependency (xcaddy), "(devel)" or a pseudo-version
	// when the binary was built from Keygate's own repository. A replaced
	// module reads "v… => path".
	Version string `json:"version"`
	// Revision, Time and Modified are the VCS commit the binary was built
	// from, when built from Keygate's repository with VCS stamping.
	Revision string `json:"revision,omitempty"`
	Time     string `json:"time,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	// Sum is the module's go.sum hash, when Keygate is a dependency.
	Sum string `json:"sum,omitempty"`
}

// String is the version on one line: "v0.2.0", or "(devel) <revision>
// <time> +modified" for a build from the repository.
func (v BuildVersion) String() string {
	s := v.Version
	if v.Revision != "" {
		s += " " + v.Revision
	}
	if v.Time != "" {
		s += " " + v.Time
	}
	if v.Modified {
		s += " +modified"
	}
	return s
}

// Version returns the version of Keygate built into the running binary.
func Version() BuildVersion {
	bi, _ := debug.ReadBuildInfo()
	return buildVersion(bi)
}

// buildVersion reads Keygate's version from bi: the main module's when
// the binary was built from Keygate's repository (go build ./cmd/caddy),
// else the dependency's (xcaddy build --with github.com/keygate/keygate).
func buildVersion(bi *debug.BuildInfo) BuildVersion {
	if bi == nil {
		return BuildVersion{Version: "unknown"}
	}
	if bi.Main.Path == modulePath {
		v := BuildVersion{Version: bi.Main.Version}
		if v.Version == "" {
			v.Version = "(devel)"
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Revision = s.Value
			case "vcs.time":
				v.Time = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
		return v
	}
	for _, dep := range bi.Deps {
		if dep.Path != modulePath {
			continue
		}
		v := BuildVersion{Version: dep.Version, Sum: dep.Sum}
		if r := dep.Replace; r != nil {
			// A local checkout (--with github.com/keygate/keygate=./) has
			// no version of its own: say where it came from.
			v.Version += " => " + r.Path
			if r.Version != "" {
				v.Version += "@" + r.Version
			}
			v.Sum = r.Sum
		}
		return v
	}
	return BuildVersion{Version: "unknown"}
}

// versionReport is what "caddy apikey version --json" prints.
type versionReport struct {
	Keygate BuildVersion `json:"keygate"`
	Caddy   string       `json:"caddy"`
	Go      string       `json:"go"`
}

// versionCommand is "caddy apikey version".
func versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Prints the versions of Keygate and Caddy in this binary",
		Long: `
Prints the version of Keygate built into this caddy binary (from its build
info: the module's release, or "(devel)" and the commit for a build from
Keygate's repository), Caddy's version and Go's. It reads the binary, not
the running server: it needs no admin endpoint.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, caddyVersion := caddy.Version()
			r := versionReport{
				Keygate: Version(),
				Caddy:   caddyVersion,
				Go:      runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
			}
			if err := printVersion(cmd, r); err != nil {
				return fail(cmd, err)
			}
			return nil
		},
	}
}

// printVersion prints r as a table, or as JSON with --json.
func printVersion(cmd *cobra.Command, r versionReport) error {
	out := cmd.OutOrStdout()
	if asJSON, _ := cmd.Flags().GetBool("json"); asJSON {
		enc := json.NewEncoder(out)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	tw := newTable(out)
	fmt.Fprintf(tw, "Keygate\t%s\nCaddy\t%s\nGo\t%s\n", r.Keygate, r.Caddy, r.Go)
	return tw.Flush()
}
