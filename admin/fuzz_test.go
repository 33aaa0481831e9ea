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
	"github.com/keygate/keygate/storage/storagetest"
	"github.com/keygate/keygate/storage/token"
)

// A unit-level fuzz of the admin API's request decoding and validation:
// fuzzed bodies go through the real http.Handler and keystore to a backend
// that knows two accounts and two keys, and checks that every record
// written holds only data the API's rules allow. The rules are written out here
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
	{"PATCH", "/keys/key_3"}, // a sibling wider than some callers
}

// fuzzPrincipals are the callers: the trusted admin endpoint, a key that
// manages accounts, and a key confined to its own account. The fixtures
// are in newFuzzBackend.
var fuzzPrincipals = []Principal{
	Trusted,
	{Actor: "key_p", AccountID: "acc_1", TokenID: "tok_p", Scopes: []string{"accounts", "api_keys", "apps"}},
	{Actor: "key_q", AccountID: "acc_1", TokenID: "tok_q", Scopes: []string{"api_keys:create", "api_keys:update", "api_keys:delete", "apps:read"}},
}

// fuzzBackend is an in-memory backend holding two accounts and two keys,
// which checks every record the keystore writes for it. It counts the
// transactions that commit: a 2xx answer is exactly one.
type fuzzBackend struct {
	*storagetest.Memory
	t       *testing.T
	p       Principal
	start   time.Time
	commits int
	hashes  []token.Hash // what TokenByHash was asked in writes
	// revoking is set for /revoke, which is outside the covering rule.
	revoking *struct{}
}

