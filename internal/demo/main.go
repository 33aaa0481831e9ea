// Command demo runs Caddyfile.example on a throwaway PostgreSQL, so the
// quickstart needs nothing but Go and the PostgreSQL server package:
//
//	go run ./internal/demo
//
// It starts PostgreSQL from the binaries on the machine (as the postgres
// user when run as root) in a temporary directory, sets DATABASE_URL and
// runs Caddy in this process. When Caddy exits, the database goes with it.
// Once the embedded file store lands, Caddyfile.example will run on it
// and this command will no longer be needed.
package main

import (
	"fmt"
	"os"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/keygate/keygate"
	"github.com/keygate/keygate/internal/pgtest"
)

func main() {
	if os.Getenv("DATABASE_URL") == "" {
		pg, err := pgtest.Start()
		if err != nil {
			fmt.Fprintln(os.Stderr, "demo: starting a throwaway PostgreSQL:", err)
			fmt.Fprintln(os.Stderr, "demo: install the postgresql package, or set DATABASE_URL to a database of yours")
			os.Exit(1)
		}
		// pgtest's watchdog stops the server when this process exits,
		// however Caddy ends it.
		os.Setenv("DATABASE_URL", pg.DSN())
		fmt.Fprintln(os.Stderr, "demo: throwaway PostgreSQL at", pg.DSN())
	}
	args := []string{os.Args[0], "run", "--config", "Caddyfile.example", "--adapter", "caddyfile"}
	os.Args = append(args, os.Args[1:]...)
	caddycmd.Main()
}
