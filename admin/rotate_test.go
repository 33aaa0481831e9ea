package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/keygate/keygate/internal/pgtest"
	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/bolt"
	"github.com/keygate/keygate/storage/postgres"
	"github.com/keygate/keygate/storage/token"
)

// rotateStores are the stores the rotation tests run the API on.
var rotateStores = []struct {
	name string
	open func(t *testing.T) *storage.Keystore
}{
	{"file", func(t *testing.T) *storage.Keystore {
		b, err := bolt.Open(filepath.Join(t.TempDir(), "keys.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return storage.New(b)
	}},
	{"postgres", func(t *testing.T) *storage.Keystore {
		dsn := pgtest.DSN(t)
		b, err := postgres.Open(context.Background(), dsn, pgtest.Schema(t, dsn))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return storage.New(b)
	}},
}

// apiCall sends one request to h as the trusted admin endpoint.
func apiCall(t *testing.T, h http.Handler, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	req := httptest.NewRequest(method, path, bytes.NewReader(raw))
	req = req.WithContext(WithPrincipal(req.Context(), Trusted))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	var out map[string]any
	if w.Body.Len() > 0 {
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s %s: %d with a body that is not JSON: %s", method, path, w.Code, w.Body)
		}
	}
	return w.Code, out
}

// newRotateKey creates an account and a key whose token expires at
// expiresAt, and returns the key's and the token's ids.
func newRotateKey(t *testing.T, h http.Handler, account string, expiresAt time.Time) (string, string) {
	t.Helper()
	if code, out := apiCall(t, h, "POST", "/accounts", map[string]any{"name": account, "scopes": []string{"apps"}}); code != http.StatusCreated {
		t.Fatalf("creating the account: %d %v", code, out)
	}
	code, out := apiCall(t, h, "POST", "/keys", map[string]any{"account": account, "name": "k", "expires_at": expiresAt.Format(time.RFC3339Nano)})
	if code != http.StatusCreated {
		t.Fatalf("creating the key: %d %v", code, out)
	}
	return out["id"].(string), out["tokens"].([]any)[0].(map[string]any)["id"].(string)
}

// tokenOf returns token tid of key keyID as the API shows it.
func tokenOf(t *testing.T, h http.Handler, keyID, tid string) map[string]any {
	t.Helper()
	code, out := apiCall(t, h, "GET", "/keys/"+keyID, nil)
	if code != http.StatusOK {
		t.Fatalf("reading key %s: %d %v", keyID, code, out)
	}
	for _, tok := range out["tokens"].([]any) {
		if tok := tok.(map[string]any); tok["id"] == tid {
			return tok
		}
	}
	return nil
}

func parseTime(t *testing.T, v any) time.Time {
	t.Helper()
	s, _ := v.(string)
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("not an RFC 3339 time: %v", v)
	}
	return at
}

// TestRotateGraceClampedToExpiry: a grace longer than the token's
// remaining life is clamped to its expiry, and the answer says when the
// old token stops.
func TestRotateGraceClampedToExpiry(t *testing.T) {
	for _, st := range rotateStores {
		t.Run(st.name, func(t *testing.T) {
			h := New(st.open(t), mustTokenFormat(t), zap.NewNop())
			soon := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
			keyID, tid := newRotateKey(t, h, "scheduled", soon)

			code, out := apiCall(t, h, "POST", "/keys/"+keyID+"/tokens/"+tid+"/rotate", map[string]any{"grace": "24h"})
			if code != http.StatusCreated {
				t.Fatalf("rotating with a grace past the expiry: %d %v", code, out)
			}
			if got := parseTime(t, out["old_token_expires_at"]); !got.Equal(soon) {
				t.Fatalf("old_token_expires_at %v, want the token's own expiry %v", got, soon)
			}
			old := tokenOf(t, h, keyID, tid)
			if old["status"] != "expiring" || !parseTime(t, old["expires_at"]).Equal(soon) {
				t.Fatalf("the old token after the rotation: %v", old)
			}

			// A grace within the token's life: the old token stops at its end.
			keyID, tid = newRotateKey(t, h, "roomy", time.Now().Add(48*time.Hour))
			before := time.Now()
			code, out = apiCall(t, h, "POST", "/keys/"+keyID+"/tokens/"+tid+"/rotate", map[string]any{"grace": "1h"})
			if code != http.StatusCreated {
				t.Fatalf("rotating: %d %v", code, out)
			}
			if got := parseTime(t, out["old_token_expires_at"]); got.Before(before.Add(time.Hour).Add(-time.Second)) || got.After(time.Now().Add(time.Hour)) {
				t.Fatalf("old_token_expires_at %v, want about an hour from now", got)
			}
			// Rotating it again is a conflict.
			if code, out := apiCall(t, h, "POST", "/keys/"+keyID+"/tokens/"+tid+"/rotate", map[string]any{"grace": "1h"}); code != http.StatusConflict {
				t.Fatalf("rotating a retiring token: %d %v, want 409", code, out)
			}
		})
	}
}

