package admin

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/scope"
	"github.com/keygate/keygate/storage"
)

// The model store of FuzzAdminRequests (fuzz_test.go): it knows two
// accounts and three keys, and checks every write the API asks of it
// against the rules as DESIGN.md states them.

// fuzzStore serves fixed reads and checks every write. Methods it does
// not implement (added to storage.Store later) panic through the nil
// embedded Store, which fails the fuzz test loudly.
type fuzzStore struct {
	storage.Store
	t      *testing.T
	p      Principal
	start  time.Time
	now    time.Time // when the fixtures were made
	writes []string
	hash   *storage.Hash // what RevokeToken got
}

func (s *fuzzStore) fail(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("store write with invalid data (principal %q): "+format, append([]any{s.p.Actor}, args...)...)
}

func (s *fuzzStore) write(name, actor string) {
	s.t.Helper()
	s.writes = append(s.writes, name)
	if actor != s.p.Actor {
		s.fail("%s: actor %q", name, actor)
	}
}

// scopes checks a scope list written to the store: well-formed, normalized,
// and within the caller's own scopes.
func (s *fuzzStore) scopes(what string, list []string) {
	s.t.Helper()
	if len(list) > 100 {
		s.fail("%s: %d scopes", what, len(list))
	}
	for _, sc := range list {
		if !fuzzScope.MatchString(sc) {
			s.fail("%s: malformed scope %q", what, sc)
		}
		if !scope.AnyCovers(s.p.Scopes, sc) {
			s.fail("%s: scope %q not held by the caller %q", what, sc, s.p.Scopes)
		}
	}
	if !slices.Equal(list, scope.Normalize(list)) {
		s.fail("%s: scopes %q not normalized", what, list)
	}
}

func (s *fuzzStore) tags(what string, tags map[string]string) {
	s.t.Helper()
	if len(tags) > 50 {
		s.fail("%s: %d tags", what, len(tags))
	}
	for k, v := range tags {
		if !fuzzText(k, true, 100) || strings.Contains(k, ":") || !fuzzText(v, false, 500) {
			s.fail("%s: tag %q=%q", what, k, v)
		}
	}
}

func (s *fuzzStore) expiry(what string, t *time.Time) {
	s.t.Helper()
	if t != nil && !t.After(s.start) {
		s.fail("%s: expiry %v not in the future", what, t)
	}
}

func (s *fuzzStore) accountName(name string) {
	s.t.Helper()
	if !fuzzText(name, true, 200) || strings.HasPrefix(name, "acc_") {
		s.fail("account name %q", name)
	}
}

// visible reports whether the caller may manage account id's keys.
func (s *fuzzStore) visible(id string) bool {
	return s.p.AccountID == "" || scope.AnyCovers(s.p.Scopes, "accounts:read") || id == s.p.AccountID
}

// covered fails unless the caller holds every scope of a write's target.
func (s *fuzzStore) covered(what string, list []string) {
	s.t.Helper()
	for _, sc := range list {
		if !scope.AnyCovers(s.p.Scopes, sc) {
			s.fail("%s holds %q, which the caller %q does not", what, sc, s.p.Scopes)
		}
	}
}

// keyCovered fails unless the caller may write on key: it sees it, and it
// holds the key's own scopes (its account's when it inherits), unless the
// key is the caller's own.
func (s *fuzzStore) keyCovered(k *storage.Key) {
	s.t.Helper()
	if k == nil || !s.visible(k.AccountID) {
		s.fail("write on an unseen key %v", k)
	}
	if k.ID == s.p.Actor {
		return
	}
	if k.Scopes != nil {
		s.covered("key "+k.ID, k.Scopes)
	} else {
		s.covered("key "+k.ID, s.account(k.AccountID).Scopes)
	}
}

func (s *fuzzStore) account(ref string) *storage.Account {
	switch ref {
	case "acc_1", "own":
		return &storage.Account{ID: "acc_1", Name: "own", Kind: storage.KindService, Scopes: []string{"accounts", "api_keys", "apps"}, CreatedAt: s.now}
	case "acc_2", "other":
		return &storage.Account{ID: "acc_2", Name: "other", Kind: storage.KindUser, Scopes: []string{"apps"}, CreatedAt: s.now}
	}
	return nil
}

