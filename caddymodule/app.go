// Package caddymodule holds Keygate's Caddy modules: the apikeys app, the
// apikey_auth and apikey_admin HTTP handlers, the admin.api.apikeys admin
// route and their Caddyfile syntax.
package caddymodule

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"go.uber.org/zap"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/limiter"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/bolt"
	"github.com/keygate/keygate/storage/cache"
	"github.com/keygate/keygate/storage/token"

	// The storage modules Keygate ships.
	_ "github.com/keygate/keygate/storage/postgres"
)

func init() {
	caddy.RegisterModule(App{})
	httpcaddyfile.RegisterGlobalOption("apikeys", parseGlobalOption)
}

// App is the apikeys app: the key store and the cache in front of it,
// shared by every Keygate handler of a config. The store is kept across
// config reloads as long as the storage settings do not change, the cache
// as long as its settings do not change either.
type App struct {
	// Storage is where keys live: a module of the apikeys.storage
	// namespace, such as {"module": "postgres", "dsn": "{env.DATABASE_URL}"}
	// or {"module": "file", "path": "/var/lib/keys.db"}. Default: the
	// file store in Caddy's data directory.
	Storage json.RawMessage `json:"storage,omitempty" caddy:"namespace=apikeys.storage inline_key=module"`
	// KeyPrefix starts every token: 1–16 of [a-z0-9_]; "-" is added.
	// Default: sk.
	KeyPrefix string `json:"key_prefix,omitempty"`
	// PreviousKeyPrefixes are prefixes that tokens issued before
	// KeyPrefix changed start with: they keep working (new tokens get
	// KeyPrefix). Without them, changing KeyPrefix makes every existing
	// token fail the format check (401), though the store still holds it.
	PreviousKeyPrefixes []string `json:"previous_key_prefixes,omitempty"`
	// Cache sizes the in-memory cache of verified tokens.
	Cache *CacheConfig `json:"cache,omitempty"`

	tokens   token.Format
	store    *sharedStore
	storeKey string
	cache    *sharedCache
	cacheKey string
	adminAPI *atomic.Pointer[admin.Handler] // set by Start, read by requests
	ctx      caddy.Context
	logger   *zap.Logger
}

