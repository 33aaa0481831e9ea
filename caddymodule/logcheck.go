package caddymodule

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/caddyserver/caddy/v2/modules/logging"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// logWarning is the message of the warning about logs that would print
// API keys.
const logWarning = "API keys would be written to logs in clear text"

// caddyRedacts are the request headers Caddy's logs redact by themselves,
// unless a server's logs are told to log credentials.
var caddyRedacts = []string{"Authorization", "Proxy-Authorization", "Cookie"}

// warnUnredactedLogs warns, with one line per server, about each server
// that runs Keygate's handlers and whose access or error logs would print
// a header they read keys from.
//
// Caddy copies every request for its logs before any handler runs, and
// redacts only Authorization, Proxy-Authorization and Cookie; its access
// logs and its error log (which records the request of a handler error,
// such as a failed upstream's 502) print every other header. Only a log
// whose encoder is a filter with a rule for the header keeps keys out, and
// a handler can do nothing about it.
func (a *App) warnUnredactedLogs() {
	appModule, err := a.ctx.AppIfConfigured("http")
	if err != nil {
		return
	}
	servers := appModule.(*caddyhttp.App).Servers
	sample := a.tokens.Generate()
	for _, name := range slices.Sorted(maps.Keys(servers)) {
		srv := servers[name]
		headers := credentialHeaders(srv)
		if len(headers) == 0 {
			continue
		}
		var leaked, loggers, hints []string
		for _, logger := range serverLoggers(srv) {
			probe := &headersProbe{names: headers, sample: sample}
			// Every log that takes this logger's entries encodes the
			// probe, as it would a request, without writing anything.
			a.ctx.Logger(loggerName(logger + probeSuffix)).With(zap.Object("request", requestProbe{probe}))
			if len(probe.leaked) == 0 {
				continue
			}
			loggers = append(loggers, logger)
			leaked = appendNew(leaked, probe.leaked...)
			hints = appendNew(hints, probe.hints...)
		}
		if len(leaked) == 0 {
			continue
		}
		fields := []zap.Field{
			zap.String("server", name),
			zap.Strings("headers", leaked),
			zap.Strings("loggers", loggers),
			zap.String("fix", logFix(leaked, loggers)),
		}
		if len(hints) > 0 {
			fields = append(fields, zap.String("hint", strings.Join(hints, "; ")))
		}
		a.logger.Warn(logWarning, fields...)
	}
}

// logFix says what to add to which logs, in Caddyfile terms.
func logFix(headers, loggers []string) string {
	rules := make([]string, len(headers))
	for i, h := range headers {
		rules[i] = "request>headers>" + h + " replace REDACTED"
	}
	var where []string
	if slices.ContainsFunc(loggers, func(l string) bool { return strings.HasPrefix(l, "http.log.access") }) {
		where = append(where, "the site's log block")
	}
	if slices.ContainsFunc(loggers, func(l string) bool { return strings.HasPrefix(l, "http.log.error") }) {
		where = append(where, `"log default" (the error log prints the request of a failed upstream)`)
	}
	return fmt.Sprintf("add to %s: format filter { %s }", strings.Join(where, " and to "), strings.Join(rules, "; "))
}

// credentialHeaders returns the headers Keygate's handlers on srv read
// keys from, as Caddy logs them (canonical), less those Caddy redacts.
func credentialHeaders(srv *caddyhttp.Server) []string {
	var headers []string
	var walk func(routes caddyhttp.RouteList)
	walk = func(routes caddyhttp.RouteList) {
		for _, route := range routes {
			for _, h := range route.Handlers {
				switch h := h.(type) {
				case *AuthHandler:
					headers = appendNew(headers, h.sources...)
				case *VerifyHandler:
					headers = appendNew(headers, h.sources...)
				case *AdminHandler:
					headers = appendNew(headers, h.Auth.sources...)
				case *caddyhttp.Subroute:
					walk(h.Routes)
					if h.Errors != nil {
						walk(h.Errors.Routes)
					}
				}
			}
		}
	}
	walk(srv.Routes)
	if srv.Errors != nil {
		walk(srv.Errors.Routes)
	}
	for _, name := range slices.Sorted(maps.Keys(srv.NamedRoutes)) {
		walk(caddyhttp.RouteList{*srv.NamedRoutes[name]})
	}
	if srv.Logs != nil && srv.Logs.ShouldLogCredentials {
		return headers
	}
	return slices.DeleteFunc(headers, func(h string) bool { return slices.Contains(caddyRedacts, h) })
}

