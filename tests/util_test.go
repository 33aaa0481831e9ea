package tests

import (
	"hash/crc32"
	"os"
	"os/exec"
	"testing"
)

// checksum is the token checksum of DESIGN.md, computed independently of
// the storage package: CRC32-IEEE in base62 (0-9A-Za-z), 6 digits.
func checksum(body string) string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	v := uint64(crc32.ChecksumIEEE([]byte(body)))
	out := make([]byte, 6)
	for i := 5; i >= 0; i-- {
		out[i] = alphabet[v%62]
		v /= 62
	}
	return string(out)
}

// runCaddy runs the Caddy binary with extra environment and returns its
// combined output.
func runCaddy(t testing.TB, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(caddyBin, args...)
	cmd.Env = append(append(os.Environ(), "HOME="+t.TempDir()), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
