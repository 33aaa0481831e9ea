package storage

import (
	"context"
	"errors"
	"slices"
	"testing"
)

// TestImportReplacesTokenOfAnotherKey imports a token record whose id
// already exists under another key, with another hash: the record replaces
// the old token entirely. The old value must stop verifying (else it
// would verify as the new record's key, with that key's scopes), and the
// old key must no longer list the token.
func TestImportReplacesTokenOfAnotherKey(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		acc := newTestAccount(t, s, "a", "*")
		narrow, oldSecret := newTestKey(t, s, acc.ID, []string{"apps:read"})
		wide, _ := newTestKey(t, s, acc.ID, []string{"*"})
		tokID := narrow.Tokens[0].ID

		newSecret := testTokens.Generate()
		h := HashToken(newSecret)
		rec := ExportRecord{Type: RecordToken, Token: &TokenRecord{
			Token: Token{ID: tokID, KeyID: wide.ID, Name: "moved", Hint: Hint(newSecret), Tags: map[string]string{}},
			Hash:  h[:],
		}}
		for range 2 { // importing twice changes nothing
			if err := s.Import(ctx, "import", rec); err != nil {
				t.Fatal(err)
			}
		}

		if cred, err := s.LookupToken(ctx, HashToken(oldSecret)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("the replaced token's old value still verifies: %+v, %v", cred, err)
		}
		cred, err := s.LookupToken(ctx, h)
		if err != nil || cred.TokenID != tokID || cred.KeyID != wide.ID || !slices.Equal(cred.Scopes, []string{"*"}) {
			t.Fatalf("the imported token: %+v, %v", cred, err)
		}
		got, err := s.GetKey(ctx, narrow.ID)
		if err != nil || len(got.Tokens) != 0 {
			t.Fatalf("the old key after its token moved: %+v, %v", got, err)
		}
		got, err = s.GetKey(ctx, wide.ID)
		if err != nil || len(got.Tokens) != 2 {
			t.Fatalf("the new key after the import: %+v, %v", got, err)
		}
		if n := orphanTokens(t, s); n != 0 {
			t.Fatalf("%d orphan tokens or index entries", n)
		}
		// The old value must not be taken for a conflict either: a token
		// with it can be created again.
		if err := s.CreateToken(ctx, "test", &NewToken{Token: Token{KeyID: narrow.ID, Hint: Hint(oldSecret)}, Hash: HashToken(oldSecret)}); err != nil {
			t.Fatalf("creating a token with the replaced value: %v", err)
		}
	})
}
