package tests

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
)

// envRequireProxies makes a missing proxy binary (nginx) fail the tests
// that need it instead of skipping them; .ci/run sets it.
const envRequireProxies = "KEYGATE_REQUIRE_PROXIES"

// nginxBinary returns the nginx binary, or skips t loudly (fails it when
// KEYGATE_REQUIRE_PROXIES=1) when there is none.
func nginxBinary(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"nginx", "/usr/sbin/nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	missing(t, envRequireProxies, "nginx is not installed (apt-get install -y nginx); this test runs nginx auth_request in front of Keygate")
	return ""
}

// missing skips t loudly for what is missing, or fails it when the
// environment variable require is "1" (as CI sets it).
func missing(t testing.TB, require, what string) {
	t.Helper()
	if os.Getenv(require) == "1" {
		t.Fatal("MISSING: " + what + ", and " + require + "=1 requires it")
	}
	t.Skip("SKIPPING: " + what)
}

// nginx is one running nginx process, in the foreground, with its prefix,
// logs and temp paths in a directory of its own.
type nginx struct {
	URL  string
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// startNginx runs nginx with http, the body of its http block; {port}
// in it is replaced by the port nginx listens on. It waits until nginx
// accepts connections.
func startNginx(t testing.TB, http string) *nginx {
	t.Helper()
	bin := nginxBinary(t)
	dir := t.TempDir()
	port := pgtest.FreePort(t)
	http = strings.ReplaceAll(http, "{port}", fmt.Sprint(port))
	// master_process off keeps nginx in one process that runs as the
	// user who started it (no switch to nobody, which could not read the
	// test's directory), and daemon off keeps it in the foreground.
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 512; }
http {
	access_log %[1]s/access.log;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
%[2]s
}
`, dir, http)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	n := &nginx{URL: fmt.Sprintf("http://127.0.0.1:%d", port), dir: dir, done: make(chan struct{})}
	// -e: the error log before the configuration is read, which would
	// otherwise be /var/log/nginx/error.log.
	n.cmd = exec.Command(bin, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", path)
	out := new(lockedBuffer)
	n.cmd.Stdout, n.cmd.Stderr = out, out
	if err := n.cmd.Start(); err != nil {
		t.Fatalf("starting nginx: %v", err)
	}
	go func() { _ = n.cmd.Wait(); close(n.done) }()
	t.Cleanup(func() {
		_ = n.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-n.done:
		case <-time.After(10 * time.Second):
			_ = n.cmd.Process.Kill()
			<-n.done
		}
		if t.Failed() {
			t.Logf("nginx output:\n%s\nnginx error log:\n%s", out.String(), n.errorLog())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-n.done:
			t.Fatalf("nginx exited: %s\n%s", out.String(), n.errorLog())
		default:
		}
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not listen on %d: %v\n%s", port, err, n.errorLog())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// errorLog returns nginx's error log.
func (n *nginx) errorLog() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "error.log"))
	return string(b)
}
