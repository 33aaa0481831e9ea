package cache

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/bolt"
	"github.com/keygate/keygate/storage/postgres"
	"github.com/keygate/keygate/storage/storagetest"
	"github.com/keygate/keygate/storage/token"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var testTokens = storagetest.Tokens

// openPostgres opens a keystore on a fresh PostgreSQL schema.
func openPostgres(t testing.TB) *storage.Keystore {
	t.Helper()
	dsn := pgtest.DSN(t)
	b, err := postgres.Open(context.Background(), dsn, pgtest.Schema(t, dsn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return storage.New(b)
}

// openFile opens a keystore on a file store in a fresh directory.
func openFile(t testing.TB) *storage.Keystore {
	t.Helper()
	b, err := bolt.Open(filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return storage.New(b)
}

var storeKinds = []struct {
	name string
	open func(testing.TB) *storage.Keystore
}{{"postgres", openPostgres}, {"file", openFile}}

// forEachStore runs fn as a subtest on a fresh keystore of each backend.
func forEachStore(t *testing.T, fn func(t *testing.T, s *storage.Keystore)) {
	t.Helper()
	for _, kind := range storeKinds {
		t.Run(kind.name, func(t *testing.T) { fn(t, kind.open(t)) })
	}
}

func credential(c *storage.Credential) *storage.Credential { return c }

func newTestCache(t testing.TB, s Source) *Cache[*storage.Credential] {
	t.Helper()
	c, err := New(s, credential, Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func newTestAccount(t testing.TB, s *storage.Keystore, name string, scopes ...string) *storage.Account {
	t.Helper()
	a, err := s.CreateAccount(context.Background(), storage.Trusted, storage.NewAccount{Name: name, Kind: storage.KindService, Scopes: scopes})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func newTestKey(t testing.TB, s *storage.Keystore, account string, scopes []string) (*storage.Key, string) {
	t.Helper()
	secret := testTokens.Generate()
	k, err := s.CreateKey(context.Background(), storage.Trusted, storage.NewKey{Account: account, Name: "k", Scopes: scopes}, storage.NewSecret(secret))
	if err != nil {
		t.Fatal(err)
	}
	return k, secret
}

func TestCacheHitsAfterFirstRead(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Keystore) {
		c := newTestCache(t, s)
		acc := newTestAccount(t, s, "a", "apps")
		_, secret := newTestKey(t, s, acc.ID, nil)
		h := secret

		cred, err := c.Verify(context.Background(), h)
		if err != nil || cred.AccountID != acc.ID {
			t.Fatalf("Verify = %+v, %v", cred, err)
		}
		c.Wait()
		for range 100 {
			if _, err := c.Verify(context.Background(), h); err != nil {
				t.Fatal(err)
			}
		}
		if q := c.Stats().StoreQueries.Load(); q != 1 {
			t.Fatalf("store queries = %d, want 1", q)
		}
	})
}

func TestCacheNegativeEntries(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Keystore) {
		c := newTestCache(t, s)
		unknown := testTokens.Generate()
		for i := range 50 {
			if _, err := c.Verify(context.Background(), unknown); !errors.Is(err, storage.ErrNotFound) {
				t.Fatalf("unknown token: %v", err)
			}
			if i == 0 {
				c.Wait()
			}
		}
		if q := c.Stats().StoreQueries.Load(); q != 1 {
			t.Fatalf("store queries for one unknown token = %d, want 1", q)
		}
	})
}

// TestCacheNegativeEntryDroppedOnCreate checks that a token created after
// its hash was remembered as unknown works at once.
func TestCacheNegativeEntryDroppedOnCreate(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Keystore) {
		c := newTestCache(t, s)
		acc := newTestAccount(t, s, "a", "apps")
		secret := testTokens.Generate()
		if _, err := c.Verify(context.Background(), secret); !errors.Is(err, storage.ErrNotFound) {
			t.Fatal(err)
		}
		c.Wait()
		if _, err := s.CreateKey(context.Background(), storage.Trusted, storage.NewKey{Account: acc.ID, Name: "k"}, storage.NewSecret(secret)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Verify(context.Background(), secret); err != nil {
			t.Fatalf("new token after a negative entry: %v", err)
		}
	})
}

// gatedStore holds every LookupToken until the gate opens.
type gatedStore struct {
	Source
	gate chan struct{}
}

func (g *gatedStore) LookupToken(ctx context.Context, h token.Hash) (*storage.Credential, error) {
	<-g.gate
	return g.Source.LookupToken(ctx, h)
}

func TestCacheConcurrentMissesMakeOneQuery(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Keystore) {
		acc := newTestAccount(t, s, "a", "apps")
		_, secret := newTestKey(t, s, acc.ID, nil)
		gated := &gatedStore{Source: s, gate: make(chan struct{})}
		c := newTestCache(t, gated)

		const n = 64
		var entered atomic.Int32
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Go(func() {
				entered.Add(1)
				_, err := c.Verify(context.Background(), secret)
				errs <- err
			})
		}
		for entered.Load() < n {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond) // let the last goroutines reach the shared read
		close(gated.gate)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if q := c.Stats().StoreQueries.Load(); q != 1 {
			t.Fatalf("%d concurrent misses made %d store queries, want 1", n, q)
		}
	})
}

