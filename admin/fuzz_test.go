package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/keygate/keygate/internal/scope"
	"github.com/keygate/keygate/storage"
)

// A unit-level fuzz of the admin API's request decoding and validation:
// fuzzed bodies go through the real http.Handler to a store that knows two
// accounts and two keys, and checks that every write it is asked to do
// holds only data the API's rules allow. The rules are written out here
// from DESIGN.md and the documented field limits, not taken from the
// handler's helpers.

// fuzzScope is the scope grammar: "*" or segments [a-z0-9_-]+ joined by ':'.
var fuzzScope = regexp.MustCompile(`^(\*|[a-z0-9_-]+(:[a-z0-9_-]+)*)$`)

// fuzzText reports whether v is acceptable free text: valid UTF-8, no
// control characters, at most max bytes, non-blank when required.
func fuzzText(v string, required bool, max int) bool {
	if required && strings.TrimSpace(v) == "" || len(v) > max || !utf8.ValidString(v) {
		return false
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// fuzzRoute is one JSON-taking route of the API.
type fuzzRoute struct{ method, path string }

var fuzzRoutes = []fuzzRoute{
	{"POST", "/accounts"},
	{"PATCH", "/accounts/acc_1"},
	{"POST", "/keys"},
	{"PATCH", "/keys/key_1"},
	{"POST", "/keys/key_1/tokens"},
	{"PATCH", "/keys/key_1/tokens/tok_1"},
	{"PATCH", "/keys/key_1/tokens/tok_2"}, // a token being rotated out
	{"POST", "/keys/key_1/tokens/tok_1/rotate"},
	{"POST", "/revoke"},
	{"PATCH", "/keys/key_2"}, // a key of another account
}

// fuzzPrincipals are the callers: the trusted admin endpoint, a key that
// manages accounts, and a key confined to its own account.
var fuzzPrincipals = []Principal{
	Trusted,
	{Actor: "key_p", AccountID: "acc_1", TokenID: "tok_p", Scopes: []string{"accounts", "api_keys", "apps"}},
	{Actor: "key_q", AccountID: "acc_1", TokenID: "tok_q", Scopes: []string{"api_keys:create", "api_keys:update", "api_keys:delete", "apps:read"}},
}

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
		return &storage.Key{ID: id, AccountID: "acc_1", Name: "k1", EffectiveScopes: []string{"apps:read"}, CreatedAt: s.now, Tokens: tokens}
	case "key_2":
		return &storage.Key{ID: id, AccountID: "acc_2", Name: "k2", Scopes: []string{"apps"}, EffectiveScopes: []string{"apps"}, CreatedAt: s.now, Tokens: tokens}
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
	if a == nil || a.ID != id {
		s.fail("UpdateAccount of %q", id)
	}
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

func (s *fuzzStore) DeleteAccount(_ context.Context, actor, _ string) error {
	s.write("DeleteAccount", actor)
	return nil
}

func (s *fuzzStore) CreateKey(_ context.Context, actor string, k *storage.Key, first *storage.NewToken) error {
	s.write("CreateKey", actor)
	if a := s.account(k.AccountID); a == nil || a.ID != k.AccountID || !s.visible(k.AccountID) {
		s.fail("CreateKey on account %q", k.AccountID)
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

func (s *fuzzStore) DeleteKey(_ context.Context, actor, _ string) error {
	s.write("DeleteKey", actor)
	return nil
}

func (s *fuzzStore) UpdateKey(_ context.Context, actor, id string, p storage.KeyPatch) (*storage.Key, error) {
	s.write("UpdateKey", actor)
	k := s.key(id)
	if k == nil || !s.visible(k.AccountID) {
		s.fail("UpdateKey of %q", id)
	}
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
	if k := s.key(t.KeyID); k == nil || !s.visible(k.AccountID) {
		s.fail("CreateToken on key %q", t.KeyID)
	}
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
	if k == nil || !s.visible(k.AccountID) {
		s.fail("UpdateToken on key %q", keyID)
	}
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
	if k == nil || !s.visible(k.AccountID) || tokenID != "tok_1" {
		s.fail("RotateToken of %q %q", keyID, tokenID)
	}
	if grace < 0 {
		s.fail("RotateToken: negative grace %v", grace)
	}
	s.expiry("rotated token", next.ExpiresAt)
	return nil, nil
}

func (s *fuzzStore) DeleteToken(_ context.Context, actor, _, _ string) error {
	s.write("DeleteToken", actor)
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

// FuzzAdminRequests sends fuzzed JSON bodies to every JSON-taking route as
// each principal. The handler must not panic, must answer JSON, never 5xx,
// {"error": …} on 4xx, and must call the store only with valid data; a 2xx
// answer is exactly the case where the store was written.
func FuzzAdminRequests(f *testing.F) {
	seeds := []struct {
		route int
		body  string
	}{
		{0, `{"name":"ci-bot","kind":"service","scopes":["apps","runs:read"],"team":"infra"}`},
		{0, `{"name":"acc_x"}`},
		{0, `{"name":"a\u0000b"}`},
		{0, `{"name":"x","scopes":["Apps"]}`},
		{0, `{"name":"x","scopes":["*"]}`},
		{0, `{"name":"x","kind":"robot"}`},
		{0, `{"name":"x","bogus":1}`},
		{0, `{"name":"x"} {}`},
		{0, `{"NAME":"x","Scopes":["apps:read","apps"]}`},
		{0, `[]`},
		{0, ``},
		{0, `{"name":"x",`},
		{1, `{"name":"renamed","team":"t","scopes":["apps"],"disabled":true}`},
		{1, `{"id":"acc_2"}`},
		{1, `{"kind":"user"}`},
		{1, `{"scopes":null}`},
		{2, `{"account":"own","name":"deploy","scopes":["apps:run"],"tags":{"env":"prod"},"expires_at":"2999-01-02T15:04:05Z"}`},
		{2, `{"account":"other","name":"deploy"}`},
		{2, `{"name":"deploy","scopes":[]}`},
		{2, `{"name":"deploy","scopes":null}`},
		{2, `{"account":"acc_1","name":"d","tags":{"a:b":"c"}}`},
		{2, `{"account":"acc_1","name":"d","tags":{"":"c"}}`},
		{2, `{"account":"acc_1","name":"d","expires_at":"2001-01-01T00:00:00Z"}`},
		{2, `{"account":"acc_1","name":"d","expires_at":"tomorrow"}`},
		{2, `{"account":"acc_1","name":"d","scopes":["apps:read","apps:read:x","billing"]}`},
		{3, `{"name":"n","description":"d","tags":{"k":"v"},"scopes":["apps"]}`},
		{3, `{"scopes":null}`},
		{3, `{"scopes":"apps"}`},
		{3, `{"id":"key_9"}`},
		{3, `{"tokens":[]}`},
		{3, `{"effective_scopes":["*"]}`},
		{3, `{"name":"\t"}`},
		{4, `{"name":"ci","description":"d","tags":{"k":"v"},"expires_at":"2999-01-01T00:00:00+02:00"}`},
		{4, `{}`},
		{5, `{"expires_at":null}`},
		{5, `{"expires_at":"2999-01-01T00:00:00Z","name":"n"}`},
		{5, `{"expires_at":5}`},
		{5, `{"secret":"x"}`},
		{6, `{"expires_at":null}`},
		{6, `{"expires_at":"2999-01-01T00:00:00Z"}`},
		{7, `{"grace":"24h"}`},
		{7, `{"grace":"-1s"}`},
		{7, `{"grace":"10000h","expires_at":"2999-01-01T00:00:00Z"}`},
		{7, ``},
		{8, `{"token":"sk-` + strings.Repeat("0", 49) + `"}`},
		{8, `{"token":" sk-bad "}`},
		{8, `{"token":null}`},
		{9, `{"name":"theirs"}`},
	}
	tokens, _ := storage.NewTokenFormat("sk")
	valid := tokens.Generate()
	for i, s := range seeds {
		for p := range fuzzPrincipals {
			f.Add(uint8(s.route), uint8(p+i), []byte(s.body))
		}
	}
	f.Add(uint8(8), uint8(0), []byte(`{"token":"`+valid+`"}`))
	f.Add(uint8(8), uint8(2), []byte(`{"token":"  `+valid+`\n"}`))
	f.Fuzz(func(t *testing.T, route, principal uint8, body []byte) {
		rt := fuzzRoutes[int(route)%len(fuzzRoutes)]
		p := fuzzPrincipals[int(principal)%len(fuzzPrincipals)]
		st := &fuzzStore{t: t, p: p, now: time.Now()}
		h := New(st, tokens, zap.NewNop())
		req := httptest.NewRequest(rt.method, rt.path, bytes.NewReader(body))
		req = req.WithContext(WithPrincipal(req.Context(), p))
		w := httptest.NewRecorder()
		st.start = time.Now()
		h.ServeHTTP(w, req)

		status, out := w.Code, w.Body.Bytes()
		desc := func() string { return rt.method + " " + rt.path + " as " + p.Actor + " with " + string(body) }
		if status >= 500 {
			t.Fatalf("%s: %d %s", desc(), status, out)
		}
		if status == http.StatusNoContent {
			if len(out) != 0 {
				t.Fatalf("%s: 204 with body %q", desc(), out)
			}
		} else {
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("%s: Content-Type %q", desc(), ct)
			}
			var obj map[string]any
			if err := json.Unmarshal(out, &obj); err != nil {
				t.Fatalf("%s: %d with a body that is not a JSON object: %q", desc(), status, out)
			}
			if status >= 400 {
				if code, _ := obj["error"].(string); code == "" {
					t.Fatalf("%s: %d without an error code: %s", desc(), status, out)
				}
				if _, ok := obj["message"].(string); !ok {
					t.Fatalf("%s: %d without a message: %s", desc(), status, out)
				}
			}
			if secret, ok := obj["secret"]; ok {
				s, _ := secret.(string)
				if status != http.StatusCreated || !tokens.Valid(s) || obj["hint"] != nil && obj["hint"] != storage.Hint(s) {
					t.Fatalf("%s: %d with secret %q, hint %v", desc(), status, s, obj["hint"])
				}
			}
		}
		wrote := len(st.writes) > 0
		if ok := status >= 200 && status < 300; ok != wrote || len(st.writes) > 1 {
			t.Fatalf("%s: %d %s, store writes %v", desc(), status, out, st.writes)
		}
		if st.hash != nil {
			var req struct{ Token string }
			if err := json.Unmarshal(body, &req); err != nil {
				t.Fatalf("%s: revoked from a body that is not JSON", desc())
			}
			tok := strings.TrimSpace(req.Token)
			if !tokens.Valid(tok) || storage.HashToken(tok) != *st.hash {
				t.Fatalf("%s: revoked hash %x, not that of the well-formed token %q", desc(), *st.hash, tok)
			}
		}
	})
}
