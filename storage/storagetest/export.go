package storagetest

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/token"
)

// Export returns the keystore's export as JSON lines.
func Export(t testing.TB, ks *storage.Keystore) [][]byte {
	t.Helper()
	var lines [][]byte
	err := ks.Export(ctx, admin, func(rec storage.ExportRecord) error {
		raw, err := json.Marshal(rec)
		lines = append(lines, raw)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

// Import imports JSON lines as Export writes them.
func Import(t testing.TB, ks *storage.Keystore, lines [][]byte) {
	t.Helper()
	for _, line := range lines {
		if len(line) == 0 {
			continue
		}
		var rec storage.ExportRecord
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatal(err)
		}
		if _, err := ks.Import(ctx, admin, rec); err != nil {
			t.Fatalf("importing %s: %v", line, err)
		}
	}
}

// Moved is what ExportImport leaves in a store, to check on another.
type Moved struct {
	Inherit, Narrow         *storage.Key
	Secrets                 []string
	RetiringID, SuccessorID string
}

// movedAccountPolicy and movedKeyPolicy are the policies Populate gives
// its account and its narrow key.
var (
	movedAccountPolicy = storage.Policy{Limits: []storage.Window{{Name: "day", Limit: 10000, Length: 24 * time.Hour}},
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	movedKeyPolicy = storage.Policy{Limits: []storage.Window{{Name: "burst", Limit: 20, Length: time.Second}},
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")},
		Credits:    &storage.Credits{Remaining: 700, Refill: &storage.Refill{Amount: 1000, Interval: storage.RefillMonthly, Day: 31}}}
)

// Populate fills ks with an account with a usage policy, a key that
// inherits, and a key with its own scopes and policy (with credits, 300
// of them spent) whose token was rotated with a grace.
func Populate(t testing.TB, ks *storage.Keystore) Moved {
	t.Helper()
	acc, err := ks.CreateAccount(ctx, admin, storage.NewAccount{Name: "movers", Kind: storage.KindService,
		Scopes: []string{"apps", "runs"}, Policy: movedAccountPolicy})
	if err != nil {
		t.Fatal(err)
	}
	inherit, secret1 := newKey(t, ks, acc.ID, nil)
	start := *movedKeyPolicy.Credits
	start.Remaining = 1000
	secret2 := Tokens.Generate()
	narrow, err := ks.CreateKey(ctx, admin, storage.NewKey{Account: acc.ID, Name: "k", Scopes: []string{"apps:read"},
		Policy: storage.Policy{Limits: movedKeyPolicy.Limits, AllowedIPs: movedKeyPolicy.AllowedIPs, Credits: &start}},
		storage.NewSecret(secret2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ks.LeaseCredits(ctx, narrow.ID, 300, time.Now()); err != nil {
		t.Fatal(err)
	}
	sec, secret3 := newSecret()
	r, err := ks.RotateToken(ctx, admin, narrow.ID, narrow.Tokens[0].ID, storage.Rotation{Grace: time.Hour}, sec)
	if err != nil {
		t.Fatal(err)
	}
	return Moved{Inherit: inherit, Narrow: narrow, Secrets: []string{secret1, secret2, secret3},
		RetiringID: narrow.Tokens[0].ID, SuccessorID: r.New.ID}
}

// CheckMoved checks that dst holds what Populate made, imported twice.
func CheckMoved(t testing.TB, dst *storage.Keystore, m Moved, lines [][]byte) {
	t.Helper()
	for _, line := range lines {
		for _, secret := range m.Secrets {
			check(t, !strings.Contains(string(line), secret[3:20]), "an export line holds a token value: %s", line)
		}
	}
	for _, secret := range m.Secrets {
		if _, err := dst.LookupToken(ctx, token.Sum(secret)); err != nil {
			t.Fatalf("a moved token does not verify: %v", err)
		}
	}
	got, err := dst.Key(ctx, admin, m.Inherit.ID)
	check(t, err == nil && got.Scopes == nil && slices.Equal(got.EffectiveScopes, []string{"apps", "runs"}),
		"inheriting key after the move: %+v, %v", got, err)
	got, err = dst.Key(ctx, admin, m.Narrow.ID)
	check(t, err == nil && len(got.Tokens) == 2, "rotated key after the move: %+v, %v", got, err)
	checkPolicy(t, "the narrow key's policy after the move", got.Policy, movedKeyPolicy)
	moved := balance(t, dst, m.Narrow.ID)
	check(t, moved != nil && moved.Refill != nil && moved.Refill.Day == 31 && moved.NextRefill.Equal(m.Narrow.Policy.Credits.NextRefill),
		"the narrow key's credit record after the move: %+v, want next refill %v", moved, m.Narrow.Policy.Credits.NextRefill)
	acc, err := dst.Account(ctx, admin, m.Narrow.AccountID)
	check(t, err == nil, "the account after the move: %v", err)
	checkPolicy(t, "the account's policy after the move", acc.Policy, movedAccountPolicy)
	statuses := map[string]string{}
	for _, tok := range got.Tokens {
		statuses[tok.ID] = tok.Status(time.Now())
		if tok.ID == m.RetiringID {
			check(t, tok.RotatedTo == m.SuccessorID, "the retiring token lost its successor: %+v", tok)
		}
	}
	check(t, statuses[m.RetiringID] == storage.StatusExpiring && statuses[m.SuccessorID] == storage.StatusActive,
		"statuses after the move: %v", statuses)
	again := Export(t, dst)
	check(t, len(again) == len(lines), "export after a double import has %d records, want %d", len(again), len(lines))
}

func testExportImport(t *testing.T, ks *storage.Keystore) {
	m := Populate(t, ks)
	lines := Export(t, ks)
	for _, line := range lines { // onto itself: changes nothing
		var rec storage.ExportRecord
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatal(err)
		}
		if outcome, err := ks.Import(ctx, admin, rec); err != nil || outcome != storage.ImportUnchanged {
			t.Fatalf("importing %s onto its store: %v, %v; want unchanged", line, outcome, err)
		}
	}
	CheckMoved(t, ks, m, lines)
	var rec storage.ExportRecord
	if err := json.Unmarshal(lines[0], &rec); err != nil || rec.Version != storage.ExportVersion {
		t.Fatalf("export record version %d, %v; want %d", rec.Version, err, storage.ExportVersion)
	}
	err := ks.Export(ctx, member(&storage.Account{ID: "acc_x"}, "key_x", "*"), func(storage.ExportRecord) error { return nil })
	mustBe(t, "export by an untrusted principal", err, storage.ErrForbidden)
}

// testImportReplacesToken: importing a token whose id exists under another
// key with another hash replaces it whole: the old value stops verifying.
func testImportReplacesToken(t *testing.T, ks *storage.Keystore) {
	acc := newAccount(t, ks, "a", "apps:read", "*")
	narrow, oldSecret := newKey(t, ks, acc.ID, []string{"apps:read"})
	wide, _ := newKey(t, ks, acc.ID, []string{"*"})
	newHash := token.Sum(Tokens.Generate())
	tok := narrow.Tokens[0]
	rec := storage.ExportRecord{Type: storage.RecordToken, Token: &storage.ExportToken{
		ID: tok.ID, Key: wide.ID, Name: tok.Name, Hint: "sk-new…", CreatedAt: tok.CreatedAt, Hash: newHash[:]}}
	outcome, err := ks.Import(ctx, admin, rec)
	if err != nil || outcome != storage.ImportUpdated {
		t.Fatalf("importing over a token: %v, %v; want updated", outcome, err)
	}
	if outcome, err := ks.Import(ctx, admin, rec); err != nil || outcome != storage.ImportUnchanged {
		t.Fatalf("importing it again: %v, %v; want unchanged", outcome, err)
	}
	_, err = lookup(ks, oldSecret)
	mustBe(t, "the replaced token's old value", err, storage.ErrNotFound)
	cred, err := ks.LookupToken(ctx, newHash)
	check(t, err == nil && cred.KeyID == wide.ID && cred.TokenID == tok.ID, "the imported token: %+v, %v", cred, err)
	got, err := ks.Key(ctx, admin, narrow.ID)
	check(t, err == nil && len(got.Tokens) == 0, "the old key still lists the token: %+v, %v", got, err)
	got, err = ks.Key(ctx, admin, wide.ID)
	check(t, err == nil && len(got.Tokens) == 2, "the new key after the import: %+v, %v", got, err)
	// The old value is not taken for a conflict either: a token with it
	// can be created again.
	_, err = ks.CreateToken(ctx, admin, narrow.ID, storage.NewToken{}, storage.NewSecret(oldSecret))
	check(t, err == nil, "creating a token with the replaced value: %v", err)
}

func testImportRejectsBadRecords(t *testing.T, ks *storage.Keystore) {
	for _, rec := range []storage.ExportRecord{
		{Type: storage.RecordAccount, Account: &storage.ExportAccount{ID: "acc_x", Name: "x",
			ExportPolicy: storage.ExportPolicy{Limits: []storage.ExportWindow{{Name: "w", Limit: 1, Window: "forever"}}}}},
		{Type: storage.RecordAccount, Account: &storage.ExportAccount{ID: "acc_x", Name: "x",
			ExportPolicy: storage.ExportPolicy{AllowedIPs: []string{"10.0.0.0/8", "nowhere"}}}},
		{Type: "bogus"},
		{Type: storage.RecordAccount},
		{Type: storage.RecordAccount, Account: &storage.ExportAccount{ID: "acc_x", Name: "x", Kind: "robot"}},
		{Type: storage.RecordAccount, Version: storage.ExportVersion + 1, Account: &storage.ExportAccount{ID: "acc_x", Name: "x"}},
		{Type: storage.RecordKey, Key: &storage.ExportKey{ID: "key_x"}},
		{Type: storage.RecordToken, Token: &storage.ExportToken{ID: "tok_x", Key: "key_x", Hash: []byte("short")}},
	} {
		_, err := ks.Import(ctx, admin, rec)
		mustBe(t, "bad record", err, storage.ErrInvalid)
	}
	h := token.Sum("x")
	_, err := ks.Import(ctx, admin, storage.ExportRecord{Type: storage.RecordToken, Token: &storage.ExportToken{ID: "tok_x", Key: "key_missing", Hash: h[:]}})
	mustBe(t, "token of a missing key", err, storage.ErrNotFound)
	_, err = ks.Import(ctx, admin, storage.ExportRecord{Type: storage.RecordKey, Key: &storage.ExportKey{ID: "key_x", Account: "acc_missing"}})
	mustBe(t, "key of a missing account", err, storage.ErrNotFound)
	acc := newAccount(t, ks, "taken")
	_, err = ks.Import(ctx, admin, storage.ExportRecord{Type: storage.RecordKey, Key: &storage.ExportKey{ID: "key_x", Account: acc.ID,
		Credits: &storage.ExportCredits{Remaining: -5}}})
	invalidField(t, "a key with a negative balance", err, "credits.remaining")
	_, err = ks.Import(ctx, admin, storage.ExportRecord{Type: storage.RecordKey, Key: &storage.ExportKey{ID: "key_x", Account: acc.ID,
		ExportPolicy: storage.ExportPolicy{Limits: []storage.ExportWindow{{Name: "w", Limit: 0, Window: "1s"}}}}})
	invalidField(t, "a key with a zero limit", err, "limits[0].limit")
	_, err = ks.Key(ctx, admin, "key_x")
	mustBe(t, "a refused key record", err, storage.ErrNotFound)
	_, err = ks.Import(ctx, admin, storage.ExportRecord{Type: storage.RecordAccount, Account: &storage.ExportAccount{ID: "acc_other", Name: acc.Name}})
	mustConflict(t, "an account whose name is taken", err, "name", `account name "taken" is taken`)
	_, secret := newKey(t, ks, acc.ID, nil)
	k, _ := newKey(t, ks, acc.ID, nil)
	taken := token.Sum(secret)
	_, err = ks.Import(ctx, admin, storage.ExportRecord{Type: storage.RecordToken, Token: &storage.ExportToken{ID: "tok_other", Key: k.ID, Hash: taken[:]}})
	mustConflict(t, "a token whose hash is taken", err, "hash", "tok_other")
}
