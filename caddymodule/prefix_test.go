package caddymodule

import (
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// TestKeyPrefixCaddyfile: key_prefix takes the prefix new tokens get, then
// the earlier prefixes still accepted; each must be a valid prefix.
func TestKeyPrefixCaddyfile(t *testing.T) {
	var a App
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("apikeys {\n key_prefix live sk old_1\n}")); err != nil {
		t.Fatal(err)
	}
	if a.KeyPrefix != "live" || !slices.Equal(a.PreviousKeyPrefixes, []string{"sk", "old_1"}) {
		t.Errorf("key_prefix live sk old_1: %q %q", a.KeyPrefix, a.PreviousKeyPrefixes)
	}
	err := new(App).UnmarshalCaddyfile(caddyfile.NewTestDispenser("apikeys {\n key_prefix live SK\n}"))
	if err == nil || !strings.Contains(err.Error(), "invalid character") {
		t.Errorf("an invalid previous prefix: %v", err)
	}
}
