package bolt

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
)

// openTest opens a file store in a fresh directory.
func openTest(t testing.TB) *Backend {
	t.Helper()
	b, err := Open(filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t testing.TB) storage.Backend { return openTest(t) })
}

func TestSecondOpenFailsClearly(t *testing.T) {
	b := openTest(t)
	_, err := Open(b.Path())
	if err == nil || !strings.Contains(err.Error(), b.Path()) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open: %v, want an error naming the file", err)
	}
}

func TestSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys.db")
	b, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	storagetest.ImportV0(t, storage.New(b))
	_ = b.Close()
	b, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	storagetest.CheckV0(t, storage.New(b))
}

// TestOpensVersion0File opens a copy of a file written by Keygate before
// records were versioned: it is migrated (the version recorded, records
// rewritten, indexes rebuilt) and everything in it still works.
func TestOpensVersion0File(t *testing.T) {
	raw, err := os.ReadFile("testdata/v0.db")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "keys.db")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	storagetest.CheckV0(t, storage.New(b))
	err = b.db.View(func(btx *bbolt.Tx) error {
		if v := string(btx.Bucket(bucketMeta).Get(keyVersion)); v != strconv.Itoa(FormatVersion) {
			t.Errorf("format version %q after migration, want %d", v, FormatVersion)
		}
		return btx.Bucket(bucketAudit).ForEach(func(_, v []byte) error {
			if !bytes.Contains(v, []byte(`"action":`)) {
				t.Errorf("audit record not rewritten: %s", v)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestRefusesNewerFormat(t *testing.T) {
	b := openTest(t)
	err := b.db.Update(func(btx *bbolt.Tx) error {
		return btx.Bucket(bucketMeta).Put(keyVersion, []byte(strconv.Itoa(FormatVersion+1)))
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
	if _, err := Open(b.Path()); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("opening a newer file: %v", err)
	}
}

func TestImportsVersion0Export(t *testing.T) {
	ks := storage.New(openTest(t))
	storagetest.ImportV0(t, ks)
	storagetest.CheckV0(t, ks)
}

// TestFileKeepsNoSecret checks the bytes of the file, not only its records.
func TestFileKeepsNoSecret(t *testing.T) {
	b := openTest(t)
	ks := storage.New(b)
	storagetest.ImportV0(t, ks)
	secret := storagetest.Tokens.Generate()
	acc, err := ks.Account(context.Background(), storage.Trusted, "ci-bot")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.CreateKey(context.Background(), storage.Trusted, storage.NewKey{Account: acc.ID, Name: "x"}, storage.NewSecret(secret)); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(b.Path())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(secret[6:len(secret)-4])) {
		t.Fatal("the file holds a token value")
	}
}
