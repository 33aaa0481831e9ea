package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/keygate/keygate/admin"
	"github.com/keygate/keygate/storage"
)

// ExportCounts counts the records of an export by type.
type ExportCounts struct {
	Accounts, Keys, Tokens int
}

// Export copies every account, key and token hash of the store to w, as
// JSON Lines (GET /export, on Caddy's admin endpoint only), and counts
// them. A stream the server cut short is an error: what w got is then
// incomplete.
func (c *Client) Export(ctx context.Context, w io.Writer) (ExportCounts, error) {
	var n ExportCounts
	resp, err := c.send(ctx, http.MethodGet, "/export", nil, "", nil)
	if err != nil {
		return n, err
	}
	defer resp.Body.Close()
	rd := bufio.NewReaderSize(resp.Body, 64<<10)
	for {
		line, err := rd.ReadBytes('\n')
		if len(line) > 0 {
			if line[len(line)-1] != '\n' {
				return n, errors.New("the export ends in the middle of a line: it is incomplete")
			}
			var rec struct {
				Type string `json:"type"`
			}
			if err := json.Unmarshal(line, &rec); err != nil {
				return n, fmt.Errorf("the export holds a line that is not JSON: %w", err)
			}
			switch rec.Type {
			case storage.RecordAccount:
				n.Accounts++
			case storage.RecordKey:
				n.Keys++
			case storage.RecordToken:
				n.Tokens++
			}
			if _, err := w.Write(line); err != nil {
				return n, fmt.Errorf("writing the export: %w", err)
			}
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("reading the export (it is incomplete): %w", err)
		}
	}
}

// Import loads JSON Lines as Export writes them into the store (POST
// /import, on Caddy's admin endpoint only). A bad line is an *Error
// naming it (Line) and how many records were imported before it.
func (c *Client) Import(ctx context.Context, r io.Reader) (*admin.ImportResult, error) {
	resp, err := c.send(ctx, http.MethodPost, "/import", nil, "application/jsonl", r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var res admin.ImportResult
	if err := json.NewDecoder(io.LimitReader(resp.Body, MaxAnswerBytes)).Decode(&res); err != nil {
		return nil, fmt.Errorf("decoding the answer to the import: %w", err)
	}
	return &res, nil
}
