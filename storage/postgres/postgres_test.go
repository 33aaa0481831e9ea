package postgres

import (
	"context"
	"io/fs"
	"strings"
	"sync"
	"testing"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// openTest opens a backend on schema, closed when the test ends.
func openTest(t testing.TB, dsn, schema string) *Backend {
	t.Helper()
	b, err := Open(context.Background(), dsn, schema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// openFresh opens a backend on a fresh schema.
func openFresh(t testing.TB) *Backend {
	t.Helper()
	dsn := pgtest.DSN(t)
	return openTest(t, dsn, pgtest.Schema(t, dsn))
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t testing.TB) storage.Backend { return openFresh(t) })
}

func TestImportsVersion0Export(t *testing.T) {
	ks := storage.New(openFresh(t))
	storagetest.ImportV0(t, ks)
	storagetest.CheckV0(t, ks)
}

func newTestAccount(t testing.TB, ks *storage.Keystore, name string, scopes ...string) *storage.Account {
	t.Helper()
	a, err := ks.CreateAccount(context.Background(), storage.Trusted, storage.NewAccount{Name: name, Kind: storage.KindService, Scopes: scopes})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func newTestKey(t testing.TB, ks *storage.Keystore, account string, scopes []string) (*storage.Key, string) {
	t.Helper()
	secret := storagetest.Tokens.Generate()
	k, err := ks.CreateKey(context.Background(), storage.Trusted, storage.NewKey{Account: account, Name: "k", Scopes: scopes}, storage.NewSecret(secret))
	if err != nil {
		t.Fatal(err)
	}
	return k, secret
}

func TestMigrationsConcurrentAndIdempotent(t *testing.T) {
	dsn := pgtest.DSN(t)
	schema := pgtest.Schema(t, dsn)
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 6 {
		wg.Go(func() {
			b, err := Open(context.Background(), dsn, schema)
			if err == nil {
				_ = b.Close()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent start: %v", err)
		}
	}
	b := openTest(t, dsn, schema)
	files, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := b.pool.QueryRow(context.Background(), "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil || n != len(files) {
		t.Fatalf("schema_migrations rows = %d, %v; want %d, one per migration", n, err, len(files))
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(context.Background(), "postgres://x@127.0.0.1:1/x", "Bad"); err == nil {
		t.Error("bad schema accepted")
	}
	_, err := Open(context.Background(), "postgres://user:s3cret@127.0.0.1:1/x?connect_timeout=1", "keygate")
	if err == nil {
		t.Fatal("unreachable database accepted")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error leaks the password: %v", err)
	}
	_, err = Open(context.Background(), "postgres://user:s3cret@[bad", "keygate")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("bad DSN: error %v", err)
	}
}

// TestStoreKeepsNoSecret checks every row as text, not only the records
// the keystore reads back.
func TestStoreKeepsNoSecret(t *testing.T) {
	b := openFresh(t)
	ks := storage.New(b)
	acc := newTestAccount(t, ks, "x", "*")
	_, secret := newTestKey(t, ks, acc.ID, nil)
	needle := secret[6 : len(secret)-4]
	var n int
	err := b.pool.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM accounts a WHERE a::text LIKE '%' || $1 || '%') +
		(SELECT count(*) FROM keys k WHERE k::text LIKE '%' || $1 || '%') +
		(SELECT count(*) FROM tokens t WHERE t::text LIKE '%' || $1 || '%') +
		(SELECT count(*) FROM audit_events e WHERE e::text LIKE '%' || $1 || '%')`, needle).Scan(&n)
	if err != nil || n != 0 {
		t.Fatalf("rows holding the token value: %d, %v", n, err)
	}
}

// TestCascadeLeavesNoOrphans checks the rows: deleting an account leaves
// no key or token of it behind.
func TestCascadeLeavesNoOrphans(t *testing.T) {
	b := openFresh(t)
	ks := storage.New(b)
	acc := newTestAccount(t, ks, "a", "*")
	for range 3 {
		newTestKey(t, ks, acc.ID, nil)
	}
	if err := ks.DeleteAccount(context.Background(), storage.Trusted, acc.ID); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := b.pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM keys) + (SELECT count(*) FROM tokens)`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("rows left: %d, %v", n, err)
	}
}
