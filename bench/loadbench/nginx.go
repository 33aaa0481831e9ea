package main

import (
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/storage/cache"
)

// nginxConf is the nginx of loadbench -nginx: four servers in front of
// the same upstream, differing only in the auth step. keygate asks
// apikey_verify (mode nginx) as the README's block does, authsvc asks the
// minimal Go service; both strip the key and pass one identity header.
// respond asks a Caddy site that answers every check with an empty 200:
// the floor of any Caddy handler as an auth service.
// Connections to every peer are kept alive, alike (every location that
// sets a proxy header sets Connection too: nginx inherits proxy_set_header
// only into locations that set none).
const nginxConf = `daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path {dir}/body;
	proxy_temp_path {dir}/proxy;
	fastcgi_temp_path {dir}/fastcgi;
	uwsgi_temp_path {dir}/uwsgi;
	scgi_temp_path {dir}/scgi;
	proxy_http_version 1.1;
	proxy_set_header Connection "";

	upstream api { server {upstream}; keepalive 64; }
	upstream keygate { server {verifier}; keepalive 64; }
	upstream authsvc { server {authsvc}; keepalive 64; }
	upstream respond { server {respond}; keepalive 64; }

	server {
		listen 127.0.0.1:{port_bare};
		location / { proxy_set_header Connection ""; proxy_set_header X-API-Key ""; proxy_pass http://api; }
	}

	server {
		listen 127.0.0.1:{port_keygate};
		location / {
			auth_request /.keygate;
			auth_request_set $kg_account $upstream_http_x_keygate_account;
			proxy_set_header X-Keygate-Account $kg_account;
			proxy_set_header X-API-Key "";
			proxy_set_header Connection "";
			proxy_pass http://api;
		}
		location = /.keygate {
			internal;
			proxy_pass http://keygate/verify;
			proxy_pass_request_body off;
			proxy_set_header Content-Length "";
			proxy_set_header Connection "";
			proxy_set_header X-Original-Method $request_method;
			proxy_set_header X-Original-URI $request_uri;
		}
	}

	server {
		listen 127.0.0.1:{port_authsvc};
		location / {
			auth_request /.authsvc;
			auth_request_set $account $upstream_http_x_account_id;
			proxy_set_header X-Account-Id $account;
			proxy_set_header X-API-Key "";
			proxy_set_header Connection "";
			proxy_pass http://api;
		}
		location = /.authsvc {
			internal;
			proxy_pass http://authsvc/check?scope=apps:read;
			proxy_pass_request_body off;
			proxy_set_header Content-Length "";
			proxy_set_header Connection "";
		}
	}

	server {
		listen 127.0.0.1:{port_respond};
		location / {
			auth_request /.respond;
			proxy_set_header X-API-Key "";
			proxy_set_header Connection "";
			proxy_pass http://api;
		}
		location = /.respond {
			internal;
			proxy_pass http://respond/verify;
			proxy_pass_request_body off;
			proxy_set_header Content-Length "";
			proxy_set_header Connection "";
			proxy_set_header X-Original-Method $request_method;
			proxy_set_header X-Original-URI $request_uri;
		}
	}
}
`

