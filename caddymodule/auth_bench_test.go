package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/postgres"
	"github.com/keygate/keygate/storage/token"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// cpuClock measures the CPU time the process spends (all its threads), to
// report it per operation next to ns/op: on a machine shared with other
// work, wall time counts the time the benchmark waited for a core, CPU
// time does not.
type cpuClock struct{ start time.Duration }

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startCPU() cpuClock { return cpuClock{start: processCPU()} }

// report adds the cpu-ns/op metric.
func (c cpuClock) report(b *testing.B) {
	if b.N > 0 {
		b.ReportMetric(float64(processCPU()-c.start)/float64(b.N), "cpu-ns/op")
	}
}

// newBenchHandler returns an apikey_auth handler on a real PostgreSQL
// store, and a token it accepts, of a key with the given usage policy.
func newBenchHandler(b *testing.B, policy storage.Policy) (*AuthHandler, string) {
	b.Helper()
	dsn := pgtest.DSN(b)
	tokens, _ := token.NewFormat("sk")
	opener := &postgres.Storage{DSN: dsn, Schema: pgtest.Schema(b, dsn)}
	if err := opener.Provision(caddy.Context{}); err != nil {
		b.Fatal(err)
	}
	store := &sharedStore{opener: opener}
	if err := store.open(zap.NewNop()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.Destruct() })
	cache := &sharedCache{store: store}
	if err := cache.open(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cache.Destruct() })
	app := &App{tokens: tokens, store: store, cache: cache}

	ks := store.get()
	acc, err := ks.CreateAccount(context.Background(), storage.Trusted, storage.NewAccount{Name: "bench", Kind: storage.KindService, Scopes: []string{"apps"}})
	if err != nil {
		b.Fatal(err)
	}
	secret := tokens.Generate()
	if _, err := ks.CreateKey(context.Background(), storage.Trusted, storage.NewKey{Account: acc.ID, Name: "bench", Policy: policy}, storage.NewSecret(secret)); err != nil {
		b.Fatal(err)
	}

	h := &AuthHandler{ScopeTable: ScopeTable{
		Routes: []RouteRule{
			{Methods: []string{"GET"}, Path: "/v1/apps", Scope: "apps:read"},
			{Methods: []string{"GET"}, Path: "/v1/apps/{app}", Scope: "apps:read"},
			{Methods: []string{"POST"}, Path: "/v1/apps/{app}/runs", Scope: "apps:run"},
			{Path: "/v1/secrets/*", Scope: "secrets"},
		},
	}}
	h.app, h.tokens, h.logger = app, tokens, zap.NewNop()
	if err := h.compile(); err != nil {
		b.Fatal(err)
	}
	return h, secret
}

// BenchmarkAuthCacheHit measures the handler's whole cache-hit path:
// route match, credential extraction and stripping, format check, hash,
// cache lookup, scope check and placeholders, with a no-op next handler.
func BenchmarkAuthCacheHit(b *testing.B) { benchmarkCacheHit(b, storage.Policy{}) }

// BenchmarkAuthCacheHitLimited is BenchmarkAuthCacheHit for a key with one
// rate window and credits (never exhausted): what a usage policy adds to
// a request that passes, RateLimit fields and placeholders included.
func BenchmarkAuthCacheHitLimited(b *testing.B) {
	benchmarkCacheHit(b, storage.Policy{
		Limits:  []storage.Window{{Name: "burst", Limit: 1 << 50, Length: time.Hour}},
		Credits: &storage.Credits{Remaining: 1 << 50},
	})
}

func benchmarkCacheHit(b *testing.B, policy storage.Policy) {
	h, secret := newBenchHandler(b, policy)
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })

	// A replacer as Caddy's server prepares it: its own providers plus the
	// HTTP variables, so Map appends without growing the slice.
	template := caddy.NewReplacer()
	template.Map(func(string) (any, bool) { return nil, false })
	repl := new(caddy.Replacer)
	req := httptest.NewRequest("POST", "/v1/apps/web/runs", nil)
	req = req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl))
	credential := []string{secret}
	w := httptest.NewRecorder()

	*repl = *template
	req.Header["X-Api-Key"] = credential
	if err := h.ServeHTTP(w, req, next); err != nil || w.Code != http.StatusOK {
		b.Fatalf("warm-up request: %v %d %s", err, w.Code, w.Body)
	}
	h.app.verifier().Wait()

	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		*repl = *template
		req.Header["X-Api-Key"] = credential
		if err := h.ServeHTTP(w, req, next); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
	if hits := h.app.verifier().Stats().StoreQueries.Load(); hits != 1 {
		b.Fatalf("store queries = %d, want 1 (the warm-up)", hits)
	}
}
