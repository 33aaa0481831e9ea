// Command caddy is Caddy with its standard modules and Keygate.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// The standard Caddy modules.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// Keygate's modules.
	_ "github.com/keygate/keygate"
)

func main() {
	caddycmd.Main()
}
