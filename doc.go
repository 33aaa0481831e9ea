// Package keygate is API-key authentication for Caddy.
//
// Importing this package registers Keygate's Caddy modules, so
//
//	xcaddy build --with github.com/keygate/keygate=./
//
// builds a Caddy that includes them.
package keygate

import (
	// Register the apikeys app, the apikey_auth and apikey_admin handlers
	// and the admin.api.apikeys route.
	_ "github.com/keygate/keygate/caddymodule"
	// Register the `caddy apikey` commands.
	_ "github.com/keygate/keygate/caddymodule/cli"

	// Register the storage modules apikeys.storage.file and
	// apikeys.storage.postgres.
	_ "github.com/keygate/keygate/storage/bolt"
	_ "github.com/keygate/keygate/storage/postgres"
)
