package storage

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func newToken(t testing.TB) (*NewToken, string) {
	t.Helper()
	secret := testTokens.Generate()
	return &NewToken{Token: Token{Hint: Hint(secret)}, Hash: HashToken(secret)}, secret
}

func TestRotateWithGrace(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		acc := newTestAccount(t, s, "a", "apps")
		k, oldSecret := newTestKey(t, s, acc.ID, nil)
		oldID := k.Tokens[0].ID
		next, newSecret := newToken(t)

		old, err := s.RotateToken(ctx, "test", k.ID, oldID, next, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if old.RotatedTo != next.ID || old.ExpiresAt == nil || time.Until(*old.ExpiresAt) > time.Hour || old.Status(time.Now()) != StatusExpiring {
			t.Fatalf("old token after rotation: %+v", old)
		}
		if next.Name != "default" || next.KeyID != k.ID {
			t.Fatalf("new token did not take the old one's name and key: %+v", next)
		}
		for _, secret := range []string{oldSecret, newSecret} {
			if _, err := s.LookupToken(ctx, HashToken(secret)); err != nil {
				t.Fatalf("during grace a token fails: %v", err)
			}
		}
		if _, err := s.RotateToken(ctx, "test", k.ID, oldID, mustNewToken(t), time.Hour); !errors.Is(err, ErrConflict) {
			t.Fatalf("rotating a rotated token: %v, want ErrConflict", err)
		}

		// Without grace the old token stops at once.
		next2, _ := newToken(t)
		if old, err := s.RotateToken(ctx, "test", k.ID, next.ID, next2, 0); err != nil || old != nil {
			t.Fatalf("rotate without grace: %+v, %v", old, err)
		}
		if _, err := s.LookupToken(ctx, HashToken(newSecret)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("token rotated without grace still found: %v", err)
		}
	})
}

func mustNewToken(t testing.TB) *NewToken {
	nt, _ := newToken(t)
	return nt
}

// TestRetiringTokenStaysRetiring: when the successor of a token being
// rotated out goes, the old token still retires at the end of its grace
// and cannot be rotated again.
func TestRetiringTokenStaysRetiring(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		acc := newTestAccount(t, s, "a", "apps")
		k, _ := newTestKey(t, s, acc.ID, nil)
		next := mustNewToken(t)
		if _, err := s.RotateToken(ctx, "test", k.ID, k.Tokens[0].ID, next, time.Hour); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteToken(ctx, "test", k.ID, next.ID); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetKey(ctx, k.ID)
		if err != nil || len(got.Tokens) != 1 || got.Tokens[0].Status(time.Now()) != StatusExpiring {
			t.Fatalf("old token after its successor went: %+v, %v", got, err)
		}
		if _, err := s.RotateToken(ctx, "test", k.ID, k.Tokens[0].ID, mustNewToken(t), time.Hour); !errors.Is(err, ErrConflict) {
			t.Fatalf("rotating a retiring token again: %v", err)
		}
	})
}

// TestRotateNeverOutlivesExpiry checks that a grace longer than the
// token's remaining life does not extend it.
func TestRotateNeverOutlivesExpiry(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		acc := newTestAccount(t, s, "a", "apps")
		soon := time.Now().Add(time.Minute).UTC().Truncate(time.Microsecond)
		k := &Key{AccountID: acc.ID, Name: "k"}
		first, _ := newToken(t)
		first.ExpiresAt = &soon
		if err := s.CreateKey(ctx, "test", k, first); err != nil {
			t.Fatal(err)
		}
		old, err := s.RotateToken(ctx, "test", k.ID, first.ID, mustNewToken(t), 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if !old.ExpiresAt.Equal(soon) {
			t.Fatalf("old token expires %v, want its own expiry %v", old.ExpiresAt, soon)
		}
	})
}

