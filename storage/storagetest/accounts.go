package storagetest

import (
	"slices"
	"testing"

	"github.com/keygate/keygate/storage"
)

func testAccounts(t *testing.T, ks *storage.Keystore) {
	a := newAccount(t, ks, "ci-bot", "runs:read", "apps", "apps")
	check(t, a.ID != "" && !a.CreatedAt.IsZero() && slices.Equal(a.Scopes, []string{"apps", "runs:read"}),
		"account not filled or scopes not normalized: %+v", a)
	_, err := ks.CreateAccount(ctx, admin, storage.NewAccount{Name: "ci-bot"})
	mustConflict(t, "duplicate name", err, "name", `account name "ci-bot" is taken`)
	_, err = ks.CreateAccount(ctx, admin, storage.NewAccount{Name: "acc_lookalike"})
	mustBe(t, "a name shaped like an id", err, storage.ErrInvalid)
	_, err = ks.CreateAccount(ctx, admin, storage.NewAccount{Name: "x", Kind: "robot"})
	mustBe(t, "unknown kind", err, storage.ErrInvalid)
	if u, err := ks.CreateAccount(ctx, admin, storage.NewAccount{Name: "person"}); err != nil || u.Kind != storage.KindUser {
		t.Fatalf("default kind: %+v, %v", u, err)
	}
	for _, ref := range []string{a.ID, "ci-bot"} {
		got, err := ks.Account(ctx, admin, ref)
		check(t, err == nil && got.ID == a.ID && slices.Equal(got.Scopes, a.Scopes), "Account(%q) = %+v, %v", ref, got, err)
	}
	_, err = ks.Account(ctx, admin, "nobody")
	mustBe(t, "unknown account", err, storage.ErrNotFound)

	disabled, team := true, "platform"
	got, err := ks.UpdateAccount(ctx, admin, a.ID, storage.AccountPatch{Disabled: &disabled, Team: &team})
	check(t, err == nil && got.Disabled && got.Team == "platform" && got.Name == "ci-bot", "UpdateAccount = %+v, %v", got, err)
	_, err = ks.UpdateAccount(ctx, admin, "acc_missing", storage.AccountPatch{Team: &team})
	mustBe(t, "update unknown", err, storage.ErrNotFound)
	other := newAccount(t, ks, "other")
	taken, renamed := "ci-bot", "renamed"
	_, err = ks.UpdateAccount(ctx, admin, other.ID, storage.AccountPatch{Name: &taken})
	mustConflict(t, "rename to a taken name", err, "name", `account name "ci-bot" is taken`)
	same := "other"
	got, err = ks.UpdateAccount(ctx, admin, other.ID, storage.AccountPatch{Name: &same})
	check(t, err == nil && got.Name == same, "rename to its own name: %+v, %v", got, err)
	got, err = ks.UpdateAccount(ctx, admin, other.ID, storage.AccountPatch{Name: &renamed})
	check(t, err == nil && got.Name == renamed, "rename: %+v, %v", got, err)
	got, err = ks.Account(ctx, admin, renamed)
	check(t, err == nil && got.ID == other.ID, "by new name: %+v, %v", got, err)
	_, err = ks.Account(ctx, admin, "other")
	mustBe(t, "by old name", err, storage.ErrNotFound)
	// The old name is free again.
	newAccount(t, ks, "other")
}

func testListAccountsPages(t *testing.T, ks *storage.Keystore) {
	var ids []string
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		ids = append(ids, newAccount(t, ks, name).ID)
	}
	var seen []string
	after := ""
	for pages := 0; ; pages++ {
		page, next, err := ks.Accounts(ctx, admin, storage.ListOptions{Limit: 2, After: after})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range page {
			seen = append(seen, a.ID)
		}
		if next == "" {
			check(t, pages == 2, "%d pages, want 3", pages+1)
			break
		}
		after = next
	}
	check(t, slices.Equal(seen, ids), "listed %v, want %v in creation order", seen, ids)
}

// member is a principal of account acc holding scopes, acting as key.
func member(acc *storage.Account, key string, scopes ...string) storage.Principal {
	return storage.Principal{Actor: key, AccountID: acc.ID, Scopes: scopes}
}

