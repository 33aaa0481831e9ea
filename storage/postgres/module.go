package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/keygate/keygate/storage"
)

func init() {
	caddy.RegisterModule(Storage{})
}

// Storage is the apikeys.storage.postgres module: a PostgreSQL store that
// several gateway nodes share.
type Storage struct {
	// DSN is the connection string. Use a runtime placeholder such as
	// {env.DATABASE_URL} so the secret stays out of the JSON.
	DSN string `json:"dsn,omitempty"`
	// Schema holds Keygate's tables, so several deployments can share a
	// database. Default: keygate.
	Schema string `json:"schema,omitempty"`

	dsn, schema string // with placeholders replaced, defaulted
}

// CaddyModule returns the Caddy module information.
func (Storage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "apikeys.storage.postgres",
		New: func() caddy.Module { return new(Storage) },
	}
}

// Provision replaces placeholders, without touching the network, so that
// `caddy validate` works without a database.
func (s *Storage) Provision(caddy.Context) error {
	repl := caddy.NewReplacer()
	s.dsn = repl.ReplaceKnown(s.DSN, "")
	s.schema = s.Schema
	if s.schema == "" {
		s.schema = DefaultSchema
	}
	return nil
}

// Validate checks the connection string and schema.
func (s *Storage) Validate() error {
	if s.DSN == "" {
		return errors.New("storage postgres: a connection string is required")
	}
	if s.dsn == "" {
		// An empty DSN would make pgx fall back to libpq defaults and PG*
		// variables: possibly another database.
		return fmt.Errorf("storage postgres: the connection string %q is empty once placeholders are replaced (is the variable set?)", s.DSN)
	}
	if err := ValidateSchema(s.schema); err != nil {
		return fmt.Errorf("storage postgres: %w", err)
	}
	return nil
}

// Identity implements storage.Opener: the connection string and schema.
func (s *Storage) Identity() string { return "postgres:" + s.dsn + "\x00" + s.schema }

// Open implements storage.Opener: it connects and applies migrations.
func (s *Storage) Open(ctx context.Context) (storage.Backend, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	b, err := Open(ctx, s.dsn, s.schema)
	if err != nil {
		return nil, fmt.Errorf("opening key store: %w", err)
	}
	return b, nil
}

// String describes the store for logs, without the connection string.
func (s *Storage) String() string { return "postgres schema " + s.schema }

// UnmarshalCaddyfile sets up the module from the Caddyfile:
//
//	storage postgres <dsn> {
//		schema <name>
//	}
func (s *Storage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume the module name
	if !d.NextArg() {
		return d.Err("storage postgres: expected a connection string, e.g. {env.DATABASE_URL}")
	}
	s.DSN = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(d.Nesting()) {
		switch d.Val() {
		case "schema":
			if !d.NextArg() {
				return d.ArgErr()
			}
			s.Schema = d.Val()
			if err := ValidateSchema(s.Schema); err != nil {
				return d.Errf("storage postgres: %v", err)
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("storage postgres: unknown option %q", d.Val())
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner     = (*Storage)(nil)
	_ caddy.Validator       = (*Storage)(nil)
	_ caddyfile.Unmarshaler = (*Storage)(nil)
	_ storage.Opener        = (*Storage)(nil)
)
