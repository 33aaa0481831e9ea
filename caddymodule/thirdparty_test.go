package caddymodule

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/storagetest"
)

// A third-party backend, as a plugin outside Keygate would write one: an
// in-memory store registered as the guest module apikeys.storage.memory.
// Nothing in Keygate names it; the app loads it through the
// apikeys.storage namespace.

func init() {
	caddy.RegisterModule(memoryStorage{})
}

// memoryStorage opens the in-memory store named Name: modules with the
// same name share one, as configs naming one file do.
type memoryStorage struct {
	Name string `json:"name,omitempty"`
}

var memoryStores sync.Map // name → *storagetest.Memory

func (memoryStorage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "apikeys.storage.memory", New: func() caddy.Module { return new(memoryStorage) }}
}

func (m *memoryStorage) Identity() string { return "memory:" + m.Name }

func (m *memoryStorage) Open(context.Context) (storage.Backend, error) {
	b, _ := memoryStores.LoadOrStore(m.Name, storagetest.NewMemory())
	return b.(*storagetest.Memory), nil
}

var _ storage.Opener = (*memoryStorage)(nil)

// TestThirdPartyBackendConformance runs the conformance suite over the
// module's backend, opened through the module as the app opens it.
func TestThirdPartyBackendConformance(t *testing.T) {
	storagetest.Run(t, func(t testing.TB) storage.Backend {
		m := &memoryStorage{Name: t.Name()}
		b, err := m.Open(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

// TestThirdPartyBackendServes: the apikeys app configured with the module
// opens its store, and a key created through the admin API verifies.
func TestThirdPartyBackendServes(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	app := &App{Storage: json.RawMessage(`{"module": "memory", "name": "served"}`)}
	if err := app.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = app.Cleanup() }()
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	api := app.api()
	do := func(method, path, body string) map[string]any {
		t.Helper()
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req = req.WithContext(admin.WithPrincipal(req.Context(), admin.Trusted))
		rec := httptest.NewRecorder()
		api.ServeHTTP(rec, req)
		if rec.Code != http.StatusCreated {
			t.Fatalf("%s %s: %d %s", method, path, rec.Code, rec.Body)
		}
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	do("POST", "/accounts", `{"name":"plugin","scopes":["apps"]}`)
	key := do("POST", "/keys", `{"account":"plugin","name":"k"}`)
	secret, _ := key["secret"].(string)
	v, err := app.verifier().Verify(context.Background(), secret)
	if err != nil || v.KeyID != key["id"] || v.JoinedScopes != "apps" {
		t.Fatalf("verifying a key of the plugin's store: %+v, %v", v, err)
	}
}
