package admin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/bolt"
	"github.com/keygate/keygate/storage/postgres"
	"github.com/keygate/keygate/storage/token"
)

// testTokens is the token format of the package's tests.
var testTokens, _ = token.NewFormat(token.DefaultPrefix)

func TestMain(m *testing.M) { pgtest.Main(m) }

// BenchmarkCreateKey measures POST /keys end to end through the handler:
// decoding, validation, token generation and hashing, and the store's
// transaction (key, token, audit event and, on PostgreSQL, the notice).
func BenchmarkCreateKey(b *testing.B) {
	stores := map[string]func(b *testing.B) storage.Backend{
		"file": func(b *testing.B) storage.Backend {
			s, err := bolt.Open(filepath.Join(b.TempDir(), "keys.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = s.Close() })
			return s
		},
		"postgres": func(b *testing.B) storage.Backend {
			dsn := pgtest.DSN(b)
			s, err := postgres.Open(context.Background(), dsn, pgtest.Schema(b, dsn))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = s.Close() })
			return s
		},
	}
	for _, name := range []string{"file", "postgres"} {
		b.Run(name, func(b *testing.B) {
			s := storage.New(stores[name](b))
			acc, err := s.CreateAccount(context.Background(), Trusted, storage.NewAccount{Name: "bench", Kind: storage.KindService, Scopes: []string{"apps"}})
			if err != nil {
				b.Fatal(err)
			}
			h := New(s, testTokens, zap.NewNop())
			body := `{"account":"` + acc.ID + `","name":"bench","scopes":["apps:read"]}`
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/keys", strings.NewReader(body))
				req = req.WithContext(WithPrincipal(req.Context(), Trusted))
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusCreated {
					b.Fatalf("POST /keys: %d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
