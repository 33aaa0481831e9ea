package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// checkCompose loads file as `docker compose config` does (the compose
// spec's JSON schema, interpolation, merge keys, references between
// services), then checks what Keygate's deployment promises: two gateways
// on one healthy PostgreSQL, no admin endpoint published, locked-down
// containers.
func checkCompose(file string) error {
	ctx := context.Background()
	opts, err := cli.NewProjectOptions([]string{file},
		cli.WithOsEnv,
		cli.WithWorkingDirectory(filepath.Dir(file)),
		cli.WithResolvedPaths(true),
		cli.WithConsistency(true),
	)
	if err != nil {
		return err
	}
	project, err := opts.LoadProject(ctx)
	if err != nil {
		return err
	}

	var p problems
	var gateways []types.ServiceConfig
	for _, name := range project.ServiceNames() {
		svc := project.Services[name]
		if svc.HealthCheck == nil || len(svc.HealthCheck.Test) == 0 {
			p.addf("service %s has no healthcheck", name)
		}
		for _, port := range svc.Ports {
			if port.Target == 2019 || port.Published == "2019" {
				p.addf("service %s publishes port 2019: the admin endpoint must stay inside the container", name)
			}
		}
		if svc.Build != nil {
			gateways = append(gateways, svc)
		}
	}
	if len(gateways) < 2 {
		p.addf("want two gateways built from the Dockerfile, found %d", len(gateways))
	}
	for _, svc := range gateways {
		checkGateway(&p, project, svc)
	}
	return p.err()
}

// checkGateway checks one gateway service.
func checkGateway(p *problems, project *types.Project, svc types.ServiceConfig) {
	name := svc.Name
	if dockerfile := filepath.Join(svc.Build.Context, svc.Build.Dockerfile); !exists(dockerfile) {
		p.addf("gateway %s: no Dockerfile at %s", name, dockerfile)
	}
	if v := svc.Environment["DATABASE_URL"]; v == nil || *v == "" {
		p.addf("gateway %s: DATABASE_URL is not set", name)
	}
	var onPostgres bool
	for dep, d := range svc.DependsOn {
		if dep == "postgres" && d.Condition == types.ServiceConditionHealthy {
			onPostgres = true
		}
	}
	if !onPostgres {
		p.addf("gateway %s: does not wait for a healthy postgres", name)
	}
	if !svc.ReadOnly {
		p.addf("gateway %s: root file system not read_only", name)
	}
	if !slices.Contains(svc.CapDrop, "ALL") {
		p.addf("gateway %s: does not drop all capabilities", name)
	}
	if !slices.Contains(svc.SecurityOpt, "no-new-privileges:true") {
		p.addf("gateway %s: no no-new-privileges", name)
	}
	if svc.Sysctls["net.ipv4.ip_unprivileged_port_start"] != "0" {
		p.addf("gateway %s: a non-root process cannot bind port 80 without net.ipv4.ip_unprivileged_port_start=0", name)
	}
	var caddyfile bool
	for _, c := range svc.Configs {
		if c.Target != "/etc/caddy/Caddyfile" {
			continue
		}
		cfg, ok := project.Configs[c.Source]
		if !ok || !exists(cfg.File) {
			p.addf("gateway %s: the Caddyfile config %q names no existing file", name, c.Source)
		}
		caddyfile = true
	}
	if !caddyfile {
		p.addf("gateway %s: no Caddyfile mounted at /etc/caddy/Caddyfile", name)
	}
	for _, dir := range []string{"/data", "/config"} {
		if !slices.ContainsFunc(svc.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == dir }) {
			p.addf("gateway %s: no volume at %s (the root file system is read-only)", name, dir)
		}
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