func (s *fuzzStore) key(id string) *storage.Key {
	exp1, exp2, rotated := s.now.Add(720*time.Hour), s.now.Add(time.Hour), s.now.Add(-time.Minute)
	tokens := []storage.Token{
		{ID: "tok_1", KeyID: id, Name: "default", Hint: "sk-Abc…wxyz", ExpiresAt: &exp1, CreatedAt: s.now.Add(-24 * time.Hour)},
		{ID: "tok_2", KeyID: id, Name: "old", Hint: "sk-Def…wxyz", ExpiresAt: &exp2, CreatedAt: s.now.Add(-48 * time.Hour), RotatedTo: "tok_1", RotatedAt: &rotated},
	}
	switch id {
	case "key_1":
		return &storage.Key{ID: id, AccountID: "acc_1", Name: "k1", EffectiveScopes: []string{"accounts", "api_keys", "apps"}, CreatedAt: s.now, Tokens: tokens}
	case "key_2":
		return &storage.Key{ID: id, AccountID: "acc_2", Name: "k2", Scopes: []string{"apps"}, EffectiveScopes: []string{"apps"}, CreatedAt: s.now, Tokens: tokens}
	case "key_3":
		return &storage.Key{ID: id, AccountID: "acc_1", Name: "k3", Scopes: []string{"apps"}, EffectiveScopes: []string{"apps"}, CreatedAt: s.now, Tokens: tokens}
	}
	return nil
}

func (s *fuzzStore) LookupToken(context.Context, storage.Hash) (*storage.Credential, error) {
	return nil, storage.ErrNotFound
}

func (s *fuzzStore) GetAccount(_ context.Context, ref string) (*storage.Account, error) {
	if a := s.account(ref); a != nil {
		return a, nil
	}
	return nil, storage.ErrNotFound
}

func (s *fuzzStore) ListAccounts(context.Context, storage.ListOptions) ([]storage.Account, string, error) {
	return nil, "", nil
}

func (s *fuzzStore) GetKey(_ context.Context, id string) (*storage.Key, error) {
	if k := s.key(id); k != nil {
		return k, nil
	}
	return nil, storage.ErrNotFound
}

func (s *fuzzStore) ListKeys(context.Context, storage.KeyFilter) ([]storage.Key, string, error) {
	return nil, "", nil
}

func (s *fuzzStore) ListAudit(context.Context, storage.AuditFilter) ([]storage.AuditEvent, string, error) {
	return nil, "", nil
}

func (s *fuzzStore) CreateAccount(_ context.Context, actor string, a *storage.Account) error {
	s.write("CreateAccount", actor)
	s.accountName(a.Name)
	if a.Kind != storage.KindUser && a.Kind != storage.KindService {
		s.fail("account kind %q", a.Kind)
	}
	if !fuzzText(a.Team, false, 200) {
		s.fail("team %q", a.Team)
	}
	s.scopes("account", a.Scopes)
	a.ID, a.CreatedAt = "acc_new", time.Now()
	return nil
}

func (s *fuzzStore) UpdateAccount(_ context.Context, actor, id string, p storage.AccountPatch) (*storage.Account, error) {
	s.write("UpdateAccount", actor)
	a := s.account(id)
	if a == nil || a.ID != id || !s.visible(id) {
		s.fail("UpdateAccount of %q", id)
	}
	s.covered("account "+id, a.Scopes)
	if p.Name != nil {
		s.accountName(*p.Name)
		a.Name = *p.Name
	}
	if p.Team != nil {
		if !fuzzText(*p.Team, false, 200) {
			s.fail("team %q", *p.Team)
		}
		a.Team = *p.Team
	}
	if p.Scopes != nil {
		s.scopes("account", *p.Scopes)
		a.Scopes = *p.Scopes
	}
	return a, nil
}

func (s *fuzzStore) DeleteAccount(_ context.Context, actor, id string) error {
	s.write("DeleteAccount", actor)
	if a := s.account(id); a == nil || !s.visible(id) {
		s.fail("DeleteAccount of %q", id)
	} else {
		s.covered("account "+id, a.Scopes)
	}
	return nil
}

func (s *fuzzStore) CreateKey(_ context.Context, actor string, k *storage.Key, first *storage.NewToken) error {
	s.write("CreateKey", actor)
	if a := s.account(k.AccountID); a == nil || a.ID != k.AccountID || !s.visible(k.AccountID) {
		s.fail("CreateKey on account %q", k.AccountID)
	}
	if k.AccountID != s.p.AccountID {
		s.covered("account "+k.AccountID, s.account(k.AccountID).Scopes)
	}
	if !fuzzText(k.Name, true, 200) || !fuzzText(k.Description, false, 2000) {
		s.fail("key name %q or description %q", k.Name, k.Description)
	}
	s.tags("key", k.Tags)
	if k.Scopes == nil && s.p.AccountID != "" {
		s.fail("key created through apikey_admin inherits its account's scopes live")
	}
	s.scopes("key", k.Scopes)
	s.expiry("first token", first.ExpiresAt)
	k.ID, k.CreatedAt, k.CreatedBy = "key_new", time.Now(), actor
	first.ID, first.KeyID, first.CreatedAt = "tok_new", k.ID, k.CreatedAt
	k.Tokens = []storage.Token{first.Token}
	return nil
}

