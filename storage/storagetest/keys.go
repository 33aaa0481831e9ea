package storagetest

import (
	"errors"
	"slices"
	"testing"

	"github.com/keygate/keygate/storage"
)

var errorsAs = errors.As

func testKeysAndLookup(t *testing.T, ks *storage.Keystore) {
	acc := newAccount(t, ks, "tower", "apps:read", "runs")
	inherit, secret1 := newKey(t, ks, acc.ID, nil)
	narrow, secret2 := newKey(t, ks, "tower", []string{"apps", "secrets"})
	check(t, slices.Equal(inherit.EffectiveScopes, []string{"apps:read", "runs"}), "inheriting key effective scopes = %v", inherit.EffectiveScopes)
	check(t, slices.Equal(narrow.EffectiveScopes, []string{"apps:read"}), "narrowed key effective scopes = %v", narrow.EffectiveScopes)
	check(t, narrow.AccountID == acc.ID && narrow.CreatedBy == admin.Actor && len(narrow.Tokens) == 1 &&
		narrow.Tokens[0].Name == storage.FirstTokenName, "created key: %+v", narrow)

	cred, err := lookup(ks, secret2)
	if err != nil {
		t.Fatal(err)
	}
	check(t, cred.KeyID == narrow.ID && cred.AccountID == acc.ID && cred.AccountName == "tower" &&
		cred.TokenID == narrow.Tokens[0].ID && slices.Equal(cred.Scopes, []string{"apps:read"}) && cred.JoinedScopes == "apps:read",
		"credential = %+v", cred)

	// Reducing the account reduces its keys, live.
	reduced := []string{"runs"}
	if _, err := ks.UpdateAccount(ctx, admin, acc.ID, storage.AccountPatch{Scopes: &reduced}); err != nil {
		t.Fatal(err)
	}
	cred, _ = lookup(ks, secret2)
	check(t, len(cred.Scopes) == 0, "after account reduction, narrowed key holds %v", cred.Scopes)
	cred, _ = lookup(ks, secret1)
	check(t, slices.Equal(cred.Scopes, []string{"runs"}), "after account reduction, inheriting key holds %v", cred.Scopes)

	got, err := ks.Key(ctx, admin, inherit.ID)
	check(t, err == nil && len(got.Tokens) == 1 && got.Tokens[0].Hint == storage.NewSecret(secret1).Hint && got.Scopes == nil,
		"Key = %+v, %v", got, err)
	_, err = ks.CreateKey(ctx, admin, storage.NewKey{Account: "acc_missing", Name: "x"}, storage.NewSecret(Tokens.Generate()))
	mustBe(t, "key on unknown account", err, storage.ErrNotFound)
	_, err = ks.CreateKey(ctx, admin, storage.NewKey{Account: acc.ID, Name: "dup"}, storage.NewSecret(secret1))
	mustBe(t, "a token value that exists", err, storage.ErrConflict)

	if err := ks.DeleteKey(ctx, admin, inherit.ID); err != nil {
		t.Fatal(err)
	}
	_, err = lookup(ks, secret1)
	mustBe(t, "token of deleted key", err, storage.ErrNotFound)
	mustBe(t, "second delete", ks.DeleteKey(ctx, admin, inherit.ID), storage.ErrNotFound)
	_, err = ks.Key(ctx, admin, inherit.ID)
	mustBe(t, "deleted key", err, storage.ErrNotFound)

	disabled := true
	if _, err := ks.UpdateAccount(ctx, admin, acc.ID, storage.AccountPatch{Disabled: &disabled}); err != nil {
		t.Fatal(err)
	}
	cred, err = lookup(ks, secret2)
	check(t, err == nil && cred.Disabled, "disabled account credential = %+v, %v", cred, err)
}