// compareNginx runs nginx auth_request → apikey_verify against nginx
// auth_request → authsvc (and nginx alone, and auth_request to Caddy's
// respond 200), in alternating rounds. nginx,
// Caddy and authsvc share CPU 0, so each auth service's cost shows in
// nginx's throughput; wrk and the upstream have CPU 1.
func (b *bench) compareNginx() error {
	bin, err := exec.LookPath("nginx")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/nginx"); err != nil {
			return fmt.Errorf("nginx not found: apt-get install -y nginx")
		}
	}
	export, tokensFile := filepath.Join(b.dir, "keys.jsonl"), filepath.Join(b.dir, "tokens.txt")
	tokens, err := writeKeys(export, tokensFile, 1)
	if err != nil {
		return err
	}
	if err := b.startServers(export); err != nil {
		return err
	}
	if err := b.startCaddy(cache.DefaultMaxEntries); err != nil {
		return err
	}
	if err := b.importKeys(export); err != nil {
		return err
	}
	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	b.ports["nginx"], b.ports["nginx_keygate"], b.ports["nginx_authsvc"], b.ports["nginx_caddy"] = ports[0], ports[1], ports[2], ports[3]
	conf := strings.NewReplacer("{dir}", b.dir, "{upstream}", b.upstream, "{verifier}", "127.0.0.1:"+b.ports["verify"],
		"{authsvc}", b.authsvc, "{respond}", "127.0.0.1:"+b.ports["respond"],
		"{port_bare}", ports[0], "{port_keygate}", ports[1], "{port_authsvc}", ports[2], "{port_respond}", ports[3]).Replace(nginxConf)
	confPath := filepath.Join(b.dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return err
	}
	if err := os.Symlink(bin, filepath.Join(b.dir, "bin", "nginx")); err != nil {
		return err
	}
	ngx, err := b.start(0, nil, "nginx", "-p", b.dir, "-e", filepath.Join(b.dir, "nginx-error.log"), "-c", confPath)
	if err != nil {
		return err
	}
	for _, p := range ports {
		if err := waitListening("127.0.0.1:" + p); err != nil {
			return err
		}
	}
	b.pids = map[string][]int{
		"nginx":         {ngx.Process.Pid},
		"nginx_keygate": {ngx.Process.Pid, b.caddy.Process.Pid},
		"nginx_authsvc": {ngx.Process.Pid, b.auth.Process.Pid},
		"nginx_caddy":   {ngx.Process.Pid, b.caddy.Process.Pid},
	}
	key := "X-API-Key: " + tokens[0]
	sites := []site{
		{"nginx", key, b.opts.duration, b.opts.connections},
		{"nginx_keygate", key, b.opts.duration, b.opts.connections},
		{"nginx_authsvc", key, b.opts.duration, b.opts.connections},
		{"nginx_caddy", key, b.opts.duration, b.opts.connections},
	}
	for _, s := range sites[1:3] { // nginx_caddy lets every request through
		if err := b.checkSite(s); err != nil {
			return err
		}
	}
	for _, s := range sites {
		log.Printf("warming up %s", s.name)
		if _, err := b.wrk(s, min(b.opts.warmup, s.duration), nil); err != nil {
			return err
		}
	}
	if b.opts.profile != "" {
		if err := b.cpuProfile(sites[1]); err != nil {
			return err
		}
	}
	results := map[string][]wrkResult{}
	for round := range b.opts.rounds {
		order := slices.Clone(sites)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, s := range order {
			r, err := b.wrk(s, s.duration, nil)
			if err != nil {
				return err
			}
			log.Printf("round %d %-14s %9.0f req/s  p50 %-8s p99 %-8s cpu %5.1f µs/req", round+1, s.name, r.rps, r.p50, r.p99, r.cpuPerReq.Seconds()*1e6)
			results[s.name] = append(results[s.name], r)
		}
	}
	printNginxComparison(sites, results)
	return nil
}

// printNginxComparison prints the -nginx figures as a Markdown table: per
// site, and the per-round ratio of Keygate's throughput to authsvc's.
func printNginxComparison(sites []site, results map[string][]wrkResult) {
	fmt.Printf("\n| site | median req/s | p50 | p99 | CPU/req (nginx + auth service) |\n|---|---:|---:|---:|---:|\n")
	for _, s := range sites {
		var rps []float64
		var p50, p99, cpu []time.Duration
		for _, r := range results[s.name] {
			rps, p50, p99, cpu = append(rps, r.rps), append(p50, r.p50), append(p99, r.p99), append(cpu, r.cpuPerReq)
		}
		fmt.Printf("| %s | %.0f | %s | %s | %.1f µs |\n", s.name, median(rps), median(p50), median(p99), median(cpu).Seconds()*1e6)
	}
	var ratio []float64
	var addedP99 []time.Duration
	for i, r := range results["nginx_keygate"] {
		ratio = append(ratio, r.rps/results["nginx_authsvc"][i].rps)
		addedP99 = append(addedP99, r.p99-results["nginx"][i].p99)
	}
	fmt.Printf("\nmedian per-round throughput ratio nginx_keygate / nginx_authsvc: %.3f\n", median(ratio))
	var floor, onFloor []float64
	for i, r := range results["nginx_caddy"] {
		floor = append(floor, r.rps/results["nginx_authsvc"][i].rps)
		onFloor = append(onFloor, results["nginx_keygate"][i].rps/r.rps)
	}
	fmt.Printf("median per-round ratio nginx_caddy (Caddy's respond 200) / nginx_authsvc: %.3f; nginx_keygate / nginx_caddy: %.3f\n",
		median(floor), median(onFloor))
	fmt.Printf("median per-round p99 added by auth_request to Keygate (vs nginx alone): %s\n", median(addedP99))
}
