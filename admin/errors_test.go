package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestBadPathParamIs400 checks that an id in the path that no record can
// hold is refused by the API with the parameter named, before any store
// sees it: the file store used to answer 404 and PostgreSQL 400.
func TestBadPathParamIs400(t *testing.T) {
	h := newStoreHandler(t)
	tests := []struct{ method, path, field string }{
		{"GET", "/accounts/%ff", "id"},
		{"GET", "/accounts/a%00b", "id"},
		{"DELETE", "/accounts/%c3", "id"},
		{"GET", "/keys/key_%ff", "id"},
		{"PATCH", "/keys/key_x/tokens/tok_%01", "tid"},
		{"POST", "/keys/key_%ff/tokens/tok_x/rotate", "id"},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		h.ServeTrusted(rec, httptest.NewRequest(tt.method, tt.path, nil))
		var body map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != http.StatusBadRequest || body["error"] != "invalid_request" || body["field"] != tt.field {
			t.Errorf("%s %s: %d %v, want 400 invalid_request field %q", tt.method, tt.path, rec.Code, body, tt.field)
		}
	}
	// Valid UTF-8 that names nothing is still 404.
	rec := httptest.NewRecorder()
	h.ServeTrusted(rec, httptest.NewRequest("GET", "/accounts/%C3%A9t%C3%A9", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("GET /accounts/été: %d, want 404", rec.Code)
	}
}

// TestAbandonedRequestIsNotA500 checks that an admin request whose client
// went away is neither answered nor logged as a server error, while the
// same failure of a live request still is.
func TestAbandonedRequestIsNotA500(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	h := newStoreHandler(t)
	h.logger = zap.New(core)
	failure := errors.New("reading the body: context canceled")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	h.fail(rec, httptest.NewRequest("GET", "/keys", nil).WithContext(ctx), failure)
	if rec.Body.Len() != 0 || logs.FilterLevelExact(zapcore.ErrorLevel).Len() != 0 {
		t.Errorf("abandoned request: answered %d %q, %d error logs; want no answer and no error log",
			rec.Code, rec.Body, logs.FilterLevelExact(zapcore.ErrorLevel).Len())
	}
	if logs.FilterMessage("admin request abandoned by its client").Len() != 1 {
		t.Errorf("abandoned request not logged at debug: %v", logs.All())
	}

	rec = httptest.NewRecorder()
	h.fail(rec, httptest.NewRequest("GET", "/keys", nil), failure)
	if rec.Code != http.StatusInternalServerError || logs.FilterLevelExact(zapcore.ErrorLevel).Len() != 1 {
		t.Errorf("live request: %d, %d error logs; want 500 and one error log", rec.Code, logs.FilterLevelExact(zapcore.ErrorLevel).Len())
	}

	// A refusal of the API stays what it is even when the client left.
	rec = httptest.NewRecorder()
	h.fail(rec, httptest.NewRequest("GET", "/keys", nil).WithContext(ctx), errInvalid("limit", "limit is bad"))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("refusal of an abandoned request: %d, want 400", rec.Code)
	}
}
