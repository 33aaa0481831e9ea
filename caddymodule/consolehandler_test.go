package caddymodule

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestConsoleDirective(t *testing.T) {
	var h ConsoleHandler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("apikey_console {\n session_ttl 2h\n}")); err != nil || time.Duration(h.SessionTTL) != 2*time.Hour {
		t.Fatalf("session_ttl 2h: %v %v", err, h.SessionTTL)
	}
	for src, want := range map[string]string{
		"apikey_console extra":                    "wrong argument count",
		"apikey_console {\n session_ttl\n}":       "wrong argument count",
		"apikey_console {\n session_ttl -1s\n}":   "positive duration",
		"apikey_console {\n session_ttl soon\n}":  "positive duration",
		"apikey_console {\n sesion_ttl 1h\n}":     "session_ttl",
		"apikey_console {\n session_ttl 1h 2h\n}": "wrong argument count",
	} {
		var h ConsoleHandler
		err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(src))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", src, err, want)
		}
	}
}