// CacheConfig sizes the token cache.
type CacheConfig struct {
	// MaxEntries bounds the number of cached tokens. Default: 100000.
	MaxEntries int64 `json:"max_entries,omitempty"`
	// TTL bounds how long a token is trusted without asking the store;
	// it only matters when change notices are lost. Default: 5m.
	TTL caddy.Duration `json:"ttl,omitempty"`
	// NegativeTTL is how long an unknown well-formed token is remembered.
	// Default: 30s.
	NegativeTTL caddy.Duration `json:"negative_ttl,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "apikeys",
		New: func() caddy.Module { return new(App) },
	}
}

// Provision sets up the app without touching the network, so that
// `caddy validate` works without a database.
func (a *App) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	a.logger = ctx.Logger()
	a.adminAPI = new(atomic.Pointer[admin.Handler])
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	if a.KeyPrefix == "" {
		a.KeyPrefix = token.DefaultPrefix
	}
	tokens, err := token.NewFormat(a.KeyPrefix)
	if err != nil {
		return fmt.Errorf("key_prefix: %w", err)
	}
	if a.tokens, err = tokens.WithPrevious(a.PreviousKeyPrefixes...); err != nil {
		return fmt.Errorf("previous_key_prefixes: %w", err)
	}
	if a.Cache == nil {
		a.Cache = new(CacheConfig)
	}
	if a.Cache.MaxEntries < 0 || a.Cache.TTL < 0 || a.Cache.NegativeTTL < 0 {
		return errors.New("cache: max_entries, ttl and negative_ttl must not be negative")
	}
	if a.Storage == nil {
		a.Storage = json.RawMessage(`{"module": "file"}`)
	}
	mod, err := ctx.LoadModule(a, "Storage")
	if err != nil {
		return fmt.Errorf("loading the storage module: %w", err)
	}
	opener, ok := mod.(storage.Opener)
	if !ok {
		return fmt.Errorf("storage module %T does not open a storage.Backend", mod)
	}
	a.storeKey = opener.Identity()
	value, _, err := stores.LoadOrNew(a.storeKey, func() (caddy.Destructor, error) {
		return &sharedStore{opener: opener}, nil
	})
	if err != nil {
		return err
	}
	a.store = value.(*sharedStore)

	cfg := cache.Config{
		MaxEntries:  cmp.Or(a.Cache.MaxEntries, cache.DefaultMaxEntries),
		TTL:         cmp.Or(time.Duration(a.Cache.TTL), cache.DefaultTTL),
		NegativeTTL: cmp.Or(time.Duration(a.Cache.NegativeTTL), cache.DefaultNegativeTTL),
	}
	a.cacheKey = cacheKey(a.storeKey, cfg)
	value, _, err = caches.LoadOrNew(a.cacheKey, func() (caddy.Destructor, error) {
		return &sharedCache{store: a.store, cfg: cfg}, nil
	})
	if err != nil {
		return err
	}
	a.cache = value.(*sharedCache)
	return nil
}

// Start connects to the store and applies its migrations, unless the
// shared store is already open from a previous config, and creates the
// cache unless one with these settings exists already.
func (a *App) Start() error {
	if err := a.store.open(a.logger); err != nil {
		return err
	}
	if err := a.cache.open(); err != nil {
		return err
	}
	api := admin.New(a.store.get(), a.tokens, a.logger.Named("admin"))
	api.SetUsageReporter(storeUsage{a.store.get()})
	api.ReportListener(a.store.listener().status)
	a.adminAPI.Store(api)
	a.warnUnredactedLogs()
	return nil
}

// Stop implements caddy.App. The store and cache outlive configs; Cleanup
// releases this config's hold on them.
func (a *App) Stop() error { return nil }

// Cleanup releases the app's hold on the shared cache and store, which
// close when no config uses them any more: the cache first, as it writes
// its pending last-used times to the store.
func (a *App) Cleanup() error {
	var errs []error
	if a.cacheKey != "" {
		if _, err := caches.Delete(a.cacheKey); err != nil {
			errs = append(errs, err)
		}
	}
	if a.storeKey != "" {
		if _, err := stores.Delete(a.storeKey); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Tokens returns the token format of this app.
func (a *App) Tokens() token.Format { return a.tokens }

// limiter returns the store's limiter, or nil before Start.
func (a *App) limiter() *limiter.Limiter { return a.store.limiter() }

// verifier returns the cache, or nil before Start.
func (a *App) verifier() *cache.Cache[*verified] { return a.cache.get() }

// api returns the admin API, or nil before Start.
func (a *App) api() *admin.Handler {
	if a.adminAPI == nil {
		return nil
	}
	return a.adminAPI.Load()
}

// invalidator is what change notices apply to: a cache, or every cache of
// a store.
type invalidator interface {
	Invalidate(storage.Invalidation)
	InvalidateAll()
	NoticesLost()
	NoticesResumed()
}

// listen starts the change listener of a store shared by several nodes
// and waits, at most a few seconds, until it is connected.
func listen(ctx context.Context, listening *sync.WaitGroup, l storage.Listener, cache invalidator, state *listenerState, logger *zap.Logger) {
	connected := make(chan struct{})
	hooks := listenHooks(cache, state, logger.Named("listener"))
	onConnect := hooks.Connected
	var once sync.Once
	hooks.Connected = func() {
		onConnect()
		once.Do(func() { close(connected) })
	}
	// Until the listener is connected, other nodes' notices are missed.
	cache.NoticesLost()
	listening.Go(func() { l.Listen(ctx, hooks) })
	// Serve once change notices flow, so nothing cached can miss one; a
	// listener that cannot connect yet catches up when it does (it
	// forgets the whole cache then).
	select {
	case <-connected:
	case <-time.After(5 * time.Second):
		logger.Warn("change listener not connected yet; serving anyway")
	}
}

// DefaultFilePath is where the file store lives when no path is given:
// keygate/keys.db in Caddy's data directory.
func DefaultFilePath() string { return bolt.DefaultPath() }

// listenHooks apply other nodes' change notices to cache, and keep state.
func listenHooks(cache invalidator, state *listenerState, logger *zap.Logger) storage.ListenHooks {
	return storage.ListenHooks{
		Notice: func(inv storage.Invalidation) {
			metrics.notices.Inc()
			cache.Invalidate(inv)
		},
		Connected: func() {
			state.set(true)
			// Notices sent while away are lost: forget everything cached.
			cache.NoticesResumed()
			logger.Info("listening for key changes")
		},
		Disconnected: func(err error) {
			state.set(false)
			// Until it is back, ask the store before serving a token.
			cache.NoticesLost()
			logger.Warn("change listener disconnected; reconnecting", zap.Error(err))
		},
	}
}

// Interface guards
var (
	_ caddy.App             = (*App)(nil)
	_ caddy.Provisioner     = (*App)(nil)
	_ caddy.CleanerUpper    = (*App)(nil)
	_ caddyfile.Unmarshaler = (*App)(nil)
)
