package storage

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var testTokens, _ = NewTokenFormat("sk")

// newTestKey creates a key with one token on account and returns the
// key and the token's value.
func newTestKey(t testing.TB, s Store, account string, scopes []string) (*Key, string) {
	t.Helper()
	secret := testTokens.Generate()
	k := &Key{AccountID: account, Name: "k", Scopes: scopes}
	first := &NewToken{Token: Token{Name: "default", Hint: Hint(secret)}, Hash: HashToken(secret)}
	if err := s.CreateKey(context.Background(), "test", k, first); err != nil {
		t.Fatal(err)
	}
	return k, secret
}

func newTestAccount(t testing.TB, s Store, name string, scopes ...string) *Account {
	t.Helper()
	a := &Account{Name: name, Kind: KindService, Scopes: scopes}
	if err := s.CreateAccount(context.Background(), "test", a); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestMigrationsConcurrentAndIdempotent(t *testing.T) {
	dsn := pgtest.DSN(t)
	schema := pgtest.Schema(t, dsn)
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 6 {
		wg.Go(func() {
			s, err := OpenPostgres(context.Background(), dsn, schema)
			if err == nil {
				s.Close()
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent start: %v", err)
		}
	}
	s, err := OpenPostgres(context.Background(), dsn, schema)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var n int
	if err := s.pool.QueryRow(context.Background(), "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil || n != 1 {
		t.Fatalf("schema_migrations rows = %d, %v; want 1", n, err)
	}
}

func TestOpenPostgresErrors(t *testing.T) {
	if _, err := OpenPostgres(context.Background(), "postgres://x@127.0.0.1:1/x", "Bad"); err == nil {
		t.Error("bad schema accepted")
	}
	_, err := OpenPostgres(context.Background(), "postgres://user:s3cret@127.0.0.1:1/x?connect_timeout=1", "keygate")
	if err == nil {
		t.Fatal("unreachable database accepted")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error leaks the password: %v", err)
	}
	_, err = OpenPostgres(context.Background(), "postgres://user:s3cret@[bad", "keygate")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("bad DSN: error %v", err)
	}
}

func TestAccounts(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		a := newTestAccount(t, s, "ci-bot", "apps", "runs:read")
		if a.ID == "" || a.CreatedAt.IsZero() {
			t.Fatalf("account not filled: %+v", a)
		}
		if err := s.CreateAccount(ctx, "test", &Account{Name: "ci-bot", Kind: KindUser}); !errors.Is(err, ErrConflict) {
			t.Fatalf("duplicate name: %v, want ErrConflict", err)
		}
		for _, ref := range []string{a.ID, "ci-bot"} {
			got, err := s.GetAccount(ctx, ref)
			if err != nil || got.ID != a.ID || !slices.Equal(got.Scopes, []string{"apps", "runs:read"}) {
				t.Fatalf("GetAccount(%q) = %+v, %v", ref, got, err)
			}
		}
		if _, err := s.GetAccount(ctx, "nobody"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown account: %v", err)
		}
		disabled := true
		team := "platform"
		got, err := s.UpdateAccount(ctx, "test", a.ID, AccountPatch{Disabled: &disabled, Team: &team})
		if err != nil || !got.Disabled || got.Team != "platform" || got.Name != "ci-bot" {
			t.Fatalf("UpdateAccount = %+v, %v", got, err)
		}
		if _, err := s.UpdateAccount(ctx, "test", "acc_missing", AccountPatch{Team: &team}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("update unknown: %v", err)
		}
		other := newTestAccount(t, s, "other")
		taken := "ci-bot"
		if _, err := s.UpdateAccount(ctx, "test", other.ID, AccountPatch{Name: &taken}); !errors.Is(err, ErrConflict) {
			t.Fatalf("rename to a taken name: %v, want ErrConflict", err)
		}
		renamed := "renamed"
		if got, err := s.UpdateAccount(ctx, "test", other.ID, AccountPatch{Name: &renamed}); err != nil || got.Name != renamed {
			t.Fatalf("rename: %+v, %v", got, err)
		}
		if got, err := s.GetAccount(ctx, renamed); err != nil || got.ID != other.ID {
			t.Fatalf("by new name: %+v, %v", got, err)
		}
		if _, err := s.GetAccount(ctx, "other"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("by old name: %v, want ErrNotFound", err)
		}
	})
}

func TestListAccountsPages(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		var ids []string
		for _, name := range []string{"a", "b", "c", "d", "e"} {
			ids = append(ids, newTestAccount(t, s, name).ID)
		}
		var seen []string
		after := ""
		for pages := 0; ; pages++ {
			page, next, err := s.ListAccounts(context.Background(), ListOptions{Limit: 2, After: after})
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range page {
				seen = append(seen, a.ID)
			}
			if next == "" {
				if pages != 2 {
					t.Fatalf("%d pages, want 3", pages+1)
				}
				break
			}
			after = next
		}
		if !slices.Equal(seen, ids) {
			t.Fatalf("listed %v, want %v in creation order", seen, ids)
		}
	})
}

