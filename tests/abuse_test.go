package tests

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/pgtest"
)

// TestHeaderAndPathAbuse sends oversized, non-ASCII and control-character
// credentials and odd path spellings: clear 4xx answers, nothing reaches
// the upstream that the table does not allow, and the gateway keeps
// serving.
func TestHeaderAndPathAbuse(t *testing.T) {
	env := startTower(t, pgtest.DSN(t))
	gw := env.gw
	_, key := gw.createKey(gw.createAccount("abuse", "apps"), []string{"apps:read"})

	for _, c := range []struct {
		name    string
		method  string
		path    string
		headers []string
		want    int
	}{
		{"credential over Caddy's header limit", "GET", "/v1/apps", []string{"X-API-Key", strings.Repeat("a", 2<<20)}, 431},
		{"non-ASCII credential", "GET", "/v1/apps", []string{"X-API-Key", "sk-é" + key[4:]}, 401},
		{"valid key with trailing garbage", "GET", "/v1/apps", []string{"X-API-Key", key + "x"}, 401},
		{"Bearer with spaces only", "GET", "/v1/apps", []string{"Authorization", "Bearer    "}, 401},
		{"very long path without a key", "GET", "/v1/" + strings.Repeat("a/", 3000), nil, 401},
		{"very long path with a key", "GET", "/v1/" + strings.Repeat("a/", 3000), []string{"X-API-Key", key}, 403},
		{"upper-case path", "GET", "/V1/APPS", []string{"X-API-Key", key}, 403},
		{"trailing slash", "GET", "/v1/apps/", []string{"X-API-Key", key}, 403},
		{"encoded slash in a parameter", "GET", "/v1/apps/a%2Fb", []string{"X-API-Key", key}, 400}, // pathbypass_test.go has the family
		{"the allowed route", "GET", "/v1/apps/web", []string{"X-API-Key", key}, 200},
	} {
		hits := env.up.hitCount()
		r := do(t, c.method, gw.URL+c.path, nil, c.headers...)
		if r.Status != c.want {
			t.Errorf("%s: %d, want %d: %.200s", c.name, r.Status, c.want, r.Body)
		}
		if c.want != 200 && env.up.hitCount() != hits {
			t.Errorf("%s: reached the upstream", c.name)
		}
	}
	// Go's client refuses to send these; write them on the wire.
	for name, header := range map[string]string{
		"control character in X-API-Key": "X-API-Key: " + key[:10] + "\x01" + key[11:],
		"raw UTF-8 in Authorization":     "Authorization: Bearer \xc3\xa9" + key,
		"invalid UTF-8 in X-API-Key":     "X-API-Key: \xff\xfe" + key,
	} {
		status := rawStatus(t, gw.HTTPPort, "GET /v1/apps HTTP/1.1\r\nHost: x\r\n"+header+"\r\nConnection: close\r\n\r\n")
		if status != 400 && status != 401 {
			t.Errorf("%s: %d, want 400 (refused by Go's server) or 401", name, status)
		}
	}
	if r := do(t, "GET", gw.URL+"/v1/apps", nil, "X-API-Key", key); r.Status != http.StatusOK {
		t.Fatalf("the gateway stopped serving: %d", r.Status)
	}
}

// rawStatus sends raw bytes as an HTTP request and returns the status code.
func rawStatus(t *testing.T, port int, request string) int {
	t.Helper()
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(request)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the status line: %v", err)
	}
	var proto string
	var status int
	if _, err := fmt.Sscanf(line, "%s %d", &proto, &status); err != nil {
		t.Fatalf("status line %q: %v", line, err)
	}
	return status
}
