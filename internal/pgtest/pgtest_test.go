package pgtest_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func query(ctx context.Context, dsn, sql string) (int, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, sql).Scan(&n)
	return n, err
}

func mustSelect1(t *testing.T, dsn string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := query(ctx, dsn, "select 1")
	if err != nil || n != 1 {
		t.Fatalf("select 1 on %s: got %d, %v", dsn, n, err)
	}
}

func TestDSN(t *testing.T) {
	dsn := pgtest.DSN(t)
	mustSelect1(t, dsn)
	if again := pgtest.DSN(t); again != dsn {
		t.Errorf("second DSN = %q, want the shared %q", again, dsn)
	}
}

func TestDSNUsesEnv(t *testing.T) {
	const url = "postgres://someone@db.example:5432/x?sslmode=disable"
	t.Setenv("KEYGATE_TEST_DATABASE_URL", url)
	if got := pgtest.DSN(t); got != url {
		t.Errorf("DSN = %q, want %q", got, url)
	}
}

func TestDedicatedStopRestart(t *testing.T) {
	s := pgtest.Dedicated(t)
	dsn := s.DSN()
	mustSelect1(t, dsn)

	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := query(ctx, dsn, "select 1"); err == nil {
		t.Fatal("select 1 succeeded on a stopped server")
	}

	if err := s.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if s.DSN() != dsn {
		t.Errorf("DSN changed across Restart: %q -> %q", dsn, s.DSN())
	}
	mustSelect1(t, dsn)

	// Restart of a running server stops and starts it.
	if err := s.Restart(); err != nil {
		t.Fatalf("Restart while running: %v", err)
	}
	mustSelect1(t, dsn)
}

func TestCloseIdempotent(t *testing.T) {
	s := pgtest.Dedicated(t) // its Cleanup closes it a third time
	dsn := s.DSN()
	for i := 0; i < 2; i++ {
		if err := s.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	if err := s.Stop(); err != nil {
		t.Errorf("Stop after Close: %v", err)
	}
	if err := s.Restart(); err == nil {
		t.Error("Restart after Close succeeded")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := query(ctx, dsn, "select 1"); err == nil {
		t.Fatal("select 1 succeeded on a closed server")
	}
}

var validSchema = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

func TestSchema(t *testing.T) {
	dsn := pgtest.DSN(t)
	var name string
	t.Run("Use It/With Ünicode & a very long name that would not fit in sixty-three characters", func(t *testing.T) {
		name = pgtest.Schema(t, dsn)
		if !validSchema.MatchString(name) || !strings.HasPrefix(name, "t_testschema_use_it_with_nicode") {
			t.Fatalf("schema name %q is not valid", name)
		}
		if other := pgtest.Schema(t, dsn); other == name {
			t.Fatalf("two Schema calls gave the same name %q", name)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn+"&search_path="+name)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		for _, sql := range []string{
			"create table items (id int primary key)",
			"insert into items values (1), (2)",
		} {
			if _, err := conn.Exec(ctx, sql); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
		var n int
		if err := conn.QueryRow(ctx, "select count(*) from "+name+".items").Scan(&n); err != nil || n != 2 {
			t.Fatalf("count: got %d, %v", n, err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := query(ctx, dsn, fmt.Sprintf("select count(*) from pg_namespace where nspname = '%s'", name))
	if err != nil || n != 0 {
		t.Errorf("schema %q still exists after cleanup (count %d, err %v)", name, n, err)
	}
}

// TestCrashCleanup kills a process that owns a server and checks that the
// watchdog shuts the server down.
func TestCrashCleanup(t *testing.T) {
	if os.Getenv("PGTEST_CRASH_HELPER") == "1" {
		s, err := pgtest.Start()
		switch {
		case errors.Is(err, pgtest.ErrNoBinaries):
			fmt.Println("NOBIN", err)
		case err != nil:
			fmt.Println("ERR", strings.ReplaceAll(err.Error(), "\n", " | "))
		default:
			fmt.Println("DSN", s.DSN())
		}
		time.Sleep(time.Minute) // wait to be killed
		return
	}
	if testing.Short() {
		t.Skip("starts a server in a child process")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashCleanup$")
	cmd.Env = append(os.Environ(), "PGTEST_CRASH_HELPER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("reading helper output: %v", err)
	}
	kind, msg, _ := strings.Cut(strings.TrimSpace(line), " ")
	switch kind {
	case "DSN":
	case "NOBIN":
		if os.Getenv("KEYGATE_REQUIRE_POSTGRES") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	default:
		t.Fatalf("helper: %s", line)
	}
	mustSelect1(t, msg)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := query(ctx, msg, "select 1")
		cancel()
		if err != nil {
			return // server is gone
		}
		if time.Now().After(deadline) {
			t.Fatalf("server %s still running 20s after its owner was killed", msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