// TestCacheNeverServesRevoked races verifications against key deletions:
// once DeleteKey has returned, no verification that starts afterwards may
// succeed, whatever ristretto does with its asynchronous writes.
func TestCacheNeverServesRevoked(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Keystore) {
		c := newTestCache(t, s)
		acc := newTestAccount(t, s, "a", "apps")
		rounds := 100
		if testing.Short() {
			rounds = 50
		}
		var stale atomic.Int64
		for range rounds {
			k, secret := newTestKey(t, s, acc.ID, nil)
			h := secret
			var revoked atomic.Bool
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						after := revoked.Load()
						_, err := c.Verify(context.Background(), h)
						if after && err == nil {
							stale.Add(1)
						}
					}
				})
			}
			time.Sleep(time.Millisecond)
			if err := s.DeleteKey(context.Background(), storage.Trusted, k.ID); err != nil {
				t.Fatal(err)
			}
			revoked.Store(true)
			time.Sleep(2 * time.Millisecond)
			close(stop)
			wg.Wait()
		}
		if n := stale.Load(); n != 0 {
			t.Fatalf("%d verifications succeeded after their token's revocation", n)
		}
	})
}

// downStore fails every lookup as an unreachable database would.
type downStore struct{ Source }

func (downStore) LookupToken(context.Context, token.Hash) (*storage.Credential, error) {
	return nil, errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")
}

func TestCacheStoreDown(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Keystore) {
		c := newTestCache(t, downStore{s})
		_, err := c.Verify(context.Background(), testTokens.Generate())
		if !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("store down: %v, want ErrUnavailable", err)
		}
	})
}

func BenchmarkCacheHit(b *testing.B) {
	s := openPostgres(b)
	c := newTestCache(b, s)
	acc := newTestAccount(b, s, "a", "apps")
	_, secret := newTestKey(b, s, acc.ID, nil)
	h := secret
	if _, err := c.Verify(context.Background(), h); err != nil {
		b.Fatal(err)
	}
	c.Wait()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Verify(context.Background(), h); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCacheMiss measures a verification the cache cannot answer: the
// token's entry is invalidated before each lookup, so every iteration
// reads the store (an indexed query on PostgreSQL over loopback, a bbolt
// read on the file store) and fills the cache again.
func BenchmarkCacheMiss(b *testing.B) {
	for _, st := range storeKinds {
		b.Run(st.name, func(b *testing.B) {
			s := st.open(b)
			c := newTestCache(b, s)
			acc := newTestAccount(b, s, "a", "apps")
			k, secret := newTestKey(b, s, acc.ID, nil)
			inv := storage.Invalidation{Keys: []string{k.ID}}
			before := c.Stats().StoreQueries.Load()
			b.ReportAllocs()
			for b.Loop() {
				c.Invalidate(inv)
				if _, err := c.Verify(context.Background(), secret); err != nil {
					b.Fatal(err)
				}
			}
			if q := c.Stats().StoreQueries.Load() - before; q < uint64(b.N) {
				b.Fatalf("%d store queries for %d lookups: some were served from cache", q, b.N)
			}
		})
	}
}

// switchableStore fails lookups while down is set, as an unreachable
// database would.
type switchableStore struct {
	Source
	down atomic.Bool
}

func (s *switchableStore) LookupToken(ctx context.Context, h token.Hash) (*storage.Credential, error) {
	if s.down.Load() {
		return nil, errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")
	}
	return s.Source.LookupToken(ctx, h)
}

// TestCacheEntriesLastTheirTTL checks the bounds DESIGN.md sets: a known
// token is served from the cache until ttl, also with the store down, and
// no longer; an unknown one asks the store again after negative_ttl.
func TestCacheEntriesLastTheirTTL(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Keystore) {
		const ttl = 400 * time.Millisecond
		sw := &switchableStore{Source: s}
		c, err := New(sw, credential, Config{TTL: ttl, NegativeTTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		acc := newTestAccount(t, s, "a", "apps")
		_, secret := newTestKey(t, s, acc.ID, nil)
		unknown := testTokens.Generate()
		verify := func(token string) error {
			_, err := c.Verify(context.Background(), token)
			c.Wait()
			return err
		}
		if err := verify(secret); err != nil {
			t.Fatal(err)
		}
		if err := verify(unknown); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("unknown token: %v", err)
		}

		sw.down.Store(true)
		if err := verify(secret); err != nil {
			t.Fatalf("cached token with the store down, within ttl: %v", err)
		}
		if err := verify(unknown); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("unknown token within negative_ttl: %v", err)
		}
		if q := c.Stats().StoreQueries.Load(); q != 2 {
			t.Fatalf("store queries within the TTLs = %d, want 2", q)
		}

		time.Sleep(2 * ttl) // past both TTLs, whatever the coarse clock's tick
		if err := verify(secret); !errors.Is(err, storage.ErrUnavailable) {
			t.Fatalf("cached token with the store down, past ttl: %v, want ErrUnavailable", err)
		}
		sw.down.Store(false)
		if err := verify(unknown); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("unknown token past negative_ttl: %v", err)
		}
		if err := verify(secret); err != nil {
			t.Fatalf("store back: %v", err)
		}
		if q := c.Stats().StoreQueries.Load(); q < 4 {
			t.Fatalf("store queries after the TTLs = %d, want the entries read again", q)
		}
	})
}
