package admin

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/bolt"
)

// newStoreHandler returns the handler on a fresh file store.
func newStoreHandler(t *testing.T) *Handler {
	t.Helper()
	b, err := bolt.Open(filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return New(storage.New(b), testTokens, zap.NewNop())
}

// TestWrongMethodIs405 checks that a known path asked with a method it
// does not serve answers 405 with Allow and the error body, on the admin
// endpoint's routes (export, import) as on the others, and that export
// and import stay off apikey_admin (404).
func TestWrongMethodIs405(t *testing.T) {
	h := newStoreHandler(t)
	member := WithPrincipal // through apikey_admin, as a key holding *
	tests := []struct {
		name         string
		trusted      bool
		method, path string
		status       int
		allow        string
	}{
		{"PUT /export", true, "PUT", "/export", 405, "GET, HEAD"},
		{"POST /export", true, "POST", "/export", 405, "GET, HEAD"},
		{"GET /import", true, "GET", "/import", 405, "POST"},
		{"DELETE /import", true, "DELETE", "/import", 405, "POST"},
		{"PUT /keys on the admin endpoint", true, "PUT", "/keys", 405, "GET, HEAD, POST"},
		{"POST /whoami on the admin endpoint", true, "POST", "/whoami", 405, "GET, HEAD"},
		{"PUT /openapi.json", true, "PUT", "/openapi.json", 405, "GET, HEAD"},
		{"PUT /keys/{id}/tokens/{tid}/rotate", true, "PUT", "/keys/key_x/tokens/tok_y/rotate", 405, "POST"},
		{"unknown path on the admin endpoint", true, "PUT", "/nothing", 404, ""},
		{"PUT /keys through apikey_admin", false, "PUT", "/keys", 405, "GET, HEAD, POST"},
		{"GET /export through apikey_admin", false, "GET", "/export", 404, ""},
		{"POST /import through apikey_admin", false, "POST", "/import", 404, ""},
		{"PUT /export through apikey_admin", false, "PUT", "/export", 404, ""},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(""))
		rec := httptest.NewRecorder()
		if tt.trusted {
			h.ServeTrusted(rec, req)
		} else {
			req = req.WithContext(member(req.Context(), Principal{Actor: "key_x", AccountID: "acc_x", Scopes: []string{"*"}}))
			h.ServeHTTP(rec, req)
		}
		if rec.Code != tt.status {
			t.Errorf("%s: status %d, want %d: %s", tt.name, rec.Code, tt.status, rec.Body)
			continue
		}
		if got := rec.Header().Get("Allow"); got != tt.allow {
			t.Errorf("%s: Allow %q, want %q", tt.name, got, tt.allow)
		}
		var body map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Errorf("%s: body is not JSON: %v: %s", tt.name, err, rec.Body)
			continue
		}
		want := map[int]string{405: "method_not_allowed", 404: "not_found"}[tt.status]
		if body["error"] != want || body["message"] == "" {
			t.Errorf("%s: body %v, want error %q and a message", tt.name, body, want)
		}
	}
}

// TestServeTrustedServesExportAndImport checks that the admin endpoint's
// own routes answer with the right method, and the shared ones too.
func TestServeTrustedServesExportAndImport(t *testing.T) {
	h := newStoreHandler(t)
	call := func(method, path, body string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeTrusted(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
		return rec
	}
	if rec := call("POST", "/accounts", `{"name":"a"}`); rec.Code != http.StatusCreated {
		t.Fatalf("POST /accounts: %d %s", rec.Code, rec.Body)
	}
	export := call("GET", "/export", "")
	if export.Code != http.StatusOK || export.Header().Get("Content-Type") != "application/jsonl" ||
		!strings.Contains(export.Body.String(), `"type":"account"`) {
		t.Fatalf("GET /export: %d %v %s", export.Code, export.Header(), export.Body)
	}
	imp := call("POST", "/import", export.Body.String())
	if imp.Code != http.StatusOK || !strings.Contains(imp.Body.String(), `"unchanged":1`) {
		t.Fatalf("POST /import of the export: %d %s", imp.Code, imp.Body)
	}
}
