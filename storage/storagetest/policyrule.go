package storagetest

import (
	"testing"
	"time"

	"github.com/keygate/keygate/storage"
)

// policyKey creates a key with a policy on the trusted endpoint.
func policyKey(t testing.TB, ks *storage.Keystore, account string, scopes []string, p storage.Policy) *storage.Key {
	t.Helper()
	k, err := ks.CreateKey(ctx, admin, storage.NewKey{Account: account, Name: "k", Scopes: scopes, Policy: p}, storage.NewSecret(Tokens.Generate()))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testPolicyRule drives the rule for usage policies (storage/principal.go)
// through the keystore: without authority over an account's budget a
// caller only tightens, and the keys it creates are bound as it is; an
// account manager acting on another account may loosen.
func testPolicyRule(t *testing.T, ks *storage.Keystore) {
	team := newAccount(t, ks, "team", "apps", "api_keys", "accounts")
	ops := newAccount(t, ks, "ops", "*")
	minute := window("m", 100, time.Minute)
	limited := policyKey(t, ks, team.ID, []string{"apps", "api_keys", "accounts"},
		storage.Policy{Limits: []storage.Window{minute}, AllowedIPs: prefixes("10.0.0.0/8")})
	p := member(team, limited.ID, "apps", "api_keys", "accounts")

	// Keys it creates get its limits and allowlist, or tighter ones.
	k, err := ks.CreateKey(ctx, p, storage.NewKey{Name: "child"}, storage.NewSecret(Tokens.Generate()))
	check(t, err == nil, "creating a key: %v", err)
	checkPolicy(t, "a limited key's child", k.Policy, storage.Policy{Limits: []storage.Window{minute}, AllowedIPs: prefixes("10.0.0.0/8")})
	_, err = ks.CreateKey(ctx, p, storage.NewKey{Name: "free", Policy: storage.Policy{Limits: []storage.Window{}}}, storage.NewSecret(Tokens.Generate()))
	forbiddenField(t, "a child without limits", err, "limits")
	_, err = ks.CreateKey(ctx, p, storage.NewKey{Name: "wide", Policy: storage.Policy{AllowedIPs: prefixes("0.0.0.0/0")}}, storage.NewSecret(Tokens.Generate()))
	forbiddenField(t, "a child with a wider allowlist", err, "allowed_ips")
	c, err := ks.CreateKey(ctx, p, storage.NewKey{Name: "paid", Policy: storage.Policy{Credits: &storage.Credits{Remaining: 50}}},
		storage.NewSecret(Tokens.Generate()))
	check(t, err == nil && c.Policy.Credits != nil && c.Policy.Credits.Remaining == 50, "a child with credits: %+v, %v", c, err)

	// It tightens a sibling, never loosens it; nor its own key.
	lower := []storage.Window{window("m", 50, time.Minute)}
	_, err = ks.UpdateKey(ctx, p, k.ID, storage.KeyPatch{Limits: &lower})
	check(t, err == nil, "tightening a sibling: %v", err)
	higher := []storage.Window{window("m", 500, time.Minute)}
	_, err = ks.UpdateKey(ctx, p, k.ID, storage.KeyPatch{Limits: &higher})
	forbiddenField(t, "loosening a sibling", err, "limits")
	_, err = ks.UpdateKey(ctx, p, limited.ID, storage.KeyPatch{Limits: &higher})
	forbiddenField(t, "loosening its own key", err, "limits")
	more := int64(51)
	_, err = ks.UpdateKey(ctx, p, c.ID, storage.KeyPatch{Credits: &storage.CreditsPatch{Remaining: &more}})
	forbiddenField(t, "raising a balance", err, "credits.remaining")
	_, err = ks.UpdateKey(ctx, p, c.ID, storage.KeyPatch{ClearCredits: true})
	forbiddenField(t, "removing credits", err, "credits")
	refill := &storage.Refill{Amount: 10, Interval: storage.RefillDaily}
	_, err = ks.UpdateKey(ctx, p, c.ID, storage.KeyPatch{Credits: &storage.CreditsPatch{Refill: refill}})
	forbiddenField(t, "adding a refill", err, "credits.refill")
	less := int64(20)
	_, err = ks.UpdateKey(ctx, p, c.ID, storage.KeyPatch{Credits: &storage.CreditsPatch{Remaining: &less}})
	check(t, err == nil, "lowering a balance: %v", err)
	got, _ := ks.Key(ctx, admin, k.ID)
	checkPolicy(t, "the sibling after refused loosening", got.Policy, storage.Policy{Limits: lower, AllowedIPs: prefixes("10.0.0.0/8")})
	got, _ = ks.Key(ctx, admin, c.ID)
	check(t, got.Policy.Credits != nil && got.Policy.Credits.Remaining == 20 && got.Policy.Credits.Refill == nil,
		"the paid sibling after refused loosening: %+v", got.Policy.Credits)

	// Its own account: tightened, never loosened, even holding accounts.
	day := []storage.Window{window("day", 1000, 24*time.Hour)}
	_, err = ks.UpdateAccount(ctx, p, team.ID, storage.AccountPatch{Limits: &day})
	check(t, err == nil, "tightening its own account: %v", err)
	none := []storage.Window{}
	_, err = ks.UpdateAccount(ctx, p, team.ID, storage.AccountPatch{Limits: &none})
	forbiddenField(t, "loosening its own account", err, "limits")

	// A key with credits creates no keys where it lacks authority.
	paid := policyKey(t, ks, team.ID, []string{"apps", "api_keys"}, storage.Policy{Credits: &storage.Credits{Remaining: 10}})
	pp := member(team, paid.ID, "apps", "api_keys")
	_, err = ks.CreateKey(ctx, pp, storage.NewKey{Name: "copy", Policy: storage.Policy{Credits: &storage.Credits{Remaining: 10}}},
		storage.NewSecret(Tokens.Generate()))
	forbiddenField(t, "a key with credits creating one", err, "credits")
	_, err = ks.CreateKey(ctx, pp, storage.NewKey{Name: "free"}, storage.NewSecret(Tokens.Generate()))
	forbiddenField(t, "a key with credits creating an unlimited one", err, "credits")
	_, err = ks.UpdateKey(ctx, pp, paid.ID, storage.KeyPatch{ClearCredits: true})
	forbiddenField(t, "a key removing its own credits", err, "credits")

	// An account manager of another account has authority there.
	manager := policyKey(t, ks, ops.ID, nil, storage.Policy{})
	m := member(ops, manager.ID, "*")
	_, err = ks.UpdateKey(ctx, m, c.ID, storage.KeyPatch{ClearCredits: true})
	check(t, err == nil, "a manager removing another account's key's credits: %v", err)
	_, err = ks.UpdateAccount(ctx, m, team.ID, storage.AccountPatch{Limits: &none})
	check(t, err == nil, "a manager loosening another account: %v", err)
	free, err := ks.CreateKey(ctx, m, storage.NewKey{Account: team.ID, Name: "free"}, storage.NewSecret(Tokens.Generate()))
	check(t, err == nil && free.Policy.IsZero(), "a manager's unlimited key on another account: %+v, %v", free, err)
	// ... but not on its own.
	opsLimits := []storage.Window{minute}
	if _, err := ks.UpdateAccount(ctx, admin, ops.ID, storage.AccountPatch{Limits: &opsLimits}); err != nil {
		t.Fatal(err)
	}
	_, err = ks.UpdateAccount(ctx, m, ops.ID, storage.AccountPatch{Limits: &none})
	forbiddenField(t, "a manager loosening its own account", err, "limits")
}
