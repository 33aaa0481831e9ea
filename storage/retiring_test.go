package storage

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// TestRotationRacesExpiryClear races a patch that removes a token's expiry
// against its rotation with a grace, many times: whichever commits first,
// the rotated-out token must end with an expiry no later than the end of
// its grace. (A patch applied after the rotation would otherwise un-retire
// the token: it would never stop.)
func TestRotationRacesExpiryClear(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		acc := newTestAccount(t, s, "a", "apps")
		const grace = time.Hour
		rounds := 60
		if testing.Short() {
			rounds = 20
		}
		var patchedFirst, rotatedFirst int
		for range rounds {
			in := time.Now().Add(24 * time.Hour)
			k := &Key{AccountID: acc.ID, Name: "k"}
			first := mustNewToken(t)
			first.ExpiresAt = &in
			if err := s.CreateKey(ctx, "test", k, first); err != nil {
				t.Fatal(err)
			}
			start := make(chan struct{})
			var wg sync.WaitGroup
			var patchErr, rotateErr error
			wg.Go(func() {
				<-start
				_, patchErr = s.UpdateToken(ctx, "test", k.ID, first.ID, TokenPatch{ClearExpiry: true})
			})
			wg.Go(func() {
				<-start
				_, rotateErr = s.RotateToken(ctx, "test", k.ID, first.ID, mustNewToken(t), grace)
			})
			before := time.Now()
			close(start)
			wg.Wait()
			if rotateErr != nil {
				t.Fatalf("rotation: %v", rotateErr)
			}
			switch {
			case patchErr == nil:
				patchedFirst++
			case errors.Is(patchErr, ErrConflict):
				rotatedFirst++
			default:
				t.Fatalf("patch: %v, want success or ErrConflict", patchErr)
			}
			got, err := s.GetKey(ctx, k.ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, tok := range got.Tokens {
				if tok.ID != first.ID {
					continue
				}
				if tok.RotatedAt == nil {
					t.Fatalf("the old token is not retiring: %+v", tok)
				}
				if tok.ExpiresAt == nil || tok.ExpiresAt.After(time.Now().Add(grace)) || tok.ExpiresAt.Before(before.Add(grace-time.Minute)) {
					t.Fatalf("after racing a patch (error %v), the rotated-out token expires at %v, want about now+%v", patchErr, tok.ExpiresAt, grace)
				}
			}
		}
		t.Logf("%d rounds: the patch committed first %d times, the rotation %d times", rounds, patchedFirst, rotatedFirst)
	})
}

// TestRetiringTokenExpiryOnlyMovesEarlier: a token being rotated out keeps
// an expiry no later than the one its rotation gave it.
func TestRetiringTokenExpiryOnlyMovesEarlier(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		acc := newTestAccount(t, s, "a", "apps")
		k, _ := newTestKey(t, s, acc.ID, nil)
		old, err := s.RotateToken(ctx, "test", k.ID, k.Tokens[0].ID, mustNewToken(t), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		end := *old.ExpiresAt
		later := end.Add(time.Minute)
		for name, p := range map[string]TokenPatch{
			"clear":  {ClearExpiry: true},
			"extend": {ExpiresAt: &later},
		} {
			if _, err := s.UpdateToken(ctx, "test", k.ID, old.ID, p); !errors.Is(err, ErrRetiring) || !errors.Is(err, ErrConflict) {
				t.Errorf("%s the expiry of a retiring token: %v, want ErrRetiring (a conflict)", name, err)
			}
		}
		earlier := end.Add(-time.Minute).UTC().Truncate(time.Microsecond)
		name := "renamed"
		got, err := s.UpdateToken(ctx, "test", k.ID, old.ID, TokenPatch{LabelPatch: LabelPatch{Name: &name}, ExpiresAt: &earlier})
		if err != nil || !got.ExpiresAt.Equal(earlier) || got.Name != name {
			t.Fatalf("bringing a retiring token's end forward: %+v, %v", got, err)
		}
		if _, err := s.UpdateToken(ctx, "test", k.ID, old.ID, TokenPatch{ExpiresAt: &earlier}); err != nil {
			t.Fatalf("setting a retiring token's expiry to what it is: %v", err)
		}
	})
}

// TestRetireAt is the rule both stores apply when a token is rotated out:
// it stops at the end of its grace or at its own expiry, whichever comes
// first.
func TestRetireAt(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	soon, late := now.Add(time.Hour), now.Add(48*time.Hour)
	for _, tt := range []struct {
		name    string
		expires *time.Time
		grace   time.Duration
		want    time.Time
	}{
		{"no expiry", nil, 24 * time.Hour, now.Add(24 * time.Hour)},
		{"expiry after the grace", &late, 24 * time.Hour, now.Add(24 * time.Hour)},
		{"expiry before the grace ends", &soon, 24 * time.Hour, soon},
		{"expiry at the grace's end", &soon, time.Hour, soon},
		{"already expired", &now, time.Hour, now},
	} {
		if got := retireAt(now, tt.expires, tt.grace); !got.Equal(tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
