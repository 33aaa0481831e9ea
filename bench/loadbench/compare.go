package main

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/storage/cache"
)

// site is one site of the comparison and how to call it.
type site struct {
	name     string
	header   string // the credential header wrk sends
	duration time.Duration
	conns    int
}

// compare runs the auth comparison: alternating rounds over the sites.
func (b *bench) compare() error {
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
	basic := "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("bench:"+basicPassword))
	key := "X-API-Key: " + tokens[0]
	sites := []site{
		{"bare", key, b.opts.duration, b.opts.connections},
		{"apikey_auth", key, b.opts.duration, b.opts.connections},
		{"forward_auth", key, b.opts.duration, b.opts.connections},
		// The Caddyfile's basic_auth caches bcrypt results, so after the
		// first request (about a second of bcrypt at cost 14) this measures
		// its cache.
		{"basic_auth", basic, b.opts.duration, b.opts.connections},
	}
	// The auth step must really work before it is measured.
	for _, s := range sites[1:] {
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
		// Odd rounds run the sites in reverse, so no site always follows
		// the same one.
		order := slices.Clone(sites)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, s := range order {
			r, err := b.wrk(s, s.duration, nil)
			if err != nil {
				return err
			}
			log.Printf("round %d %-12s %9.0f req/s  p50 %-8s p99 %-8s caddy %5.1f µs/req", round+1, s.name, r.rps, r.p50, r.p99, r.cpuPerReq.Seconds()*1e6)
			results[s.name] = append(results[s.name], r)
		}
	}
	printComparison(sites, results)
	return nil
}

// cpuProfile writes a CPU profile of Caddy while wrk loads s.
func (b *bench) cpuProfile(s site) error {
	done := make(chan error, 1)
	go func() {
		_, err := b.wrk(s, b.opts.duration, nil)
		done <- err
	}()
	secs := max(1, int(b.opts.duration.Seconds())-1)
	resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", b.admin, secs))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(b.opts.profile)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		return err
	}
	log.Printf("CPU profile of Caddy under %s load: %s", s.name, b.opts.profile)
	return <-done
}

// checkSite asserts that a protected site answers 401 without credentials
// and 200 with them.
func (b *bench) checkSite(s site) error {
	url := "http://127.0.0.1:" + b.ports[s.name] + "/"
	name, value, _ := strings.Cut(s.header, ": ")
	for _, withKey := range []bool{false, true} {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		want := http.StatusUnauthorized
		if withKey {
			req.Header.Set(name, value)
			want = http.StatusOK
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("checking %s: %w", s.name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			return fmt.Errorf("checking %s: %d, want %d (credential sent: %v)", s.name, resp.StatusCode, want, withKey)
		}
	}
	return nil
}

// wrkResult is one wrk run, with Caddy's CPU time over it.
type wrkResult struct {
	rps       float64
	requests  int64
	p50, p99  time.Duration
	cpuPerReq time.Duration // Caddy's, plus the auth service's for forward_auth
}

var (
	wrkRPS      = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkRequests = regexp.MustCompile(`(\d+) requests in`)
	wrkLatency  = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	wrkErrors   = regexp.MustCompile(`Non-2xx or 3xx responses: \d+|Socket errors: connect \d+, read \d+, write \d+, timeout \d+`)
	wrkNonZero  = regexp.MustCompile(`[1-9]`)
)

// wrk loads a site for d from CPU 1, with env set for wrk's Lua script
// (nil: the site's fixed header), and fails on any non-2xx or timeout.
func (b *bench) wrk(s site, d time.Duration, env []string) (wrkResult, error) {
	args := []string{"-c", "1", "wrk", "-t", "1", "-c", strconv.Itoa(s.conns), "-d", fmt.Sprintf("%ds", max(1, int(d.Seconds()))), "--timeout", "30s", "--latency"}
	if env == nil {
		args = append(args, "-H", s.header)
	} else {
		args = append(args, "-s", "bench/tokens.lua")
	}
	args = append(args, "http://127.0.0.1:"+b.ports[s.name]+"/")
	cpu := []int{b.caddy.Process.Pid}
	if s.name == "forward_auth" {
		cpu = append(cpu, b.auth.Process.Pid)
	}
	if pids, ok := b.pids[s.name]; ok {
		cpu = pids
	}
	before, err := cpuTime(cpu)
	if err != nil {
		return wrkResult{}, err
	}
	cmd := exec.Command("taskset", args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk %s: %w\n%s", s.name, err, out)
	}
	after, err := cpuTime(cpu)
	if err != nil {
		return wrkResult{}, err
	}
	for _, m := range wrkErrors.FindAllString(string(out), -1) {
		if wrkNonZero.MatchString(m) {
			return wrkResult{}, fmt.Errorf("wrk %s: failed requests:\n%s", s.name, out)
		}
	}
	var r wrkResult
	m := wrkRPS.FindStringSubmatch(string(out))
	n := wrkRequests.FindStringSubmatch(string(out))
	if m == nil || n == nil {
		return r, fmt.Errorf("wrk %s: unexpected output:\n%s", s.name, out)
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	r.requests, _ = strconv.ParseInt(n[1], 10, 64)
	for _, l := range wrkLatency.FindAllStringSubmatch(string(out), -1) {
		d, _ := time.ParseDuration(l[2] + strings.Replace(l[3], "us", "µs", 1))
		if l[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	if r.requests > 0 {
		r.cpuPerReq = (after - before) / time.Duration(r.requests)
	}
	return r, nil
}

// cpuTime sums the user and system CPU time of processes so far.
func cpuTime(pids []int) (time.Duration, error) {
	var total time.Duration
	for _, pid := range pids {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return 0, err
		}
		// Fields after the command name, which is in parentheses.
		fields := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
		utime, _ := strconv.ParseInt(fields[11], 10, 64)
		stime, _ := strconv.ParseInt(fields[12], 10, 64)
		total += time.Duration(utime+stime) * time.Second / 100 // USER_HZ
	}
	return total, nil
}

// printComparison prints the comparison as a Markdown table.
func printComparison(sites []site, results map[string][]wrkResult) {
	bare := results["bare"]
	fmt.Printf("\n| site | median req/s | p50 | p99 | Caddy CPU/req | median ratio to bare | median CPU/req ratio to bare | median ratio apikey_auth / site |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range sites {
		rs := results[s.name]
		var rps, ratio, cpuRatio, vsKeygate []float64
		var p50, p99, cpu []time.Duration
		for i, r := range rs {
			rps = append(rps, r.rps)
			ratio = append(ratio, r.rps/bare[i].rps)
			cpuRatio = append(cpuRatio, r.cpuPerReq.Seconds()/bare[i].cpuPerReq.Seconds())
			vsKeygate = append(vsKeygate, results["apikey_auth"][i].rps/r.rps)
			p50, p99, cpu = append(p50, r.p50), append(p99, r.p99), append(cpu, r.cpuPerReq)
		}
		fmt.Printf("| %s | %.0f | %s | %s | %.1f µs | %.3f | %.3f | %.2f |\n", s.name, median(rps), median(p50), median(p99),
			median(cpu).Seconds()*1e6, median(ratio), median(cpuRatio), median(vsKeygate))
	}
	fmt.Printf("\nper-round req/s:\n")
	for _, s := range sites {
		var line []string
		for _, r := range results[s.name] {
			line = append(line, fmt.Sprintf("%.0f", r.rps))
		}
		fmt.Printf("  %-12s %s\n", s.name, strings.Join(line, " "))
	}
}

func median[T cmp.Ordered](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		var zero T
		return zero
	}
	return s[len(s)/2]
}
