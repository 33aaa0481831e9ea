package caddymodule

import (
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/keygate/keygate/storage/token"
)

// The Caddyfile syntax of the apikeys global option; the handlers' is in
// caddyfile.go.

// parseGlobalOption sets up the apikeys app from the Caddyfile:
//
//	apikeys {
//		storage <module> <args...>   # storage postgres <dsn> { schema <name> } | storage file <path>
//		key_prefix <prefix> [<previous prefix>...]
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
			if err := a.unmarshalStorage(d); err != nil {
				return err
			}
		case "key_prefix":
			// The first prefix is the one new tokens get; the others,
			// earlier ones, are still accepted.
			prefixes := d.RemainingArgs()
			if len(prefixes) == 0 {
				return d.ArgErr()
			}
			for _, p := range prefixes {
				if err := token.ValidatePrefix(p); err != nil {
					return d.Errf("key_prefix: %v", err)
				}
			}
			a.KeyPrefix, a.PreviousKeyPrefixes = prefixes[0], prefixes[1:]
		case "cache":
			if err := a.unmarshalCache(d); err != nil {
				return err
			}
		default:
			return unknownOption(d, "apikeys", d.Val(), "storage", "key_prefix", "cache")
		}
	}
	return nil
}

// unmarshalStorage reads `storage <module> …`: the module, of the
// apikeys.storage namespace, parses the rest of its line and block.
func (a *App) unmarshalStorage(d *caddyfile.Dispenser) error {
	if a.Storage != nil {
		return d.Err("storage: already set")
	}
	if !d.NextArg() {
		return d.Err("storage: expected a type: postgres <dsn> or file <path>")
	}
	name := d.Val()
	if _, err := caddy.GetModule("apikeys.storage." + name); err != nil {
		return d.Errf("storage: unknown type %q (want postgres or file, or a module of apikeys.storage)", name)
	}
	unm, err := caddyfile.UnmarshalModule(d, "apikeys.storage."+name)
	if err != nil {
		return err
	}
	a.Storage = caddyconfig.JSONModuleObject(unm, "module", name, nil)
	return nil
}

// unmarshalCache reads the cache block.
func (a *App) unmarshalCache(d *caddyfile.Dispenser) error {
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
			return unknownOption(d, "cache", opt, "max_entries", "ttl", "negative_ttl")
		}
	}
	return nil
}