// TestPatchRetiringTokenExpiry: a token being rotated out cannot lose its
// expiry nor have it pushed later (409: it would un-retire the token); it
// can be brought forward.
func TestPatchRetiringTokenExpiry(t *testing.T) {
	for _, st := range rotateStores {
		t.Run(st.name, func(t *testing.T) {
			h := New(st.open(t), mustTokenFormat(t), zap.NewNop())
			keyID, tid := newRotateKey(t, h, "a", time.Now().Add(48*time.Hour))
			code, out := apiCall(t, h, "POST", "/keys/"+keyID+"/tokens/"+tid+"/rotate", map[string]any{"grace": "1h"})
			if code != http.StatusCreated {
				t.Fatalf("rotating: %d %v", code, out)
			}
			end := parseTime(t, out["old_token_expires_at"])
			path := "/keys/" + keyID + "/tokens/" + tid
			for _, body := range []map[string]any{
				{"expires_at": nil},
				{"expires_at": end.Add(time.Minute).Format(time.RFC3339Nano)},
			} {
				if code, out := apiCall(t, h, "PATCH", path, body); code != http.StatusConflict || out["error"] != "conflict" {
					t.Errorf("PATCH %v on a retiring token: %d %v, want 409 conflict", body, code, out)
				}
			}
			earlier := end.Add(-time.Minute).UTC().Truncate(time.Second)
			if code, out := apiCall(t, h, "PATCH", path, map[string]any{"expires_at": earlier.Format(time.RFC3339)}); code != http.StatusOK || !parseTime(t, out["expires_at"]).Equal(earlier) {
				t.Fatalf("bringing a retiring token's end forward: %d %v", code, out)
			}
		})
	}
}

// TestRotateRacesExpiryClearAPI is the review's reproduction: PATCH
// {"expires_at": null} raced against a rotation with a grace. Whatever
// wins, the rotated-out token stops by the end of its grace.
func TestRotateRacesExpiryClearAPI(t *testing.T) {
	for _, st := range rotateStores {
		t.Run(st.name, func(t *testing.T) {
			h := New(st.open(t), mustTokenFormat(t), zap.NewNop())
			if code, out := apiCall(t, h, "POST", "/accounts", map[string]any{"name": "race", "scopes": []string{"apps"}}); code != http.StatusCreated {
				t.Fatalf("creating the account: %d %v", code, out)
			}
			for range 60 {
				code, out := apiCall(t, h, "POST", "/keys", map[string]any{"account": "race", "name": "k",
					"expires_at": time.Now().Add(48 * time.Hour).Format(time.RFC3339)})
				if code != http.StatusCreated {
					t.Fatalf("creating the key: %d %v", code, out)
				}
				keyID := out["id"].(string)
				tid := out["tokens"].([]any)[0].(map[string]any)["id"].(string)
				path := "/keys/" + keyID + "/tokens/" + tid
				start := make(chan struct{})
				var wg sync.WaitGroup
				var patchCode, rotateCode int
				var patchOut map[string]any
				wg.Go(func() {
					<-start
					patchCode, patchOut = apiCall(t, h, "PATCH", path, map[string]any{"expires_at": nil})
				})
				wg.Go(func() {
					<-start
					rotateCode, _ = apiCall(t, h, "POST", path+"/rotate", map[string]any{"grace": "1h"})
				})
				close(start)
				wg.Wait()
				if rotateCode != http.StatusCreated || patchCode != http.StatusOK && patchCode != http.StatusConflict {
					t.Fatalf("rotate %d, patch %d %v", rotateCode, patchCode, patchOut)
				}
				old := tokenOf(t, h, keyID, tid)
				if old == nil || old["expires_at"] == nil || parseTime(t, old["expires_at"]).After(time.Now().Add(time.Hour)) {
					t.Fatalf("after the race (patch %d), the rotated-out token: %v", patchCode, old)
				}
			}
		})
	}
}

func mustTokenFormat(t *testing.T) token.Format {
	t.Helper()
	return testTokens
}
