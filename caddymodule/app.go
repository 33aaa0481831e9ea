// Package caddymodule holds Keygate's Caddy modules: the apikeys app, the
// apikey_auth and apikey_admin HTTP handlers, the admin.api.apikeys admin
// route and their Caddyfile syntax.
package caddymodule

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"go.uber.org/zap"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/storage"
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
	// Storage is where keys live.
	Storage *StorageConfig `json:"storage,omitempty"`
	// KeyPrefix starts every token: 1–16 of [a-z0-9_]; "-" is added.
	// Default: sk.
	KeyPrefix string `json:"key_prefix,omitempty"`
	// Cache sizes the in-memory cache of verified tokens.
	Cache *CacheConfig `json:"cache,omitempty"`

	tokens   storage.TokenFormat
	storeID  storeID
	store    *sharedStore
	storeKey string
	cache    *sharedCache
	cacheKey string
	adminAPI *atomic.Pointer[admin.Handler] // set by Start, read by requests
	ctx      caddy.Context
	logger   *zap.Logger
}

// StorageConfig selects the key store.
type StorageConfig struct {
	// Type is "postgres" or "file" (the default).
	Type string `json:"type"`
	// Path is the file store's file. Default: keygate/keys.db in Caddy's
	// data directory.
	Path string `json:"path,omitempty"`
	// DSN is the PostgreSQL connection string. Use a runtime placeholder
	// such as {env.DATABASE_URL} so the secret stays out of the JSON.
	DSN string `json:"dsn,omitempty"`
	// Schema is the PostgreSQL schema holding Keygate's tables, so several
	// deployments can share a database. Default: keygate.
	Schema string `json:"schema,omitempty"`
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
		a.KeyPrefix = storage.DefaultKeyPrefix
	}
	tokens, err := storage.NewTokenFormat(a.KeyPrefix)
	if err != nil {
		return fmt.Errorf("key_prefix: %w", err)
	}
	a.tokens = tokens
	if a.Storage == nil {
		a.Storage = &StorageConfig{Type: "file"}
	}
	if a.Storage.Type == "file" && a.Storage.Path == "" {
		a.Storage.Path = DefaultFilePath()
	}
	if a.Cache == nil {
		a.Cache = new(CacheConfig)
	}
	repl := caddy.NewReplacer()
	a.storeID = storeID{
		kind:   a.Storage.Type,
		path:   repl.ReplaceKnown(a.Storage.Path, ""),
		dsn:    repl.ReplaceKnown(a.Storage.DSN, ""),
		schema: a.Storage.Schema,
	}
	if a.storeID.schema == "" {
		a.storeID.schema = storage.DefaultSchema
	}
	a.storeKey = a.storeID.key()
	value, _, err := stores.LoadOrNew(a.storeKey, func() (caddy.Destructor, error) {
		return &sharedStore{id: a.storeID}, nil
	})
	if err != nil {
		return err
	}
	a.store = value.(*sharedStore)

	cache := storage.CacheConfig{
		MaxEntries:  cmp.Or(a.Cache.MaxEntries, storage.DefaultMaxEntries),
		TTL:         cmp.Or(time.Duration(a.Cache.TTL), storage.DefaultTTL),
		NegativeTTL: cmp.Or(time.Duration(a.Cache.NegativeTTL), storage.DefaultNegativeTTL),
	}
	a.cacheKey = cacheKey(a.storeID, cache)
	value, _, err = caches.LoadOrNew(a.cacheKey, func() (caddy.Destructor, error) {
		return &sharedCache{store: a.store, cfg: cache}, nil
	})
	if err != nil {
		return err
	}
	a.cache = value.(*sharedCache)
	return nil
}

