package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/keygate/keygate/storage"
)

// Stores and caches outlive configs. Caddy starts a new config before it
// stops the old one, so a reload naming the same store must reuse the
// open one: a bbolt file takes one handle, and PostgreSQL pools and
// listeners would double. A store is shared by its identity alone; a
// cache by its store and its own settings, so a reload that changes only
// the cache gets a new cache over the open store, and one that changes
// neither keeps both, warm. Other settings (key_prefix) belong to each
// config's app.
var (
	stores = caddy.NewUsagePool() // storeID.key() → *sharedStore
	caches = caddy.NewUsagePool() // cacheKey → *sharedCache
)

// storeID identifies a key store: configs naming the same one share it.
type storeID struct {
	kind   string // "file" or "postgres"
	path   string // the file store's file
	dsn    string // the PostgreSQL connection string, placeholders replaced
	schema string // the PostgreSQL schema
}

func (id storeID) key() string {
	return id.kind + "\x00" + id.path + "\x00" + id.dsn + "\x00" + id.schema
}

// cacheKey identifies a cache: its store and its settings, defaults
// applied so that spelling a default out changes nothing.
func cacheKey(store storeID, cfg storage.CacheConfig) string {
	return store.key() + "\x00" + strconv.FormatInt(cfg.MaxEntries, 10) + "\x00" +
		cfg.TTL.String() + "\x00" + cfg.NegativeTTL.String()
}

// sharedStore is an open key store shared by the configs that name it,
// with the caches in front of it.
type sharedStore struct {
	id storeID

	mu     sync.Mutex
	live   atomic.Pointer[openStore]
	caches cacheSet
}

// openStore is what an open store serves with.
type openStore struct {
	store storage.Store

	stopListener context.CancelFunc
	listening    sync.WaitGroup
}

// open connects to the store and applies its migrations, unless it is
// open already.
func (s *sharedStore) open(logger *zap.Logger) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.live.Load() != nil {
		return nil
	}
	st, err := s.openStore()
	if err != nil {
		return err
	}
	// Every cache of the store hears of the changes made through it.
	st.OnChange(s.caches.Invalidate)
	open := &openStore{store: st}
	listenCtx, stop := context.WithCancel(context.Background())
	open.stopListener = stop
	if pg, ok := st.(*storage.Postgres); ok {
		// Other nodes share a PostgreSQL store: follow their changes.
		listen(listenCtx, &open.listening, pg, &s.caches, logger)
	}
	s.live.Store(open)
	where := zap.String("schema", s.id.schema)
	if s.id.kind == "file" {
		where = zap.String("path", s.id.path)
	}
	logger.Info("key store open", zap.String("storage", s.id.kind), where)
	return nil
}

// openStore opens the configured store.
func (s *sharedStore) openStore() (storage.Store, error) {
	if s.id.kind == "file" {
		return storage.OpenFile(s.id.path)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := storage.OpenPostgres(ctx, s.id.dsn, s.id.schema)
	if err != nil {
		return nil, fmt.Errorf("opening key store: %w", err)
	}
	return st, nil
}

// get returns the open store, or nil before open.
func (s *sharedStore) get() storage.Store {
	if open := s.live.Load(); open != nil {
		return open.store
	}
	return nil
}

// Destruct stops the listener and closes the store, once the last config
// naming it is gone (its caches are closed by then).
func (s *sharedStore) Destruct() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if open := s.live.Swap(nil); open != nil {
		open.stopListener()
		open.listening.Wait()
		open.store.Close()
	}
	return nil
}

// cacheSet is the caches in front of one store: each change notice, from
// this node or (PostgreSQL) another, reaches all of them.
type cacheSet struct {
	mu     sync.RWMutex
	caches map[*storage.Cache]struct{}
	// lost is set while the store's change notices may be lost; a cache
	// joining then starts out asking the store, as the others do.
	lost bool
}

func (s *cacheSet) add(c *storage.Cache) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.caches == nil {
		s.caches = make(map[*storage.Cache]struct{})
	}
	s.caches[c] = struct{}{}
	if s.lost {
		c.NoticesLost()
	}
}

func (s *cacheSet) remove(c *storage.Cache) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.caches, c)
}

// Invalidate forgets what inv names in every cache.
func (s *cacheSet) Invalidate(inv storage.Invalidation) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for c := range s.caches {
		c.Invalidate(inv)
	}
}

// InvalidateAll empties every cache.
func (s *cacheSet) InvalidateAll() {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for c := range s.caches {
		c.InvalidateAll()
	}
}

// NoticesLost tells every cache that notices may be lost.
func (s *cacheSet) NoticesLost() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lost = true
	for c := range s.caches {
		c.NoticesLost()
	}
}

// NoticesResumed tells every cache that notices arrive again.
func (s *cacheSet) NoticesResumed() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lost = false
	for c := range s.caches {
		c.NoticesResumed()
	}
}

// sharedCache is a token cache in front of a shared store, shared by the
// configs with the same store and cache settings.
type sharedCache struct {
	store *sharedStore
	cfg   storage.CacheConfig

	mu   sync.Mutex
	live atomic.Pointer[storage.Cache]
}

// open creates the cache, unless it exists already. The store must be
// open.
func (c *sharedCache) open() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.live.Load() != nil {
		return nil
	}
	st := c.store.get()
	if st == nil {
		return errors.New("creating token cache: the key store is not open")
	}
	cfg := c.cfg
	cfg.Decorate = decorateCredential
	cfg.ObserveLookup = observeLookup
	cache, err := storage.NewCache(noticesFromSet{st}, cfg)
	if err != nil {
		return err
	}
	// Joined before it serves: no change can slip between.
	c.store.caches.add(cache)
	liveCaches.Store(cache, struct{}{})
	c.live.Store(cache)
	return nil
}

// get returns the cache, or nil before open.
func (c *sharedCache) get() *storage.Cache { return c.live.Load() }

// Destruct closes the cache, writing its pending last-used times, once the
// last config using it is gone.
func (c *sharedCache) Destruct() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cache := c.live.Swap(nil); cache != nil {
		c.store.caches.remove(cache)
		cache.Close()
		liveCaches.Delete(cache)
	}
	return nil
}

// noticesFromSet is the store as a cache sees it. The cache hears of
// changes through its store's cacheSet, which forgets it when it closes;
// registering with the store itself would keep every closed cache.
type noticesFromSet struct{ storage.Store }

// OnChange implements storage.Store: a no-op, see noticesFromSet.
func (noticesFromSet) OnChange(func(storage.Invalidation)) {}

// Interface guards
var (
	_ caddy.Destructor = (*sharedStore)(nil)
	_ caddy.Destructor = (*sharedCache)(nil)
	_ invalidator      = (*cacheSet)(nil)
	_ invalidator      = (*storage.Cache)(nil)
)
