package admin

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/bolt"
)

// newFileHandler is the API on a fresh file store.
func newFileHandler(t *testing.T) (*Handler, *storage.Keystore) {
	t.Helper()
	b, err := bolt.Open(filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	ks := storage.New(b)
	return New(ks, testTokens, zap.NewNop()), ks
}

// TestPolicyBadInput: every bad policy value is a 400 naming its field,
// and writes nothing.
func TestPolicyBadInput(t *testing.T) {
	h, _ := newFileHandler(t)
	if code, out := apiCall(t, h, "POST", "/accounts", map[string]any{"name": "a", "scopes": []string{"apps"}}); code != http.StatusCreated {
		t.Fatalf("account: %d %v", code, out)
	}
	code, key := apiCall(t, h, "POST", "/keys", map[string]any{"account": "a", "name": "k"})
	if code != http.StatusCreated {
		t.Fatalf("key: %d %v", code, key)
	}
	keyPath := "/keys/" + key["id"].(string)
	ok := map[string]any{"name": "burst", "limit": 20, "window": "1s"}
	for _, tt := range []struct {
		method, path string
		body         map[string]any
		field        string
	}{
		{"POST", "/accounts", map[string]any{"name": "b", "limits": "fast"}, "limits"},
		{"POST", "/accounts", map[string]any{"name": "b", "limits": []any{ok, map[string]any{"name": "x", "limit": 1}}}, "limits[1].window"},
		{"POST", "/accounts", map[string]any{"name": "b", "limits": []any{map[string]any{"limit": 1, "window": "1s"}}}, "limits[0].name"},
		{"POST", "/accounts", map[string]any{"name": "b", "limits": []any{map[string]any{"name": "x", "window": "1s"}}}, "limits[0].limit"},
		{"POST", "/accounts", map[string]any{"name": "b", "limits": []any{ok, ok}}, "limits[1].name"},
		{"POST", "/accounts", map[string]any{"name": "b", "limits": []any{map[string]any{"name": "x", "limit": "20", "window": "1s"}}}, "limits[0].limit"},
		{"POST", "/accounts", map[string]any{"name": "b", "limits": []any{map[string]any{"name": "x", "limit": 2.5, "window": "1s"}}}, "limits[0].limit"},
		{"POST", "/accounts", map[string]any{"name": "b", "limits": []any{map[string]any{"name": "x", "limit": 1, "window": "soon"}}}, "limits[0].window"},
		{"POST", "/accounts", map[string]any{"name": "b", "limits": []any{map[string]any{"name": "x", "limit": 1, "window": "500ms"}}}, "limits[0].window"},
		{"POST", "/accounts", map[string]any{"name": "b", "limits": []any{map[string]any{"name": "x", "limit": 1, "window": "1s", "burst": 2}}}, "limits[0].burst"},
		{"POST", "/accounts", map[string]any{"name": "b", "allowed_ips": []any{"10.0.0.0/8", "10.0.0.0/33"}}, "allowed_ips[1]"},
		{"POST", "/accounts", map[string]any{"name": "b", "allowed_ips": []any{7}}, "allowed_ips[0]"},
		{"POST", "/accounts", map[string]any{"name": "b", "credits": map[string]any{"remaining": 1}}, "credits"},
		{"PATCH", "/accounts/a", map[string]any{"limits": []any{map[string]any{"name": "UP", "limit": 1, "window": "1s"}}}, "limits[0].name"},
		{"PATCH", "/accounts/a", map[string]any{"allowed_ips": "10.0.0.0/8"}, "allowed_ips"},
		{"POST", "/keys", map[string]any{"account": "a", "name": "x", "credits": map[string]any{"remaining": -1}}, "credits.remaining"},
		{"POST", "/keys", map[string]any{"account": "a", "name": "x", "credits": map[string]any{}}, "credits.remaining"},
		{"POST", "/keys", map[string]any{"account": "a", "name": "x", "credits": map[string]any{"remaining": 1, "refill": map[string]any{"amount": 0, "interval": "daily"}}}, "credits.refill.amount"},
		{"POST", "/keys", map[string]any{"account": "a", "name": "x", "credits": map[string]any{"remaining": 1, "refill": map[string]any{"amount": 5}}}, "credits.refill.interval"},
		{"POST", "/keys", map[string]any{"account": "a", "name": "x", "credits": map[string]any{"remaining": 1, "refill": map[string]any{"amount": 5, "interval": "hourly"}}}, "credits.refill.interval"},
		{"POST", "/keys", map[string]any{"account": "a", "name": "x", "credits": map[string]any{"remaining": 1, "refill": map[string]any{"amount": 5, "interval": "monthly", "day": 32}}}, "credits.refill.day"},
		{"POST", "/keys", map[string]any{"account": "a", "name": "x", "credits": map[string]any{"remaining": 1, "refill": map[string]any{"amount": 5, "interval": "weekly", "day": 7}}}, "credits.refill.day"},
		{"POST", "/keys", map[string]any{"account": "a", "name": "x", "credits": map[string]any{"remaining": 1, "refill": map[string]any{"amount": 5, "interval": "daily", "day": 3}}}, "credits.refill.day"},
		{"POST", "/keys", map[string]any{"account": "a", "name": "x", "credits": map[string]any{"remaining": 1, "refill": map[string]any{"amount": 5, "interval": "daily", "every": 3}}}, "credits.refill.every"},
		{"POST", "/keys", map[string]any{"account": "a", "name": "x", "credits": map[string]any{"remaining": 1, "refill": "daily"}}, "credits.refill"},
		{"POST", "/keys", map[string]any{"account": "a", "name": "x", "credits": 1000}, "credits"},
		{"POST", "/keys", map[string]any{"account": "a", "name": "x", "limits": []any{map[string]any{"name": "x", "limit": 0, "window": "1s"}}}, "limits[0].limit"},
		{"PATCH", keyPath, map[string]any{"credits": map[string]any{"remaining": "lots"}}, "credits.remaining"},
		{"PATCH", keyPath, map[string]any{"credits": map[string]any{"refill": map[string]any{"amount": 5, "interval": "yearly"}}}, "credits.refill.interval"},
		{"PATCH", keyPath, map[string]any{"credits": map[string]any{"refill": map[string]any{"amount": 5, "interval": "daily"}, "next_refill": "2030-01-01T00:00:00Z"}}, "credits.next_refill"},
		{"PATCH", keyPath, map[string]any{"credits": map[string]any{"refill": nil}}, "credits.remaining"}, // a key without credits
		{"PATCH", keyPath, map[string]any{"limits": []any{map[string]any{"name": "x", "limit": 1, "window": "745h"}}}, "limits[0].window"},
		{"PATCH", keyPath, map[string]any{"allowed_ips": []any{"fe80::1%eth0"}}, "allowed_ips[0]"},
		{"PATCH", keyPath, map[string]any{"usage": map[string]any{}}, "usage"},
	} {
		code, out := apiCall(t, h, tt.method, tt.path, tt.body)
		if code != http.StatusBadRequest || out["error"] != "invalid_request" || out["field"] != tt.field {
			t.Errorf("%s %s %v: %d %v, want 400 naming %q", tt.method, tt.path, tt.body, code, out, tt.field)
		}
	}
	code, out := apiCall(t, h, "GET", "/accounts", nil)
	if items := out["items"].([]any); code != http.StatusOK || len(items) != 1 {
		t.Errorf("accounts after refused writes: %d %v", code, out)
	}
	code, out = apiCall(t, h, "GET", keyPath, nil)
	if code != http.StatusOK || out["credits"] != nil || len(out["limits"].([]any)) != 0 || len(out["allowed_ips"].([]any)) != 0 {
		t.Errorf("the key after refused writes: %d %v", code, out)
	}
}

// fakeUsage reports every window half used, resetting in a minute.
type fakeUsage struct{ subjects []string }

func (f *fakeUsage) WindowUsage(_ context.Context, subject string, windows []storage.Window) []WindowUse {
	f.subjects = append(f.subjects, subject)
	out := make([]WindowUse, len(windows))
	for i, w := range windows {
		out[i] = WindowUse{Used: w.Limit / 2, ResetsAt: time.Date(2030, 1, 1, 0, 1, 0, 0, time.UTC)}
	}
	return out
}

// TestKeyUsage: with a UsageReporter, GET /keys/{id} shows the use of the
// key's and its account's windows; without, no "usage".
func TestKeyUsage(t *testing.T) {
	h, _ := newFileHandler(t)
	apiCall(t, h, "POST", "/accounts", map[string]any{"name": "a", "limits": []any{map[string]any{"name": "day", "limit": 1000, "window": "24h"}}})
	_, key := apiCall(t, h, "POST", "/keys", map[string]any{"account": "a", "name": "k",
		"limits": []any{map[string]any{"name": "burst", "limit": 20, "window": "1s"}}})
	path := "/keys/" + key["id"].(string)
	if _, out := apiCall(t, h, "GET", path, nil); out["usage"] != nil {
		t.Fatalf("usage without a reporter: %v", out["usage"])
	}
	f := &fakeUsage{}
	h.SetUsageReporter(f)
	_, out := apiCall(t, h, "GET", path, nil)
	usage, _ := out["usage"].(map[string]any)
	windows, _ := usage["windows"].([]any)
	accountWindows, _ := usage["account_windows"].([]any)
	if len(windows) != 1 || len(accountWindows) != 1 {
		t.Fatalf("usage: %v", out["usage"])
	}
	w := windows[0].(map[string]any)
	aw := accountWindows[0].(map[string]any)
	if w["name"] != "burst" || w["limit"] != 20.0 || w["window"] != "1s" || w["used"] != 10.0 || w["resets_at"] != "2030-01-01T00:01:00Z" ||
		aw["name"] != "day" || aw["used"] != 500.0 || aw["window"] != "24h" {
		t.Errorf("usage: %v", out["usage"])
	}
	if len(f.subjects) != 2 || f.subjects[0] != key["id"] || f.subjects[1] != key["account"] {
		t.Errorf("reporter asked about %v", f.subjects)
	}
	h.SetUsageReporter(nil)
	if _, out := apiCall(t, h, "GET", path, nil); out["usage"] != nil {
		t.Errorf("usage after the reporter was removed: %v", out["usage"])
	}
}

// TestTypeErrorFieldsAreJSONNames: a value of the wrong type names its
// JSON field, not the Go struct it is decoded through.
func TestTypeErrorFieldsAreJSONNames(t *testing.T) {
	h, _ := newFileHandler(t)
	apiCall(t, h, "POST", "/accounts", map[string]any{"name": "a"})
	_, key := apiCall(t, h, "POST", "/keys", map[string]any{"account": "a", "name": "k"})
	for _, tt := range []struct {
		method, path string
		body         map[string]any
		field        string
	}{
		{"POST", "/accounts", map[string]any{"name": 5}, "name"},
		{"PATCH", "/accounts/a", map[string]any{"team": 5}, "team"},
		{"POST", "/keys", map[string]any{"account": "a", "name": "x", "tags": []string{}}, "tags"},
		{"PATCH", "/keys/" + key["id"].(string), map[string]any{"description": 5}, "description"},
	} {
		code, out := apiCall(t, h, tt.method, tt.path, tt.body)
		if code != http.StatusBadRequest || out["field"] != tt.field {
			t.Errorf("%s %s %v: %d %v, want 400 naming %q", tt.method, tt.path, tt.body, code, out, tt.field)
		}
	}
}
