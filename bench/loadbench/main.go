// Command loadbench runs Keygate's end-to-end load benchmark: one Caddy
// process serving four sites that differ only in the auth step (none,
// apikey_auth, forward_auth to an external Go service, basic_auth), loaded
// by wrk in alternating rounds, with Caddy pinned to one CPU and wrk and
// the upstream to the other. With -scale it measures the cache's memory per
// key at 100,000 keys, the bound max_entries puts on it, and throughput
// with 10,000 distinct active keys against one key.
//
// Run it from the repository root: go run ./bench/loadbench (see
// bench/README.md). It needs wrk and taskset on PATH.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/cache"
	"github.com/keygate/keygate/storage/token"
)

// options are the command's flags.
type options struct {
	rounds      int
	duration    time.Duration
	profile     string
	warmup      time.Duration
	connections int
	scale       bool
	scaleKeys   int
	activeKeys  int
	bounded     int
	keep        bool
}

func main() {
	var o options
	flag.IntVar(&o.rounds, "rounds", 6, "alternating rounds per site")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of one round per site")
	flag.StringVar(&o.profile, "profile", "", "write a CPU profile of Caddy under apikey_auth load to this file")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "warm-up per site before the rounds")
	flag.IntVar(&o.connections, "connections", 64, "wrk connections")
	flag.BoolVar(&o.scale, "scale", false, "measure the scale figures instead of the auth comparison")
	flag.IntVar(&o.scaleKeys, "keys", 100_000, "keys for the memory figure (-scale)")
	flag.IntVar(&o.activeKeys, "active", 10_000, "distinct active keys for the throughput figure (-scale)")
	flag.IntVar(&o.bounded, "bounded", 10_000, "max_entries for the bounded-memory figure (-scale)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory")
	flag.Parse()
	log.SetFlags(log.Ltime)
	if err := run(o); err != nil {
		log.Fatal(err)
	}
}

func run(o options) error {
	for _, tool := range []string{"wrk", "taskset"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found on PATH: apt-get install -y %s", tool, map[string]string{"wrk": "wrk", "taskset": "util-linux"}[tool])
		}
	}
	if runtime.NumCPU() < 2 {
		return errors.New("needs 2 CPUs: Caddy on one, wrk and the upstream on the other")
	}
	dir, err := os.MkdirTemp("", "keygate-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		log.Printf("work directory: %s", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	b := &bench{dir: dir, opts: o, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}}
	defer b.stopAll()
	if err := b.build(); err != nil {
		return err
	}
	printMachine()
	if o.scale {
		return b.scale()
	}
	return b.compare()
}

// bench holds the running processes and their addresses.
type bench struct {
	dir   string
	opts  options
	procs []*exec.Cmd
	caddy *exec.Cmd
	auth  *exec.Cmd
	env   []string
	admin string
	ports map[string]string
	// client touches tokens; one for the run, so the connections of a
	// memory baseline are the ones of the measurement.
	client *http.Client
}

// build compiles Caddy with Keygate, the upstream and the auth service.
func (b *bench) build() error {
	for name, pkg := range map[string]string{"caddy": "./cmd/caddy", "upstream": "./bench/upstream", "authsvc": "./bench/authsvc"} {
		log.Printf("building %s", pkg)
		cmd := exec.Command("go", "build", "-o", filepath.Join(b.dir, "bin", name), pkg)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("building %s (run from the repository root): %w", pkg, err)
		}
	}
	return nil
}