// testVisibility: a caller without accounts scopes sees and manages only
// its own account's keys; others are not found.
func testVisibility(t *testing.T, ks *storage.Keystore) {
	mine := newAccount(t, ks, "mine", "apps", "api_keys")
	theirs := newAccount(t, ks, "theirs", "apps")
	myKey, _ := newKey(t, ks, mine.ID, nil)
	theirKey, theirSecret := newKey(t, ks, theirs.ID, nil)
	p := member(mine, myKey.ID, "apps", "api_keys")

	_, err := ks.Key(ctx, p, theirKey.ID)
	mustBe(t, "another account's key", err, storage.ErrNotFound)
	mustBe(t, "deleting another account's key", ks.DeleteKey(ctx, p, theirKey.ID), storage.ErrNotFound)
	_, err = ks.RotateToken(ctx, p, theirKey.ID, theirKey.Tokens[0].ID, storage.Rotation{}, storage.NewSecret(Tokens.Generate()))
	mustBe(t, "rotating another account's token", err, storage.ErrNotFound)
	_, err = ks.CreateKey(ctx, p, storage.NewKey{Account: "theirs", Name: "x"}, storage.NewSecret(Tokens.Generate()))
	mustBe(t, "a key on another account", err, storage.ErrNotFound)
	keys, _, err := ks.Keys(ctx, p, storage.KeyFilter{})
	check(t, err == nil && len(keys) == 1 && keys[0].ID == myKey.ID, "own keys: %+v, %v", keys, err)
	accounts, _, err := ks.Accounts(ctx, p, storage.ListOptions{})
	check(t, err == nil && len(accounts) == 1 && accounts[0].ID == mine.ID, "own accounts: %+v, %v", accounts, err)

	// Without an account, a key lands on the caller's own.
	k, err := ks.CreateKey(ctx, p, storage.NewKey{Name: "own"}, storage.NewSecret(Tokens.Generate()))
	check(t, err == nil && k.AccountID == mine.ID, "default account: %+v, %v", k, err)
	_, err = ks.CreateKey(ctx, admin, storage.NewKey{Name: "nowhere"}, storage.NewSecret(Tokens.Generate()))
	mustBe(t, "trusted key without an account", err, storage.ErrInvalid)

	// Revoking by value works whatever the account.
	if _, err := ks.RevokeToken(ctx, p, storage.NewSecret(theirSecret).Hash); err != nil {
		t.Fatalf("revoking a known value: %v", err)
	}
	// Audit: own account's events only.
	events, _, err := ks.Audit(ctx, p, storage.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		check(t, e.AccountID == mine.ID, "event of another account: %+v", e)
	}
}

// testGrants: nobody grants what it does not hold; a key written without
// scopes gets the caller's, explicitly, except on the trusted endpoint.
func testGrants(t *testing.T, ks *storage.Keystore) {
	acc := newAccount(t, ks, "acc", "apps", "runs", "api_keys")
	caller, _ := newKey(t, ks, acc.ID, []string{"apps:read", "api_keys"})
	p := member(acc, caller.ID, "apps:read", "api_keys")

	_, err := ks.CreateKey(ctx, p, storage.NewKey{Name: "wide", Scopes: []string{"apps"}}, storage.NewSecret(Tokens.Generate()))
	var e *storage.Error
	check(t, errorsAs(err, &e) && e.Kind == storage.ErrForbidden && e.Scope == "apps", "granting a wider scope: %v", err)
	k, err := ks.CreateKey(ctx, p, storage.NewKey{Name: "default"}, storage.NewSecret(Tokens.Generate()))
	check(t, err == nil && slices.Equal(k.Scopes, []string{"api_keys", "apps:read"}), "default scopes: %+v, %v", k, err)
	k, err = ks.CreateKey(ctx, p, storage.NewKey{Name: "none", Scopes: []string{}}, storage.NewSecret(Tokens.Generate()))
	check(t, err == nil && k.Scopes != nil && len(k.Scopes) == 0, "no scopes: %+v, %v", k, err)
	inherit, err := ks.CreateKey(ctx, admin, storage.NewKey{Account: acc.ID, Name: "inherit"}, storage.NewSecret(Tokens.Generate()))
	check(t, err == nil && inherit.Scopes == nil, "trusted default inherits: %+v, %v", inherit, err)

	var none *[]string = new([]string)
	*none = nil
	got, err := ks.UpdateKey(ctx, p, k.ID, storage.KeyPatch{Scopes: none})
	check(t, err == nil && slices.Equal(got.Scopes, []string{"api_keys", "apps:read"}), "inherit through a member: %+v, %v", got, err)
	wide := []string{"runs"}
	_, err = ks.UpdateKey(ctx, p, k.ID, storage.KeyPatch{Scopes: &wide})
	mustBe(t, "widening a key", err, storage.ErrForbidden)
	_, err = ks.CreateToken(ctx, p, inherit.ID, storage.NewToken{}, storage.NewSecret(Tokens.Generate()))
	mustBe(t, "a token of a wider key", err, storage.ErrForbidden)
	_, err = ks.UpdateAccount(ctx, p, acc.ID, storage.AccountPatch{Scopes: &wide})
	mustBe(t, "granting an account a scope the caller lacks", err, storage.ErrForbidden)
	_, err = ks.CreateAccount(ctx, p, storage.NewAccount{Name: "new", Scopes: []string{"*"}})
	mustBe(t, "an account wider than the caller", err, storage.ErrForbidden)
}

