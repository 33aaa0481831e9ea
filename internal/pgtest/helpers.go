package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DSN returns the DSN of a database for tests: KEYGATE_TEST_DATABASE_URL, or
// a process-wide shared throwaway server started lazily on first use. It
// skips tb when no PostgreSQL is available (fails it under
// KEYGATE_REQUIRE_POSTGRES=1) and fails it when the server does not start.
// Tests sharing the database should isolate their rows with Schema.
func DSN(tb testing.TB) string {
	tb.Helper()
	if url := os.Getenv(envURL); url != "" {
		return url
	}
	sharedOnce.Do(func() {
		s, err := Start()
		sharedMu.Lock()
		shared, sharedErr = s, err
		sharedMu.Unlock()
	})
	if sharedErr != nil {
		unavailable(tb, sharedErr)
	}
	return shared.DSN()
}

// Dedicated starts a new dedicated server for tb, which may stop and restart
// it, and closes it at tb.Cleanup. It ignores KEYGATE_TEST_DATABASE_URL and
// skips or fails tb like DSN.
func Dedicated(tb testing.TB) *Server {
	tb.Helper()
	s, err := Start()
	if err != nil {
		unavailable(tb, err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("pgtest: close dedicated server: %v", err)
		}
	})
	return s
}

// unavailable skips or fails tb because no server could be had.
func unavailable(tb testing.TB, err error) {
	tb.Helper()
	if !errors.Is(err, ErrNoBinaries) {
		tb.Fatalf("cannot start PostgreSQL: %v", err)
	}
	if os.Getenv(envRequire) == "1" {
		tb.Fatalf("%v (failing instead of skipping because %s=1)", err, envRequire)
	}
	tb.Skipf("SKIPPED, NO POSTGRESQL: %v", err)
}

// Main runs the tests of a package and then stops the shared server if one
// was started: use it as
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	sharedMu.Lock()
	s := shared
	sharedMu.Unlock()
	if s != nil {
		if err := s.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest: close shared server:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// Schema creates a fresh schema with a unique name for tb ("t_", the
// sanitized test name and a random suffix; at most 63 characters of
// [a-z0-9_]) in the database at dsn, so tests sharing one database do not see
// each other's rows, and drops it (CASCADE) at tb.Cleanup. Use it via
// search_path, e.g. by appending "&search_path=" + name to a URL DSN.
func Schema(tb testing.TB, dsn string) string {
	tb.Helper()
	name := schemaName(tb.Name())
	ident := pgx.Identifier{name}.Sanitize()
	if err := execSQL(dsn, "CREATE SCHEMA "+ident); err != nil {
		tb.Fatalf("pgtest: create schema %s: %v", name, err)
	}
	tb.Cleanup(func() {
		if err := execSQL(dsn, "DROP SCHEMA IF EXISTS "+ident+" CASCADE"); err != nil {
			tb.Errorf("pgtest: drop schema %s: %v", name, err)
		}
	})
	return name
}

func schemaName(testName string) string {
	var b strings.Builder
	underscore := false
	for _, r := range strings.ToLower(testName) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			underscore = false
		} else if !underscore {
			b.WriteByte('_')
			underscore = true
		}
	}
	base := strings.Trim(b.String(), "_")
	const maxBase = 63 - len("t_") - len("_") - 8
	if len(base) > maxBase {
		base = strings.TrimRight(base[:maxBase], "_")
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix) // crypto/rand.Read never fails
	if base == "" {
		return "t_" + hex.EncodeToString(suffix)
	}
	return "t_" + base + "_" + hex.EncodeToString(suffix)
}

func execSQL(dsn, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// Database creates a database of tb's own on the test server and returns
// its DSN, dropping it (with its connections) at tb.Cleanup; for tests that
// count server-wide things such as connections. Where databases cannot be
// created (a KEYGATE_TEST_DATABASE_URL without the right, or not a URL), it
// starts a Dedicated server instead. Call it before starting anything that
// connects, so the drop runs after that is stopped.
func Database(tb testing.TB) string {
	tb.Helper()
	dsn := DSN(tb)
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return Dedicated(tb).DSN()
	}
	name := schemaName(tb.Name())
	ident := pgx.Identifier{name}.Sanitize()
	if err := execSQL(dsn, "CREATE DATABASE "+ident); err != nil {
		tb.Logf("pgtest: cannot create a database (%v): starting a dedicated server", err)
		return Dedicated(tb).DSN()
	}
	tb.Cleanup(func() {
		if err := execSQL(dsn, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
			tb.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

// QueryRow runs sql with args on a short-lived connection of its own to
// dsn and scans the one row it returns into dest, failing tb otherwise.
func QueryRow(tb testing.TB, dsn, sql string, args []any, dest ...any) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatalf("pgtest: connecting to PostgreSQL: %v", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := conn.QueryRow(ctx, sql, args...).Scan(dest...); err != nil {
		tb.Fatalf("pgtest: %s: %v", sql, err)
	}
}

// FreePort returns a loopback TCP port that was free a moment ago, as the
// servers here are started on.
func FreePort(tb testing.TB) int {
	tb.Helper()
	port, err := freePort()
	if err != nil {
		tb.Fatal(err)
	}
	return port
}