// start runs a binary of the work directory pinned to cpu.
func (b *bench) start(cpu int, env []string, name string, args ...string) (*exec.Cmd, error) {
	logFile, err := os.Create(filepath.Join(b.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("taskset", append([]string{"-c", strconv.Itoa(cpu), filepath.Join(b.dir, "bin", name)}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	b.procs = append(b.procs, cmd)
	return cmd, nil
}

func (b *bench) stop(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
	b.procs = slices.DeleteFunc(b.procs, func(c *exec.Cmd) bool { return c == cmd })
}

func (b *bench) stopAll() {
	for len(b.procs) > 0 {
		b.stop(b.procs[len(b.procs)-1])
	}
}

// startServers starts the upstream (on the load CPU) and the auth service
// (on Caddy's CPU: its work is the auth step's cost) and sets the
// environment Caddy's config reads.
func (b *bench) startServers(keysFile string) error {
	ports, err := freePorts(7)
	if err != nil {
		return err
	}
	b.ports = map[string]string{
		"bare": ports[0], "apikey_auth": ports[1], "forward_auth": ports[2], "basic_auth": ports[3],
	}
	b.admin = "localhost:" + ports[6]
	upstream, authsvc := "127.0.0.1:"+ports[4], "127.0.0.1:"+ports[5]
	if _, err := b.start(1, nil, "upstream", "-addr", upstream); err != nil {
		return err
	}
	if b.auth, err = b.start(0, nil, "authsvc", "-addr", authsvc, "-keys", keysFile); err != nil {
		return err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(basicPassword), 14)
	if err != nil {
		return err
	}
	b.env = []string{
		"BENCH_DIR=" + b.dir, "BENCH_ADMIN_PORT=" + ports[6],
		"BENCH_UPSTREAM=" + upstream, "BENCH_AUTHSVC=" + authsvc,
		"BENCH_PORT_BARE=" + ports[0], "BENCH_PORT_APIKEY=" + ports[1],
		"BENCH_PORT_FORWARD=" + ports[2], "BENCH_PORT_BASIC=" + ports[3],
		"BENCH_BCRYPT=" + string(hash),
	}
	for _, addr := range []string{upstream, authsvc} {
		if err := waitListening(addr); err != nil {
			return err
		}
	}
	return nil
}

const basicPassword = "correct horse battery staple"

// startCaddy runs Caddy on bench/Caddyfile, pinned to CPU 0.
func (b *bench) startCaddy(maxEntries int) error {
	env := append(slices.Clone(b.env), "BENCH_MAX_ENTRIES="+strconv.Itoa(maxEntries), "XDG_DATA_HOME="+b.dir, "XDG_CONFIG_HOME="+b.dir)
	cmd, err := b.start(0, env, "caddy", "run", "--config", "bench/Caddyfile", "--adapter", "caddyfile")
	if err != nil {
		return err
	}
	b.caddy = cmd
	b.client.CloseIdleConnections() // they were to the previous process
	return waitListening("127.0.0.1:" + b.ports["bare"])
}

// importKeys loads an export into Caddy's store through the admin endpoint.
func (b *bench) importKeys(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	start := time.Now()
	resp, err := http.Post("http://"+b.admin+"/apikeys/import", "application/jsonl", f)
	if err != nil {
		return fmt.Errorf("importing keys: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("importing keys: %s: %s", resp.Status, body)
	}
	log.Printf("imported %s in %s", bytes.TrimSpace(body), time.Since(start).Round(time.Millisecond))
	return nil
}

// writeKeys writes an export of one account holding n keys with one token
// each (scope apps:read), and the tokens, one per line, to tokensPath.
func writeKeys(exportPath, tokensPath string, n int) ([]string, error) {
	tokens, err := token.NewFormat(token.DefaultPrefix)
	if err != nil {
		return nil, err
	}
	out, err := os.Create(exportPath)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	w := bufio.NewWriter(out)
	enc := json.NewEncoder(w)
	now := time.Now().UTC()
	acc := storage.ExportAccount{ID: storage.NewID(storage.AccountIDPrefix), Name: "bench", Kind: storage.KindService, Scopes: []string{"apps"}, CreatedAt: now}
	if err := enc.Encode(storage.ExportRecord{Type: storage.RecordAccount, Version: storage.ExportVersion, Account: &acc}); err != nil {
		return nil, err
	}
	values := make([]string, n)
	for i := range n {
		values[i] = tokens.Generate()
		k := storage.ExportKey{ID: storage.NewID(storage.KeyIDPrefix), Account: acc.ID, Name: "bench-" + strconv.Itoa(i), Scopes: []string{"apps:read"}, CreatedAt: now, CreatedBy: "bench"}
		hash := token.Sum(values[i])
		t := storage.ExportToken{ID: storage.NewID(storage.TokenIDPrefix), Key: k.ID, Name: "default",
			Hint: token.Hint(values[i]), CreatedAt: now, Hash: hash[:]}
		if err := enc.Encode(storage.ExportRecord{Type: storage.RecordKey, Version: storage.ExportVersion, Key: &k}); err != nil {
			return nil, err
		}
		if err := enc.Encode(storage.ExportRecord{Type: storage.RecordToken, Version: storage.ExportVersion, Token: &t}); err != nil {
			return nil, err
		}
	}
	if err := w.Flush(); err != nil {
		return nil, err
	}
	return values, os.WriteFile(tokensPath, []byte(strings.Join(values, "\n")+"\n"), 0o600)
}

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

// scale measures memory per cached key, the max_entries bound, and
// throughput with many distinct active keys.
func (b *bench) scale() error {
	export, tokensFile := filepath.Join(b.dir, "keys.jsonl"), filepath.Join(b.dir, "tokens.txt")
	n := max(b.opts.scaleKeys, b.opts.activeKeys)
	tokens, err := writeKeys(export, tokensFile, n)
	if err != nil {
		return err
	}
	if err := b.startServers(export); err != nil {
		return err
	}
	// Room for every key: ristretto admits by frequency once full.
	if err := b.startCaddy(2 * n); err != nil {
		return err
	}
	if err := b.importKeys(export); err != nil {
		return err
	}

	fmt.Printf("\n| cache | keys touched | tokens cached | live heap growth | per cached key | resident (anonymous) growth | per cached key |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, maxEntries := range []int{2 * n, b.opts.bounded} {
		// A fresh process, so the import's garbage is not in the figure.
		b.stop(b.caddy)
		if err := b.startCaddy(maxEntries); err != nil {
			return err
		}
		// The baseline has every client connection open and one token
		// cached; both measurements wait out a last_used_at flush, whose
		// batch holds the tokens used since the previous one.
		if err := b.touch(slices.Repeat(tokens[:1], 1000)); err != nil {
			return err
		}
		time.Sleep(cache.UseFlushInterval + time.Second)
		heap0, rss0, err := b.memory()
		if err != nil {
			return err
		}
		if err := b.touch(tokens[:b.opts.scaleKeys]); err != nil {
			return err
		}
		time.Sleep(cache.UseFlushInterval + time.Second)
		heap1, rss1, err := b.memory()
		if err != nil {
			return err
		}
		// A second pass: every hit is a token the cache holds.
		hits0, err := b.metric("caddy_apikeys_cache_hits_total")
		if err != nil {
			return err
		}
		if err := b.touch(tokens[:b.opts.scaleKeys]); err != nil {
			return err
		}
		hits1, err := b.metric("caddy_apikeys_cache_hits_total")
		if err != nil {
			return err
		}
		cached := int64(hits1 - hits0)
		per := func(v int64) string {
			if cached == 0 {
				return "-"
			}
			return fmt.Sprintf("%d B", v/cached)
		}
		fmt.Printf("| max_entries %d | %d | %d | %.1f MiB | %s | %.1f MiB | %s |\n", maxEntries, b.opts.scaleKeys, cached,
			float64(heap1-heap0)/(1<<20), per(heap1-heap0), float64(rss1-rss0)/(1<<20), per(rss1-rss0))
	}

	// Throughput with many distinct active keys against one key, both
	// through the same wrk script, in alternating rounds.
	b.stop(b.caddy)
	if err := b.startCaddy(2 * n); err != nil {
		return err
	}
	one, many := filepath.Join(b.dir, "one.txt"), filepath.Join(b.dir, "many.txt")
	if err := os.WriteFile(one, []byte(tokens[0]+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(many, []byte(strings.Join(tokens[:b.opts.activeKeys], "\n")+"\n"), 0o600); err != nil {
		return err
	}
	s := site{name: "apikey_auth", duration: b.opts.duration, conns: b.opts.connections}
	if err := b.touch(tokens[:b.opts.activeKeys]); err != nil {
		return err
	}
	var rOne, rMany, ratio []float64
	for _, f := range []string{one, many} {
		if _, err := b.wrk(s, b.opts.warmup, []string{"TOKENS=" + f}); err != nil {
			return err
		}
	}
	for round := range b.opts.rounds {
		a, err := b.wrk(s, s.duration, []string{"TOKENS=" + one})
		if err != nil {
			return err
		}
		m, err := b.wrk(s, s.duration, []string{"TOKENS=" + many})
		if err != nil {
			return err
		}
		log.Printf("round %d: 1 key %.0f req/s, %d keys %.0f req/s", round+1, a.rps, b.opts.activeKeys, m.rps)
		rOne, rMany, ratio = append(rOne, a.rps), append(rMany, m.rps), append(ratio, m.rps/a.rps)
	}
	fmt.Printf("\n| active keys | median req/s | median ratio to 1 key |\n|---:|---:|---:|\n| 1 | %.0f | 1 |\n| %d | %.0f | %.3f |\n",
		median(rOne), b.opts.activeKeys, median(rMany), median(ratio))
	return nil
}

// touch sends one request per token to the apikey_auth site, in parallel,
// and fails on any answer but 200.
func (b *bench) touch(tokens []string) error {
	url := "http://127.0.0.1:" + b.ports["apikey_auth"] + "/"
	client := b.client
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(tokens)); i = next.Add(1) - 1 {
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.Header.Set("X-API-Key", tokens[i])
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("token %d: %s", i, resp.Status)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// memory returns Caddy's live heap right after a forced collection, and
// its resident anonymous memory.
func (b *bench) memory() (heap, rss int64, err error) {
	// Asking for a heap profile with gc=1 runs a collection first.
	if err := b.get("/debug/pprof/heap?gc=1", nil); err != nil {
		return 0, 0, err
	}
	var vars struct {
		Memstats struct{ HeapAlloc int64 } `json:"memstats"`
	}
	if err := b.get("/debug/vars", &vars); err != nil {
		return 0, 0, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", b.caddy.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	// Anonymous memory only: the file store's pages, mapped by bbolt,
	// are page cache the kernel can drop, not memory the cache holds.
	m := regexp.MustCompile(`RssAnon:\s+(\d+) kB`).FindSubmatch(status)
	if m == nil {
		return 0, 0, errors.New("no RssAnon in /proc/<pid>/status")
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return vars.Memstats.HeapAlloc, kb << 10, nil
}

// metric reads one unlabelled sample from Caddy's /metrics.
func (b *bench) metric(name string) (float64, error) {
	resp, err := http.Get("http://" + b.admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("metric %s not found", name)
}

// get reads an admin endpoint path, decoding JSON into v when non-nil.
func (b *bench) get(path string, v any) error {
	resp, err := http.Get("http://" + b.admin + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	if v == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// freePorts returns n free loopback ports.
func freePorts(n int) ([]string, error) {
	var ports []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		_, port, _ := net.SplitHostPort(l.Addr().String())
		ports = append(ports, port)
	}
	return ports, nil
}

// waitListening waits up to 15s for addr to accept connections.
func waitListening(addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nothing listening on %s after 15s: %w", addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// printMachine prints what the figures were measured on.
func printMachine() {
	model := "unknown CPU"
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if m := regexp.MustCompile(`model name\s*:\s*(.+)`).FindSubmatch(raw); m != nil {
			model = string(m[1])
		}
	}
	fmt.Printf("machine: %s, %d CPUs, %s %s/%s\n", model, runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
