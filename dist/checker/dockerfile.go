package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	digest "github.com/opencontainers/go-digest"
)

// checkDockerfile lints file with BuildKit's rules, as `docker build
// --check` does (base images are not fetched: an offline resolver answers
// with an empty image), then checks what the image promises: built by
// dist/build, run as a non-root user, the admin port not exposed.
func checkDockerfile(file string) error {
	dt, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var p problems

	sm := llb.NewSourceMap(nil, filepath.Base(file), "Dockerfile", dt)
	sm.Definition = &llb.Definition{} // the lint's source needs one, even empty
	results, err := dockerfile2llb.DockerfileLint(context.Background(), dt, dockerfile2llb.ConvertOpt{
		SourceMap:    sm,
		MetaResolver: offlineResolver{},
	})
	if err != nil {
		return err
	}
	if results.Error != nil {
		p.addf("build error: %s", results.Error.Message)
	}
	for _, w := range results.Warnings {
		line := 0
		if w.Location != nil && len(w.Location.Ranges) > 0 {
			line = int(w.Location.Ranges[0].Start.Line)
		}
		p.addf("line %d: %s: %s (%s)", line, w.RuleName, w.Detail, w.URL)
	}

	ast, err := parser.Parse(bytes.NewReader(dt))
	if err != nil {
		return err
	}
	stages, _, err := instructions.Parse(ast.AST, nil)
	if err != nil {
		return err
	}
	if len(stages) < 2 {
		p.addf("want a multi-stage build, found %d stage(s)", len(stages))
		return p.err()
	}
	for _, s := range stages {
		if !strings.Contains(s.BaseName, ":") || strings.HasSuffix(s.BaseName, ":latest") {
			p.addf("stage %q: base image %q has no version tag", s.Name, s.BaseName)
		}
	}
	if !slices.ContainsFunc(stages[0].Commands, func(c instructions.Command) bool {
		run, ok := c.(*instructions.RunCommand)
		return ok && strings.Contains(strings.Join(run.CmdLine, " "), "dist/build ")
	}) {
		p.addf("the build stage does not run dist/build, the build that dist/check checks")
	}
	checkRuntimeStage(&p, stages[len(stages)-1])
	return p.err()
}

// checkRuntimeStage checks the final stage: a non-root user, the ports,
// a caddy command.
func checkRuntimeStage(p *problems, s instructions.Stage) {
	var user string
	var ports []string
	var cmd []string
	for _, c := range s.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.ExposeCommand:
			ports = append(ports, c.Ports...)
		case *instructions.CmdCommand:
			cmd = c.CmdLine
		}
	}
	if uid, _, _ := strings.Cut(user, ":"); uid == "" || uid == "0" || uid == "root" {
		p.addf("the runtime stage runs as root (USER %q)", user)
	}
	for _, want := range []string{"80", "443"} {
		if !slices.Contains(ports, want) {
			p.addf("the runtime stage does not expose %s", want)
		}
	}
	for _, port := range ports {
		if strings.HasPrefix(port, "2019") {
			p.addf("the runtime stage exposes the admin port %s", port)
		}
	}
	if len(cmd) == 0 || cmd[0] != "caddy" || !slices.Contains(cmd, "run") {
		p.addf("the runtime stage's CMD %q does not run caddy", cmd)
	}
}

// offlineResolver answers every image lookup with an empty Linux image, so
// that the lint runs without a registry.
type offlineResolver struct{}

func (offlineResolver) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	cfg := []byte(`{"architecture": "amd64", "os": "linux", "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}}`)
	return ref, digest.FromBytes([]byte(ref)), cfg, nil
}
