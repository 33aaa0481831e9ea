package storage

import (
	"context"
	"errors"
	"testing"
)

// twoPostgresNodes opens two stores on one fresh schema: what two gateway
// nodes share. Neither listens: a change made through one is never
// noticed by the other's cache, as when its notices are lost.
func twoPostgresNodes(t *testing.T) (a, b *Postgres) {
	t.Helper()
	a = openTestStore(t)
	b, err := OpenPostgres(context.Background(), a.pool.Config().ConnString(), a.schema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return a, b
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
	if _, err := nodeA.RevokeToken(ctx, "test", HashToken(revoked)); err != nil {
		t.Fatal(err)
	}

	cacheB.NoticesLost()
	if cred, err := cacheB.Verify(ctx, revoked); !errors.Is(err, ErrNotFound) {
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

// TestCacheServesCachedWhileNoticesLostAndStoreDown: with the store down,
// the listener is down too; cached tokens must keep working (DESIGN: bounded
// by ttl), uncached ones get ErrUnavailable.
func TestCacheServesCachedWhileNoticesLostAndStoreDown(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		sw := &switchableStore{Store: s}
		c := newTestCache(t, sw)
		acc := newTestAccount(t, s, "a", "apps")
		_, cached := newTestKey(t, s, acc.ID, nil)
		_, uncached := newTestKey(t, s, acc.ID, nil)
		if _, err := c.Verify(ctx, cached); err != nil {
			t.Fatal(err)
		}
		c.Wait()
		sw.down.Store(true)
		c.NoticesLost()
		for range 3 {
			if _, err := c.Verify(ctx, cached); err != nil {
				t.Fatalf("cached token with the store down and notices lost: %v", err)
			}
		}
		if _, err := c.Verify(ctx, uncached); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("uncached token with the store down: %v, want ErrUnavailable", err)
		}
	})
}
