package caddymodule

import (
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestAdminLegacyAuthJSON: apikey_admin's "auth" was once a whole
// apikey_auth configuration; configurations holding its other fields
// still load (as Caddy decodes them, refusing unknown fields), and
// allow_encoded_slash still applies.
func TestAdminLegacyAuthJSON(t *testing.T) {
	raw := []byte(`{"auth": {"headers": ["X-Admin-Key"], "realm": "Admin", "allow_encoded_slash": true,
		"routes": [{"methods": ["GET"], "path": "/x", "scope": "x"}], "default": "deny", "require": ["x"],
		"match": [{"path": ["/x/*"]}]}}`)
	var h AdminHandler
	if err := caddy.StrictUnmarshalJSON(raw, &h); err != nil {
		t.Fatalf("old shape refused: %v", err)
	}
	if err := h.Auth.compile(); err != nil {
		t.Fatal(err)
	}
	if !h.Auth.AllowEncodedSlash || h.Auth.Realm != "Admin" || len(h.Auth.sources) != 1 || h.Auth.sources[0] != "X-Admin-Key" {
		t.Fatalf("decoded %+v", h.Auth)
	}
	if len(h.Auth.LegacyRoutes) == 0 || len(h.Auth.LegacyMatch) == 0 {
		t.Fatalf("legacy fields not kept for the warning: %+v", h.Auth)
	}
	if err := caddy.StrictUnmarshalJSON([]byte(`{"auth": {"bogus": 1}}`), new(AdminHandler)); err == nil {
		t.Fatal("an unknown field is accepted")
	}
}