func TestKeysAndLookup(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		acc := newTestAccount(t, s, "tower", "apps:read", "runs")
		inherit, secret1 := newTestKey(t, s, acc.ID, nil)
		narrow, secret2 := newTestKey(t, s, acc.ID, []string{"apps", "secrets"})

		if !slices.Equal(inherit.EffectiveScopes, []string{"apps:read", "runs"}) {
			t.Errorf("inheriting key effective scopes = %v", inherit.EffectiveScopes)
		}
		if !slices.Equal(narrow.EffectiveScopes, []string{"apps:read"}) {
			t.Errorf("narrowed key effective scopes = %v", narrow.EffectiveScopes)
		}

		cred, err := s.LookupToken(ctx, HashToken(secret2))
		if err != nil {
			t.Fatal(err)
		}
		if cred.KeyID != narrow.ID || cred.AccountID != acc.ID || cred.AccountName != "tower" ||
			cred.TokenID != narrow.Tokens[0].ID || !slices.Equal(cred.Scopes, []string{"apps:read"}) || cred.JoinedScopes != "apps:read" {
			t.Fatalf("credential = %+v", cred)
		}

		// Reducing the account reduces its keys, live.
		reduced := []string{"runs"}
		if _, err := s.UpdateAccount(ctx, "test", acc.ID, AccountPatch{Scopes: &reduced}); err != nil {
			t.Fatal(err)
		}
		if cred, _ := s.LookupToken(ctx, HashToken(secret2)); len(cred.Scopes) != 0 {
			t.Errorf("after account reduction, narrowed key holds %v", cred.Scopes)
		}
		if cred, _ := s.LookupToken(ctx, HashToken(secret1)); !slices.Equal(cred.Scopes, []string{"runs"}) {
			t.Errorf("after account reduction, inheriting key holds %v", cred.Scopes)
		}

		got, err := s.GetKey(ctx, inherit.ID)
		if err != nil || len(got.Tokens) != 1 || got.Tokens[0].Hint != Hint(secret1) || got.Scopes != nil {
			t.Fatalf("GetKey = %+v, %v", got, err)
		}

		if err := s.CreateKey(ctx, "test", &Key{AccountID: "acc_missing", Name: "x"},
			&NewToken{Token: Token{Hint: "x"}, Hash: HashToken("x")}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("key on unknown account: %v", err)
		}

		if err := s.DeleteKey(ctx, "test", inherit.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.LookupToken(ctx, HashToken(secret1)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("token of deleted key: %v", err)
		}
		if err := s.DeleteKey(ctx, "test", inherit.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
		if _, err := s.GetKey(ctx, inherit.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleted key: %v", err)
		}

		disabled := true
		if _, err := s.UpdateAccount(ctx, "test", acc.ID, AccountPatch{Disabled: &disabled}); err != nil {
			t.Fatal(err)
		}
		if cred, err := s.LookupToken(ctx, HashToken(secret2)); err != nil || !cred.Disabled {
			t.Fatalf("disabled account credential = %+v, %v", cred, err)
		}
	})
}

func TestListKeysFilters(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		a := newTestAccount(t, s, "a", "*")
		b := newTestAccount(t, s, "b", "*")
		tagged := &Key{AccountID: a.ID, Name: "tagged", Tags: map[string]string{"env": "prod", "team": "x"}}
		if err := s.CreateKey(ctx, "test", tagged, &NewToken{Token: Token{Hint: "h"}, Hash: HashToken("t1")}); err != nil {
			t.Fatal(err)
		}
		newTestKey(t, s, a.ID, nil)
		newTestKey(t, s, b.ID, nil)

		keys, _, err := s.ListKeys(ctx, KeyFilter{AccountID: a.ID})
		if err != nil || len(keys) != 2 {
			t.Fatalf("account filter: %d keys, %v", len(keys), err)
		}
		keys, _, err = s.ListKeys(ctx, KeyFilter{Tags: map[string]string{"env": "prod"}})
		if err != nil || len(keys) != 1 || keys[0].ID != tagged.ID || len(keys[0].Tokens) != 1 {
			t.Fatalf("tag filter: %+v, %v", keys, err)
		}
		keys, _, err = s.ListKeys(ctx, KeyFilter{Tags: map[string]string{"env": "dev"}})
		if err != nil || len(keys) != 0 {
			t.Fatalf("tag filter without match: %d keys, %v", len(keys), err)
		}
		keys, next, err := s.ListKeys(ctx, KeyFilter{ListOptions: ListOptions{Limit: 2}})
		if err != nil || len(keys) != 2 || next == "" {
			t.Fatalf("first page: %d keys, next %q, %v", len(keys), next, err)
		}
		rest, next2, err := s.ListKeys(ctx, KeyFilter{ListOptions: ListOptions{Limit: 2, After: next}})
		if err != nil || len(rest) != 1 || next2 != "" || rest[0].ID <= keys[1].ID {
			t.Fatalf("last page: %+v, next %q, %v", rest, next2, err)
		}
	})
}

func TestTokenStatus(t *testing.T) {
	now := time.Now()
	past, future := now.Add(-time.Second), now.Add(time.Hour)
	for _, tt := range []struct {
		tok  Token
		want string
	}{
		{Token{}, StatusActive},
		{Token{ExpiresAt: &future}, StatusActive},
		{Token{ExpiresAt: &past}, StatusExpired},
		{Token{ExpiresAt: &future, RotatedAt: &now}, StatusExpiring},
		{Token{ExpiresAt: &future, RotatedAt: &now, RotatedTo: ""}, StatusExpiring}, // successor gone: still retiring
		{Token{ExpiresAt: &past, RotatedAt: &now}, StatusExpired},
	} {
		if got := tt.tok.Status(now); got != tt.want {
			t.Errorf("%+v: status %q, want %q", tt.tok, got, tt.want)
		}
	}
}

// TestStoreKeepsNoSecret checks that no token value reaches the store.
func TestStoreKeepsNoSecret(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		acc := newTestAccount(t, s, "x", "*")
		_, secret := newTestKey(t, s, acc.ID, nil)
		if storeHolds(t, s, secret[6:len(secret)-4]) {
			t.Fatal("the store holds a token value")
		}
	})
}
