package postgres

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/cache"
	"github.com/keygate/keygate/storage/token"
)

// TestNoticeRaceNeverServesRevoked is the two-node version of
// TestCacheNeverServesRevoked: node B's cache is kept current only by the
// change notices of node A's revocations. Verifications on B race the
// revocations; once a revocation was acknowledged on A and its notice
// processed on B, no verification on B may succeed.
func TestNoticeRaceNeverServesRevoked(t *testing.T) {
	dsn := pgtest.DSN(t)
	schema := pgtest.Schema(t, dsn)
	ctx := context.Background()
	nodeA := storage.New(openTest(t, dsn, schema))
	backendB := openTest(t, dsn, schema)
	nodeB := storage.New(backendB)
	cacheB, err := cache.New(nodeB, func(c *storage.Credential) *storage.Credential { return c }, cache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer cacheB.Close()

	tokens := 400
	if testing.Short() {
		tokens = 100
	}
	acc := newTestAccount(t, nodeA, "race", "apps")
	secrets := make([]string, tokens)
	ids := make(map[string]int, tokens)
	for i := range secrets {
		k, secret := newTestKey(t, nodeA, acc.ID, nil)
		secrets[i] = secret
		ids[k.Tokens[0].ID] = i
	}

	// revokedAt[i]: when node B had processed the notice of token i's
	// revocation (Unix nanoseconds), 0 while it is live.
	revokedAt := make([]atomic.Int64, tokens)
	noticed := make(chan int, tokens)
	listenCtx, stop := context.WithCancel(ctx)
	connected := make(chan struct{})
	var once sync.Once
	var listening sync.WaitGroup
	defer func() {
		stop()
		listening.Wait()
	}()
	listening.Go(func() {
		backendB.Listen(listenCtx, storage.ListenHooks{
			Notice: func(inv storage.Invalidation) {
				cacheB.Invalidate(inv)
				for _, id := range inv.Tokens {
					if i, ok := ids[id]; ok {
						noticed <- i
					}
				}
			},
			Connected: func() {
				cacheB.InvalidateAll()
				once.Do(func() { close(connected) })
			},
		})
	})
	<-connected

	var verifications, stale atomic.Int64
	stopReaders := make(chan struct{})
	var readers sync.WaitGroup
	for range 6 {
		readers.Go(func() {
			for {
				select {
				case <-stopReaders:
					return
				default:
				}
				i := rand.IntN(tokens)
				after := revokedAt[i].Load()
				_, err := cacheB.Verify(ctx, secrets[i])
				verifications.Add(1)
				if after != 0 && err == nil {
					stale.Add(1)
				}
			}
		})
	}
	for i := range tokens {
		if _, err := nodeA.RevokeToken(ctx, storage.Trusted, token.Sum(secrets[i])); err != nil {
			t.Fatal(err)
		}
		select {
		case j := <-noticed:
			revokedAt[j].Store(time.Now().UnixNano())
		case <-time.After(5 * time.Second):
			t.Fatalf("no notice for revocation %d within 5s", i)
		}
	}
	for verifications.Load() < 10_000 { // at least 10,000 raced lookups
		time.Sleep(10 * time.Millisecond)
	}
	close(stopReaders)
	readers.Wait()
	t.Logf("%d verifications on node B raced %d revocations on node A: %d served a revoked token",
		verifications.Load(), tokens, stale.Load())
	if stale.Load() != 0 {
		t.Fatalf("%d verifications succeeded after their revocation's notice", stale.Load())
	}
}
