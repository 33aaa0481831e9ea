package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/storage"
)

// execAll runs statements on a connection of their own to dsn.
func execAll(t *testing.T, dsn string, statements ...string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, sql := range statements {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
}

// TestOpenOwnSchemaWithoutCreateOnDatabase: a role that owns a schema made
// for it beforehand, and holds no CREATE on the database, starts Keygate
// on it (README, "PostgreSQL role"): nothing runs CREATE SCHEMA when the
// schema exists.
func TestOpenOwnSchemaWithoutCreateOnDatabase(t *testing.T) {
	dbDSN := pgtest.Database(t)
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	role := "kg_owner_" + hex.EncodeToString(suffix)
	ident := pgx.Identifier{role}.Sanitize()
	u, err := url.Parse(dbDSN)
	if err != nil {
		t.Skipf("the test database's DSN is not a URL: %v", err)
	}
	db := pgx.Identifier{strings.TrimPrefix(u.Path, "/")}.Sanitize()
	execAll(t, dbDSN,
		"CREATE ROLE "+ident+" LOGIN",
		"REVOKE ALL ON DATABASE "+db+" FROM PUBLIC",
		"GRANT CONNECT ON DATABASE "+db+" TO "+ident,
		"CREATE SCHEMA keygate AUTHORIZATION "+ident)
	t.Cleanup(func() {
		// Roles belong to the server, not the database.
		execAll(t, dbDSN, "DROP OWNED BY "+ident+" CASCADE", "DROP ROLE "+ident)
	})
	u.User = url.User(role)
	roleDSN := u.String()

	// The premise: this role cannot run CREATE SCHEMA IF NOT EXISTS.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, roleDSN)
	if err != nil {
		t.Fatalf("connecting as %s: %v", role, err)
	}
	_, err = conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS keygate")
	conn.Close(ctx)
	if err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("CREATE SCHEMA IF NOT EXISTS as a role without CREATE on the database: %v, want permission denied", err)
	}

	for start := range 2 { // the first start migrates, the second finds it done
		b, err := Open(ctx, roleDSN, "keygate")
		if err != nil {
			t.Fatalf("start %d as the schema's owner without CREATE on the database: %v", start+1, err)
		}
		ks := storage.New(b)
		if _, err := ks.CreateAccount(ctx, storage.Trusted, storage.NewAccount{Name: fmt.Sprint("a", start)}); err != nil {
			t.Fatalf("start %d: %v", start+1, err)
		}
		_ = b.Close()
	}
	var owner string
	pgtest.QueryRow(t, dbDSN, "SELECT tableowner FROM pg_tables WHERE schemaname = 'keygate' AND tablename = 'accounts'", nil, &owner)
	if owner != role {
		t.Errorf("keygate.accounts is owned by %q, want the role %q", owner, role)
	}
}

// TestOpenRefusesNewerSchema: a schema recorded at a version above this
// build's is refused at start, with both versions in the error, and left
// as it is.
func TestOpenRefusesNewerSchema(t *testing.T) {
	dsn := pgtest.DSN(t)
	schema := pgtest.Schema(t, dsn)
	b := openTest(t, dsn, schema)
	var before int
	if err := b.pool.QueryRow(context.Background(), "SELECT count(*) FROM schema_migrations").Scan(&before); err != nil {
		t.Fatal(err)
	}
	newer := SchemaVersion() + 1
	if _, err := b.pool.Exec(context.Background(), "INSERT INTO schema_migrations (version, name) VALUES ($1, 'from_a_newer_release.sql')", newer); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), dsn, schema)
	want := fmt.Sprintf("schema %s is at version %d, newer than version %d", schema, newer, SchemaVersion())
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("opening a schema migrated by a newer release: %v, want an error saying %q", err, want)
	}
	var n int
	if err := b.pool.QueryRow(context.Background(), "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil || n != before+1 {
		t.Errorf("schema_migrations rows after the refusal: %d, %v", n, err)
	}
}