// Validate checks the settings Provision did not.
func (a *App) Validate() error {
	switch a.Storage.Type {
	case "postgres":
		if a.Storage.DSN == "" {
			return errors.New("storage postgres: a connection string is required")
		}
		if a.storeID.dsn == "" {
			// An empty DSN would make pgx fall back to libpq defaults and
			// PG* variables: possibly another database.
			return fmt.Errorf("storage postgres: the connection string %q is empty once placeholders are replaced (is the variable set?)", a.Storage.DSN)
		}
		if err := storage.ValidateSchema(a.storeID.schema); err != nil {
			return fmt.Errorf("storage postgres: %w", err)
		}
	case "file":
		if a.storeID.path == "" {
			return fmt.Errorf("storage file: the path %q is empty once placeholders are replaced", a.Storage.Path)
		}
	default:
		return fmt.Errorf("storage: unknown type %q (want postgres or file)", a.Storage.Type)
	}
	if a.Cache.MaxEntries < 0 || a.Cache.TTL < 0 || a.Cache.NegativeTTL < 0 {
		return errors.New("cache: max_entries, ttl and negative_ttl must not be negative")
	}
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
	a.adminAPI.Store(admin.New(a.store.get(), a.tokens, a.logger.Named("admin")))
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
func (a *App) Tokens() storage.TokenFormat { return a.tokens }

// verifier returns the cache, or nil before Start.
func (a *App) verifier() *storage.Cache { return a.cache.get() }

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

// listen starts the change listener of a PostgreSQL store and waits, at
// most a few seconds, until it is connected.
func listen(ctx context.Context, listening *sync.WaitGroup, pg *storage.Postgres, cache invalidator, logger *zap.Logger) {
	connected := make(chan struct{})
	hooks := listenHooks(cache, logger.Named("listener"))
	onConnect := hooks.Connected
	var once sync.Once
	hooks.Connected = func() {
		onConnect()
		once.Do(func() { close(connected) })
	}
	// Until the listener is connected, other nodes' notices are missed.
	cache.NoticesLost()
	listening.Go(func() { pg.Listen(ctx, hooks) })
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
func DefaultFilePath() string {
	return filepath.Join(caddy.AppDataDir(), "keygate", "keys.db")
}

// listenHooks apply other nodes' change notices to cache.
func listenHooks(cache invalidator, logger *zap.Logger) storage.ListenHooks {
	return storage.ListenHooks{
		Notice: func(inv storage.Invalidation) {
			metrics.notices.Inc()
			cache.Invalidate(inv)
		},
		Connected: func() {
			metrics.listenerConnected.Set(1)
			// Notices sent while away are lost: forget everything cached.
			cache.NoticesResumed()
			logger.Info("listening for key changes")
		},
		Disconnected: func(err error) {
			metrics.listenerConnected.Set(0)
			// Until it is back, ask the store before serving a token.
			cache.NoticesLost()
			logger.Warn("change listener disconnected; reconnecting", zap.Error(err))
		},
	}
}

// parseGlobalOption sets up the apikeys app from the Caddyfile:
//
//	apikeys {
//		storage postgres <dsn> {
//			schema <name>
//		}
//		key_prefix <prefix>
//		cache {
//			max_entries <n>
//			ttl <duration>
//			negative_ttl <duration>
//		}
//	}
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	app := new(App)
	if existing != nil {
		return nil, d.Err("apikeys: the global option may appear only once")
	}
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "apikeys", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile sets up the app from Caddyfile tokens.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume option name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "storage":
			if a.Storage != nil {
				return d.Err("storage: already set")
			}
			a.Storage = new(StorageConfig)
			if !d.NextArg() {
				return d.Err("storage: expected a type: postgres <dsn> or file <path>")
			}
			a.Storage.Type = d.Val()
			switch a.Storage.Type {
			case "postgres":
				if !d.NextArg() {
					return d.Err("storage postgres: expected a connection string, e.g. {env.DATABASE_URL}")
				}
				a.Storage.DSN = d.Val()
				if d.NextArg() {
					return d.ArgErr()
				}
				for d.NextBlock(1) {
					switch d.Val() {
					case "schema":
						if !d.NextArg() {
							return d.ArgErr()
						}
						a.Storage.Schema = d.Val()
						if err := storage.ValidateSchema(a.Storage.Schema); err != nil {
							return d.Errf("storage postgres: %v", err)
						}
						if d.NextArg() {
							return d.ArgErr()
						}
					default:
						return d.Errf("storage postgres: unknown option %q", d.Val())
					}
				}
			case "file":
				if !d.NextArg() {
					return d.Err("storage file: expected a path")
				}
				a.Storage.Path = d.Val()
				if d.NextArg() {
					return d.ArgErr()
				}
			default:
				return d.Errf("storage: unknown type %q (want postgres or file)", a.Storage.Type)
			}
		case "key_prefix":
			if !d.NextArg() {
				return d.ArgErr()
			}
			a.KeyPrefix = d.Val()
			if err := storage.ValidateKeyPrefix(a.KeyPrefix); err != nil {
				return d.Errf("key_prefix: %v", err)
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		case "cache":
			if a.Cache != nil {
				return d.Err("cache: already set")
			}
			a.Cache = new(CacheConfig)
			if d.NextArg() {
				return d.ArgErr()
			}
			for d.NextBlock(1) {
				opt := d.Val()
				if !d.NextArg() {
					return d.ArgErr()
				}
				val := d.Val()
				if d.NextArg() {
					return d.ArgErr()
				}
				switch opt {
				case "max_entries":
					n, err := strconv.ParseInt(val, 10, 64)
					if err != nil || n < 1 {
						return d.Errf("cache max_entries: %q is not a positive integer", val)
					}
					a.Cache.MaxEntries = n
				case "ttl", "negative_ttl":
					dur, err := caddy.ParseDuration(val)
					if err != nil || dur <= 0 {
						return d.Errf("cache %s: %q is not a positive duration", opt, val)
					}
					if opt == "ttl" {
						a.Cache.TTL = caddy.Duration(dur)
					} else {
						a.Cache.NegativeTTL = caddy.Duration(dur)
					}
				default:
					return d.Errf("cache: unknown option %q", opt)
				}
			}
		default:
			return d.Errf("apikeys: unknown option %q", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.App             = (*App)(nil)
	_ caddy.Provisioner     = (*App)(nil)
	_ caddy.Validator       = (*App)(nil)
	_ caddy.CleanerUpper    = (*App)(nil)
	_ caddyfile.Unmarshaler = (*App)(nil)
)
