package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
	"github.com/keygate/keygate/storage/token"
)

// TestMigratesVersion1Schema opens a schema at version 1 holding an
// account, a key and a token: migration 2 gives them no policy, the
// token still verifies, and policies can be written.
func TestMigratesVersion1Schema(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	schema := pgtest.Schema(t, dsn)
	init, err := migrationFiles.ReadFile("migrations/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	secret := storagetest.Tokens.Generate()
	hash := token.Sum(secret)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	ident := pgx.Identifier{schema}.Sanitize()
	for _, sql := range []string{
		"SET search_path TO " + ident,
		string(init),
		`CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
		`INSERT INTO schema_migrations (version, name) VALUES (1, '0001_init.sql')`,
		`INSERT INTO accounts (id, name, kind, scopes) VALUES ('acc_old', 'old', 'service', '{apps}')`,
		`INSERT INTO keys (id, account_id, name) VALUES ('key_old', 'acc_old', 'old')`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	if _, err := conn.Exec(ctx, `INSERT INTO tokens (id, key_id, hash, hint) VALUES ('tok_old', 'key_old', $1, 'sk-old')`, hash[:]); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)

	ks := storage.New(openTest(t, dsn, schema))
	cred, err := ks.LookupToken(ctx, hash)
	if err != nil || cred.KeyID != "key_old" || !cred.KeyPolicy.IsZero() || !cred.AccountPolicy.IsZero() {
		t.Fatalf("the old token after migrating: %+v, %v", cred, err)
	}
	k, err := ks.Key(ctx, storage.Trusted, "key_old")
	if err != nil || !k.Policy.IsZero() {
		t.Fatalf("the old key after migrating: %+v, %v", k, err)
	}
	limits := []storage.Window{{Name: "burst", Limit: 5, Length: time.Second}}
	remaining := int64(3)
	if _, err := ks.UpdateKey(ctx, storage.Trusted, "key_old", storage.KeyPatch{Limits: &limits,
		Credits: &storage.CreditsPatch{Remaining: &remaining}}); err != nil {
		t.Fatal(err)
	}
	cred, err = ks.LookupToken(ctx, hash)
	if err != nil || len(cred.KeyPolicy.Limits) != 1 || cred.KeyPolicy.Credits == nil || cred.KeyPolicy.Credits.Remaining != 3 {
		t.Fatalf("the old token with a policy: %+v, %v", cred, err)
	}
}
