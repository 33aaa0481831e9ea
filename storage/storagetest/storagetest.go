// Package storagetest is the conformance suite of storage backends: Run
// drives the keystore (package storage) over a backend through every rule,
// so a backend written outside Keygate can check itself with
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(t testing.TB) storage.Backend { return openMine(t) })
//	}
package storagetest

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/token"
)

// Open returns a fresh, empty backend for one test, closed when it ends.
type Open func(t testing.TB) storage.Backend

// test is one conformance test.
type test struct {
	name string
	fn   func(t *testing.T, ks *storage.Keystore)
}

// tests are the conformance tests, in the order they run.
var tests = []test{
	{"Accounts", testAccounts},
	{"ListAccountsPages", testListAccountsPages},
	{"KeysAndLookup", testKeysAndLookup},
	{"ListKeysFilters", testListKeysFilters},
	{"Visibility", testVisibility},
	{"Grants", testGrants},
	{"Covering", testCovering},
	{"TokenLifecycle", testTokenLifecycle},
	{"RotateWithGrace", testRotateWithGrace},
	{"RetiringTokenStaysRetiring", testRetiringTokenStaysRetiring},
	{"RotateNeverOutlivesExpiry", testRotateNeverOutlivesExpiry},
	{"RotatedTokenKeepsExpiry", testRotatedTokenKeepsExpiry},
	{"UpdateKeyAndDeleteAccount", testUpdateKeyAndDeleteAccount},
	{"AuditTrail", testAuditTrail},
	{"RecordUse", testRecordUse},
	{"ChangeNotices", testChangeNotices},
	{"KeepsNoSecret", testKeepsNoSecret},
	{"ExportImport", testExportImport},
	{"ImportReplacesToken", testImportReplacesToken},
	{"ImportRejectsBadRecords", testImportRejectsBadRecords},
	{"ConcurrentRotations", testConcurrentRotations},
	{"ConcurrentLifecycle", testConcurrentLifecycle},
	{"ConcurrentAccountNames", testConcurrentAccountNames},
	{"RotateRacesExpiryEdit", testRotateRacesExpiryEdit},
	{"Policies", testPolicies},
	{"PolicyRule", testPolicyRule},
	{"Credits", testCredits},
	{"CreditRefill", testCreditRefill},
	{"ConcurrentLeases", testConcurrentLeases},
	{"SyncWindows", testSyncWindows},
	{"PruneWindows", testPruneWindows},
	{"ConcurrentSyncs", testConcurrentSyncs},
}

// Run runs the conformance suite, each test as a subtest on a fresh
// backend from open.
func Run(t *testing.T, open Open) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks := storage.New(open(t))
			tt.fn(t, ks)
		})
	}
}

// Tokens is the token format of the suite.
var Tokens, _ = token.NewFormat(token.DefaultPrefix)

var ctx = context.Background()

// admin is the trusted principal the suite mostly acts as.
var admin = storage.Trusted

// newAccount creates an account.
func newAccount(t testing.TB, ks *storage.Keystore, name string, scopes ...string) *storage.Account {
	t.Helper()
	a, err := ks.CreateAccount(ctx, admin, storage.NewAccount{Name: name, Kind: storage.KindService, Scopes: scopes})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// newKey creates a key with one token on account and returns the key and
// the token's value.
func newKey(t testing.TB, ks *storage.Keystore, account string, scopes []string) (*storage.Key, string) {
	t.Helper()
	secret := Tokens.Generate()
	k, err := ks.CreateKey(ctx, admin, storage.NewKey{Account: account, Name: "k", Scopes: scopes}, storage.NewSecret(secret))
	if err != nil {
		t.Fatal(err)
	}
	return k, secret
}

// newSecret returns a new token value and its Secret.
func newSecret() (storage.Secret, string) {
	v := Tokens.Generate()
	return storage.NewSecret(v), v
}

// lookup verifies a token value.
func lookup(ks *storage.Keystore, secret string) (*storage.Credential, error) {
	return ks.LookupToken(ctx, token.Sum(secret))
}

// mustBe fails t unless err is (or wraps) want.
func mustBe(t testing.TB, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: %v, want %v", what, err, want)
	}
}

// mustConflict fails t unless err is a conflict (storage.Error, kind
// ErrConflict) that names field and whose message holds what.
func mustConflict(t testing.TB, what string, err error, field, holds string) {
	t.Helper()
	var e *storage.Error
	if !errors.As(err, &e) || !errors.Is(err, storage.ErrConflict) || e.Field != field || !strings.Contains(e.Message, holds) {
		t.Fatalf("%s: %#v, want a conflict naming field %q with %q in its message", what, err, field, holds)
	}
}

// check fails t with what unless ok.
func check(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		t.Fatalf(format, args...)
	}
}