// testCovering: a caller writes only on what it covers: keys whose grant
// (own scopes, else the account's) it holds, accounts whose scopes it
// holds; its own key always.
func testCovering(t *testing.T, ks *storage.Keystore) {
	acc := newAccount(t, ks, "acc", "apps", "api_keys", "accounts")
	own, _ := newKey(t, ks, acc.ID, []string{"apps:read", "api_keys", "secrets"})
	p := member(acc, own.ID, "apps:read", "api_keys")
	wide, _ := newKey(t, ks, acc.ID, []string{"apps"})
	inherit, err := ks.CreateKey(ctx, admin, storage.NewKey{Account: acc.ID, Name: "inherit"}, storage.NewSecret(Tokens.Generate()))
	if err != nil {
		t.Fatal(err)
	}
	narrow, _ := newKey(t, ks, acc.ID, []string{"apps:read"})
	forbidden := func(what string, err error, scope string) {
		t.Helper()
		var e *storage.Error
		check(t, errorsAs(err, &e) && e.Kind == storage.ErrForbidden && e.Scope == scope, "%s: %v, want forbidden naming %q", what, err, scope)
	}
	forbidden("deleting a wider sibling", ks.DeleteKey(ctx, p, wide.ID), "apps")
	_, err = ks.CreateToken(ctx, p, inherit.ID, storage.NewToken{}, storage.NewSecret(Tokens.Generate()))
	forbidden("minting on an inheriting sibling", err, "accounts")
	_, err = ks.RotateToken(ctx, p, wide.ID, wide.Tokens[0].ID, storage.Rotation{}, storage.NewSecret(Tokens.Generate()))
	forbidden("rotating a wider sibling", err, "apps")
	_, err = ks.UpdateToken(ctx, p, wide.ID, wide.Tokens[0].ID, storage.TokenPatch{ClearExpiry: true})
	forbidden("editing a wider sibling's token", err, "apps")
	forbidden("deleting a wider sibling's token", ks.DeleteToken(ctx, p, wide.ID, wide.Tokens[0].ID), "apps")
	name := "n"
	_, err = ks.UpdateKey(ctx, p, own.ID, storage.KeyPatch{LabelPatch: storage.LabelPatch{Name: &name}})
	check(t, err == nil, "editing its own key: %v", err)
	_, err = ks.CreateToken(ctx, p, narrow.ID, storage.NewToken{}, storage.NewSecret(Tokens.Generate()))
	check(t, err == nil, "minting on a covered sibling: %v", err)
	team := "t"
	_, err = ks.UpdateAccount(ctx, p, acc.ID, storage.AccountPatch{Team: &team})
	forbidden("editing an account it does not cover", err, "accounts")
	forbidden("deleting an account it does not cover", ks.DeleteAccount(ctx, p, acc.ID), "accounts")
	manager := member(acc, own.ID, "accounts", "api_keys", "apps:read")
	other := newAccount(t, ks, "other", "apps")
	_, err = ks.CreateKey(ctx, manager, storage.NewKey{Account: other.ID, Name: "x", Scopes: []string{}}, storage.NewSecret(Tokens.Generate()))
	forbidden("a key placed in an account it does not cover", err, "apps")
	// Revoke by value is outside the rule.
	_, secret := newKey(t, ks, other.ID, nil)
	_, err = ks.RevokeToken(ctx, p, storage.NewSecret(secret).Hash)
	check(t, err == nil, "revoking by value: %v", err)
}
