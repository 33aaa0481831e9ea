package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestCheckAnswers: a 503 that is a check (the store does not answer) is
// the check, Reachable false; a 503 that is not one (no store open yet) is
// an *Error; a 200 is the check.
func TestCheckAnswers(t *testing.T) {
	for _, tt := range []struct {
		name, body    string
		status        int
		wantReachable bool
		wantErr       bool
	}{
		{"reachable", `{"store":"file","reachable":true,"latency":"2µs"}`, 200, true, false},
		{"store down", `{"error":"unavailable","message":"checking the key store: down","store":"postgres","reachable":false}`, 503, false, false},
		{"no store open", `{"error":"unavailable","message":"the key store is not open yet"}`, 503, false, true},
		{"not configured", `{"error":"keygate is not configured"}`, 404, false, true},
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/apikeys/check" {
				t.Errorf("%s: path %s", tt.name, r.URL.Path)
			}
			w.WriteHeader(tt.status)
			_, _ = w.Write([]byte(tt.body))
		}))
		c, err := New(srv.URL + "/apikeys")
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Check(context.Background())
		srv.Close()
		var e *Error
		switch {
		case tt.wantErr && (!errors.As(err, &e) || e.Status != tt.status):
			t.Errorf("%s: %+v, %v; want an *Error with status %d", tt.name, got, err, tt.status)
		case !tt.wantErr && (err != nil || got.Reachable != tt.wantReachable || got.Store == ""):
			t.Errorf("%s: %+v, %v", tt.name, got, err)
		}
	}
}
