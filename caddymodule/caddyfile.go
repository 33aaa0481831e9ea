package caddymodule

import (
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// The Caddyfile syntax of Keygate's handlers (the global option's is in
// caddyfile_app.go, the error-line helpers in caddyfile_lines.go). An error
// points at the line at fault: settings checked only once the block is
// read (a conflicting scope rule, a typo of a keyword) through
// settingError and settingLines. What a setting means, and which values
// are refused, is decided once, by the handler's compile, for JSON and
// Caddyfile configurations alike.

// parseAuthDirective sets up the handler from the Caddyfile:
//
//	apikey_auth [<matcher>] {
//		header <name>
//		realm <realm>
//		scope <methods> <path> <scope|public|authenticated>
//		default <deny|authenticated|public|scope>
//		require <scope>...
//		allow_encoded_slash
//		cost_header <header>
//		charge_on any|2xx
//		rate_limit_headers on|off
//	}
//
// A scope line may end in "cost <n>", what a request on the route takes
// from a key's credits (default 1). The matcher goes in the handler's "match", not on its route (see
// guard.go), so the route has none.
func parseAuthDirective(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	if !h.Next() {
		return nil, h.ArgErr()
	}
	matcherSet, err := h.ExtractMatcherSet()
	if err != nil {
		return nil, err
	}
	a := new(AuthHandler)
	if err := a.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	if matcherSet != nil {
		a.MatchRaw = caddyhttp.RawMatcherSets{matcherSet}
	}
	return h.NewRoute(nil, a), nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens.
func (h *AuthHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.Errf("apikey_auth: unexpected argument %q; options go in a block", d.Val())
	}
	lines := settingLines{}
	for d.NextBlock(0) {
		if ok, err := h.Authenticator.unmarshalOption(d, lines); ok {
			if err != nil {
				return err
			}
			continue
		}
		if ok, err := h.ScopeTable.unmarshalOption(d, lines); ok {
			if err != nil {
				return err
			}
			continue
		}
		switch d.Val() {
		case "cost_header", "charge_on", "rate_limit_headers":
			if err := h.UsageSettings.unmarshalOption(d, lines); err != nil {
				return err
			}
		default:
			return unknownOption(d, "apikey_auth", d.Val(), "header", "realm", "scope", "default", "require", "allow_encoded_slash",
				"cost_header", "charge_on", "rate_limit_headers")
		}
	}
	// Check what only the whole block shows (conflicting routes, require
	// mixed with a table), and every value, as Provision will.
	probe := *h
	if err := probe.compile(); err != nil {
		return lines.errorf(d, "apikey_auth", err)
	}
	return nil
}

// unmarshalOption reads an option of the scope table (scope, default,
// require, allow_encoded_slash) if the dispenser is at one, and reports
// whether it was. apikey_auth and apikey_verify share these lines.
func (t *ScopeTable) unmarshalOption(d *caddyfile.Dispenser, lines settingLines) (bool, error) {
	switch d.Val() {
	case "scope":
		lines.add(d, "scope", len(t.Routes))
		args := d.RemainingArgs()
		var cost int64
		if len(args) == 5 {
			if args[3] != "cost" {
				return true, d.Errf("scope: unexpected %q after the scope; did you mean cost <n>?", args[3])
			}
			n, err := strconv.ParseInt(args[4], 10, 64)
			if err != nil || n < 1 {
				return true, d.Errf("scope: cost %q is not a positive integer", args[4])
			}
			cost, args = n, args[:3]
		}
		if len(args) != 3 {
			return true, d.Errf("scope: expected <methods> <path> <scope|public|authenticated> [cost <n>], got %d arguments", len(args))
		}
		rule := RouteRule{Path: args[1], Scope: args[2], Cost: cost}
		if args[0] != "*" {
			rule.Methods = strings.Split(args[0], ",")
		}
		t.Routes = append(t.Routes, rule)
	case "default":
		if t.Default != "" {
			return true, d.Err("default: already set")
		}
		if !d.NextArg() {
			return true, d.ArgErr()
		}
		lines.add(d, "default", 0)
		t.Default = d.Val()
		if d.NextArg() {
			return true, d.ArgErr()
		}
	case "allow_encoded_slash":
		if d.NextArg() {
			return true, d.ArgErr()
		}
		t.AllowEncodedSlash = true
	case "require":
		if len(t.Require) == 0 {
			lines.add(d, "require", 0) // "cannot be combined" points here
		}
		if !d.NextArg() {
			t.Require = append(t.Require, AccessAuthenticated)
			return true, nil
		}
		for ok := true; ok; ok = d.NextArg() {
			lines.add(d, "require", len(t.Require))
			t.Require = append(t.Require, d.Val())
		}
	default:
		return false, nil
	}
	return true, nil
}

// unmarshalOption reads one of the usage settings' lines:
//
//	cost_header <header>
//	charge_on any|2xx
//	rate_limit_headers on|off
func (u *UsageSettings) unmarshalOption(d *caddyfile.Dispenser, lines settingLines) error {
	opt := d.Val()
	if !d.NextArg() {
		return d.ArgErr()
	}
	lines.add(d, opt, 0)
	val := d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	switch opt {
	case "cost_header":
		u.CostHeader = val
	case "charge_on":
		u.ChargeOn = val
	case "rate_limit_headers":
		switch val {
		case "on", "off":
			on := val == "on"
			u.RateLimitHeaders = &on
		default:
			return d.Errf("rate_limit_headers: %q: want on or off", val)
		}
	}
	return nil
}

// parseAdminDirective sets up the handler from the Caddyfile:
//
//	apikey_admin [<matcher>] {
//		header <name>
//		realm <realm>
//	}
func parseAdminDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	a := new(AdminHandler)
	err := a.UnmarshalCaddyfile(h.Dispenser)
	return a, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens.
func (h *AdminHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	lines := settingLines{}
	for d.NextBlock(0) {
		ok, err := h.Auth.unmarshalOption(d, lines)
		if err != nil {
			return err
		}
		if !ok {
			return unknownOption(d, "apikey_admin", d.Val(), "header", "realm")
		}
	}
	probe := h.Auth.Authenticator
	if err := probe.compile(); err != nil {
		return lines.errorf(d, "apikey_admin", err)
	}
	return nil
}

// unmarshalOption reads an option of the authenticator (header, realm) if
// the dispenser is at one, and reports whether it was.
func (a *Authenticator) unmarshalOption(d *caddyfile.Dispenser, lines settingLines) (bool, error) {
	switch d.Val() {
	case "header":
		if !d.NextArg() {
			return true, d.ArgErr()
		}
		lines.add(d, "header", len(a.Headers))
		a.Headers = append(a.Headers, d.Val())
	case "realm":
		if !d.NextArg() {
			return true, d.ArgErr()
		}
		lines.add(d, "realm", 0)
		a.Realm = d.Val()
	default:
		return false, nil
	}
	if d.NextArg() {
		return true, d.ArgErr()
	}
	return true, nil
}

// parseGuardDirective sets up the guard from the Caddyfile:
//
//	apikey_guard [<matcher>] {
//		allow_encoded_slash
//	}
func parseGuardDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	g := new(GuardHandler)
	err := g.UnmarshalCaddyfile(h.Dispenser)
	return g, err
}