func TestTokenLifecycle(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		acc := newTestAccount(t, s, "a", "apps")
		k, _ := newTestKey(t, s, acc.ID, nil)

		extra, secret := newToken(t)
		extra.KeyID, extra.Name = k.ID, "ci"
		if err := s.CreateToken(ctx, "test", extra); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateToken(ctx, "test", &NewToken{Token: Token{KeyID: "key_missing", Hint: "x"}, Hash: HashToken("y")}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("token on a missing key: %v", err)
		}
		exp := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)
		name := "ci-renamed"
		tok, err := s.UpdateToken(ctx, "test", k.ID, extra.ID, TokenPatch{LabelPatch: LabelPatch{Name: &name}, ExpiresAt: &exp})
		if err != nil || tok.Name != name || !tok.ExpiresAt.Equal(exp) {
			t.Fatalf("UpdateToken = %+v, %v", tok, err)
		}
		if cred, err := s.LookupToken(ctx, HashToken(secret)); err != nil || !cred.ExpiresAt.Equal(exp) {
			t.Fatalf("lookup after expiry edit: %+v, %v", cred, err)
		}
		tok, err = s.UpdateToken(ctx, "test", k.ID, extra.ID, TokenPatch{ClearExpiry: true})
		if err != nil || tok.ExpiresAt != nil {
			t.Fatalf("clearing expiry: %+v, %v", tok, err)
		}
		if _, err := s.UpdateToken(ctx, "test", "key_other", extra.ID, TokenPatch{LabelPatch: LabelPatch{Name: &name}}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("token through the wrong key: %v", err)
		}

		if _, err := s.RevokeToken(ctx, "test", HashToken(secret)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RevokeToken(ctx, "test", HashToken(secret)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second revoke: %v", err)
		}
		if err := s.DeleteToken(ctx, "test", k.ID, k.Tokens[0].ID); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteToken(ctx, "test", k.ID, k.Tokens[0].ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
		got, err := s.GetKey(ctx, k.ID)
		if err != nil || len(got.Tokens) != 0 {
			t.Fatalf("key after its tokens went: %+v, %v", got, err)
		}
	})
}

func TestUpdateKeyAndDeleteAccount(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		acc := newTestAccount(t, s, "a", "apps", "runs")
		k, secret := newTestKey(t, s, acc.ID, []string{"apps"})
		scopes := []string{"runs"}
		tags := map[string]string{"env": "prod"}
		got, err := s.UpdateKey(ctx, "test", k.ID, KeyPatch{LabelPatch: LabelPatch{Tags: &tags}, Scopes: &scopes})
		if err != nil || len(got.Scopes) != 1 || got.Scopes[0] != "runs" || got.Tags["env"] != "prod" || len(got.Tokens) != 1 {
			t.Fatalf("UpdateKey = %+v, %v", got, err)
		}
		got, err = s.UpdateKey(ctx, "test", k.ID, KeyPatch{InheritScopes: true})
		if err != nil || got.Scopes != nil || len(got.EffectiveScopes) != 2 {
			t.Fatalf("inherit: %+v, %v", got, err)
		}
		if err := s.DeleteAccount(ctx, "test", acc.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.LookupToken(ctx, HashToken(secret)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("token of a deleted account: %v", err)
		}
		if _, err := s.GetKey(ctx, k.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("key of a deleted account: %v", err)
		}
	})
}

