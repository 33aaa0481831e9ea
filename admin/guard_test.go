package admin

import (
	"errors"
	"net/http"
	"testing"

	"github.com/keygate/keygate/storage"
)

// guardStatus is the status a guard's refusal answers, or 0 for none.
func guardStatus(t *testing.T, err error) (int, string) {
	t.Helper()
	if err == nil {
		return 0, ""
	}
	var ae *apiError
	if !errors.As(err, &ae) {
		t.Fatalf("guard error %v is not an API error", err)
	}
	s, _ := ae.extra["scope"].(string)
	return ae.status, s
}

// TestCanActOnKey spells out the rule for keys: visible, and the key's
// grant (its own scopes, else its account's) covered; the caller's own key
// always is.
func TestCanActOnKey(t *testing.T) {
	narrow := Principal{Actor: "key_me", AccountID: "acc_1", Scopes: []string{"api_keys", "apps:read"}}
	manager := Principal{Actor: "key_mgr", AccountID: "acc_1", Scopes: []string{"accounts:read", "api_keys", "apps"}}
	tests := []struct {
		name   string
		p      Principal
		key    storage.Key
		status int
		scope  string
	}{
		{"narrower sibling", narrow, storage.Key{ID: "key_s", AccountID: "acc_1", Scopes: []string{"apps:read"}, EffectiveScopes: []string{"apps:read"}}, 0, ""},
		{"sibling holding nothing", narrow, storage.Key{ID: "key_s", AccountID: "acc_1", Scopes: []string{}, EffectiveScopes: []string{}}, 0, ""},
		{"wider sibling", narrow, storage.Key{ID: "key_s", AccountID: "acc_1", Scopes: []string{"apps"}, EffectiveScopes: []string{"apps"}}, http.StatusForbidden, "apps"},
		{"inheriting sibling", narrow, storage.Key{ID: "key_s", AccountID: "acc_1", EffectiveScopes: []string{"api_keys", "apps"}}, http.StatusForbidden, "apps"},
		{"declared beyond its account", narrow, storage.Key{ID: "key_s", AccountID: "acc_1", Scopes: []string{"secrets"}, EffectiveScopes: []string{}}, http.StatusForbidden, "secrets"},
		{"other account unseen", narrow, storage.Key{ID: "key_o", AccountID: "acc_2", Scopes: []string{}}, http.StatusNotFound, ""},
		{"other account seen and covered", manager, storage.Key{ID: "key_o", AccountID: "acc_2", EffectiveScopes: []string{"apps:run"}}, 0, ""},
		{"other account seen, not covered", manager, storage.Key{ID: "key_o", AccountID: "acc_2", EffectiveScopes: []string{"*"}}, http.StatusForbidden, "*"},
		{"own key declared beyond its account", narrow, storage.Key{ID: "key_me", AccountID: "acc_1", Scopes: []string{"api_keys", "secrets"}, EffectiveScopes: []string{"api_keys"}}, 0, ""},
		{"trusted", Trusted, storage.Key{ID: "key_r", AccountID: "acc_9", EffectiveScopes: []string{"*"}}, 0, ""},
	}
	for _, tt := range tests {
		status, s := guardStatus(t, canActOnKey(tt.p, &tt.key))
		if status != tt.status || s != tt.scope {
			t.Errorf("%s: %d naming %q, want %d naming %q", tt.name, status, s, tt.status, tt.scope)
		}
	}
}

// TestCanActOnAccount spells out the rule for accounts: visible, and all
// of its scopes covered, its own account included.
func TestCanActOnAccount(t *testing.T) {
	updater := Principal{Actor: "key_u", AccountID: "acc_1", Scopes: []string{"accounts:update", "apps"}}
	inheriting := Principal{Actor: "key_i", AccountID: "acc_1", Scopes: []string{"accounts", "apps"}}
	own := storage.Account{ID: "acc_1", Scopes: []string{"accounts", "apps"}}
	tests := []struct {
		name    string
		p       Principal
		account storage.Account
		status  int
		scope   string
	}{
		{"own account, narrower caller", updater, own, http.StatusForbidden, "accounts"},
		{"own account, caller holding it all", inheriting, own, 0, ""},
		{"other account unseen", updater, storage.Account{ID: "acc_2", Scopes: []string{"apps:read"}}, http.StatusNotFound, ""},
		{"other account covered", inheriting, storage.Account{ID: "acc_2", Scopes: []string{"apps:read"}}, 0, ""},
		{"root", inheriting, storage.Account{ID: "acc_root", Scopes: []string{"*"}}, http.StatusForbidden, "*"},
		{"disabled, wider", inheriting, storage.Account{ID: "acc_3", Scopes: []string{"apps", "secrets"}, Disabled: true}, http.StatusForbidden, "secrets"},
		{"trusted", Trusted, storage.Account{ID: "acc_root", Scopes: []string{"*"}}, 0, ""},
	}
	for _, tt := range tests {
		status, s := guardStatus(t, canActOnAccount(tt.p, &tt.account, tt.account.ID))
		if status != tt.status || s != tt.scope {
			t.Errorf("%s: %d naming %q, want %d naming %q", tt.name, status, s, tt.status, tt.scope)
		}
	}
}
