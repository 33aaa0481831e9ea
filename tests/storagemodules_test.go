package tests

import (
	"strings"
	"testing"
)

// TestListModulesShowsStorage: the backends are Caddy guest modules, so
// `caddy list-modules` names them beside the app and the handlers.
func TestListModulesShowsStorage(t *testing.T) {
	out, err := runCaddy(t, nil, "list-modules")
	if err != nil {
		t.Fatalf("caddy list-modules: %v\n%s", err, out)
	}
	for _, id := range []string{"apikeys", "apikeys.storage.file", "apikeys.storage.postgres", "http.handlers.apikey_auth"} {
		found := false
		for _, line := range strings.Split(out, "\n") {
			if strings.TrimSpace(line) == id {
				found = true
			}
		}
		if !found {
			t.Errorf("caddy list-modules does not list %s:\n%s", id, out)
		}
	}
}