// serverLoggers returns the names of the loggers srv writes requests to:
// its error log always, its access logs when it has any, each under the
// logger names its hosts map to (log_name overrides are not seen).
func serverLoggers(srv *caddyhttp.Server) []string {
	if srv.Logs == nil {
		return []string{"http.log.error"}
	}
	var access, errs []string
	add := func(name string, accessToo bool) {
		suffix := ""
		if name != "" {
			suffix = "." + name
		}
		errs = appendNew(errs, "http.log.error"+suffix)
		if accessToo {
			access = appendNew(access, "http.log.access"+suffix)
		}
	}
	for _, host := range slices.Sorted(maps.Keys(srv.Logs.LoggerNames)) {
		for _, name := range srv.Logs.LoggerNames[host] {
			add(name, true)
		}
	}
	add(srv.Logs.DefaultLoggerName, !srv.Logs.SkipUnmappedHosts)
	return append(access, errs...)
}

// loggerName stands for a logger name where Caddy wants a module, to get
// a logger made of the logs that take that name's entries.
type loggerName string

// probeSuffix names a logger under the one probed. Caddy picks a module's
// logs generously: a log whose include list names a logger under the
// module's ID takes the module, so probing http.log.access itself would
// see the logs of http.log.access.log0 too. A logger under the probed one
// is taken by exactly the logs that take the probed one's entries.
const probeSuffix = ".keygate_log_check"

// CaddyModule implements caddy.Module.
func (n loggerName) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: caddy.ModuleID(n)}
}

// requestProbe stands for the "request" field of Caddy's HTTP logs.
type requestProbe struct{ headers *headersProbe }

// MarshalLogObject implements zapcore.ObjectMarshaler.
func (p requestProbe) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	return enc.AddObject("headers", p.headers)
}

// headersProbe stands for the request's headers. A log's encoder reaches
// it unless it drops the request or its headers; a filter encoder then
// passes itself, with the rules of the fields under request>headers>.
type headersProbe struct {
	names  []string
	sample string // a token the filters are tried on

	leaked []string // headers this log would print
	hints  []string // rules that do not match for want of case
}

// MarshalLogObject implements zapcore.ObjectMarshaler.
func (p *headersProbe) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	fe, isFilter := enc.(logging.FilterEncoder)
	for _, name := range p.names {
		path := "request>headers>" + name
		if isFilter {
			if rule, ok := fe.Fields[path]; ok && redacts(rule, name, p.sample) {
				continue
			}
			for key := range fe.Fields {
				if key != path && strings.EqualFold(key, path) {
					p.hints = appendNew(p.hints, fmt.Sprintf("filter rules are case-sensitive: Caddy logs the header as %s, so the rule for %s never applies",
						name, strings.TrimPrefix(key, "request>headers>")))
				}
			}
		}
		p.leaked = appendNew(p.leaked, name)
	}
	return nil
}

// redacts reports whether a filter rule keeps a token out of a header's
// log entry: it deletes the field or leaves no trace of the token in it.
func redacts(rule logging.LogFieldFilter, header, token string) bool {
	out := rule.Filter(zap.Array(header, caddyhttp.LoggableStringArray{token}))
	switch out.Type {
	case zapcore.SkipType:
		return true
	case zapcore.StringType:
		return !strings.Contains(out.String, token)
	case zapcore.ArrayMarshalerType:
		values, ok := out.Interface.(caddyhttp.LoggableStringArray)
		return ok && !slices.ContainsFunc(values, func(v string) bool { return strings.Contains(v, token) })
	}
	return false
}

// appendNew appends the values not in list yet.
func appendNew(list []string, values ...string) []string {
	for _, v := range values {
		if !slices.Contains(list, v) {
			list = append(list, v)
		}
	}
	return list
}
