package admin

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/keygate/keygate/storage"
)

// TestImportConflictNamesFieldAndLine: a line whose account name another
// account holds is a 409 that names the field, the taken name, the line
// and how many records were imported before it.
func TestImportConflictNamesFieldAndLine(t *testing.T) {
	url, s := importServer(t, 0)
	if _, err := s.CreateAccount(t.Context(), Trusted, storage.NewAccount{Name: "team-b"}); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url, "application/jsonl", bytes.NewReader(bytes.Join(accountLines(t, 3), nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Error, Field, Message string
		Line, Imported        int
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := `line 2: account name "team-b" is taken`
	if resp.StatusCode != http.StatusConflict || got.Error != "conflict" || got.Field != "name" || got.Message != want ||
		got.Line != 2 || got.Imported != 1 {
		t.Fatalf("import over a taken name: %d %+v, want 409 conflict, field name, %q, line 2, 1 imported", resp.StatusCode, got, want)
	}
}
