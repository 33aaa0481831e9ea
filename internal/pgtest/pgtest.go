// Package pgtest gives tests a real PostgreSQL database.
//
// If KEYGATE_TEST_DATABASE_URL is set, DSN returns it. Otherwise a throwaway
// server is started from the PostgreSQL binaries found on PATH (initdb,
// pg_ctl, postgres) or under /usr/lib/postgresql/*/bin (highest version
// wins). The server lives in a directory made by os.MkdirTemp under
// os.TempDir, listens on 127.0.0.1 on a free port, runs with durability
// switched off (fsync, synchronous_commit, full_page_writes) and trusts every
// local connection. When the test process runs as root, initdb and pg_ctl are
// run as the "postgres" OS user, because PostgreSQL refuses to run as root.
//
// When no binaries are found, tests are skipped with a message saying where
// pgtest looked and how to fix it, unless KEYGATE_REQUIRE_POSTGRES=1 is set
// (as in CI), in which case they fail. Any other start failure fails the test
// with the tail of the server log.
//
// Every server has a small watchdog process (/bin/sh) that holds the read end
// of a pipe whose write end only the test process has. If the test process
// dies without closing the server (crash, go test -timeout, SIGKILL), the pipe
// reaches EOF and the watchdog shuts the server down (SIGQUIT, immediate
// shutdown) and removes its directory, so no postgres is left behind.
//
// Packages using DSN should stop the shared server at the end with
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
package pgtest

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	envURL       = "KEYGATE_TEST_DATABASE_URL"
	envRequire   = "KEYGATE_REQUIRE_POSTGRES"
	readyTimeout = 30 * time.Second
	cmdTimeout   = 2 * time.Minute
)

// ErrNoBinaries is returned (wrapped) by Start when the PostgreSQL server
// binaries cannot be found.
var ErrNoBinaries = errors.New("pgtest: PostgreSQL server binaries (initdb, pg_ctl, postgres) not found")

// Server is a throwaway PostgreSQL server owned by the test process.
type Server struct {
	bin     binaries
	dir     string // temp dir holding everything below
	dataDir string
	sockDir string
	logFile string
	port    int
	cred    *syscall.Credential // non-nil when running as root: run as "postgres"
	useSu   bool                // Credential did not work: use su instead

	mu        sync.Mutex
	closed    bool
	watchdog  *exec.Cmd
	watchdogW *os.File
}

type binaries struct{ initdb, pgCtl, postgres string }

// Start initdbs and starts a new dedicated server. The caller must Close it.
// Use it (or Dedicated) for tests that stop and restart PostgreSQL.
func Start() (_ *Server, err error) {
	bin, err := findBinaries()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(os.TempDir(), "keygate-pgtest-*")
	if err != nil {
		return nil, fmt.Errorf("pgtest: create temp dir: %w", err)
	}
	s := &Server{
		bin:     bin,
		dir:     dir,
		dataDir: filepath.Join(dir, "data"),
		sockDir: filepath.Join(dir, "sock"),
		logFile: filepath.Join(dir, "postgres.log"),
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err := os.Mkdir(s.sockDir, 0o700); err != nil {
		return nil, fmt.Errorf("pgtest: create socket dir: %w", err)
	}
	if os.Geteuid() == 0 {
		if s.cred, err = postgresCredential(); err != nil {
			return nil, err
		}
		for _, d := range []string{s.dir, s.sockDir} {
			if err := os.Chown(d, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
				return nil, fmt.Errorf("pgtest: chown %s to postgres: %w", d, err)
			}
		}
	}
	if err := s.startWatchdog(); err != nil {
		return nil, err
	}
	out, err := s.run(bin.initdb, "-D", s.dataDir, "--auth=trust", "-U", "postgres",
		"--encoding=UTF8", "--locale=C", "--no-sync")
	if err != nil {
		hint := ""
		if s.cred != nil {
			hint = "\n(running as root: the postgres user must be able to traverse " + os.TempDir() + "; set TMPDIR if not)"
		}
		return nil, fmt.Errorf("pgtest: initdb (%s) in %s: %w\n%s%s", bin.initdb, s.dataDir, err, tail(out), hint)
	}
	for attempt := 1; ; attempt++ {
		if s.port, err = freePort(); err != nil {
			return nil, err
		}
		err = s.start()
		if err == nil {
			return s, nil
		}
		// Another process may have grabbed the port between freePort and
		// the server binding it: try another one.
		if attempt == 3 || !strings.Contains(err.Error(), "already in use") {
			return nil, err
		}
	}
}

// DSN returns the connection string of the server's "postgres" database as
// the "postgres" superuser.
func (s *Server) DSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.port)
}

