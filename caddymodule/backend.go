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

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/limiter"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/cache"
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
	stores = caddy.NewUsagePool() // storage.Opener.Identity() → *sharedStore
	caches = caddy.NewUsagePool() // cacheKey → *sharedCache
)

// cacheKey identifies a cache: its store (the storage module's identity)
// and its settings, defaults applied so that spelling a default out
// changes nothing.
func cacheKey(store string, cfg cache.Config) string {
	return store + "\x00" + strconv.FormatInt(cfg.MaxEntries, 10) + "\x00" +
		cfg.TTL.String() + "\x00" + cfg.NegativeTTL.String()
}

// sharedStore is an open key store shared by the configs that name it,
// with the caches in front of it.
type sharedStore struct {
	opener storage.Opener

	mu     sync.Mutex
	live   atomic.Pointer[openStore]
	caches cacheSet
}

// openStore is what an open store serves with.
type openStore struct {
	ks *storage.Keystore
	// lim decides rate windows and credits for every config on the
	// store: one per store, so that a reload keeps its counts and leases.
	lim *limiter.Limiter
	// listener is the state of the change listener; nil for a store
	// without one (the file store serves one node).
	listener *listenerState

	stopListener context.CancelFunc
	listening    sync.WaitGroup
}

// listenerState is what a store's change listener is doing, for the
// listener_connected metric and the admin endpoint's /check.
type listenerState struct {
	connected atomic.Bool
	since     atomic.Int64 // Unix nanoseconds of the last connection or loss
}

func (s *listenerState) set(connected bool) {
	s.connected.Store(connected)
	s.since.Store(time.Now().UnixNano())
}

// status returns the state as the admin API reports it; nil for no
// listener.
func (s *listenerState) status() *admin.ListenerStatus {
	if s == nil {
		return nil
	}
	st := &admin.ListenerStatus{Connected: s.connected.Load()}
	if since := s.since.Load(); since != 0 {
		t := time.Unix(0, since).UTC()
		st.Since = &t
	}
	return st
}

// open connects to the store and applies its migrations, unless it is
// open already.
func (s *sharedStore) open(logger *zap.Logger) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.live.Load() != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := s.opener.Open(ctx)
	if err != nil {
		return err
	}
	ks := storage.New(b)
	lim := limiter.New(ks, limiter.Options{Logger: logger.Named("limiter")})
	s.caches.setLimiter(lim)
	// Every cache of the store hears of the changes made through it.
	ks.OnChange(s.caches.Invalidate)
	open := &openStore{ks: ks, lim: lim}
	lim.Start()
	listenCtx, stop := context.WithCancel(context.Background())
	open.stopListener = stop
	if l := ks.Listener(); l != nil {
		// Other nodes share the store: follow their changes.
		open.listener = new(listenerState)
		liveListeners.Store(open.listener, struct{}{})
		listen(listenCtx, &open.listening, l, &s.caches, open.listener, logger)
	}
	s.live.Store(open)
	logger.Info("key store open", zap.Stringer("storage", describe(s.opener)))
	return nil
}

// describe names a store for logs, without secrets: its String when it
// has one, else its module's type.
func describe(o storage.Opener) fmt.Stringer {
	if s, ok := o.(fmt.Stringer); ok {
		return s
	}
	return stringer(fmt.Sprintf("%T", o))
}

type stringer string

func (s stringer) String() string { return string(s) }

// limiter returns the open store's limiter, or nil before open.
func (s *sharedStore) limiter() *limiter.Limiter {
	if open := s.live.Load(); open != nil {
		return open.lim
	}
	return nil
}

// get returns the open store, or nil before open.
func (s *sharedStore) get() *storage.Keystore {
	if open := s.live.Load(); open != nil {
		return open.ks
	}
	return nil
}

// listener returns the state of the open store's change listener, or nil
// when it has none (or is not open).
func (s *sharedStore) listener() *listenerState {
	if open := s.live.Load(); open != nil {
		return open.listener
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
		// The limiter sends its last counts and returns its unused
		// credit leases before the store closes.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = open.lim.Close(ctx)
		cancel()
		if open.listener != nil {
			liveListeners.Delete(open.listener)
		}
		_ = open.ks.Close()
	}
	return nil
}

// cacheSet is the caches in front of one store: each change notice, from
// this node or (PostgreSQL) another, reaches all of them.
type cacheSet struct {
	mu     sync.RWMutex
	caches map[*cache.Cache[*verified]]struct{}
	// lost is set while the store's change notices may be lost; a cache
	// joining then starts out asking the store, as the others do.
	lost bool
	// lim drops the credit leases of changed keys: a key's balance
	// edited through the admin API starts a new lease epoch.
	lim *limiter.Limiter
}

// setLimiter makes changes to keys reach lim too.
func (s *cacheSet) setLimiter(lim *limiter.Limiter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lim = lim
}

func (s *cacheSet) add(c *cache.Cache[*verified]) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.caches == nil {
		s.caches = make(map[*cache.Cache[*verified]]struct{})
	}
	s.caches[c] = struct{}{}
	if s.lost {
		c.NoticesLost()
	}
}

func (s *cacheSet) remove(c *cache.Cache[*verified]) {
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
	if s.lim != nil {
		for _, id := range inv.Keys {
			s.lim.Forget(id)
		}
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
	cfg   cache.Config

	mu   sync.Mutex
	live atomic.Pointer[cache.Cache[*verified]]
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
	cfg.ObserveLookup = observeLookup
	vc, err := cache.New(noticesFromSet{st}, decorateCredential, cfg)
	if err != nil {
		return err
	}
	// Joined before it serves: no change can slip between.
	c.store.caches.add(vc)
	liveCaches.Store(vc, struct{}{})
	c.live.Store(vc)
	return nil
}

// get returns the cache, or nil before open.
func (c *sharedCache) get() *cache.Cache[*verified] { return c.live.Load() }

// Destruct closes the cache, writing its pending last-used times, once the
// last config using it is gone.
func (c *sharedCache) Destruct() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if vc := c.live.Swap(nil); vc != nil {
		c.store.caches.remove(vc)
		vc.Close()
		liveCaches.Delete(vc)
	}
	return nil
}

// noticesFromSet is the keystore as a cache sees it. The cache hears of
// changes through its store's cacheSet, which forgets it when it closes;
// registering with the keystore itself would keep every closed cache.
type noticesFromSet struct{ *storage.Keystore }

// OnChange implements cache.Source: a no-op, see noticesFromSet.
func (noticesFromSet) OnChange(func(storage.Invalidation)) {}

// Interface guards
var (
	_ caddy.Destructor = (*sharedStore)(nil)
	_ caddy.Destructor = (*sharedCache)(nil)
	_ invalidator      = (*cacheSet)(nil)
	_ invalidator      = (*cache.Cache[*verified])(nil)
	_ cache.Source     = noticesFromSet{}
)
