package storagetest

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/keygate/keygate/storage"
)

// A store written by Keygate before records and exports were versioned
// (version 0): its export, and the values of its tokens. storage/bolt's
// testdata holds the same store as a file.
var (
	//go:embed testdata/v0.export.jsonl
	v0Export []byte
	//go:embed testdata/v0.tokens.json
	v0Tokens []byte
)

// ImportV0 imports the version 0 export into ks.
func ImportV0(t testing.TB, ks *storage.Keystore) {
	t.Helper()
	Import(t, ks, bytes.Split(v0Export, []byte("\n")))
}

// CheckV0 checks that ks holds the version 0 store: every token verifies
// with its key, account and scopes, the rotated-out token still retires
// beside its successor, the disabled account's key is disabled, and lists
// and audit read.
func CheckV0(t testing.TB, ks *storage.Keystore) {
	t.Helper()
	var values map[string]string
	if err := json.Unmarshal(v0Tokens, &values); err != nil {
		t.Fatal(err)
	}
	const (
		ciBot, off             = "acc_0358ARzsJHazK6dfA0Tv3W", "acc_0358ARzsl5XSCLYqxCxHKA"
		deployKey, inheritKey  = "key_0358ARzsl5XSCLYqxCxHKC", "key_0358ARztAByqQ6yFWX9Fy5"
		offKey                 = "key_0358ARztGRIcTSXP3tPyXl"
		retiring, successor    = "tok_0358ARzsl5XSCLYqxCxHKD", "tok_0358ARztGRIcTSXP3tPyXj"
		inheritToken, offToken = "tok_0358ARztAByqQ6yFWX9Fy6", "tok_0358ARztGRIcTSXP3tPyXm"
	)
	inheritExpiry := time.Date(2099, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, want := range []struct {
		name, token, key, account string
		scopes                    []string
		disabled                  bool
		expires                   bool
	}{
		{"deploy", retiring, deployKey, ciBot, []string{"apps:run"}, false, true},
		{"deploy-rotated", successor, deployKey, ciBot, []string{"apps:run"}, false, false},
		{"inherit", inheritToken, inheritKey, ciBot, []string{"apps", "runs:read"}, false, true},
		{"offkey", offToken, offKey, off, []string{"apps:read"}, true, false},
	} {
		cred, err := lookup(ks, values[want.name])
		if err != nil {
			t.Fatalf("token %s: %v", want.name, err)
		}
		check(t, cred.TokenID == want.token && cred.KeyID == want.key && cred.AccountID == want.account &&
			slices.Equal(cred.Scopes, want.scopes) && cred.Disabled == want.disabled && cred.ExpiresAt.IsZero() != want.expires,
			"token %s: credential %+v", want.name, cred)
		if want.name == "inherit" {
			check(t, cred.ExpiresAt.Equal(inheritExpiry), "inherit expires %v, want %v", cred.ExpiresAt, inheritExpiry)
		}
	}
	deploy, err := ks.Key(ctx, admin, deployKey)
	if err != nil {
		t.Fatal(err)
	}
	statuses := map[string]string{}
	for _, tok := range deploy.Tokens {
		statuses[tok.ID] = tok.Status(time.Now())
	}
	check(t, len(deploy.Tokens) == 2 && statuses[retiring] == storage.StatusExpiring && statuses[successor] == storage.StatusActive &&
		deploy.Tags["env"] == "prod" && deploy.Description == "d deploy", "deploy key: %+v", deploy)
	check(t, deploy.Tokens[0].RotatedTo == successor, "the retiring token lost its successor: %+v", deploy.Tokens[0])
	keys, _, err := ks.Keys(ctx, admin, storage.KeyFilter{Account: "ci-bot"})
	check(t, err == nil && len(keys) == 2, "ci-bot's keys: %+v, %v", keys, err)
	accounts, _, err := ks.Accounts(ctx, admin, storage.ListOptions{})
	check(t, err == nil && len(accounts) == 2 && accounts[1].Disabled && accounts[0].Team == "platform", "accounts: %+v, %v", accounts, err)
	events, _, err := ks.Audit(ctx, admin, storage.AuditFilter{})
	check(t, err == nil && len(events) > 0, "audit: %+v, %v", events, err)
	for _, e := range events {
		check(t, e.ID != "" && !e.At.IsZero() && e.Actor == "admin" && e.Action != "" && e.Target != "" && e.AccountID != "",
			"audit event not read whole: %+v", e)
	}
}