func TestAuditTrail(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		acc := newTestAccount(t, s, "a", "apps")
		other := newTestAccount(t, s, "b", "apps")
		k, secret := newTestKey(t, s, acc.ID, nil)
		if _, err := s.RotateToken(ctx, "rotator", k.ID, k.Tokens[0].ID, mustNewToken(t), time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteKey(ctx, "test", k.ID); err != nil {
			t.Fatal(err)
		}
		events, _, err := s.ListAudit(ctx, AuditFilter{Account: acc.ID})
		if err != nil {
			t.Fatal(err)
		}
		var actions []string
		for _, e := range events {
			actions = append(actions, e.Action)
		}
		want := []string{"key.delete", "token.rotate", "key.create", "account.create"}
		if len(actions) != len(want) {
			t.Fatalf("actions %v, want %v", actions, want)
		}
		for i := range want {
			if actions[i] != want[i] {
				t.Fatalf("actions %v, want %v (newest first)", actions, want)
			}
		}
		if events[1].Actor != "rotator" || events[1].Target != k.Tokens[0].ID {
			t.Fatalf("rotate event %+v", events[1])
		}
		page, next, err := s.ListAudit(ctx, AuditFilter{ListOptions: ListOptions{Limit: 2}})
		if err != nil || len(page) != 2 || next == "" {
			t.Fatalf("first page %d events, next %q, %v", len(page), next, err)
		}
		rest, _, err := s.ListAudit(ctx, AuditFilter{ListOptions: ListOptions{After: next}})
		if err != nil || len(rest) != 3 { // 5 events in all: 2 account.create + 3 above
			t.Fatalf("rest: %d, %v", len(rest), err)
		}
		if ev, _, _ := s.ListAudit(ctx, AuditFilter{Account: other.ID}); len(ev) != 1 {
			t.Fatalf("other account's events: %+v", ev)
		}
		if storeHolds(t, s, secret[3:20]) {
			t.Fatal("the store holds a token value")
		}
	})
}

// TestConcurrentLifecycle races rotations, deletions and creations on the
// same keys: no orphaned token, never two active successors of one token.
func TestConcurrentLifecycle(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		acc := newTestAccount(t, s, "a", "apps")
		rounds := 20
		if testing.Short() {
			rounds = 5
		}
		for range rounds {
			// rotate/rotate, with and without grace.
			for _, grace := range []time.Duration{0, time.Hour} {
				k, _ := newTestKey(t, s, acc.ID, nil)
				tid := k.Tokens[0].ID
				var wg sync.WaitGroup
				var mu sync.Mutex
				wins := 0
				for range 8 {
					wg.Go(func() {
						_, err := s.RotateToken(ctx, "test", k.ID, tid, mustNewToken(t), grace)
						mu.Lock()
						defer mu.Unlock()
						switch {
						case err == nil:
							wins++
						case errors.Is(err, ErrConflict), errors.Is(err, ErrNotFound):
						default:
							t.Errorf("rotate: %v", err)
						}
					})
				}
				wg.Wait()
				got, err := s.GetKey(ctx, k.ID)
				if err != nil {
					t.Fatal(err)
				}
				active := 0
				for _, tok := range got.Tokens {
					if tok.RotatedAt == nil {
						active++
					}
				}
				wantTokens := 1
				if grace > 0 {
					wantTokens = 2
				}
				if wins != 1 || active != 1 || len(got.Tokens) != wantTokens {
					t.Fatalf("grace %v: %d rotations won, %d active of %d tokens; want 1, 1 of %d", grace, wins, active, len(got.Tokens), wantTokens)
				}
			}

			// rotate/delete and create/delete on one key.
			k, _ := newTestKey(t, s, acc.ID, nil)
			var wg sync.WaitGroup
			for i := range 6 {
				wg.Go(func() {
					var err error
					switch i % 3 {
					case 0:
						err = s.DeleteKey(ctx, "test", k.ID)
					case 1:
						_, err = s.RotateToken(ctx, "test", k.ID, k.Tokens[0].ID, mustNewToken(t), time.Hour)
					case 2:
						nt := mustNewToken(t)
						nt.KeyID = k.ID
						err = s.CreateToken(ctx, "test", nt)
					}
					if err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrConflict) {
						t.Errorf("concurrent op %d: %v", i%3, err)
					}
				})
			}
			wg.Wait()
			if _, err := s.GetKey(ctx, k.ID); !errors.Is(err, ErrNotFound) {
				t.Fatalf("key survived its deletion: %v", err)
			}
		}
		if n := orphanTokens(t, s); n != 0 {
			t.Fatalf("orphaned tokens: %d", n)
		}
	})
}
