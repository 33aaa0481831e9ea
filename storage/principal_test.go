package storage

import (
	"errors"
	"net/http"
	"testing"
)

// guardStatus is the HTTP status a refusal answers, or 0 for none, and the
// scope it names.
func guardStatus(t *testing.T, err error) (int, string) {
	t.Helper()
	if err == nil {
		return 0, ""
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("guard error %v is not a rule's Error", err)
	}
	switch {
	case errors.Is(e, ErrNotFound):
		return http.StatusNotFound, e.Scope
	case errors.Is(e, ErrForbidden):
		return http.StatusForbidden, e.Scope
	}
	t.Fatalf("guard error %v of kind %v", err, e.Kind)
	return 0, ""
}

// canActOnKey is the rule of writableKey on a key already read.
func canActOnKey(p Principal, k *Key) error {
	if !p.sees(k.AccountID) {
		return notFound("", "no key %q", k.ID)
	}
	return p.canActOnKey(k)
}

// canActOnAccount is the rule of writableAccount on an account already read.
func canActOnAccount(p Principal, a *Account, ref string) error {
	if !p.sees(a.ID) {
		return notFound("", "account %q not found", ref)
	}
	return p.canActOnAccount(a)
}

// TestZeroPrincipalIsNotTrusted: a principal nobody filled in acts with
// nothing.
func TestZeroPrincipalIsNotTrusted(t *testing.T) {
	var p Principal
	if p.Trusted || p.seesAllAccounts() || p.grant([]string{"apps"}) == nil || p.covers("key x", []string{"apps"}) == nil {
		t.Fatalf("the zero principal is trusted: %+v", p)
	}
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
		key    Key
		status int
		scope  string
	}{
		{"narrower sibling", narrow, Key{ID: "key_s", AccountID: "acc_1", Scopes: []string{"apps:read"}, EffectiveScopes: []string{"apps:read"}}, 0, ""},
		{"sibling holding nothing", narrow, Key{ID: "key_s", AccountID: "acc_1", Scopes: []string{}, EffectiveScopes: []string{}}, 0, ""},
		{"wider sibling", narrow, Key{ID: "key_s", AccountID: "acc_1", Scopes: []string{"apps"}, EffectiveScopes: []string{"apps"}}, http.StatusForbidden, "apps"},
		{"inheriting sibling", narrow, Key{ID: "key_s", AccountID: "acc_1", EffectiveScopes: []string{"api_keys", "apps"}}, http.StatusForbidden, "apps"},
		{"declared beyond its account", narrow, Key{ID: "key_s", AccountID: "acc_1", Scopes: []string{"secrets"}, EffectiveScopes: []string{}}, http.StatusForbidden, "secrets"},
		{"other account unseen", narrow, Key{ID: "key_o", AccountID: "acc_2", Scopes: []string{}}, http.StatusNotFound, ""},
		{"other account seen and covered", manager, Key{ID: "key_o", AccountID: "acc_2", EffectiveScopes: []string{"apps:run"}}, 0, ""},
		{"other account seen, not covered", manager, Key{ID: "key_o", AccountID: "acc_2", EffectiveScopes: []string{"*"}}, http.StatusForbidden, "*"},
		{"own key declared beyond its account", narrow, Key{ID: "key_me", AccountID: "acc_1", Scopes: []string{"api_keys", "secrets"}, EffectiveScopes: []string{"api_keys"}}, 0, ""},
		{"trusted", Trusted, Key{ID: "key_r", AccountID: "acc_9", EffectiveScopes: []string{"*"}}, 0, ""},
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
	own := Account{ID: "acc_1", Scopes: []string{"accounts", "apps"}}
	tests := []struct {
		name    string
		p       Principal
		account Account
		status  int
		scope   string
	}{
		{"own account, narrower caller", updater, own, http.StatusForbidden, "accounts"},
		{"own account, caller holding it all", inheriting, own, 0, ""},
		{"other account unseen", updater, Account{ID: "acc_2", Scopes: []string{"apps:read"}}, http.StatusNotFound, ""},
		{"other account covered", inheriting, Account{ID: "acc_2", Scopes: []string{"apps:read"}}, 0, ""},
		{"root", inheriting, Account{ID: "acc_root", Scopes: []string{"*"}}, http.StatusForbidden, "*"},
		{"disabled, wider", inheriting, Account{ID: "acc_3", Scopes: []string{"apps", "secrets"}, Disabled: true}, http.StatusForbidden, "secrets"},
		{"trusted", Trusted, Account{ID: "acc_root", Scopes: []string{"*"}}, 0, ""},
	}
	for _, tt := range tests {
		status, s := guardStatus(t, canActOnAccount(tt.p, &tt.account, tt.account.ID))
		if status != tt.status || s != tt.scope {
			t.Errorf("%s: %d naming %q, want %d naming %q", tt.name, status, s, tt.status, tt.scope)
		}
	}
}
