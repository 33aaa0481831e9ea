package storagetest

import (
	"testing"
	"time"

	"github.com/keygate/keygate/storage"
)

func testTokenLifecycle(t *testing.T, ks *storage.Keystore) {
	acc := newAccount(t, ks, "a", "apps")
	k, _ := newKey(t, ks, acc.ID, nil)
	sec, secret := newSecret()
	extra, err := ks.CreateToken(ctx, admin, k.ID, storage.NewToken{Name: "ci"}, sec)
	check(t, err == nil && extra.KeyID == k.ID && extra.Name == "ci" && extra.ID != "", "CreateToken = %+v, %v", extra, err)
	_, err = ks.CreateToken(ctx, admin, "key_missing", storage.NewToken{}, storage.NewSecret(Tokens.Generate()))
	mustBe(t, "token on a missing key", err, storage.ErrNotFound)

	exp := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
	name := "ci-renamed"
	tok, err := ks.UpdateToken(ctx, admin, k.ID, extra.ID, storage.TokenPatch{LabelPatch: storage.LabelPatch{Name: &name}, ExpiresAt: &exp})
	check(t, err == nil && tok.Name == name && tok.ExpiresAt.Equal(exp), "UpdateToken = %+v, %v", tok, err)
	cred, err := lookup(ks, secret)
	check(t, err == nil && cred.ExpiresAt.Equal(exp), "lookup after expiry edit: %+v, %v", cred, err)
	tok, err = ks.UpdateToken(ctx, admin, k.ID, extra.ID, storage.TokenPatch{ClearExpiry: true})
	check(t, err == nil && tok.ExpiresAt == nil, "clearing expiry: %+v, %v", tok, err)
	other, _ := newKey(t, ks, acc.ID, nil)
	_, err = ks.UpdateToken(ctx, admin, other.ID, extra.ID, storage.TokenPatch{LabelPatch: storage.LabelPatch{Name: &name}})
	mustBe(t, "token through the wrong key", err, storage.ErrNotFound)

	if _, err := ks.RevokeToken(ctx, admin, sec.Hash); err != nil {
		t.Fatal(err)
	}
	_, err = ks.RevokeToken(ctx, admin, sec.Hash)
	mustBe(t, "second revoke", err, storage.ErrNotFound)
	if err := ks.DeleteToken(ctx, admin, k.ID, k.Tokens[0].ID); err != nil {
		t.Fatal(err)
	}
	mustBe(t, "second delete", ks.DeleteToken(ctx, admin, k.ID, k.Tokens[0].ID), storage.ErrNotFound)
	got, err := ks.Key(ctx, admin, k.ID)
	check(t, err == nil && len(got.Tokens) == 0, "key after its tokens went: %+v, %v", got, err)
}

func testRotateWithGrace(t *testing.T, ks *storage.Keystore) {
	acc := newAccount(t, ks, "a", "apps")
	k, oldSecret := newKey(t, ks, acc.ID, nil)
	oldID := k.Tokens[0].ID
	sec, newSecret := newSecret()
	r, err := ks.RotateToken(ctx, admin, k.ID, oldID, storage.Rotation{Grace: time.Hour}, sec)
	if err != nil {
		t.Fatal(err)
	}
	old := r.Old
	check(t, old != nil && old.RotatedTo == r.New.ID && old.ExpiresAt != nil && time.Until(*old.ExpiresAt) <= time.Hour &&
		old.Status(time.Now()) == storage.StatusExpiring, "old token after rotation: %+v", old)
	check(t, r.New.Name == storage.FirstTokenName && r.New.KeyID == k.ID, "new token did not take the old one's name and key: %+v", r.New)
	for _, secret := range []string{oldSecret, newSecret} {
		if _, err := lookup(ks, secret); err != nil {
			t.Fatalf("during grace a token fails: %v", err)
		}
	}
	_, err = ks.RotateToken(ctx, admin, k.ID, oldID, storage.Rotation{Grace: time.Hour}, storage.NewSecret(Tokens.Generate()))
	mustBe(t, "rotating a rotated token", err, storage.ErrConflict)

	// Without grace the old token stops at once.
	r2, err := ks.RotateToken(ctx, admin, k.ID, r.New.ID, storage.Rotation{}, storage.NewSecret(Tokens.Generate()))
	check(t, err == nil && r2.Old == nil && r2.OldExpiresAt.Equal(r2.New.CreatedAt), "rotate without grace: %+v, %v", r2, err)
	_, err = lookup(ks, newSecret)
	mustBe(t, "token rotated without grace", err, storage.ErrNotFound)
	_, err = ks.RotateToken(ctx, admin, k.ID, oldID, storage.Rotation{Grace: -time.Second}, storage.NewSecret(Tokens.Generate()))
	mustBe(t, "negative grace", err, storage.ErrInvalid)
}

