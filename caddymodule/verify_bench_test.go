package caddymodule

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/keygate/keygate/storage"
)

// BenchmarkVerifyCacheHit measures apikey_verify's whole cache-hit path in
// nginx mode: the original method and URI read from headers and made
// canonical, then what BenchmarkAuthCacheHit measures, and the 200 with
// its identity headers.
func BenchmarkVerifyCacheHit(b *testing.B) { benchmarkVerify(b, storage.Policy{}) }

// BenchmarkVerifyCacheHitLimited is BenchmarkVerifyCacheHit for a key with
// one rate window and credits (never exhausted), as
// BenchmarkAuthCacheHitLimited: the usage policy applied, the credits
// charged and the RateLimit fields on the 200.
func BenchmarkVerifyCacheHitLimited(b *testing.B) {
	benchmarkVerify(b, storage.Policy{
		Limits:  []storage.Window{{Name: "burst", Limit: 1 << 50, Length: time.Hour}},
		Credits: &storage.Credits{Remaining: 1 << 50},
	})
}

func benchmarkVerify(b *testing.B, policy storage.Policy) {
	h, secret := newBenchHandler(b, policy)
	v := &VerifyHandler{Authenticator: h.Authenticator, ScopeTable: ScopeTable{Routes: h.Routes}, Mode: ModeNginx}
	if err := v.compile(); err != nil {
		b.Fatal(err)
	}
	template := caddy.NewReplacer()
	template.Map(func(string) (any, bool) { return nil, false })
	repl := new(caddy.Replacer)
	req := httptest.NewRequest("GET", "/verify", nil)
	req = req.WithContext(context.WithValue(req.Context(), caddy.ReplacerCtxKey, repl))
	req.Header["X-Original-Method"] = []string{"POST"}
	req.Header["X-Original-Uri"] = []string{"/v1/apps/web/runs?dry=1"}
	credential := []string{secret}
	w := httptest.NewRecorder()

	*repl = *template
	req.Header["X-Api-Key"] = credential
	if err := v.ServeHTTP(w, req, nil); err != nil || w.Code != http.StatusOK || w.Header().Get("X-Keygate-Account") == "" ||
		(len(policy.Limits) > 0) != (w.Header().Get("RateLimit") != "") {
		b.Fatalf("warm-up request: %v %d %v %s", err, w.Code, w.Header(), w.Body)
	}
	v.app.verifier().Wait()

	b.ReportAllocs()
	for b.Loop() {
		*repl = *template
		req.Header["X-Api-Key"] = credential
		if err := v.ServeHTTP(w, req, nil); err != nil {
			b.Fatal(err)
		}
	}
	if hits := v.app.verifier().Stats().StoreQueries.Load(); hits != 1 {
		b.Fatalf("store queries = %d, want 1 (the warm-up)", hits)
	}
}
