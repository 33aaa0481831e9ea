// Command loadbench runs Keygate's end-to-end load benchmark: one Caddy
// process serving four sites that differ only in the auth step (none,
// apikey_auth, forward_auth to an external Go service, basic_auth), loaded
// by wrk in alternating rounds, with Caddy pinned to one CPU and wrk and
// the upstream to the other. With -scale it measures the cache's memory per
// key at 100,000 keys, the bound max_entries puts on it, and throughput
// with 10,000 distinct active keys against one key. With -nginx it
// compares nginx's auth_request to apikey_verify with nginx's auth_request
// to the minimal Go service (bench/authsvc).
//
// Run it from the repository root: go run ./bench/loadbench (see
// bench/README.md). It needs wrk and taskset on PATH.
package main

import (
	"bufio"
	"bytes"
	"context"
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
	"syscall"
	"time"

	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/token"
	"golang.org/x/crypto/bcrypt"
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
	nginx       bool
}

func main() {
	var o options
	flag.IntVar(&o.rounds, "rounds", 6, "alternating rounds per site")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of one round per site")
	flag.StringVar(&o.profile, "profile", "", "write a CPU profile of Caddy under apikey_auth load (with -nginx: under nginx_keygate load) to this file")
	flag.DurationVar(&o.warmup, "warmup", 3*time.Second, "warm-up per site before the rounds")
	flag.IntVar(&o.connections, "connections", 64, "wrk connections")
	flag.BoolVar(&o.scale, "scale", false, "measure the scale figures instead of the auth comparison")
	flag.IntVar(&o.scaleKeys, "keys", 100_000, "keys for the memory figure (-scale)")
	flag.IntVar(&o.activeKeys, "active", 10_000, "distinct active keys for the throughput figure (-scale)")
	flag.IntVar(&o.bounded, "bounded", 10_000, "max_entries for the bounded-memory figure (-scale)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory")
	flag.BoolVar(&o.nginx, "nginx", false, "compare nginx auth_request to apikey_verify with nginx auth_request to authsvc")
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
	if o.nginx {
		return b.compareNginx()
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
	// upstream and authsvc are their listen addresses.
	upstream, authsvc string
	// pids are the processes whose CPU time a site's figure counts, when
	// not Caddy's (and authsvc's for forward_auth).
	pids map[string][]int
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
	ports, err := freePorts(9)
	if err != nil {
		return err
	}
	b.ports = map[string]string{
		"bare": ports[0], "apikey_auth": ports[1], "forward_auth": ports[2], "basic_auth": ports[3],
		"verify": ports[7], "respond": ports[8],
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
		"BENCH_BCRYPT=" + string(hash), "BENCH_PORT_VERIFY=" + ports[7],
		"BENCH_PORT_RESPOND=" + ports[8],
	}
	b.upstream, b.authsvc = upstream, authsvc
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
