package bolt

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/keygate/keygate/storage"
)

func init() {
	caddy.RegisterModule(Storage{})
}

// Storage is the apikeys.storage.file module: the embedded file store,
// for a single gateway node.
type Storage struct {
	// Path is the store's file. Default: keygate/keys.db in Caddy's data
	// directory. Placeholders such as {env.X} are replaced.
	Path string `json:"path,omitempty"`

	path string // with placeholders replaced
}

// CaddyModule returns the Caddy module information.
func (Storage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "apikeys.storage.file",
		New: func() caddy.Module { return new(Storage) },
	}
}

// DefaultPath is where the file store lives when no path is given:
// keygate/keys.db in Caddy's data directory.
func DefaultPath() string {
	return filepath.Join(caddy.AppDataDir(), "keygate", "keys.db")
}

// Provision replaces placeholders in the path.
func (s *Storage) Provision(caddy.Context) error {
	s.path = DefaultPath()
	if s.Path != "" {
		s.path = caddy.NewReplacer().ReplaceKnown(s.Path, "")
	}
	return nil
}

// Validate refuses a path that placeholders left empty.
func (s *Storage) Validate() error {
	if s.path == "" {
		return fmt.Errorf("storage file: the path %q is empty once placeholders are replaced", s.Path)
	}
	return nil
}

// Identity implements storage.Opener: the absolute path of the file.
func (s *Storage) Identity() string {
	p, err := filepath.Abs(s.path)
	if err != nil {
		p = s.path
	}
	return "file:" + p
}

// Open implements storage.Opener.
func (s *Storage) Open(context.Context) (storage.Backend, error) {
	return Open(s.path)
}

// String describes the store for logs.
func (s *Storage) String() string { return "file " + s.path }

// UnmarshalCaddyfile sets up the module from the Caddyfile:
//
//	storage file <path>
func (s *Storage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume the module name
	switch args := d.RemainingArgs(); len(args) {
	case 0:
		return d.Err("storage file: expected a path")
	case 1:
		s.Path = args[0]
	default:
		return d.ArgErr()
	}
	if d.NextBlock(d.Nesting()) {
		return d.Err("storage file: takes no block")
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
