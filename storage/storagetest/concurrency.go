package storagetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/token"
)

func rounds() int {
	if testing.Short() {
		return 5
	}
	return 20
}

// testConcurrentRotations races rotations of one token: exactly one wins,
// never two active successors.
func testConcurrentRotations(t *testing.T, ks *storage.Keystore) {
	acc := newAccount(t, ks, "a", "apps")
	for range rounds() {
		for _, grace := range []time.Duration{0, time.Hour} {
			k, _ := newKey(t, ks, acc.ID, nil)
			tid := k.Tokens[0].ID
			var wg sync.WaitGroup
			var mu sync.Mutex
			wins := 0
			for range 8 {
				wg.Go(func() {
					_, err := ks.RotateToken(ctx, admin, k.ID, tid, storage.Rotation{Grace: grace}, storage.NewSecret(Tokens.Generate()))
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						wins++
					case errors.Is(err, storage.ErrConflict), errors.Is(err, storage.ErrNotFound):
					default:
						t.Errorf("rotate: %v", err)
					}
				})
			}
			wg.Wait()
			got, err := ks.Key(ctx, admin, k.ID)
			if err != nil {
				t.Fatal(err)
			}
			active := 0
			for _, tok := range got.Tokens {
				if tok.RotatedAt == nil {
					active++
				}
			}
			want := 1
			if grace > 0 {
				want = 2
			}
			check(t, wins == 1 && active == 1 && len(got.Tokens) == want,
				"grace %v: %d rotations won, %d active of %d tokens; want 1, 1 of %d", grace, wins, active, len(got.Tokens), want)
		}
	}
}

// testConcurrentLifecycle races rotations, token creations and the key's
// deletion: the key goes with every token, none is left behind.
func testConcurrentLifecycle(t *testing.T, ks *storage.Keystore) {
	acc := newAccount(t, ks, "a", "apps")
	var mu sync.Mutex
	var hashes []token.Hash
	remember := func(s storage.Secret) storage.Secret {
		mu.Lock()
		hashes = append(hashes, s.Hash)
		mu.Unlock()
		return s
	}
	for range rounds() {
		k, secret := newKey(t, ks, acc.ID, nil)
		remember(storage.NewSecret(secret))
		var wg sync.WaitGroup
		for i := range 6 {
			wg.Go(func() {
				var err error
				switch i % 3 {
				case 0:
					err = ks.DeleteKey(ctx, admin, k.ID)
				case 1:
					_, err = ks.RotateToken(ctx, admin, k.ID, k.Tokens[0].ID, storage.Rotation{Grace: time.Hour},
						remember(storage.NewSecret(Tokens.Generate())))
				case 2:
					_, err = ks.CreateToken(ctx, admin, k.ID, storage.NewToken{}, remember(storage.NewSecret(Tokens.Generate())))
				}
				if err != nil && !errors.Is(err, storage.ErrNotFound) && !errors.Is(err, storage.ErrConflict) {
					t.Errorf("concurrent op %d: %v", i%3, err)
				}
			})
		}
		wg.Wait()
		_, err := ks.Key(ctx, admin, k.ID)
		mustBe(t, "key after its deletion", err, storage.ErrNotFound)
	}
	for _, h := range hashes {
		_, err := ks.LookupToken(ctx, h)
		mustBe(t, "a token of a deleted key", err, storage.ErrNotFound)
		err = ks.Backend().View(ctx, func(tx storage.Tx) error {
			_, err := tx.TokenByHash(h)
			return err
		})
		mustBe(t, "a token record of a deleted key", err, storage.ErrNotFound)
	}
}

// testRotateRacesExpiryEdit races clearing a token's expiry against its
// rotation with a grace: the token being rotated out must never be left
// without an expiry (the guard is read inside the transaction).
func testRotateRacesExpiryEdit(t *testing.T, ks *storage.Keystore) {
	acc := newAccount(t, ks, "a", "apps")
	for range 2 * rounds() {
		soon := time.Now().Add(time.Hour)
		k, err := ks.CreateKey(ctx, admin, storage.NewKey{Account: acc.ID, Name: "k", ExpiresAt: &soon}, storage.NewSecret(Tokens.Generate()))
		if err != nil {
			t.Fatal(err)
		}
		tid := k.Tokens[0].ID
		before := time.Now()
		var wg sync.WaitGroup
		wg.Go(func() {
			_, err := ks.UpdateToken(ctx, admin, k.ID, tid, storage.TokenPatch{ClearExpiry: true})
			if err != nil && !errors.Is(err, storage.ErrRetiring) {
				t.Errorf("clearing the expiry: %v", err)
			}
		})
		wg.Go(func() {
			if _, err := ks.RotateToken(ctx, admin, k.ID, tid, storage.Rotation{Grace: time.Minute}, storage.NewSecret(Tokens.Generate())); err != nil {
				t.Errorf("rotating: %v", err)
			}
		})
		wg.Wait()
		got, err := ks.Key(ctx, admin, k.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range got.Tokens {
			if tok.ID != tid {
				continue
			}
			check(t, tok.RotatedAt != nil && tok.ExpiresAt != nil && !tok.ExpiresAt.After(time.Now().Add(time.Minute)) &&
				!tok.ExpiresAt.Before(before.Add(time.Minute-time.Second)),
				"after racing an expiry patch, the rotated-out token expires at %v, want about now+1m: %+v", tok.ExpiresAt, tok)
		}
	}
}

// testConcurrentAccountNames races creations and renames to one name:
// exactly one wins, and every loser is the same 409 naming the field,
// also where the backend, not the keystore's look-up, found the name
// taken (PostgreSQL's unique index, when two transactions looked at once).
func testConcurrentAccountNames(t *testing.T, ks *storage.Keystore) {
	for round := range rounds() {
		name := "contested-" + string(token.Alphabet[round])
		renamed := newAccount(t, ks, "renamed-"+string(token.Alphabet[round]))
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins := 0
		for i := range 8 {
			wg.Go(func() {
				var err error
				if i == 0 {
					_, err = ks.UpdateAccount(ctx, admin, renamed.ID, storage.AccountPatch{Name: &name})
				} else {
					_, err = ks.CreateAccount(ctx, admin, storage.NewAccount{Name: name})
				}
				mu.Lock()
				defer mu.Unlock()
				var e *storage.Error
				switch {
				case err == nil:
					wins++
				case !errors.As(err, &e) || !errors.Is(err, storage.ErrConflict) || e.Field != "name":
					t.Errorf("a losing write of a contested name: %#v, want a conflict naming field name", err)
				}
			})
		}
		wg.Wait()
		check(t, wins == 1, "%d writes of one account name succeeded, want 1", wins)
	}
}