// Stop shuts the server down (pg_ctl stop -m fast) but keeps its data
// directory, so Restart can start it again on the same port. Stopping a
// stopped server is a no-op.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stop()
}

// Restart starts the server again on the same port after Stop (stopping it
// first if it is running) and waits until it accepts connections.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("pgtest: Restart of a closed server")
	}
	if err := s.stop(); err != nil {
		return err
	}
	return s.start()
}

// Close stops the server and removes its directory. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer watchdogPipes.Delete(s)
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.stop()
	if s.watchdog != nil {
		// Kill the watchdog before closing its pipe so that it does not
		// run its own cleanup.
		_ = s.watchdog.Process.Kill()
		_ = s.watchdogW.Close()
		_ = s.watchdog.Wait()
	}
	if rmErr := os.RemoveAll(s.dir); rmErr != nil {
		err = errors.Join(err, fmt.Errorf("pgtest: remove %s: %w", s.dir, rmErr))
	}
	return err
}

// start runs pg_ctl start on s.port and waits until the server accepts
// connections. s.mu must be held (or s not yet shared).
func (s *Server) start() error {
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s"+
		" -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
		s.port, shellQuote(s.sockDir))
	out, err := s.run(s.bin.pgCtl, "start", "-w", "-t", strconv.Itoa(int(readyTimeout.Seconds())),
		"-D", s.dataDir, "-l", s.logFile, "-p", s.bin.postgres, "-o", opts)
	if err != nil {
		return fmt.Errorf("pgtest: pg_ctl start on port %d: %w\n%s\n--- server log tail ---\n%s",
			s.port, err, tail(out), s.logTail())
	}
	if err := waitReady(s.DSN(), readyTimeout); err != nil {
		return fmt.Errorf("%w\n--- server log tail ---\n%s", err, s.logTail())
	}
	return nil
}

// stop runs pg_ctl stop -m fast if the server is running. s.mu must be held.
func (s *Server) stop() error {
	if !s.running() {
		return nil
	}
	out, err := s.run(s.bin.pgCtl, "stop", "-w", "-t", "30", "-m", "fast", "-D", s.dataDir)
	if err == nil || !s.running() {
		return nil
	}
	// Fast shutdown did not finish in time: do not leave it running.
	if _, err2 := s.run(s.bin.pgCtl, "stop", "-w", "-m", "immediate", "-D", s.dataDir); err2 == nil {
		return nil
	}
	return fmt.Errorf("pgtest: pg_ctl stop: %w\n%s\n--- server log tail ---\n%s", err, tail(out), s.logTail())
}

// running reports whether pg_ctl considers the server running.
func (s *Server) running() bool {
	if _, err := os.Stat(filepath.Join(s.dataDir, "postmaster.pid")); err != nil {
		return false
	}
	_, err := s.run(s.bin.pgCtl, "status", "-D", s.dataDir)
	return err == nil // exit status 3: not running (stale pid file)
}

// startWatchdog starts the process that stops the server and removes s.dir
// if the test process dies without calling Close (see the package doc).
func (s *Server) startWatchdog() error {
	const script = `read -r _
pid=$(head -n 1 "$1/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null; then
	i=0
	while [ "$i" -lt 100 ] && kill -0 "$pid" 2>/dev/null; do sleep 0.1; i=$((i+1)); done
fi
rm -rf "$2"`
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("pgtest: watchdog pipe: %w", err)
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c", script, "pgtest-watchdog", s.dataDir, s.dir)
	cmd.Stdin = r
	// Own process group: a Ctrl-C aimed at go test must not kill it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("pgtest: start watchdog: %w", err)
	}
	s.watchdog, s.watchdogW = cmd, w
	// Keep the pipe's write end reachable until Close: if the Server were
	// garbage collected, the file's finalizer would close the pipe and the
	// watchdog would stop a server still in use.
	watchdogPipes.Store(s, w)
	return nil
}

