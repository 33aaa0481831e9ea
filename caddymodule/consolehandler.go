package caddymodule

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/keygate/keygate/console"
	"github.com/keygate/keygate/storage"
)

func init() {
	caddy.RegisterModule(ConsoleHandler{})
	httpcaddyfile.RegisterHandlerDirective("apikey_console", parseConsoleDirective)
	httpcaddyfile.RegisterDirectiveOrder("apikey_console", httpcaddyfile.Before, "respond")
}

// ConsoleHandler serves the web console for keys (package console) on a
// site, usually under a path: handle_path /console/* { apikey_console }.
// People sign in with a key, or are signed in by a Caddy auth handler in
// front of it that sets {http.auth.user.id} (basic_auth, forward_auth
// with copy_headers and a vars rewrite), mapped to the account of that
// name. Sessions live in this process's memory.
type ConsoleHandler struct {
	// SessionTTL is how long a session lasts after sign-in. Default: 8h.
	SessionTTL caddy.Duration `json:"session_ttl,omitempty"`

	console *console.Console
}

// CaddyModule returns the Caddy module information.
func (ConsoleHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.apikey_console",
		New: func() caddy.Module { return new(ConsoleHandler) },
	}
}

// Provision finds the apikeys app and builds the console over its API
// and store.
func (h *ConsoleHandler) Provision(ctx caddy.Context) error {
	if h.SessionTTL < 0 {
		return fmt.Errorf("session_ttl %s: must be positive", time.Duration(h.SessionTTL))
	}
	appModule, err := ctx.App("apikeys")
	if err != nil {
		return fmt.Errorf("loading apikeys app: %w", err)
	}
	app := appModule.(*App)
	h.console = console.New(console.Config{
		API:        app.api,
		Keystore:   func() *storage.Keystore { return app.store.get() },
		Tokens:     app.Tokens(),
		SessionTTL: time.Duration(h.SessionTTL),
		Logger:     ctx.Logger(),
	})
	return nil
}

// ServeHTTP serves the console at the path handle_path stripped, for the
// identity an auth handler before it set, if any.
func (h *ConsoleHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	m := console.Mount{}
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		m.Base = strings.TrimSuffix(orig.URL.Path, r.URL.Path)
	}
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		if id, ok := repl.Get("http.auth.user.id"); ok {
			m.Identity, _ = id.(string)
		}
	}
	h.console.Serve(w, r, m)
	return nil
}

// parseConsoleDirective sets up the handler from the Caddyfile:
//
//	apikey_console [<matcher>] {
//		session_ttl <duration>
//	}
func parseConsoleDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	c := new(ConsoleHandler)
	err := c.UnmarshalCaddyfile(h.Dispenser)
	return c, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens.
func (h *ConsoleHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "session_ttl":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil || dur <= 0 {
				return d.Errf("session_ttl %q: must be a positive duration such as 8h", d.Val())
			}
			h.SessionTTL = caddy.Duration(dur)
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return unknownOption(d, "apikey_console", d.Val(), "session_ttl")
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*ConsoleHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*ConsoleHandler)(nil)
	_ caddyfile.Unmarshaler       = (*ConsoleHandler)(nil)
)