func testListKeysFilters(t *testing.T, ks *storage.Keystore) {
	a := newAccount(t, ks, "a", "*")
	b := newAccount(t, ks, "b", "*")
	tagged, err := ks.CreateKey(ctx, admin, storage.NewKey{Account: a.ID, Name: "tagged",
		Tags: map[string]string{"env": "prod", "team": "x"}}, storage.NewSecret(Tokens.Generate()))
	if err != nil {
		t.Fatal(err)
	}
	newKey(t, ks, a.ID, nil)
	newKey(t, ks, b.ID, nil)

	keys, _, err := ks.Keys(ctx, admin, storage.KeyFilter{Account: a.ID})
	check(t, err == nil && len(keys) == 2, "account filter: %d keys, %v", len(keys), err)
	keys, _, err = ks.Keys(ctx, admin, storage.KeyFilter{Account: "b"})
	check(t, err == nil && len(keys) == 1, "account filter by name: %d keys, %v", len(keys), err)
	keys, _, err = ks.Keys(ctx, admin, storage.KeyFilter{Tags: map[string]string{"env": "prod"}})
	check(t, err == nil && len(keys) == 1 && keys[0].ID == tagged.ID && len(keys[0].Tokens) == 1, "tag filter: %+v, %v", keys, err)
	keys, _, err = ks.Keys(ctx, admin, storage.KeyFilter{Tags: map[string]string{"env": "dev"}})
	check(t, err == nil && len(keys) == 0, "tag filter without match: %d keys, %v", len(keys), err)
	keys, next, err := ks.Keys(ctx, admin, storage.KeyFilter{ListOptions: storage.ListOptions{Limit: 2}})
	check(t, err == nil && len(keys) == 2 && next != "", "first page: %d keys, next %q, %v", len(keys), next, err)
	rest, next2, err := ks.Keys(ctx, admin, storage.KeyFilter{ListOptions: storage.ListOptions{Limit: 2, After: next}})
	check(t, err == nil && len(rest) == 1 && next2 == "" && rest[0].ID > keys[1].ID, "last page: %+v, next %q, %v", rest, next2, err)
	for _, k := range append(keys, rest...) {
		check(t, slices.Equal(k.EffectiveScopes, []string{"*"}), "listed key's effective scopes: %+v", k)
	}
	_, _, err = ks.Keys(ctx, admin, storage.KeyFilter{Account: "nobody"})
	mustBe(t, "unknown account filter", err, storage.ErrNotFound)
}

func testUpdateKeyAndDeleteAccount(t *testing.T, ks *storage.Keystore) {
	acc := newAccount(t, ks, "a", "apps", "runs")
	k, secret := newKey(t, ks, acc.ID, []string{"apps"})
	scopes := []string{"runs"}
	tags := map[string]string{"env": "prod"}
	got, err := ks.UpdateKey(ctx, admin, k.ID, storage.KeyPatch{LabelPatch: storage.LabelPatch{Tags: &tags}, Scopes: &scopes})
	check(t, err == nil && slices.Equal(got.Scopes, []string{"runs"}) && got.Tags["env"] == "prod" && len(got.Tokens) == 1,
		"UpdateKey = %+v, %v", got, err)
	var inherit []string
	got, err = ks.UpdateKey(ctx, admin, k.ID, storage.KeyPatch{Scopes: &inherit})
	check(t, err == nil && got.Scopes == nil && len(got.EffectiveScopes) == 2, "inherit: %+v, %v", got, err)
	if err := ks.DeleteAccount(ctx, admin, acc.ID); err != nil {
		t.Fatal(err)
	}
	_, err = lookup(ks, secret)
	mustBe(t, "token of a deleted account", err, storage.ErrNotFound)
	_, err = ks.Key(ctx, admin, k.ID)
	mustBe(t, "key of a deleted account", err, storage.ErrNotFound)
	mustBe(t, "second account delete", ks.DeleteAccount(ctx, admin, acc.ID), storage.ErrNotFound)
	// The name is free again and the token value unknown.
	again := newAccount(t, ks, "a")
	_, err = ks.CreateKey(ctx, admin, storage.NewKey{Account: again.ID, Name: "k"}, storage.NewSecret(secret))
	check(t, err == nil, "reusing a deleted token's value: %v", err)
}
