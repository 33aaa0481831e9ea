package storagetest

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/storage"
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func window(name string, limit int64, length time.Duration) storage.Window {
	return storage.Window{Name: name, Limit: limit, Length: length}
}

// invalidField fails t unless err is the invalid-input error naming field.
func invalidField(t testing.TB, what string, err error, field string) {
	t.Helper()
	var e *storage.Error
	check(t, errorsAs(err, &e) && e.Kind == storage.ErrInvalid && e.Field == field, "%s: %v, want invalid naming %q", what, err, field)
}

// forbiddenField fails t unless err is a refusal naming field.
func forbiddenField(t testing.TB, what string, err error, field string) {
	t.Helper()
	var e *storage.Error
	check(t, errorsAs(err, &e) && e.Kind == storage.ErrForbidden && e.Field == field, "%s: %v, want forbidden naming %q", what, err, field)
}

// testPolicies: accounts and keys keep their usage policies, in canonical
// form, through every read and the token lookup; bad ones are refused
// with the field at fault and write nothing.
func testPolicies(t *testing.T, ks *storage.Keystore) {
	day := window("day", 10000, 24*time.Hour)
	acc, err := ks.CreateAccount(ctx, admin, storage.NewAccount{Name: "metered", Kind: storage.KindService, Scopes: []string{"apps"},
		Policy: storage.Policy{Limits: []storage.Window{day}, AllowedIPs: prefixes("10.1.2.3/8")}})
	if err != nil {
		t.Fatal(err)
	}
	wantAccount := storage.Policy{Limits: []storage.Window{day}, AllowedIPs: prefixes("10.0.0.0/8")}
	checkPolicy(t, "created account", acc.Policy, wantAccount)
	monthly := &storage.Refill{Amount: 1000, Interval: storage.RefillMonthly, Day: 1}
	keyPolicy := storage.Policy{Limits: []storage.Window{window("burst", 20, time.Second), window("min", 600, time.Minute)},
		AllowedIPs: prefixes("2001:db8::/32"), Credits: &storage.Credits{Remaining: 1000, Refill: monthly}}
	secret := Tokens.Generate()
	before := time.Now()
	k, err := ks.CreateKey(ctx, admin, storage.NewKey{Account: acc.ID, Name: "k", Policy: keyPolicy}, storage.NewSecret(secret))
	if err != nil {
		t.Fatal(err)
	}
	checkPolicy(t, "created key", k.Policy, keyPolicy)
	next := monthly.Next(before)
	check(t, k.Policy.Credits.NextRefill.Equal(next) || k.Policy.Credits.NextRefill.Equal(monthly.Next(time.Now())),
		"created key's next refill %v, want %v", k.Policy.Credits.NextRefill, next)

	got, err := ks.Key(ctx, admin, k.ID)
	check(t, err == nil, "Key: %v", err)
	checkPolicy(t, "key read", got.Policy, keyPolicy)
	keys, _, err := ks.Keys(ctx, admin, storage.KeyFilter{Account: acc.ID})
	check(t, err == nil && len(keys) == 1, "Keys: %+v, %v", keys, err)
	checkPolicy(t, "key listed", keys[0].Policy, keyPolicy)
	a, err := ks.Account(ctx, admin, acc.ID)
	check(t, err == nil, "Account: %v", err)
	checkPolicy(t, "account read", a.Policy, wantAccount)
	cred, err := lookup(ks, secret)
	check(t, err == nil, "lookup: %v", err)
	checkPolicy(t, "credential's key policy", cred.KeyPolicy, keyPolicy)
	checkPolicy(t, "credential's account policy", cred.AccountPolicy, wantAccount)

	// A key without a policy limits nothing.
	plain, plainSecret := newKey(t, ks, acc.ID, nil)
	check(t, plain.Policy.IsZero(), "a key made without a policy: %+v", plain.Policy)
	cred, _ = lookup(ks, plainSecret)
	check(t, cred.KeyPolicy.IsZero() && len(cred.AccountPolicy.Limits) == 1, "its credential: %+v", cred)

	// Edits replace the parts they set; empty lists remove.
	none := []storage.Window{}
	ips := prefixes("192.168.0.0/16", "192.168.7.0/24")
	a, err = ks.UpdateAccount(ctx, admin, acc.ID, storage.AccountPatch{Limits: &none, AllowedIPs: &ips})
	check(t, err == nil, "UpdateAccount: %v", err)
	checkPolicy(t, "account edited", a.Policy, storage.Policy{AllowedIPs: ips})
	hour := []storage.Window{window("hour", 100, time.Hour)}
	noIPs := []netip.Prefix{}
	got, err = ks.UpdateKey(ctx, admin, k.ID, storage.KeyPatch{Limits: &hour, AllowedIPs: &noIPs})
	check(t, err == nil, "UpdateKey: %v", err)
	checkPolicy(t, "key edited", got.Policy, storage.Policy{Limits: hour, Credits: keyPolicy.Credits})
	cred, _ = lookup(ks, secret)
	checkPolicy(t, "credential after the edits", cred.KeyPolicy, storage.Policy{Limits: hour, Credits: keyPolicy.Credits})
	checkPolicy(t, "credential's account after the edits", cred.AccountPolicy, storage.Policy{AllowedIPs: ips})
	events, _, err := ks.Audit(ctx, admin, storage.AuditFilter{Target: k.ID, Action: "key.update"})
	check(t, err == nil && len(events) == 1 && events[0].Details["limits"] != nil && events[0].Details["allowed_ips"] != nil,
		"the edit's audit event: %+v, %v", events, err)

	// Refused, naming the field, and nothing written.
	_, err = ks.CreateAccount(ctx, admin, storage.NewAccount{Name: "x", Policy: storage.Policy{Credits: &storage.Credits{}}})
	invalidField(t, "credits on an account", err, "credits")
	_, err = ks.CreateKey(ctx, admin, storage.NewKey{Account: acc.ID, Name: "x",
		Policy: storage.Policy{Limits: []storage.Window{day, window("w", 1, time.Millisecond)}}}, storage.NewSecret(Tokens.Generate()))
	invalidField(t, "a window below a second", err, "limits[1].window")
	bad := []storage.Window{window("Bad Name", 1, time.Second)}
	_, err = ks.UpdateKey(ctx, admin, k.ID, storage.KeyPatch{Limits: &bad})
	invalidField(t, "a bad window name", err, "limits[0].name")
	_, err = ks.UpdateAccount(ctx, admin, acc.ID, storage.AccountPatch{Limits: &bad})
	invalidField(t, "a bad account window name", err, "limits[0].name")
	negative := int64(-1)
	_, err = ks.UpdateKey(ctx, admin, k.ID, storage.KeyPatch{Credits: &storage.CreditsPatch{Remaining: &negative}})
	invalidField(t, "a negative balance", err, "credits.remaining")
	_, err = ks.UpdateKey(ctx, admin, k.ID, storage.KeyPatch{Credits: &storage.CreditsPatch{Refill: &storage.Refill{Amount: 1, Interval: "hourly"}}})
	invalidField(t, "an unknown interval", err, "credits.refill.interval")
	_, err = ks.UpdateKey(ctx, admin, plain.ID, storage.KeyPatch{Credits: &storage.CreditsPatch{}})
	invalidField(t, "credits without a balance or a refill", err, "credits.remaining")
	got, _ = ks.Key(ctx, admin, k.ID)
	checkPolicy(t, "key after refused edits", got.Policy, storage.Policy{Limits: hour, Credits: keyPolicy.Credits})
	got, _ = ks.Key(ctx, admin, plain.ID)
	check(t, got.Policy.Credits == nil, "a refused edit gave credits: %+v", got.Policy.Credits)
}

// checkPolicy compares a policy read with the one wanted (credits by
// balance and refill).
func checkPolicy(t testing.TB, what string, got, want storage.Policy) {
	t.Helper()
	check(t, slices.Equal(got.Limits, want.Limits) && slices.Equal(got.AllowedIPs, want.AllowedIPs),
		"%s: limits %v, allowed IPs %v; want %v, %v", what, got.Limits, got.AllowedIPs, want.Limits, want.AllowedIPs)
	switch g, w := got.Credits, want.Credits; {
	case w == nil:
		check(t, g == nil, "%s: credits %+v, want none", what, g)
	case g == nil:
		t.Fatalf("%s: no credits, want %+v", what, w)
	default:
		check(t, g.Remaining == w.Remaining && (g.Refill == nil) == (w.Refill == nil) && (w.Refill == nil || *g.Refill == *w.Refill),
			"%s: credits %+v (refill %+v), want %+v (refill %+v)", what, g, g.Refill, w, w.Refill)
		check(t, (g.Refill == nil) == g.NextRefill.IsZero(), "%s: next refill %v with refill %+v", what, g.NextRefill, g.Refill)
	}
}
