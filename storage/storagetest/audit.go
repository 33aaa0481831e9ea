package storagetest

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/storage"
)

func testAuditTrail(t *testing.T, ks *storage.Keystore) {
	acc := newAccount(t, ks, "a", "apps")
	other := newAccount(t, ks, "b", "apps")
	k, _ := newKey(t, ks, acc.ID, nil)
	rotator := storage.Principal{Actor: "rotator", Trusted: true, Scopes: []string{"*"}}
	if _, err := ks.RotateToken(ctx, rotator, k.ID, k.Tokens[0].ID, storage.Rotation{Grace: time.Minute}, storage.NewSecret(Tokens.Generate())); err != nil {
		t.Fatal(err)
	}
	if err := ks.DeleteKey(ctx, admin, k.ID); err != nil {
		t.Fatal(err)
	}
	p := member(acc, "key_x", "audit:read")
	events, _, err := ks.Audit(ctx, p, storage.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, e := range events {
		actions = append(actions, e.Action)
	}
	want := []string{"key.delete", "token.rotate", "key.create", "account.create"}
	check(t, slices.Equal(actions, want), "actions %v, want %v (newest first)", actions, want)
	e := events[1]
	check(t, e.Actor == "rotator" && e.Target == k.Tokens[0].ID && e.AccountID == acc.ID && !e.At.IsZero() &&
		e.Details["key"] == k.ID && e.Details["grace"] == "1m0s", "rotate event %+v", e)

	page, next, err := ks.Audit(ctx, admin, storage.AuditFilter{ListOptions: storage.ListOptions{Limit: 2}})
	check(t, err == nil && len(page) == 2 && next != "", "first page %d events, next %q, %v", len(page), next, err)
	rest, _, err := ks.Audit(ctx, admin, storage.AuditFilter{ListOptions: storage.ListOptions{After: next}})
	check(t, err == nil && len(rest) == 3, "rest: %d, %v", len(rest), err) // 5 events: 2 account.create + 3 above
	ev, _, err := ks.Audit(ctx, member(other, "key_y", "audit:read"), storage.AuditFilter{})
	check(t, err == nil && len(ev) == 1, "other account's events: %+v, %v", ev, err)
	ev, _, err = ks.Audit(ctx, admin, storage.AuditFilter{Actor: "rotator"})
	check(t, err == nil && len(ev) == 1, "by actor: %+v, %v", ev, err)
	ev, _, err = ks.Audit(ctx, admin, storage.AuditFilter{Action: "account.create"})
	check(t, err == nil && len(ev) == 2, "by action: %+v, %v", ev, err)
	ev, _, err = ks.Audit(ctx, admin, storage.AuditFilter{Target: k.ID})
	check(t, err == nil && len(ev) == 2, "by target: %+v, %v", ev, err)
}

// testChangeNotices: every committed change names what it altered, after
// the commit, and a refused one announces nothing.
func testChangeNotices(t *testing.T, ks *storage.Keystore) {
	var mu sync.Mutex
	var got []storage.Invalidation
	ks.OnChange(func(inv storage.Invalidation) {
		mu.Lock()
		got = append(got, inv)
		mu.Unlock()
	})
	last := func() storage.Invalidation {
		mu.Lock()
		defer mu.Unlock()
		if len(got) == 0 {
			return storage.Invalidation{}
		}
		return got[len(got)-1]
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}
	acc := newAccount(t, ks, "a", "apps")
	k, secret := newKey(t, ks, acc.ID, nil)
	inv := last()
	h := storage.NewSecret(secret).Hash
	check(t, len(inv.Hashes) == 1 && inv.Hashes[0] == h && slices.Equal(inv.HashBits, []uint16{h.Bits()}), "key creation: %+v", inv)
	team := "t"
	if _, err := ks.UpdateAccount(ctx, admin, acc.ID, storage.AccountPatch{Team: &team}); err != nil {
		t.Fatal(err)
	}
	check(t, slices.Equal(last().Accounts, []string{acc.ID}), "account update: %+v", last())
	name := "n"
	if _, err := ks.UpdateKey(ctx, admin, k.ID, storage.KeyPatch{LabelPatch: storage.LabelPatch{Name: &name}}); err != nil {
		t.Fatal(err)
	}
	check(t, slices.Equal(last().Keys, []string{k.ID}), "key update: %+v", last())
	if _, err := ks.RevokeToken(ctx, admin, h); err != nil {
		t.Fatal(err)
	}
	check(t, slices.Equal(last().Tokens, []string{k.Tokens[0].ID}), "revocation: %+v", last())
	n := count()
	if _, err := ks.RevokeToken(ctx, admin, h); err == nil {
		t.Fatal("a second revocation succeeded")
	}
	check(t, count() == n, "a failed change announced something")
}

// testKeepsNoSecret: no token value reaches a record, an event or an
// export.
func testKeepsNoSecret(t *testing.T, ks *storage.Keystore) {
	acc := newAccount(t, ks, "x", "*")
	k, secret := newKey(t, ks, acc.ID, nil)
	sec, secret2 := newSecret()
	if _, err := ks.RotateToken(ctx, admin, k.ID, k.Tokens[0].ID, storage.Rotation{Grace: time.Hour}, sec); err != nil {
		t.Fatal(err)
	}
	var all []any
	err := ks.Backend().View(ctx, func(tx storage.Tx) error {
		accounts, err := tx.Accounts("", 100)
		keys, err2 := tx.Keys(storage.KeyQuery{Limit: 100})
		tokens, err3 := tx.Tokens(k.ID)
		events, err4 := tx.Audit(storage.AuditQuery{Limit: 100})
		all = append(all, accounts, keys, tokens, events)
		for _, e := range []error{err, err2, err3, err4} {
			if e != nil {
				return e
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(all)
	_ = ks.Export(ctx, admin, func(r storage.ExportRecord) error {
		line, _ := json.Marshal(r)
		raw = append(raw, line...)
		return nil
	})
	for _, s := range []string{secret, secret2} {
		check(t, !strings.Contains(string(raw), s[6:len(s)-4]), "a record holds a token value")
	}
}
