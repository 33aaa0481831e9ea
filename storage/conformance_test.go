package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/internal/pgtest"
)

// The conformance suite: the tests that call forEachStore run the same
// code against every Store implementation.

// storeKinds open a fresh, empty store of each implementation.
var storeKinds = []struct {
	name string
	open func(t testing.TB) Store
}{
	{"postgres", func(t testing.TB) Store { return openTestStore(t) }},
	{"file", func(t testing.TB) Store { return openTestFile(t) }},
}

// forEachStore runs fn as a subtest on a fresh store of each kind.
func forEachStore(t *testing.T, fn func(t *testing.T, s Store)) {
	t.Helper()
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) { fn(t, kind.open(t)) })
	}
}

// openTestStore opens a Postgres store on a fresh schema.
func openTestStore(t testing.TB) *Postgres {
	t.Helper()
	dsn := pgtest.DSN(t)
	s, err := OpenPostgres(context.Background(), dsn, pgtest.Schema(t, dsn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// openTestFile opens a file store in a fresh directory.
func openTestFile(t testing.TB) *File {
	t.Helper()
	s, err := OpenFile(filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// storeHolds reports whether needle appears anywhere in the store's data.
func storeHolds(t testing.TB, s Store, needle string) bool {
	t.Helper()
	switch st := s.(type) {
	case *Postgres:
		var n int
		err := st.pool.QueryRow(context.Background(), `SELECT
			(SELECT count(*) FROM accounts a WHERE a::text LIKE '%' || $1 || '%') +
			(SELECT count(*) FROM keys k WHERE k::text LIKE '%' || $1 || '%') +
			(SELECT count(*) FROM tokens t WHERE t::text LIKE '%' || $1 || '%') +
			(SELECT count(*) FROM audit_events e WHERE e::text LIKE '%' || $1 || '%')`, needle).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n > 0
	case *File:
		raw, err := os.ReadFile(st.path)
		if err != nil {
			t.Fatal(err)
		}
		return bytes.Contains(raw, []byte(needle))
	}
	t.Fatalf("unknown store %T", s)
	return false
}

// orphanTokens counts tokens whose key is gone.
func orphanTokens(t testing.TB, s Store) int {
	t.Helper()
	n := 0
	switch st := s.(type) {
	case *Postgres:
		err := st.pool.QueryRow(context.Background(),
			`SELECT count(*) FROM tokens t WHERE NOT EXISTS (SELECT 1 FROM keys k WHERE k.id = t.key_id)`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
	case *File:
		err := st.db.View(func(tx *bolt.Tx) error {
			keys := tx.Bucket(bucketKeys)
			if err := tx.Bucket(bucketTokens).ForEach(func(_, v []byte) error {
				var rec TokenRecord
				if err := json.Unmarshal(v, &rec); err != nil {
					return err
				}
				if keys.Get([]byte(rec.KeyID)) == nil {
					n++
				}
				return nil
			}); err != nil {
				return err
			}
			// Index entries must point at live tokens too.
			tokens := tx.Bucket(bucketTokens)
			return tx.Bucket(bucketKeyTokens).ForEach(func(k, _ []byte) error {
				_, tok, _ := strings.Cut(string(k), "\x00")
				if tokens.Get([]byte(tok)) == nil {
					n++
				}
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return n
}

func TestFileSecondOpenFailsClearly(t *testing.T) {
	s := openTestFile(t)
	_, err := OpenFile(s.Path())
	if err == nil || !strings.Contains(err.Error(), s.Path()) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open: %v, want an error naming the file", err)
	}
}

func TestFileSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	s, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	acc := newTestAccount(t, s, "a", "apps")
	_, secret := newTestKey(t, s, acc.ID, nil)
	s.Close()
	s, err = OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if cred, err := s.LookupToken(context.Background(), HashToken(secret)); err != nil || cred.AccountID != acc.ID {
		t.Fatalf("after reopening: %+v, %v", cred, err)
	}
}
