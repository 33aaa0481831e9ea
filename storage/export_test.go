package storage

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// exportAll returns a store's export as JSON lines.
func exportAll(t *testing.T, s Store) [][]byte {
	t.Helper()
	var lines [][]byte
	err := s.Export(context.Background(), func(rec ExportRecord) error {
		raw, err := json.Marshal(rec)
		lines = append(lines, raw)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

func importAll(t *testing.T, s Store, lines [][]byte) {
	t.Helper()
	for _, line := range lines {
		var rec ExportRecord
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatal(err)
		}
		if err := s.Import(context.Background(), "import", rec); err != nil {
			t.Fatalf("importing %s: %v", line, err)
		}
	}
}

// TestExportImportBetweenStores moves keys between every pair of store
// kinds: tokens keep working, retiring tokens keep retiring, inherited
// scopes stay inherited, and importing twice changes nothing.
func TestExportImportBetweenStores(t *testing.T) {
	ctx := context.Background()
	for _, from := range storeKinds {
		for _, to := range storeKinds {
			t.Run(from.name+"_to_"+to.name, func(t *testing.T) {
				src := from.open(t)
				acc := newTestAccount(t, src, "movers", "apps", "runs")
				inherit, secret1 := newTestKey(t, src, acc.ID, nil)
				narrow, secret2 := newTestKey(t, src, acc.ID, []string{"apps:read"})
				next, secret3 := newToken(t)
				if _, err := src.RotateToken(ctx, "test", narrow.ID, narrow.Tokens[0].ID, next, time.Hour); err != nil {
					t.Fatal(err)
				}
				lines := exportAll(t, src)
				for _, line := range lines {
					for _, secret := range []string{secret1, secret2, secret3} {
						if strings.Contains(string(line), secret[3:20]) {
							t.Fatalf("an export line holds a token value: %s", line)
						}
					}
				}

				dst := to.open(t)
				importAll(t, dst, lines)
				importAll(t, dst, lines) // idempotent
				for _, secret := range []string{secret1, secret2, secret3} {
					if _, err := dst.LookupToken(ctx, HashToken(secret)); err != nil {
						t.Fatalf("a moved token does not verify: %v", err)
					}
				}
				got, err := dst.GetKey(ctx, inherit.ID)
				if err != nil || got.Scopes != nil || !slices.Equal(got.EffectiveScopes, []string{"apps", "runs"}) {
					t.Fatalf("inheriting key after the move: %+v, %v", got, err)
				}
				got, err = dst.GetKey(ctx, narrow.ID)
				if err != nil || len(got.Tokens) != 2 {
					t.Fatalf("rotated key after the move: %+v, %v", got, err)
				}
				statuses := map[string]string{}
				for _, tok := range got.Tokens {
					statuses[tok.ID] = tok.Status(time.Now())
				}
				if statuses[narrow.Tokens[0].ID] != StatusExpiring || statuses[next.ID] != StatusActive {
					t.Fatalf("statuses after the move: %v", statuses)
				}
				if again := exportAll(t, dst); len(again) != len(lines) {
					t.Fatalf("export after a double import has %d records, want %d", len(again), len(lines))
				}
			})
		}
	}
}

func TestImportRejectsBadRecords(t *testing.T) {
	forEachStore(t, func(t *testing.T, s Store) {
		ctx := context.Background()
		for _, rec := range []ExportRecord{
			{Type: "bogus"},
			{Type: RecordAccount},
			{Type: RecordKey, Key: &Key{ID: "key_x"}},
			{Type: RecordToken, Token: &TokenRecord{Token: Token{ID: "tok_x", KeyID: "key_x"}, Hash: []byte("short")}},
		} {
			if err := s.Import(ctx, "test", rec); !errors.Is(err, ErrInvalid) {
				t.Errorf("%+v: %v, want ErrInvalid", rec, err)
			}
		}
		h := HashToken("x")
		err := s.Import(ctx, "test", ExportRecord{Type: RecordToken, Token: &TokenRecord{Token: Token{ID: "tok_x", KeyID: "key_missing"}, Hash: h[:]}})
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("token of a missing key: %v, want ErrNotFound", err)
		}
	})
}
