// Package caddymodule holds Keygate's Caddy modules: the apikeys app, the
// apikey_auth and apikey_admin HTTP handlers, the admin.api.apikeys admin
// route and their Caddyfile syntax.
package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"go.uber.org/zap"

	"github.com/keygate/keygate/admin"
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
// shared by every Keygate handler of a config and kept across config
// reloads as long as the storage and cache settings do not change.
type App struct {
	// Storage is where keys live: a module of the apikeys.storage
	// namespace, such as {"module": "postgres", "dsn": "{env.DATABASE_URL}"}
	// or {"module": "file", "path": "/var/lib/keys.db"}. Default: the
	// file store in Caddy's data directory.
	Storage json.RawMessage `json:"storage,omitempty" caddy:"namespace=apikeys.storage inline_key=module"`
	// KeyPrefix starts every token: 1–16 of [a-z0-9_]; "-" is added.
	// Default: sk.
	KeyPrefix string `json:"key_prefix,omitempty"`
	// Cache sizes the in-memory cache of verified tokens.
	Cache *CacheConfig `json:"cache,omitempty"`

	tokens  token.Format
	backend *backend
	poolKey string
	logger  *zap.Logger
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
	a.logger = ctx.Logger()
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
	a.tokens = tokens
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
	settings := backendSettings{
		tokens: tokens,
		opener: opener,
		cache: cache.Config{
			MaxEntries:  a.Cache.MaxEntries,
			TTL:         time.Duration(a.Cache.TTL),
			NegativeTTL: time.Duration(a.Cache.NegativeTTL),
		},
	}
	a.poolKey = settings.key()
	value, _, err := backends.LoadOrNew(a.poolKey, func() (caddy.Destructor, error) {
		return &backend{settings: settings}, nil
	})
	if err != nil {
		return err
	}
	a.backend = value.(*backend)
	return nil
}

// Start connects to the store and applies its migrations, unless the
// shared backend is already open from a previous config.
func (a *App) Start() error {
	return a.backend.open(a.logger)
}

// Stop implements caddy.App. The backend outlives configs; Cleanup
// releases this config's hold on it.
func (a *App) Stop() error { return nil }

// Cleanup releases the app's hold on the shared backend, which closes when
// no config uses it any more.
func (a *App) Cleanup() error {
	if a.poolKey == "" {
		return nil
	}
	_, err := backends.Delete(a.poolKey)
	return err
}

// Tokens returns the token format of this app.
func (a *App) Tokens() token.Format { return a.tokens }

// verifier returns the cache, or nil before Start.
func (a *App) verifier() *cache.Cache[*verified] {
	b := a.backend.get()
	if b == nil {
		return nil
	}
	return b.cache
}

// api returns the admin API, or nil before Start.
func (a *App) api() *admin.Handler {
	b := a.backend.get()
	if b == nil {
		return nil
	}
	return b.api
}

// backends holds the open stores, keyed by their settings, so a config
// reload reuses connections and cache instead of reopening them.
var backends = caddy.NewUsagePool()

// backendSettings identify a backend.
type backendSettings struct {
	tokens token.Format
	opener storage.Opener
	cache  cache.Config
}

func (s backendSettings) key() string {
	return s.tokens.Prefix() + "\x00" + s.opener.Identity() + "\x00" +
		strconv.FormatInt(s.cache.MaxEntries, 10) + "\x00" + s.cache.TTL.String() + "\x00" + s.cache.NegativeTTL.String()
}

// backend is an open store with its cache and admin API, shared across
// configs.
type backend struct {
	settings backendSettings

	mu   sync.Mutex
	live atomic.Pointer[openBackend]
}

// openBackend is what an open backend serves with.
type openBackend struct {
	ks    *storage.Keystore
	cache *cache.Cache[*verified]
	api   *admin.Handler

	stopListener context.CancelFunc
	listening    sync.WaitGroup
}

func (b *backend) open(logger *zap.Logger) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.live.Load() != nil {
		return nil
	}
	be, err := b.settings.opener.Open(context.Background())
	if err != nil {
		return err
	}
	ks := storage.New(be)
	cfg := b.settings.cache
	cfg.ObserveLookup = observeLookup
	c, err := cache.New(ks, decorateCredential, cfg)
	if err != nil {
		_ = ks.Close()
		return err
	}
	liveCaches.Store(c, struct{}{})
	ob := &openBackend{ks: ks, cache: c, api: admin.New(ks, b.settings.tokens, logger.Named("admin"))}
	listenCtx, stop := context.WithCancel(context.Background())
	ob.stopListener = stop
	if l := ks.Listener(); l != nil {
		// Other nodes share the store: follow their changes.
		listen(listenCtx, &ob.listening, l, c, logger)
	}
	b.live.Store(ob)
	logger.Info("key store open", zap.Stringer("storage", describe(b.settings.opener)))
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

// listen starts the change listener of a PostgreSQL store and waits, at
// most a few seconds, until it is connected.
func listen(ctx context.Context, listening *sync.WaitGroup, l storage.Listener, c *cache.Cache[*verified], logger *zap.Logger) {
	connected := make(chan struct{})
	hooks := listenHooks(c, logger.Named("listener"))
	onConnect := hooks.Connected
	var once sync.Once
	hooks.Connected = func() {
		onConnect()
		once.Do(func() { close(connected) })
	}
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

// listenHooks apply other nodes' change notices to cache.
func listenHooks(cache *cache.Cache[*verified], logger *zap.Logger) storage.ListenHooks {
	return storage.ListenHooks{
		Notice: func(inv storage.Invalidation) {
			metrics.notices.Inc()
			cache.Invalidate(inv)
		},
		Connected: func() {
			metrics.listenerConnected.Set(1)
			// Notices sent while away are lost: forget everything cached.
			cache.InvalidateAll()
			logger.Info("listening for key changes")
		},
		Disconnected: func(err error) {
			metrics.listenerConnected.Set(0)
			logger.Warn("change listener disconnected; reconnecting", zap.Error(err))
		},
	}
}

// get returns the open backend, or nil before open.
func (b *backend) get() *openBackend { return b.live.Load() }

// Destruct closes the cache and the store.
func (b *backend) Destruct() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ob := b.live.Swap(nil); ob != nil {
		ob.stopListener()
		ob.listening.Wait()
		ob.cache.Close() // writes pending last-used times
		liveCaches.Delete(ob.cache)
		_ = ob.ks.Close()
	}
	return nil
}

// Interface guards
var (
	_ caddy.App             = (*App)(nil)
	_ caddy.Provisioner     = (*App)(nil)
	_ caddy.CleanerUpper    = (*App)(nil)
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddy.Destructor      = (*backend)(nil)
)