// UnmarshalCaddyfile sets up the guard from Caddyfile tokens.
func (g *GuardHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.Errf("apikey_guard: unexpected argument %q; options go in a block", d.Val())
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "allow_encoded_slash":
			if d.NextArg() {
				return d.ArgErr()
			}
			g.AllowEncodedSlash = true
		default:
			return unknownOption(d, "apikey_guard", d.Val(), "allow_encoded_slash")
		}
	}
	return nil
}

// parseVerifyDirective sets up the handler from the Caddyfile:
//
//	apikey_verify [<matcher>] {
//		mode caddy|traefik|nginx|envoy
//		method_header <name>
//		uri_header <name>
//		path_prefix <prefix>           # envoy mode
//		identity_headers {
//			account <name>
//			key <name>
//			token <name>
//			scopes <name>
//			account_name <name>
//			team <name>
//		}
//		rate_limit_headers on|off
//		header, realm, scope, default, require, allow_encoded_slash   # as apikey_auth
//	}
//
// A scope line may end in "cost <n>", as for apikey_auth; cost_header and
// charge_on 2xx are refused (a check is charged before the upstream runs).
func parseVerifyDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	v := new(VerifyHandler)
	err := v.UnmarshalCaddyfile(h.Dispenser)
	return v, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens.
func (v *VerifyHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume directive name
	if d.NextArg() {
		return d.Errf("apikey_verify: unexpected argument %q; options go in a block", d.Val())
	}
	lines := settingLines{}
	for d.NextBlock(0) {
		if ok, err := v.Authenticator.unmarshalOption(d, lines); ok {
			if err != nil {
				return err
			}
			continue
		}
		if ok, err := v.ScopeTable.unmarshalOption(d, lines); ok {
			if err != nil {
				return err
			}
			continue
		}
		opt := d.Val()
		switch opt {
		case "mode", "method_header", "uri_header", "path_prefix":
			if !d.NextArg() {
				return d.ArgErr()
			}
			lines.add(d, opt, 0)
			field := map[string]*string{"mode": &v.Mode, "method_header": &v.MethodHeader, "uri_header": &v.URIHeader, "path_prefix": &v.PathPrefix}[opt]
			if *field != "" {
				return d.Errf("%s: already set", opt)
			}
			*field = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		case "identity_headers":
			if err := v.IdentityHeaders.unmarshalCaddyfile(d, lines); err != nil {
				return err
			}
		case "rate_limit_headers", "cost_header", "charge_on":
			// cost_header and charge_on 2xx are refused by compile, with the line.
			if err := v.UsageSettings.unmarshalOption(d, lines); err != nil {
				return err
			}
		default:
			return unknownOption(d, "apikey_verify", opt, "header", "realm", "scope", "default", "require", "allow_encoded_slash",
				"mode", "method_header", "uri_header", "path_prefix", "identity_headers", "rate_limit_headers")
		}
	}
	probe := *v
	if err := probe.compile(); err != nil {
		return lines.errorf(d, "apikey_verify", err)
	}
	return nil
}

// unmarshalCaddyfile reads the identity_headers block.
func (ih *IdentityHeaders) unmarshalCaddyfile(d *caddyfile.Dispenser, lines settingLines) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	fields := ih.fields()
	options := make([]string, numIdentity)
	for i, o := range identityOptions {
		options[i] = o.option
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		i := slices.Index(options, opt)
		if i < 0 {
			return unknownOption(d, "identity_headers", opt, options...)
		}
		if !d.NextArg() {
			return d.ArgErr()
		}
		lines.add(d, "identity_headers", i)
		*fields[i] = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	return nil
}
