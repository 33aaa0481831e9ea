package admin

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/keygate/keygate/storage"
)

// postImport sends lines to an import server and decodes its answer.
func postImport(t *testing.T, url string, lines [][]byte) ImportResult {
	t.Helper()
	resp, err := http.Post(url, "application/jsonl", bytes.NewReader(bytes.Join(lines, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res ImportResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("import: %d, %v", resp.StatusCode, err)
	}
	return res
}

// TestImportCountsCreatedUpdatedUnchanged: the answer of an import tells
// new records from those the store already held, alike or not.
func TestImportCountsCreatedUpdatedUnchanged(t *testing.T) {
	url, _ := importServer(t, time.Minute)
	lines := accountLines(t, 3)
	if got, want := postImport(t, url, lines), (ImportResult{Imported: 3, Created: 3}); got != want {
		t.Errorf("first import = %+v, want %+v", got, want)
	}
	if got, want := postImport(t, url, lines), (ImportResult{Imported: 3, Unchanged: 3}); got != want {
		t.Errorf("same import again = %+v, want %+v", got, want)
	}

	var rec storage.ExportRecord
	if err := json.Unmarshal(lines[1], &rec); err != nil {
		t.Fatal(err)
	}
	rec.Account.Team = "moved"
	changed, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	// A time in another zone is the same time; nil scopes are no scopes.
	if err := json.Unmarshal(lines[2], &rec); err != nil {
		t.Fatal(err)
	}
	rec.Account.CreatedAt = rec.Account.CreatedAt.In(time.FixedZone("X", 5*3600))
	rec.Account.Scopes = nil
	sameInOtherZone, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := json.Marshal(storage.ExportRecord{Type: storage.RecordAccount, Account: &storage.ExportAccount{
		ID: storage.NewID(storage.AccountIDPrefix), Name: "fresh", Kind: storage.KindUser, CreatedAt: time.Now()}})
	if err != nil {
		t.Fatal(err)
	}
	next := [][]byte{lines[0], append(changed, '\n'), append(sameInOtherZone, '\n'), append(fresh, '\n')}
	if got, want := postImport(t, url, next), (ImportResult{Imported: 4, Created: 1, Updated: 1, Unchanged: 2}); got != want {
		t.Errorf("mixed import = %+v, want %+v", got, want)
	}
}
