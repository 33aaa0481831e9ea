package storagetest

import (
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/storage"
)

// balance reads the stored credits of key id (nil: none).
func balance(t testing.TB, ks *storage.Keystore, id string) *storage.CreditBalance {
	t.Helper()
	var b *storage.CreditBalance
	err := ks.Backend().View(ctx, func(tx storage.Tx) error {
		var err error
		b, err = tx.CreditBalance(id)
		if errors.Is(err, storage.ErrNotFound) {
			b, err = nil, nil
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func lease(t testing.TB, ks *storage.Keystore, id string, want int64, now time.Time) storage.CreditLease {
	t.Helper()
	l, err := ks.LeaseCredits(ctx, id, want, now)
	if err != nil {
		t.Fatalf("leasing %d of %s: %v", want, id, err)
	}
	return l
}

// testCredits: leases take from the balance, never below zero; returns
// give back unless the balance was set since; a patch of the balance
// voids leases and is announced; leases are neither audited nor
// announced.
func testCredits(t *testing.T, ks *storage.Keystore) {
	acc := newAccount(t, ks, "paid", "apps")
	k := policyKey(t, ks, acc.ID, nil, storage.Policy{Credits: &storage.Credits{Remaining: 10}})
	var notices []storage.Invalidation
	var mu sync.Mutex
	ks.OnChange(func(inv storage.Invalidation) {
		mu.Lock()
		notices = append(notices, inv)
		mu.Unlock()
	})
	eventsBefore, _, err := ks.Audit(ctx, admin, storage.AuditFilter{})
	check(t, err == nil, "audit: %v", err)
	now := time.Now()

	first := lease(t, ks, k.ID, 3, now)
	check(t, first.Granted == 3 && first.Remaining == 7 && first.KeyID == k.ID && first.NextRefill.IsZero(), "first lease: %+v", first)
	second := lease(t, ks, k.ID, 10, now)
	check(t, second.Granted == 7 && second.Remaining == 0 && second.Epoch == first.Epoch, "second lease: %+v", second)
	empty := lease(t, ks, k.ID, 5, now)
	check(t, empty.Granted == 0 && empty.Remaining == 0, "lease of a spent balance: %+v", empty)
	check(t, ks.ReturnCredits(ctx, second, 2) == nil, "returning")
	got, _ := ks.Key(ctx, admin, k.ID)
	check(t, got.Policy.Credits.Remaining == 2, "balance after a return: %+v", got.Policy.Credits)
	mustBe(t, "returning more than granted", ks.ReturnCredits(ctx, first, 4), storage.ErrInvalid)
	_, err = ks.LeaseCredits(ctx, k.ID, -1, now)
	mustBe(t, "a negative lease", err, storage.ErrInvalid)
	read := lease(t, ks, k.ID, 0, now)
	check(t, read.Granted == 0 && read.Remaining == 2, "a lease of 0 reads: %+v", read)
	mu.Lock()
	check(t, len(notices) == 0, "leases and returns sent change notices: %+v", notices)
	mu.Unlock()
	eventsAfter, _, _ := ks.Audit(ctx, admin, storage.AuditFilter{})
	check(t, len(eventsAfter) == len(eventsBefore), "leases and returns wrote audit events: %d, then %d", len(eventsBefore), len(eventsAfter))

	// Setting the balance voids the leases taken before, and is announced.
	set := int64(100)
	got, err = ks.UpdateKey(ctx, admin, k.ID, storage.KeyPatch{Credits: &storage.CreditsPatch{Remaining: &set}})
	check(t, err == nil && got.Policy.Credits.Remaining == 100, "setting the balance: %+v, %v", got, err)
	mu.Lock()
	check(t, len(notices) == 1 && len(notices[0].Keys) == 1 && notices[0].Keys[0] == k.ID, "notice of the balance edit: %+v", notices)
	mu.Unlock()
	check(t, ks.ReturnCredits(ctx, first, 3) == nil, "returning a voided lease")
	check(t, balance(t, ks, k.ID).Remaining == 100, "a voided lease came back: %+v", balance(t, ks, k.ID))
	fresh := lease(t, ks, k.ID, 1, now)
	check(t, fresh.Epoch != first.Epoch && fresh.Remaining == 99, "a lease after the edit: %+v (before %+v)", fresh, first)
	// A refill schedule edit keeps the balance and its leases.
	daily := &storage.Refill{Amount: 500, Interval: storage.RefillDaily}
	got, err = ks.UpdateKey(ctx, admin, k.ID, storage.KeyPatch{Credits: &storage.CreditsPatch{Refill: daily}})
	check(t, err == nil && got.Policy.Credits.Remaining == 99 && got.Policy.Credits.Refill != nil, "adding a refill: %+v, %v", got, err)
	check(t, ks.ReturnCredits(ctx, fresh, 1) == nil && balance(t, ks, k.ID).Remaining == 100, "a return across a refill edit: %+v", balance(t, ks, k.ID))

	// Unlimited and unknown keys.
	plain, _ := newKey(t, ks, acc.ID, nil)
	_, err = ks.LeaseCredits(ctx, plain.ID, 5, now)
	mustBe(t, "a lease on an unlimited key", err, storage.ErrUnlimited)
	_, err = ks.LeaseCredits(ctx, "key_missing", 5, now)
	mustBe(t, "a lease on no key", err, storage.ErrNotFound)
	got, err = ks.UpdateKey(ctx, admin, k.ID, storage.KeyPatch{ClearCredits: true})
	check(t, err == nil && got.Policy.Credits == nil, "removing credits: %+v, %v", got, err)
	_, err = ks.LeaseCredits(ctx, k.ID, 1, now)
	mustBe(t, "a lease after the credits were removed", err, storage.ErrUnlimited)
	check(t, ks.ReturnCredits(ctx, fresh, 1) == nil, "returning to removed credits")
	check(t, balance(t, ks, k.ID) == nil, "credits left after their removal")

	// Credits given to a key without: the refill's amount by default.
	got, err = ks.UpdateKey(ctx, admin, plain.ID, storage.KeyPatch{Credits: &storage.CreditsPatch{Refill: daily}})
	check(t, err == nil && got.Policy.Credits != nil && got.Policy.Credits.Remaining == 500, "credits by refill: %+v, %v", got, err)
	again := lease(t, ks, plain.ID, 1, now)
	check(t, again.Epoch > fresh.Epoch, "a new balance's epoch %d is not above an old one %d", again.Epoch, fresh.Epoch)
	if err := ks.DeleteKey(ctx, admin, plain.ID); err != nil {
		t.Fatal(err)
	}
	check(t, balance(t, ks, plain.ID) == nil, "credits left after their key's deletion")
}

// testCreditRefill: the refill due at the lease's time applies first,
// resets the balance and voids older leases; a read shows the balance
// settled.
func testCreditRefill(t *testing.T, ks *storage.Keystore) {
	acc := newAccount(t, ks, "paid", "apps")
	daily := &storage.Refill{Amount: 100, Interval: storage.RefillDaily}
	k := policyKey(t, ks, acc.ID, nil, storage.Policy{Credits: &storage.Credits{Remaining: 5, Refill: daily}})
	b := balance(t, ks, k.ID)
	next := b.NextRefill
	check(t, next.Equal(daily.Next(time.Now())) || next.Equal(daily.Next(time.Now().Add(-time.Minute))), "next refill %v", next)

	before := lease(t, ks, k.ID, 2, next.Add(-time.Second))
	check(t, before.Granted == 2 && before.Remaining == 3 && before.NextRefill.Equal(next), "before the refill: %+v", before)
	after := lease(t, ks, k.ID, 1, next.Add(50*time.Hour))
	check(t, after.Granted == 1 && after.Remaining == 99 && after.Epoch != before.Epoch && after.NextRefill.Equal(next.Add(72*time.Hour)),
		"after the refill (missed ones not stacked): %+v", after)
	check(t, ks.ReturnCredits(ctx, before, 2) == nil && balance(t, ks, k.ID).Remaining == 99, "a pre-refill lease came back")
	again := lease(t, ks, k.ID, 1, next.Add(51*time.Hour))
	check(t, again.Epoch == after.Epoch && again.Remaining == 98, "no second refill before the next: %+v", again)

	// A balance whose refill is past reads settled: import one.
	yesterday := time.Now().Add(-24 * time.Hour).UTC().Truncate(time.Second)
	secret := Tokens.Generate()
	imported := storage.ExportRecord{Type: storage.RecordKey, Key: &storage.ExportKey{ID: storage.NewID(storage.KeyIDPrefix),
		Account: acc.ID, Name: "imported", CreatedAt: time.Now(), Credits: &storage.ExportCredits{Remaining: 0,
			Refill: &storage.ExportRefill{Amount: 50, Interval: storage.RefillDaily}, NextRefill: &yesterday}}}
	if _, err := ks.Import(ctx, admin, imported); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.CreateToken(ctx, admin, imported.Key.ID, storage.NewToken{}, storage.NewSecret(secret)); err != nil {
		t.Fatal(err)
	}
	got, err := ks.Key(ctx, admin, imported.Key.ID)
	check(t, err == nil && got.Policy.Credits.Remaining == 50 && got.Policy.Credits.NextRefill.After(time.Now()),
		"a past refill read: %+v, %v", got.Policy.Credits, err)
	cred, err := lookup(ks, secret)
	check(t, err == nil && cred.KeyPolicy.Credits.Remaining == 50, "a past refill in a credential: %+v, %v", cred.KeyPolicy.Credits, err)
	check(t, balance(t, ks, imported.Key.ID).Remaining == 0, "a read wrote the refill")
}

// testConcurrentLeases: many leases and returns at once never grant more
// than the balance in total.
func testConcurrentLeases(t *testing.T, ks *storage.Keystore) {
	acc := newAccount(t, ks, "paid", "apps")
	const total = 1000
	k := policyKey(t, ks, acc.ID, nil, storage.Policy{Credits: &storage.Credits{Remaining: total}})
	var mu sync.Mutex
	var granted, returned int64
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			for {
				want := 1 + rand.Int64N(9)
				l, err := ks.LeaseCredits(ctx, k.ID, want, time.Now())
				if err != nil {
					t.Errorf("lease: %v", err)
					return
				}
				if l.Granted < 0 || l.Granted > want || l.Remaining < 0 {
					t.Errorf("lease of %d: %+v", want, l)
					return
				}
				if l.Granted == 0 {
					return
				}
				back := int64(0)
				if rand.IntN(4) == 0 {
					back = rand.Int64N(l.Granted + 1)
					if err := ks.ReturnCredits(ctx, l, back); err != nil {
						t.Errorf("return: %v", err)
						return
					}
				}
				mu.Lock()
				granted += l.Granted
				returned += back
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	check(t, granted-returned == total, "granted %d and returned %d of a balance of %d: spent %d", granted, returned, total, granted-returned)
	check(t, balance(t, ks, k.ID).Remaining == 0, "balance left: %+v", balance(t, ks, k.ID))
}
