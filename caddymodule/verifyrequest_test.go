package caddymodule

import (
	"context"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// TestOriginalClientIP: apikey_verify checks an allowlist against the
// client a trusted proxy names, never against the proxy's own address (a
// trusted proxy that names nobody) nor against what an untrusted peer
// claims, as Caddy has set client_ip and trusted_proxy for the check
// request.
func TestOriginalClientIP(t *testing.T) {
	srv := &caddyhttp.Server{ClientIPHeaders: []string{"X-Forwarded-For", "X-Real-Ip"}}
	for _, tt := range []struct {
		name     string
		trusted  bool
		clientIP string // as Caddy derived it
		headers  []string
		want     string // "" for unknown
	}{
		{"trusted proxy names the client", true, "203.0.113.7", []string{"X-Forwarded-For", "203.0.113.7"}, "203.0.113.7"},
		{"with a port and spaces", true, "203.0.113.7", []string{"X-Forwarded-For", " 203.0.113.7:5555 , 10.0.0.9"}, "203.0.113.7"},
		{"in the second header", true, "2001:db8::1", []string{"X-Real-Ip", "[2001:db8::1%eth0]:80"}, "2001:db8::1"},
		{"a client on the proxy's host", true, "10.0.0.5", []string{"X-Forwarded-For", "10.0.0.5"}, "10.0.0.5"},
		{"trusted proxy names nobody", true, "10.0.0.5", nil, ""},
		{"trusted proxy sends garbage", true, "10.0.0.5", []string{"X-Forwarded-For", "unknown"}, ""},
		{"a header Caddy does not read", true, "10.0.0.5", []string{"Forwarded", "for=10.0.0.5"}, ""},
		{"untrusted peer", false, "10.0.0.5", nil, ""},
		{"untrusted peer spoofs", false, "198.51.100.2", []string{"X-Forwarded-For", "198.51.100.2"}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/verify", nil)
			for i := 0; i+1 < len(tt.headers); i += 2 {
				r.Header.Add(tt.headers[i], tt.headers[i+1])
			}
			ctx := context.WithValue(r.Context(), caddyhttp.ServerCtxKey, srv)
			ctx = context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{
				caddyhttp.TrustedProxyVarKey: tt.trusted, caddyhttp.ClientIPVarKey: tt.clientIP,
			})
			addr, refused := originalClientIP(r.WithContext(ctx))
			switch {
			case tt.want == "" && refused != clientIPUnknown:
				t.Errorf("got %v %v, want the client unknown", addr, refused)
			case tt.want != "" && (refused != nil || addr != netip.MustParseAddr(tt.want)):
				t.Errorf("got %v %v, want %s", addr, refused, tt.want)
			}
		})
	}
}
