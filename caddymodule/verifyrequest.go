package caddymodule

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// The rule of this file: apikey_verify decides on the original request,
// the one the client sent the proxy, never on the check request the
// proxy sends: its method and URI are the ones the proxy states (original),
// and its client is the one the proxy names, if Caddy trusts that proxy
// to say (originalClientIP).

// original sets orig to the request the proxy asks about: the check
// request with the original method and URL, sharing its headers (so its
// credential) and context; or returns the 400 when the check request does
// not say which request it is, which must never read as "/". The caller
// owns orig, so that it can live on the stack.
func (v *VerifyHandler) original(orig, r *http.Request) *denial {
	var method, target string
	if v.mode == ModeEnvoy {
		method, target = r.Method, r.RequestURI
		if !strings.HasPrefix(target, v.PathPrefix) {
			return v.refusals.badPrefix
		}
		target = target[len(v.PathPrefix):]
	} else {
		var bad *denial
		if method, bad = oneHeader(r.Header, v.methodHeader, v.refusals.missingMethod, v.refusals.repeatedMethod); bad != nil {
			return bad
		}
		if target, bad = oneHeader(r.Header, v.uriHeader, v.refusals.missingURI, v.refusals.repeatedURI); bad != nil {
			return bad
		}
	}
	u, ok := requestTarget(target)
	if !ok {
		return v.refusals.badURI
	}
	*orig = *r
	orig.Method, orig.URL, orig.RequestURI = method, u, target
	return nil
}

// oneHeader returns the only value of the header name, or the refusal:
// missing when it is absent or empty, repeated when it has several values
// (a client's beside the proxy's: which would the proxy's upstream read?).
func oneHeader(h http.Header, name string, missing, repeated *denial) (string, *denial) {
	switch vals := h[name]; {
	case len(vals) == 0 || len(vals) == 1 && vals[0] == "":
		return "", missing
	case len(vals) > 1:
		return "", repeated
	default:
		return vals[0], nil
	}
}

// requestTarget parses an original request target as net/http parses a
// request line: origin form (/path?query), or absolute form (http://host/
// path), of which only the path and query count. "*" and other forms are
// refused.
func requestTarget(target string) (*url.URL, bool) {
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, false
	}
	if u.Scheme != "" || u.Host != "" {
		if (u.Scheme != "http" && u.Scheme != "https") || u.Opaque != "" {
			return nil, false
		}
		u.Scheme, u.Host, u.User = "", "", nil
		if u.Path == "" {
			u.Path, u.RawPath = "/", ""
		}
	}
	if !strings.HasPrefix(u.Path, "/") {
		return nil, false
	}
	return u, true
}

// clientIPUnknown refuses a key with an allowlist on a check request that
// does not say reliably which client the original request came from.
// Caddy's client_ip is then the address of whoever sent the check
// request, the proxy itself, against which an allowlist must never be
// checked (a key allowed from 10.0.0.0/8 would pass from anywhere through
// a proxy at 10.0.0.5). It is ip_not_allowed, the refusal a client of a
// key with an allowlist knows; the message says why.
var clientIPUnknown = newDenial(resultIPNotAllowed, http.StatusForbidden, "ip_not_allowed",
	"the API key may be used only from some addresses, and the client's address is not known: "+
		"the check request did not come from a trusted proxy that names it", "", nil)

// originalClientIP is apikey_verify's clientAddr: the address of the
// client whose request a check request describes. That is Caddy's
// client_ip only when the check request came from a trusted proxy (the
// server's trusted_proxies) and that proxy named the client in one of the
// server's client_ip_headers. Otherwise Caddy's client_ip is the address
// of the peer that sent the check request: the proxy itself, or, when the
// peer is not trusted, anyone, whose X-Forwarded-For Caddy has ignored.
func originalClientIP(r *http.Request) (netip.Addr, *denial) {
	if r.TLS != nil && !r.TLS.HandshakeComplete {
		return netip.Addr{}, ipNotAllowed // 0-RTT: the peer's address is not verified yet
	}
	ctx := r.Context()
	if trusted, _ := caddyhttp.GetVar(ctx, caddyhttp.TrustedProxyVarKey).(bool); !trusted {
		return netip.Addr{}, clientIPUnknown
	}
	srv, _ := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	s, _ := caddyhttp.GetVar(ctx, caddyhttp.ClientIPVarKey).(string)
	addr, err := netip.ParseAddr(s)
	if err != nil || srv == nil || !namesAddr(r.Header, srv.ClientIPHeaders, addr) {
		return netip.Addr{}, clientIPUnknown
	}
	return addr, nil
}

// namesAddr reports whether one of the headers names addr, read as Caddy
// reads client_ip_headers (comma-separated addresses, each perhaps with a
// port or a zone). When none does, Caddy's client_ip is its fallback, the
// trusted proxy's own address.
func namesAddr(h http.Header, headers []string, addr netip.Addr) bool {
	for _, name := range headers {
		for _, v := range h.Values(name) {
			for part := range strings.SplitSeq(v, ",") {
				host, _, err := net.SplitHostPort(part)
				if err != nil {
					host = part
				}
				host, _, _ = strings.Cut(strings.TrimSpace(host), "%")
				if a, err := netip.ParseAddr(host); err == nil && a == addr {
					return true
				}
			}
		}
	}
	return false
}
