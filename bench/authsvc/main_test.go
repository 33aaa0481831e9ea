package main

import "testing"

// TestCovers checks the peer's scope rule against Keygate's: "*" holds
// everything, a scope holds itself and what it prefixes at a ':'.
func TestCovers(t *testing.T) {
	for _, tt := range []struct {
		scopes []string
		need   string
		want   bool
	}{
		{[]string{"apps:read"}, "apps:read", true},
		{[]string{"apps"}, "apps:read", true},
		{[]string{"*"}, "secrets", true},
		{[]string{"app"}, "apps:read", false},
		{[]string{"apps:read"}, "apps", false},
		{[]string{"apps:read"}, "apps:run", false},
		{nil, "apps:read", false},
	} {
		if got := covers(tt.scopes, tt.need); got != tt.want {
			t.Errorf("covers(%q, %q) = %v, want %v", tt.scopes, tt.need, got, tt.want)
		}
	}
}
