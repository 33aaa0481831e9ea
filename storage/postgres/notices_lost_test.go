package postgres

import (
	"context"
	"errors"
	"testing"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/cache"
	"github.com/keygate/keygate/storage/token"
)

// newTestCache returns a cache of credentials in front of ks.
func newTestCache(t testing.TB, ks *storage.Keystore) *cache.Cache[*storage.Credential] {
	t.Helper()
	c, err := cache.New(ks, func(c *storage.Credential) *storage.Credential { return c }, cache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// twoPostgresNodes opens two stores on one fresh schema: what two gateway
// nodes share. Neither listens: a change made through one is never
// noticed by the other's cache, as when its notices are lost.
func twoPostgresNodes(t *testing.T) (a, b *storage.Keystore) {
	t.Helper()
	dsn := pgtest.DSN(t)
	schema := pgtest.Schema(t, dsn)
	return storage.New(openTest(t, dsn, schema)), storage.New(openTest(t, dsn, schema))
}

// TestCacheAsksStoreWhileNoticesLost: once a cache is told that change
// notices may be lost, it serves nothing it read before without asking the
// store again, so another node's revocation is enforced at once.
func TestCacheAsksStoreWhileNoticesLost(t *testing.T) {
	ctx := context.Background()
	nodeA, nodeB := twoPostgresNodes(t)
	cacheB := newTestCache(t, nodeB)
	acc := newTestAccount(t, nodeA, "a", "apps")
	_, revoked := newTestKey(t, nodeA, acc.ID, nil)
	_, kept := newTestKey(t, nodeA, acc.ID, nil)
	for _, secret := range []string{revoked, kept} {
		if _, err := cacheB.Verify(ctx, secret); err != nil {
			t.Fatal(err)
		}
	}
	cacheB.Wait()
	if _, err := nodeA.RevokeToken(ctx, storage.Trusted, token.Sum(revoked)); err != nil {
		t.Fatal(err)
	}

	cacheB.NoticesLost()
	if cred, err := cacheB.Verify(ctx, revoked); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("a token revoked elsewhere, once notices are known lost: %+v, %v; want ErrNotFound", cred, err)
	}
	if _, err := cacheB.Verify(ctx, kept); err != nil {
		t.Fatalf("a live token while notices are lost: %v", err)
	}

	// Notices heard again: the cache forgets all it has (notices sent
	// meanwhile are gone) and serves from itself again.
	cacheB.NoticesResumed()
	if _, err := cacheB.Verify(ctx, kept); err != nil {
		t.Fatal(err)
	}
	cacheB.Wait()
	before := cacheB.Stats().StoreQueries.Load()
	for range 10 {
		if _, err := cacheB.Verify(ctx, kept); err != nil {
			t.Fatal(err)
		}
	}
	if q := cacheB.Stats().StoreQueries.Load() - before; q != 0 {
		t.Fatalf("%d store queries for a cached token with notices heard, want 0", q)
	}
}