// newFuzzBackend returns the fixtures: accounts acc_1 ("own") and acc_2
// ("other"), key_1 of acc_1 (inheriting) with tok_1 and tok_2 (being
// rotated out), key_2 of acc_2 with tok_3, key_3 of acc_1 (apps).
func newFuzzBackend(t *testing.T, p Principal) *fuzzBackend {
	now := time.Now().UTC()
	exp1, exp2, rotated := now.Add(720*time.Hour), now.Add(time.Hour), now.Add(-time.Minute)
	m := storagetest.NewMemory()
	err := m.Update(context.Background(), func(tx storage.Tx) error {
		for _, a := range []storage.Account{
			{ID: "acc_1", Name: "own", Kind: storage.KindService, Scopes: []string{"accounts", "api_keys", "apps"}, CreatedAt: now},
			{ID: "acc_2", Name: "other", Kind: storage.KindUser, Scopes: []string{"apps"}, CreatedAt: now},
		} {
			if err := tx.PutAccount(&a); err != nil {
				return err
			}
		}
		for _, k := range []storage.Key{
			{ID: "key_1", AccountID: "acc_1", Name: "k1", Tags: map[string]string{}, CreatedAt: now},
			{ID: "key_2", AccountID: "acc_2", Name: "k2", Tags: map[string]string{}, Scopes: []string{"apps"}, CreatedAt: now},
			{ID: "key_3", AccountID: "acc_1", Name: "k3", Tags: map[string]string{}, Scopes: []string{"apps"}, CreatedAt: now},
		} {
			if err := tx.PutKey(&k); err != nil {
				return err
			}
		}
		for i, tok := range []storage.Token{
			{ID: "tok_1", KeyID: "key_1", Name: "default", Hint: "sk-Abc…wxyz", ExpiresAt: &exp1, CreatedAt: now.Add(-24 * time.Hour)},
			{ID: "tok_2", KeyID: "key_1", Name: "old", Hint: "sk-Def…wxyz", ExpiresAt: &exp2, CreatedAt: now.Add(-48 * time.Hour), RotatedTo: "tok_1", RotatedAt: &rotated},
			{ID: "tok_3", KeyID: "key_2", Name: "default", Hint: "sk-Ghi…wxyz", CreatedAt: now},
		} {
			tok.Tags = map[string]string{}
			if err := tx.PutToken(&storage.TokenRecord{Token: tok, Hash: token.Sum(string(rune('a' + i)))}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return &fuzzBackend{Memory: m, t: t, p: p}
}

// Update implements storage.Backend, checking what fn writes.
func (b *fuzzBackend) Update(ctx context.Context, fn func(storage.Tx) error) error {
	err := b.Memory.Update(ctx, func(tx storage.Tx) error { return fn(&fuzzTx{Tx: tx, b: b}) })
	if err == nil {
		b.commits++
	}
	return err
}

// RecordUse implements storage.Backend: the admin API never calls it.
func (b *fuzzBackend) RecordUse(context.Context, map[string]time.Time) error {
	b.fail("RecordUse called by the admin API")
	return nil
}

func (b *fuzzBackend) fail(format string, args ...any) {
	b.t.Helper()
	b.t.Fatalf("write with invalid data (principal %q): "+format, append([]any{b.p.Actor}, args...)...)
}

// fuzzTx checks the records a write transaction puts.
type fuzzTx struct {
	storage.Tx
	b *fuzzBackend
}

// scopes checks a scope list newly written: well-formed, normalized, and
// within the caller's own scopes.
func (tx *fuzzTx) scopes(what string, list []string) {
	b := tx.b
	if len(list) > 100 {
		b.fail("%s: %d scopes", what, len(list))
	}
	for _, sc := range list {
		if !fuzzScope.MatchString(sc) {
			b.fail("%s: malformed scope %q", what, sc)
		}
		if !scope.AnyCovers(b.p.Scopes, sc) {
			b.fail("%s: scope %q not held by the caller %q", what, sc, b.p.Scopes)
		}
	}
	if !slices.Equal(list, scope.Normalize(list)) {
		b.fail("%s: scopes %q not normalized", what, list)
	}
}

func (tx *fuzzTx) labels(what, name, description string, nameRequired bool, tags map[string]string) {
	b := tx.b
	if !fuzzText(name, nameRequired, 200) || !fuzzText(description, false, 2000) {
		b.fail("%s name %q or description %q", what, name, description)
	}
	if len(tags) > 50 {
		b.fail("%s: %d tags", what, len(tags))
	}
	for k, v := range tags {
		if !fuzzText(k, true, 100) || strings.Contains(k, ":") || !fuzzText(v, false, 500) {
			b.fail("%s: tag %q=%q", what, k, v)
		}
	}
}

// visible reports whether the caller may manage account id's keys.
func (tx *fuzzTx) visible(id string) bool {
	p := tx.b.p
	return p.Trusted || scope.AnyCovers(p.Scopes, "accounts:read") || id == p.AccountID
}

// covered fails unless the caller holds every scope of a write's target.
func (tx *fuzzTx) covered(what string, list []string) {
	for _, sc := range list {
		if !scope.AnyCovers(tx.b.p.Scopes, sc) {
			tx.b.fail("%s holds %q, which the caller %q does not", what, sc, tx.b.p.Scopes)
		}
	}
}

// keyCovered fails unless the caller may write on the key with id as it
// was: it sees it, and holds the key's own scopes (its account's when it
// inherits), unless the key is the caller's own.
func (tx *fuzzTx) keyCovered(id string) {
	k, err := tx.Key(id)
	if err != nil {
		return // a new key
	}
	if !tx.visible(k.AccountID) {
		tx.b.fail("write on an unseen key %s", id)
	}
	if k.ID == tx.b.p.Actor {
		return
	}
	grant := k.Scopes
	if grant == nil {
		a, _ := tx.Account(k.AccountID)
		grant = a.Scopes
	}
	tx.covered("key "+k.ID, grant)
}

func (tx *fuzzTx) DeleteAccount(id string) error {
	if a, err := tx.Account(id); err == nil {
		if !tx.visible(id) {
			tx.b.fail("deleting an unseen account %s", id)
		}
		tx.covered("account "+id, a.Scopes)
	}
	return tx.Tx.DeleteAccount(id)
}

func (tx *fuzzTx) DeleteKey(id string) error {
	tx.keyCovered(id)
	return tx.Tx.DeleteKey(id)
}

func (tx *fuzzTx) DeleteToken(id string) error {
	if t, err := tx.Token(id); err == nil && tx.b.revoking == nil {
		tx.keyCovered(t.KeyID)
	}
	return tx.Tx.DeleteToken(id)
}

func (tx *fuzzTx) PutAccount(a *storage.Account) error {
	b := tx.b
	old, _ := tx.Account(a.ID)
	if !fuzzText(a.Name, true, 200) || strings.HasPrefix(a.Name, "acc_") && (old == nil || old.Name != a.Name) {
		b.fail("account name %q", a.Name)
	}
	if a.Kind != storage.KindUser && a.Kind != storage.KindService {
		b.fail("account kind %q", a.Kind)
	}
	if !fuzzText(a.Team, false, 200) {
		b.fail("team %q", a.Team)
	}
	if old == nil || !slices.Equal(old.Scopes, a.Scopes) {
		tx.scopes("account", a.Scopes)
	}
	if old != nil {
		if !tx.visible(a.ID) {
			b.fail("write on an unseen account %s", a.ID)
		}
		tx.covered("account "+a.ID, old.Scopes)
	}
	return tx.Tx.PutAccount(a)
}

func (tx *fuzzTx) PutKey(k *storage.Key) error {
	b := tx.b
	old, _ := tx.Key(k.ID)
	if !tx.visible(k.AccountID) || old != nil && old.AccountID != k.AccountID {
		b.fail("key %s written on account %q", k.ID, k.AccountID)
	}
	tx.labels("key", k.Name, k.Description, true, k.Tags)
	if old == nil || !slices.Equal(old.Scopes, k.Scopes) || (old.Scopes == nil) != (k.Scopes == nil) {
		if k.Scopes == nil && !b.p.Trusted {
			b.fail("a key written through apikey_admin inherits its account's scopes live")
		}
		tx.scopes("key", k.Scopes)
	}
	if old == nil && k.CreatedBy != b.p.Actor {
		b.fail("key created by %q", k.CreatedBy)
	}
	if old == nil && k.AccountID != b.p.AccountID {
		a, _ := tx.Account(k.AccountID)
		tx.covered("account "+k.AccountID, a.Scopes)
	}
	tx.keyCovered(k.ID)
	return tx.Tx.PutKey(k)
}

func (tx *fuzzTx) PutToken(t *storage.TokenRecord) error {
	b := tx.b
	k, err := tx.Key(t.KeyID)
	if err != nil || !tx.visible(k.AccountID) {
		b.fail("token %s written on key %q", t.ID, t.KeyID)
	}
	tx.labels("token", t.Name, t.Description, false, t.Tags)
	if b.revoking == nil {
		tx.keyCovered(t.KeyID)
	}
	old, _ := tx.Token(t.ID)
	changed := old == nil || (old.ExpiresAt == nil) != (t.ExpiresAt == nil) || old.ExpiresAt != nil && !old.ExpiresAt.Equal(*t.ExpiresAt)
	if changed && t.ExpiresAt != nil && !t.ExpiresAt.After(b.start) {
		b.fail("token expiry %v not in the future", t.ExpiresAt)
	}
	if old != nil && old.RotatedAt != nil && (t.ExpiresAt == nil || t.ExpiresAt.After(*old.ExpiresAt)) {
		b.fail("a token being rotated out is extended: %v", t.ExpiresAt)
	}
	if t.RotatedAt != nil && t.ExpiresAt == nil {
		b.fail("a token being rotated out has no expiry")
	}
	return tx.Tx.PutToken(t)
}

func (tx *fuzzTx) TokenByHash(h token.Hash) (*storage.TokenRecord, error) {
	tx.b.hashes = append(tx.b.hashes, h)
	return tx.Tx.TokenByHash(h)
}

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
		{10, `{"name":"wider"}`},
		{10, `{"scopes":["apps:read"]}`},
	}
	tokens := testTokens
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
		st := newFuzzBackend(t, p)
		if rt.path == "/revoke" {
			st.revoking = &struct{}{}
		}
		h := New(storage.New(st), tokens, zap.NewNop())
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
				if status != http.StatusCreated || !tokens.Valid(s) || obj["hint"] != nil && obj["hint"] != token.Hint(s) {
					t.Fatalf("%s: %d with secret %q, hint %v", desc(), status, s, obj["hint"])
				}
			}
		}
		if ok := status >= 200 && status < 300; ok != (st.commits == 1) || st.commits > 1 {
			t.Fatalf("%s: %d %s, %d writes committed", desc(), status, out, st.commits)
		}
		if rt.path == "/revoke" && len(st.hashes) > 0 {
			var req struct{ Token string }
			if err := json.Unmarshal(body, &req); err != nil {
				t.Fatalf("%s: revoked from a body that is not JSON", desc())
			}
			tok := strings.TrimSpace(req.Token)
			if !tokens.Valid(tok) || token.Sum(tok) != st.hashes[0] {
				t.Fatalf("%s: revoked hash %x, not that of the well-formed token %q", desc(), st.hashes[0], tok)
			}
		}
	})
}