func (s *fuzzStore) DeleteKey(_ context.Context, actor, id string) error {
	s.write("DeleteKey", actor)
	s.keyCovered(s.key(id))
	return nil
}

func (s *fuzzStore) UpdateKey(_ context.Context, actor, id string, p storage.KeyPatch) (*storage.Key, error) {
	s.write("UpdateKey", actor)
	k := s.key(id)
	s.keyCovered(k)
	if p.Name != nil && !fuzzText(*p.Name, true, 200) {
		s.fail("key name %q", *p.Name)
	}
	if p.Description != nil && !fuzzText(*p.Description, false, 2000) {
		s.fail("key description %q", *p.Description)
	}
	if p.Tags != nil {
		s.tags("key", *p.Tags)
	}
	if p.Scopes != nil {
		s.scopes("key", *p.Scopes)
	}
	if p.InheritScopes && (p.Scopes != nil || s.p.AccountID != "") {
		s.fail("UpdateKey: InheritScopes with scopes %v, or through apikey_admin", p.Scopes)
	}
	return k, nil
}

func (s *fuzzStore) CreateToken(_ context.Context, actor string, t *storage.NewToken) error {
	s.write("CreateToken", actor)
	s.keyCovered(s.key(t.KeyID))
	if !fuzzText(t.Name, false, 200) || !fuzzText(t.Description, false, 2000) {
		s.fail("token name %q or description %q", t.Name, t.Description)
	}
	s.tags("token", t.Tags)
	s.expiry("token", t.ExpiresAt)
	t.ID, t.CreatedAt = "tok_new", time.Now()
	return nil
}

func (s *fuzzStore) UpdateToken(_ context.Context, actor, keyID, tokenID string, p storage.TokenPatch) (*storage.Token, error) {
	s.write("UpdateToken", actor)
	k := s.key(keyID)
	s.keyCovered(k)
	var old *storage.Token
	for i := range k.Tokens {
		if k.Tokens[i].ID == tokenID {
			old = &k.Tokens[i]
		}
	}
	if old == nil {
		s.fail("UpdateToken of %q", tokenID)
	}
	if p.Name != nil && !fuzzText(*p.Name, false, 200) {
		s.fail("token name %q", *p.Name)
	}
	if p.Description != nil && !fuzzText(*p.Description, false, 2000) {
		s.fail("token description %q", *p.Description)
	}
	if p.Tags != nil {
		s.tags("token", *p.Tags)
	}
	s.expiry("token", p.ExpiresAt)
	if p.ClearExpiry && p.ExpiresAt != nil {
		s.fail("UpdateToken: both ClearExpiry and ExpiresAt")
	}
	if old.RotatedAt != nil && (p.ClearExpiry || p.ExpiresAt != nil && p.ExpiresAt.After(*old.ExpiresAt)) {
		// The store refuses to un-retire a token (in its transaction):
		// nothing is written, and the API must answer the refusal.
		s.writes = s.writes[:len(s.writes)-1]
		return nil, storage.ErrRetiring
	}
	return old, nil
}

func (s *fuzzStore) RotateToken(_ context.Context, actor, keyID, tokenID string, next *storage.NewToken, grace time.Duration) (*storage.Token, error) {
	s.write("RotateToken", actor)
	k := s.key(keyID)
	s.keyCovered(k)
	if tokenID != "tok_1" {
		s.fail("RotateToken of %q %q", keyID, tokenID)
	}
	if grace < 0 {
		s.fail("RotateToken: negative grace %v", grace)
	}
	s.expiry("rotated token", next.ExpiresAt)
	return nil, nil
}

func (s *fuzzStore) DeleteToken(_ context.Context, actor, keyID, _ string) error {
	s.write("DeleteToken", actor)
	s.keyCovered(s.key(keyID))
	return nil
}

func (s *fuzzStore) RevokeToken(_ context.Context, actor string, hash storage.Hash) (*storage.Token, error) {
	s.write("RevokeToken", actor)
	s.hash = &hash
	return &storage.Token{ID: "tok_x"}, nil
}

func (s *fuzzStore) RecordUse(context.Context, map[string]time.Time) error {
	s.fail("RecordUse called by the admin API")
	return nil
}

func (s *fuzzStore) OnChange(func(storage.Invalidation)) {}
func (s *fuzzStore) Close()                              {}

var _ storage.Store = (*fuzzStore)(nil)
