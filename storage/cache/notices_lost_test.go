package cache

import (
	"context"
	"errors"
	"testing"

	"github.com/keygate/keygate/storage"
)

// TestCacheServesCachedWhileNoticesLostAndStoreDown: with the store down,
// the listener is down too; cached tokens must keep working (DESIGN: bounded
// by ttl), uncached ones get ErrUnavailable.
func TestCacheServesCachedWhileNoticesLostAndStoreDown(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Keystore) {
		ctx := context.Background()
		sw := &switchableStore{Source: s}
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
		if _, err := c.Verify(ctx, uncached); !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("uncached token with the store down: %v, want ErrUnavailable", err)
		}
	})
}
