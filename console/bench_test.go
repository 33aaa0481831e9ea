package console

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/bolt"
	"github.com/keygate/keygate/storage/postgres"
	"github.com/keygate/keygate/storage/token"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

var testTokens, _ = token.NewFormat(token.DefaultPrefix)

// openStore opens an empty keystore on the named backend.
func openStore(tb testing.TB, name string) *storage.Keystore {
	tb.Helper()
	var b storage.Backend
	var err error
	switch name {
	case "file":
		b, err = bolt.Open(filepath.Join(tb.TempDir(), "keys.db"))
	case "postgres":
		dsn := pgtest.DSN(tb)
		b, err = postgres.Open(context.Background(), dsn, pgtest.Schema(tb, dsn))
	}
	if err != nil {
		tb.Fatal(err)
	}
	ks := storage.New(b)
	tb.Cleanup(func() { _ = ks.Close() })
	return ks
}

// populate writes n keys, each with one token, on account acc, in
// batches (a fixture: the keystore's rules are not under test here).
func populate(tb testing.TB, ks *storage.Keystore, acc string, n int) {
	tb.Helper()
	now := time.Now().UTC().Truncate(time.Microsecond)
	for done := 0; done < n; {
		err := ks.Backend().Update(context.Background(), func(tx storage.Tx) error {
			for i := 0; i < 1000 && done < n; i, done = i+1, done+1 {
				k := &storage.Key{ID: storage.NewID(storage.KeyIDPrefix), AccountID: acc, Name: fmt.Sprintf("key-%05d", done),
					Tags: map[string]string{"env": []string{"prod", "dev"}[done%2]}, Scopes: []string{"apps:read"}, CreatedAt: now, CreatedBy: "admin"}
				if err := tx.PutKey(k); err != nil {
					return err
				}
				v := testTokens.Generate()
				t := &storage.TokenRecord{Token: storage.Token{ID: storage.NewID(storage.TokenIDPrefix), KeyID: k.ID, Name: "default",
					Hint: token.Hint(v), CreatedAt: now, Tags: map[string]string{}}, Hash: token.Sum(v)}
				if err := tx.PutToken(t); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// signedIn returns a console over ks and the cookie of a session signed
// in with a key holding scopes on account acc.
func signedIn(tb testing.TB, ks *storage.Keystore, acc string, scopes ...string) (*Console, *http.Cookie) {
	tb.Helper()
	api := admin.New(ks, testTokens, zap.NewNop())
	c := New(Config{API: func() *admin.Handler { return api }, Keystore: func() *storage.Keystore { return ks }, Tokens: testTokens})
	secret := testTokens.Generate()
	if _, err := ks.CreateKey(context.Background(), storage.Trusted, storage.NewKey{Account: acc, Name: "console", Scopes: scopes}, storage.NewSecret(secret)); err != nil {
		tb.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/signin", strings.NewReader(url.Values{"key": {secret}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, req)
	if rec.Code != http.StatusSeeOther {
		tb.Fatalf("sign-in: %d %s", rec.Code, rec.Body)
	}
	for _, ck := range rec.Result().Cookies() {
		if ck.Name == CookieName {
			return c, ck
		}
	}
	tb.Fatal("no session cookie")
	return nil, nil
}

// get serves GET path with the session cookie.
func get(c *Console, ck *http.Cookie, path string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.AddCookie(ck)
	rec := httptest.NewRecorder()
	c.ServeHTTP(rec, req)
	return rec
}

// BenchmarkKeysPage measures the keys page with 10,000 keys on the
// account: each iteration serves the next page (50 keys, by cursor, all
// the way through and around), the whole server side (session, the
// caller's key looked up, the API in-process, the store, the template).
// It reports the p50 and p95 of a page in ms; the target is p95 < 100.
// "search" pages read up to 1,000 keys to find 50 that match.
func BenchmarkKeysPage(b *testing.B) {
	for _, store := range []string{"postgres", "file"} {
		b.Run(store, func(b *testing.B) {
			ks := openStore(b, store)
			acc, err := ks.CreateAccount(context.Background(), storage.Trusted, storage.NewAccount{Name: "big", Kind: storage.KindService, Scopes: []string{"api_keys", "apps"}})
			if err != nil {
				b.Fatal(err)
			}
			populate(b, ks, acc.ID, 10000)
			c, ck := signedIn(b, ks, acc.ID, "api_keys", "apps")
			for _, kind := range []string{"pages", "tag", "search"} {
				b.Run(kind, func(b *testing.B) {
					next := ""
					var times []time.Duration
					for b.Loop() {
						path := "/keys"
						switch kind {
						case "tag":
							path += "?tag=env:dev"
						case "search":
							path += "?q=key-09" // 1,000 matches, the last tenth of the keys
						}
						if next != "" {
							sep := "?"
							if strings.Contains(path, "?") {
								sep = "&"
							}
							path += sep + "after=" + next
						}
						start := time.Now()
						rec := get(c, ck, path)
						times = append(times, time.Since(start))
						if rec.Code != http.StatusOK {
							b.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
						}
						next = cursorOf(rec.Body.String())
					}
					slices.Sort(times)
					b.ReportMetric(ms(times[len(times)/2]), "p50-ms")
					b.ReportMetric(ms(times[(len(times)*95)/100]), "p95-ms")
				})
			}
		})
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// cursorOf returns the after= of the page's next link, or "".
func cursorOf(html string) string {
	_, link, ok := strings.Cut(html, `<a href="?`)
	if !ok {
		return ""
	}
	link, _, _ = strings.Cut(link, `"`)
	q, err := url.ParseQuery(strings.ReplaceAll(link, "&amp;", "&"))
	if err != nil {
		return ""
	}
	return q.Get("after")
}
