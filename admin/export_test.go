package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/keygate/keygate/storage"
	"github.com/keygate/keygate/storage/bolt"
)

// importServer serves ServeImport on a file store from a server whose read
// timeout is short, as Caddy's admin endpoint's (10s) is for big imports.
func importServer(t *testing.T, readTimeout time.Duration) (string, *storage.Keystore) {
	t.Helper()
	b, err := bolt.Open(filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	s := storage.New(b)
	h := New(s, testTokens, zap.NewNop())
	srv := httptest.NewUnstartedServer(http.HandlerFunc(h.ServeImport))
	srv.Config.ReadTimeout = readTimeout
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL, s
}

// accountLines returns n account records as JSON Lines.
func accountLines(t *testing.T, n int) [][]byte {
	var lines [][]byte
	for i := range n {
		a := storage.ExportAccount{ID: storage.NewID(storage.AccountIDPrefix), Name: "team-" + string(rune('a'+i)), Kind: storage.KindService, CreatedAt: time.Now().UTC()}
		line, err := json.Marshal(storage.ExportRecord{Type: storage.RecordAccount, Account: &a})
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, append(line, '\n'))
	}
	return lines
}

// TestImportOutlastsReadTimeout streams an import slower than the server's
// read timeout allows for the whole body: every line still lands.
func TestImportOutlastsReadTimeout(t *testing.T) {
	url, s := importServer(t, 300*time.Millisecond)
	lines := accountLines(t, 8)
	pr, pw := io.Pipe()
	go func() {
		for _, l := range lines {
			_, _ = pw.Write(l)
			time.Sleep(100 * time.Millisecond) // 800ms in all
		}
		_ = pw.Close()
	}()
	resp, err := http.Post(url, "application/jsonl", pr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"imported":8`) {
		t.Fatalf("import: %d %s", resp.StatusCode, body)
	}
	accounts, _, err := s.Accounts(t.Context(), Trusted, storage.ListOptions{Limit: 100})
	if err != nil || len(accounts) != 8 {
		t.Fatalf("accounts after import: %d, %v", len(accounts), err)
	}
}

// TestImportTruncatedLine answers a cut-off last line with 400 naming the
// line, after importing the lines before it.
func TestImportTruncatedLine(t *testing.T) {
	url, _ := importServer(t, time.Minute)
	lines := accountLines(t, 3)
	body := bytes.Join(lines, nil)
	body = body[:len(body)-20]
	resp, err := http.Post(url, "application/jsonl", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Error    string `json:"error"`
		Line     int    `json:"line"`
		Imported int    `json:"imported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusBadRequest || got.Line != 3 || got.Imported != 2 {
		t.Fatalf("truncated import: %d %+v", resp.StatusCode, got)
	}
}

// outageBackend fails every write as a dropped PostgreSQL connection
// does: unavailable, wrapping io.ErrUnexpectedEOF.
type outageBackend struct{ storage.Backend }

func (outageBackend) Update(context.Context, func(storage.Tx) error) error {
	return fmt.Errorf("writing: %w: %w", storage.ErrUnavailable, io.ErrUnexpectedEOF)
}

// TestImportStoreOutage answers a store failure mid-import with 503, not
// as bad input: the same file must be sent again, not fixed.
func TestImportStoreOutage(t *testing.T) {
	b, err := bolt.Open(filepath.Join(t.TempDir(), "keys.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	h := New(storage.New(outageBackend{b}), testTokens, zap.NewNop())
	rec := httptest.NewRecorder()
	h.ServeImport(rec, httptest.NewRequest(http.MethodPost, "/import", bytes.NewReader(accountLines(t, 1)[0])))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("store outage during import: %d %s, want 503", rec.Code, rec.Body)
	}
}