// watchdogPipes holds the watchdog pipes of open servers (see startWatchdog).
var watchdogPipes sync.Map

// run runs a PostgreSQL program, as the postgres user when s.cred is set,
// and returns its combined output.
func (s *Server) run(path string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if s.cred != nil && !s.useSu {
		cmd := s.command(ctx, path, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
		out, err := cmd.CombinedOutput()
		var exitErr *exec.ExitError
		if err == nil || errors.As(err, &exitErr) {
			return out, err
		}
		// Switching user at exec failed: fall back to su from now on.
		s.useSu = true
	}
	if s.useSu {
		script := shellQuote(path)
		for _, a := range args {
			script += " " + shellQuote(a)
		}
		return s.command(ctx, "su", "postgres", "-s", "/bin/sh", "-c", script).CombinedOutput()
	}
	return s.command(ctx, path, args...).CombinedOutput()
}

func (s *Server) command(ctx context.Context, path string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = s.dir // the test's working dir may not be readable by postgres
	cmd.WaitDelay = 5 * time.Second
	// Keep the caller's PG* settings (PGDATA, PGPORT, ...) away from our server.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return cmd
}

func (s *Server) logTail() string {
	b, err := os.ReadFile(s.logFile)
	if err != nil {
		return fmt.Sprintf("(no server log: %v)", err)
	}
	return tail(b)
}

// tail returns the last 40 lines of b.
func tail(b []byte) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

func postgresCredential() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root, PostgreSQL must run as the \"postgres\" OS user: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("pgtest: postgres user ids: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// findBinaries looks for initdb, pg_ctl and postgres on PATH, then in the
// highest-versioned /usr/lib/postgresql/*/bin.
func findBinaries() (binaries, error) {
	if initdb, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(initdb); err == nil {
			if b, ok := binDir(filepath.Dir(real)); ok {
				return b, nil
			}
		}
		pgCtl, err1 := exec.LookPath("pg_ctl")
		postgres, err2 := exec.LookPath("postgres")
		if err1 == nil && err2 == nil {
			return binaries{initdb, pgCtl, postgres}, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { // highest version first
		return slices.Compare(version(b), version(a))
	})
	for _, d := range dirs {
		if b, ok := binDir(d); ok {
			return b, nil
		}
	}
	return binaries{}, fmt.Errorf("%w: looked on PATH and in /usr/lib/postgresql/*/bin; "+
		"install the PostgreSQL server (e.g. apt-get install postgresql) or set %s to a database URL",
		ErrNoBinaries, envURL)
}

func binDir(dir string) (binaries, bool) {
	b := binaries{filepath.Join(dir, "initdb"), filepath.Join(dir, "pg_ctl"), filepath.Join(dir, "postgres")}
	for _, p := range []string{b.initdb, b.pgCtl, b.postgres} {
		if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			return binaries{}, false
		}
	}
	return b, true
}

// version parses the "15" or "9.6" of /usr/lib/postgresql/<version>/bin.
func version(binDir string) []int {
	var v []int
	for _, f := range strings.Split(filepath.Base(filepath.Dir(binDir)), ".") {
		n, err := strconv.Atoi(f)
		if err != nil {
			n = -1
		}
		v = append(v, n)
	}
	return v
}

// freePort picks a loopback port below Linux's ephemeral range (32768 and
// up), where nothing but a listener can take it, and not handed out before
// by this process. A port the kernel gives out for ":0" is in the
// ephemeral range, so between its check and the server's bind any
// outgoing connection of a busy machine could take it: that made servers
// of the suite fail to start now and then ("address already in use").
// Several test processes pick at random from 20,000 ports, checked
// bindable, so they rarely meet.
func freePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		port := portsLow + mrand.IntN(portsHigh-portsLow)
		if portsGiven[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		portsGiven[port] = true
		return port, nil
	}
	return 0, errors.New("pgtest: no free port found in 1000 tries")
}

// The range freePort picks from: below the ephemeral ports and above
// the well-known services.
const portsLow, portsHigh = 12000, 32000

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

func waitReady(dsn string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgtest: server at %s not accepting connections after %s: %w", dsn, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

var (
	sharedMu   sync.Mutex
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error
)
