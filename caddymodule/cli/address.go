package cli

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/keygate/keygate/admin/client"
	"github.com/keygate/keygate/caddymodule"
)

// adminClient returns a client of the key-management API on the Caddy
// admin endpoint listening at addr (a network address as in Caddy's admin
// "listen"). It dials and sets Origin as caddycmd.AdminAPIRequest does,
// which cannot be used itself: it turns error answers into text.
func adminClient(addr string) (*client.Client, error) {
	na, err := caddy.ParseNetworkAddress(addr)
	if err != nil || na.PortRangeSize() > 1 {
		return nil, usagef("invalid admin address %q: want host:port or unix//path", addr)
	}
	origin := "http://" + na.JoinHostPort(0)
	network, dialAddr := na.Network, na.JoinHostPort(0)
	var opts []client.Option
	switch {
	case na.IsUnixNetwork():
		// Any host will do over a socket; Caddy accepts 127.0.0.1.
		origin = "http://127.0.0.1"
		// A socket's address may end in |mode, its file permissions.
		dialAddr, _, _ = strings.Cut(dialAddr, "|")
	case na.IsFdNetwork():
		return nil, usagef("the admin endpoint %s is a file descriptor of the Caddy process: give an address that can be dialed with --address", addr)
	default:
		opts = append(opts, client.WithHeader("Origin", origin))
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, dialAddr)
		},
	}}
	api, err := client.New(origin+caddymodule.AdminAPIPrefix, append(opts, client.WithHTTPClient(hc))...)
	if err != nil {
		return nil, fmt.Errorf("admin endpoint %s: %w", addr, err)
	}
	return api, nil
}