// testRetiringTokenStaysRetiring: when the successor of a token being
// rotated out goes, the old token still retires at the end of its grace
// and cannot be rotated again.
func testRetiringTokenStaysRetiring(t *testing.T, ks *storage.Keystore) {
	acc := newAccount(t, ks, "a", "apps")
	k, _ := newKey(t, ks, acc.ID, nil)
	r, err := ks.RotateToken(ctx, admin, k.ID, k.Tokens[0].ID, storage.Rotation{Grace: time.Hour}, storage.NewSecret(Tokens.Generate()))
	if err != nil {
		t.Fatal(err)
	}
	if err := ks.DeleteToken(ctx, admin, k.ID, r.New.ID); err != nil {
		t.Fatal(err)
	}
	got, err := ks.Key(ctx, admin, k.ID)
	check(t, err == nil && len(got.Tokens) == 1 && got.Tokens[0].Status(time.Now()) == storage.StatusExpiring &&
		got.Tokens[0].RotatedTo == "", "old token after its successor went: %+v, %v", got, err)
	_, err = ks.RotateToken(ctx, admin, k.ID, k.Tokens[0].ID, storage.Rotation{Grace: time.Hour}, storage.NewSecret(Tokens.Generate()))
	mustBe(t, "rotating a retiring token again", err, storage.ErrConflict)
}

// testRotateNeverOutlivesExpiry: a grace that outlives the token is
// clamped to its expiry, and the new token gets the old one's lifetime.
func testRotateNeverOutlivesExpiry(t *testing.T, ks *storage.Keystore) {
	acc := newAccount(t, ks, "a", "apps")
	soon := time.Now().Add(time.Minute).UTC().Truncate(time.Microsecond)
	k, err := ks.CreateKey(ctx, admin, storage.NewKey{Account: acc.ID, Name: "k", ExpiresAt: &soon}, storage.NewSecret(Tokens.Generate()))
	if err != nil {
		t.Fatal(err)
	}
	r, err := ks.RotateToken(ctx, admin, k.ID, k.Tokens[0].ID, storage.Rotation{Grace: 24 * time.Hour}, storage.NewSecret(Tokens.Generate()))
	if err != nil {
		t.Fatalf("a grace that outlives the token: %v, want it clamped", err)
	}
	check(t, r.Old.ExpiresAt.Equal(soon) && r.OldExpiresAt.Equal(soon), "old token expires %v (answer %v), want its own expiry %v",
		r.Old.ExpiresAt, r.OldExpiresAt, soon)
	life := soon.Sub(k.Tokens[0].CreatedAt)
	check(t, r.New.ExpiresAt != nil && r.New.ExpiresAt.Sub(r.New.CreatedAt) == life,
		"new token's lifetime %v, want the old one's %v", r.New.ExpiresAt, life)
}

// testRotatedTokenKeepsExpiry: a token being rotated out keeps its expiry.
func testRotatedTokenKeepsExpiry(t *testing.T, ks *storage.Keystore) {
	acc := newAccount(t, ks, "a", "apps")
	k, _ := newKey(t, ks, acc.ID, nil)
	r, err := ks.RotateToken(ctx, admin, k.ID, k.Tokens[0].ID, storage.Rotation{Grace: time.Hour}, storage.NewSecret(Tokens.Generate()))
	if err != nil {
		t.Fatal(err)
	}
	check(t, r.OldExpiresAt.Equal(*r.Old.ExpiresAt) && r.OldExpiresAt.Sub(*r.Old.RotatedAt) == time.Hour,
		"answer says the old token stops %v; it stops %v", r.OldExpiresAt, r.Old.ExpiresAt)
	_, err = ks.UpdateToken(ctx, admin, k.ID, r.Old.ID, storage.TokenPatch{ClearExpiry: true})
	mustBe(t, "clearing a retiring token's expiry", err, storage.ErrRetiring)
	later := r.Old.ExpiresAt.Add(time.Hour)
	_, err = ks.UpdateToken(ctx, admin, k.ID, r.Old.ID, storage.TokenPatch{ExpiresAt: &later})
	mustBe(t, "extending a retiring token", err, storage.ErrRetiring)
	sooner := r.Old.ExpiresAt.Add(-time.Minute).UTC().Truncate(time.Microsecond)
	name := "renamed"
	tok, err := ks.UpdateToken(ctx, admin, k.ID, r.Old.ID, storage.TokenPatch{LabelPatch: storage.LabelPatch{Name: &name}, ExpiresAt: &sooner})
	check(t, err == nil && tok.ExpiresAt.Equal(sooner) && tok.Name == name, "bringing a retiring token's end forward: %+v, %v", tok, err)
	_, err = ks.UpdateToken(ctx, admin, k.ID, r.Old.ID, storage.TokenPatch{ExpiresAt: &sooner})
	check(t, err == nil, "setting a retiring token's expiry to what it is: %v", err)
}

func testRecordUse(t *testing.T, ks *storage.Keystore) {
	acc := newAccount(t, ks, "a", "apps")
	k, _ := newKey(t, ks, acc.ID, nil)
	id := k.Tokens[0].ID
	at := time.Now().Add(-time.Minute).UTC().Truncate(time.Microsecond)
	if err := ks.RecordUse(ctx, map[string]time.Time{id: at, "tok_gone": at}); err != nil {
		t.Fatal(err)
	}
	if err := ks.RecordUse(ctx, map[string]time.Time{id: at.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	got, err := ks.Key(ctx, admin, k.ID)
	check(t, err == nil && got.Tokens[0].LastUsedAt != nil && got.Tokens[0].LastUsedAt.Equal(at),
		"last used %v, want %v (never backwards)", got.Tokens[0].LastUsedAt, at)
}
