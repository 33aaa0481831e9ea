package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// TestOpenAPIPolicyAnswers sends usage-policy requests to the handler on
// a file store, with a UsageReporter so that GET /keys/{id} carries
// "usage" (the test gateway reports none), and validates each request
// the handler serves and each answer against the document with
// kin-openapi.
func TestOpenAPIPolicyAnswers(t *testing.T) {
	doc := loadKin(t)
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := newFileHandler(t)
	h.SetUsageReporter(&fakeUsage{})
	call := func(method, path string, body any, status int) map[string]any {
		t.Helper()
		raw, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		if body == nil {
			raw = nil
		}
		req := httptest.NewRequest(method, adminEndpointServer+path, bytes.NewReader(raw))
		if raw != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		served := httptest.NewRequest(method, path, bytes.NewReader(raw))
		served = served.WithContext(WithPrincipal(served.Context(), Trusted))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, served)
		if rec.Code != status {
			t.Fatalf("%s %s: %d, want %d: %s", method, path, rec.Code, status, rec.Body)
		}
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Fatalf("%s %s: no route: %v", method, path, err)
		}
		input := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}}
		if status < 300 {
			if err := openapi3filter.ValidateRequest(context.Background(), input); err != nil {
				t.Errorf("%s %s: the document rejects a request the handler served: %v", method, path, err)
			}
		}
		err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
			RequestValidationInput: input, Status: rec.Code, Header: rec.Header(), Body: io.NopCloser(bytes.NewReader(rec.Body.Bytes())),
			Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
		})
		if err != nil {
			t.Errorf("%s %s: the answer does not match the document: %v\n%s", method, path, err, rec.Body)
		}
		var out map[string]any
		if rec.Body.Len() > 0 {
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}

	day := map[string]any{"name": "day", "limit": 10000, "window": "24h"}
	burst := map[string]any{"name": "burst", "limit": 20, "window": "1s"}
	acc := call("POST", "/accounts", map[string]any{"name": "a", "scopes": []string{"apps"}, "limits": []any{day},
		"allowed_ips": []string{"10.1.2.3/8", "192.0.2.7"}}, http.StatusCreated)
	if ips, _ := acc["allowed_ips"].([]any); len(ips) != 2 || ips[0] != "10.0.0.0/8" || ips[1] != "192.0.2.7/32" {
		t.Errorf("account allowed_ips: %v", acc["allowed_ips"])
	}
	call("PATCH", "/accounts/a", map[string]any{"limits": nil, "allowed_ips": []string{}}, http.StatusOK)
	call("PATCH", "/accounts/a", map[string]any{"limits": []any{day, burst}}, http.StatusOK)
	key := call("POST", "/keys", map[string]any{"account": "a", "name": "k", "limits": []any{burst}, "allowed_ips": []string{"2001:db8::/32"},
		"credits": map[string]any{"remaining": 500, "refill": map[string]any{"amount": 1000, "interval": "monthly", "day": 1}}}, http.StatusCreated)
	path := "/keys/" + key["id"].(string)
	got := call("GET", path, nil, http.StatusOK)
	credits, _ := got["credits"].(map[string]any)
	if credits["remaining"] != 500.0 || credits["next_refill"] == nil {
		t.Errorf("GET credits: %v", got["credits"])
	}
	usage, _ := got["usage"].(map[string]any)
	if w, _ := usage["windows"].([]any); len(w) != 1 {
		t.Errorf("GET usage: %v", got["usage"])
	}
	if w, _ := usage["account_windows"].([]any); len(w) != 2 {
		t.Errorf("GET usage: %v", got["usage"])
	}
	patched := call("PATCH", path, map[string]any{"credits": map[string]any{"remaining": 10, "refill": nil}}, http.StatusOK)
	if c, _ := patched["credits"].(map[string]any); c["remaining"] != 10.0 || c["refill"] != nil || c["next_refill"] != nil {
		t.Errorf("PATCH credits without refill: %v", patched["credits"])
	}
	call("PATCH", path, map[string]any{"credits": map[string]any{"refill": map[string]any{"amount": 5, "interval": "weekly", "day": 6}}}, http.StatusOK)
	if c := call("PATCH", path, map[string]any{"credits": nil, "limits": []any{}, "allowed_ips": nil}, http.StatusOK); c["credits"] != nil {
		t.Errorf("PATCH credits null: %v", c["credits"])
	}
	call("GET", "/keys?account=a", nil, http.StatusOK)
	call("POST", "/keys", map[string]any{"account": "a", "name": "x", "credits": nil, "limits": nil}, http.StatusCreated)

	for _, bad := range []struct {
		method, path string
		body         map[string]any
		field        string
	}{
		{"POST", "/accounts", map[string]any{"name": "b", "limits": []any{map[string]any{"name": "x", "limit": 1, "window": "1d"}}}, "limits[0].window"},
		{"PATCH", path, map[string]any{"limits": []any{burst, map[string]any{"name": "m", "limit": 0, "window": "1m"}}}, "limits[1].limit"},
		{"PATCH", path, map[string]any{"credits": map[string]any{"refill": map[string]any{"amount": 1, "interval": "daily"}, "next_refill": "2030-01-01T00:00:00Z"}}, "credits.next_refill"},
	} {
		if out := call(bad.method, bad.path, bad.body, http.StatusBadRequest); out["field"] != bad.field {
			t.Errorf("%s %s %v: field %v, want %s", bad.method, bad.path, bad.body, out["field"], bad.field)
		}
	}
}

// TestOpenAPIWindowPattern checks the document's WindowLength pattern
// against the handler's reading of a window (time.ParseDuration): a
// window the handler takes must match, a string it cannot read must not.
func TestOpenAPIWindowPattern(t *testing.T) {
	schema := loadKin(t).Components.Schemas["WindowLength"].Value
	for _, s := range []string{"1s", "90s", "1m30s", "24h", "744h", "1.5h", "1000ms", "+1s", "1h0m0s", ".5m", "1.m",
		"60000000000ns", "1000000us", "1000000µs", "1000000μs",
		"", "soon", "1d", "1 s", "s", "1", "1S", "h1", "1s ", "1..5h", "1e3s"} {
		d, err := time.ParseDuration(s)
		matches := schema.VisitJSON(s) == nil
		switch {
		case err == nil && d >= time.Second && !matches:
			t.Errorf("window %q: the handler reads %v, the document's pattern refuses it", s, d)
		case err != nil && matches:
			t.Errorf("window %q: the handler cannot read it (%v), the document's pattern takes it", s, err)
		}
	}
}
