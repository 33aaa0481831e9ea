package bolt

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
)

// TestOpensVersion1File opens a copy of a file written by Keygate's
// format version 1 (testdata/v1.db: the v0 store, opened once by that
// version): its records read as records without a policy, everything
// still works, and policies written now survive a reopen.
func TestOpensVersion1File(t *testing.T) {
	raw, err := os.ReadFile("testdata/v1.db")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "keys.db")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	err = func() error {
		db, err := bbolt.Open(path, 0o600, nil)
		if err != nil {
			return err
		}
		defer db.Close()
		return db.View(func(btx *bbolt.Tx) error {
			if v := string(btx.Bucket(bucketMeta).Get(keyVersion)); v != "1" {
				t.Fatalf("the fixture has format version %q, want 1", v)
			}
			return nil
		})
	}()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ks := storage.New(b)
	storagetest.CheckV0(t, ks)
	ctx := context.Background()
	keys, _, err := ks.Keys(ctx, storage.Trusted, storage.KeyFilter{})
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys: %+v, %v", keys, err)
	}
	for _, k := range keys {
		if !k.Policy.IsZero() {
			t.Errorf("a version 1 key reads with a policy: %+v", k.Policy)
		}
	}
	limits := []storage.Window{{Name: "burst", Limit: 5, Length: time.Second}}
	remaining := int64(42)
	if _, err := ks.UpdateKey(ctx, storage.Trusted, keys[0].ID, storage.KeyPatch{Limits: &limits,
		Credits: &storage.CreditsPatch{Remaining: &remaining}}); err != nil {
		t.Fatal(err)
	}
	_ = b.Close()

	b, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	err = b.db.View(func(btx *bbolt.Tx) error {
		if v := string(btx.Bucket(bucketMeta).Get(keyVersion)); v != strconv.Itoa(FormatVersion) {
			t.Errorf("format version %q after opening, want %d", v, FormatVersion)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ks = storage.New(b)
	storagetest.CheckV0(t, ks)
	k, err := ks.Key(ctx, storage.Trusted, keys[0].ID)
	if err != nil || len(k.Policy.Limits) != 1 || k.Policy.Limits[0] != limits[0] || k.Policy.Credits == nil || k.Policy.Credits.Remaining != 42 {
		t.Fatalf("the policy after a reopen: %+v, %v", k, err)
	}
}
