package admin

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/keygate/keygate/storage"
)

// TestImportErrorsNameTheLine checks that every refusal of a record, not
// only a malformed one, names its line and how many records came before,
// as the OpenAPI document and the README say.
func TestImportErrorsNameTheLine(t *testing.T) {
	url, _ := importServer(t, time.Minute)
	good := accountLines(t, 2)
	var first storage.ExportRecord
	if err := json.Unmarshal(good[0], &first); err != nil {
		t.Fatal(err)
	}
	line := func(rec storage.ExportRecord) []byte {
		raw, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		return append(raw, '\n')
	}
	orphan := line(storage.ExportRecord{Type: storage.RecordKey, Key: &storage.ExportKey{ID: "key_orphan", Account: "acc_missing"}})
	taken := line(storage.ExportRecord{Type: storage.RecordAccount, Account: &storage.ExportAccount{
		ID: storage.NewID(storage.AccountIDPrefix), Name: first.Account.Name, Kind: storage.KindUser}})
	tests := []struct {
		name   string
		lines  [][]byte
		status int
		code   string
	}{
		{"malformed", [][]byte{good[0], []byte("{\n")}, http.StatusBadRequest, "invalid_request"},
		{"key of a missing account", [][]byte{good[0], orphan}, http.StatusNotFound, "not_found"},
		{"account name taken", [][]byte{good[0], taken}, http.StatusConflict, "conflict"},
	}
	for _, tt := range tests {
		resp, err := http.Post(url, "application/jsonl", bytes.NewReader(bytes.Join(tt.lines, nil)))
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != tt.status || body["error"] != tt.code {
			t.Errorf("%s: %d %v (%v), want %d %s", tt.name, resp.StatusCode, body, err, tt.status, tt.code)
			continue
		}
		if body["line"] != float64(2) || body["imported"] != float64(1) {
			t.Errorf("%s: line %v imported %v, want 2 and 1: %v", tt.name, body["line"], body["imported"], body)
		}
	}
}
