package admin

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/keygate/keygate/storage"
)

// maxImportLine bounds one line of an import.
const maxImportLine = 1 << 20

// importLineTimeout bounds the wait for each line of an import.
const importLineTimeout = 30 * time.Second

// ServeExport streams every account, key and token hash of the store as
// JSON Lines. It is for the trusted admin endpoint only: the export holds
// token hashes, which let another store verify the same tokens.
func (h *Handler) ServeExport(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/jsonl")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	started := false
	err := h.store.Export(r.Context(), func(rec storage.ExportRecord) error {
		started = true
		return enc.Encode(rec)
	})
	if err != nil && !started {
		h.fail(w, r, err)
		return
	}
	if err != nil {
		// Headers are gone: cut the stream so the client sees it failed.
		h.logger.Sugar().Errorf("export failed midway: %v", err)
		panic(http.ErrAbortHandler)
	}
}

// ImportResult is the answer of an import: how many records it wrote, and
// how they compare with what the store held before.
type ImportResult struct {
	Imported int `json:"imported"`
	// Created records had no record with their id in the store.
	Created int `json:"created"`
	// Updated records replaced a different record with their id.
	Updated int `json:"updated"`
	// Unchanged records were already in the store as they are.
	Unchanged int `json:"unchanged"`
}

// ServeImport reads JSON Lines as ServeExport writes them and imports every
// record, in order; importing the same export twice changes nothing. It
// answers an ImportResult, or the error of the first bad line (with "line"
// and "imported"), after which nothing more is imported. For the trusted
// admin endpoint only.
func (h *Handler) ServeImport(w http.ResponseWriter, r *http.Request) {
	before, err := h.digests(r.Context())
	if err != nil {
		h.fail(w, r, err)
		return
	}
	var res ImportResult
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 64<<10), maxImportLine)
	// A large import outlasts a server's read timeout (Caddy's admin
	// endpoint has 10s): the deadline rolls with each line instead.
	rc := http.NewResponseController(w)
	line := 0
	for {
		_ = rc.SetReadDeadline(time.Now().Add(importLineTimeout)) // unsupported: the server's own
		if !sc.Scan() {
			break
		}
		line++
		if len(sc.Bytes()) == 0 {
			continue
		}
		var rec storage.ExportRecord
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		// A line that does not decode is the caller's fault; an error of
		// the store (which may also be an unexpected EOF, from its
		// connection) is not.
		err := dec.Decode(&rec)
		if err != nil {
			err = errInvalid("", "line %d: %v", line, err)
		} else {
			err = h.store.Import(r.Context(), Trusted.Actor, rec)
		}
		if err != nil {
			h.failLine(w, r, line, res.Imported, err)
			return
		}
		id, digest := recordDigest(rec)
		switch prev, existed := before[id]; {
		case !existed:
			res.Created++
		case prev == digest:
			res.Unchanged++
		default:
			res.Updated++
		}
		before[id] = digest
		res.Imported++
	}
	if err := sc.Err(); err != nil {
		h.failLine(w, r, line+1, res.Imported, errInvalid("", "reading the import: %v", err))
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// digests returns the digest of every record the store holds, by type and
// id, for ServeImport to tell created, updated and unchanged records apart.
func (h *Handler) digests(ctx context.Context) (map[string][sha256.Size]byte, error) {
	out := map[string][sha256.Size]byte{}
	err := h.store.Export(ctx, func(rec storage.ExportRecord) error {
		id, digest := recordDigest(rec)
		out[id] = digest
		return nil
	})
	return out, err
}

// recordDigest returns the type and id of a valid record, and a digest of
// its content that two stores holding the same record agree on: times in
// UTC at PostgreSQL's microsecond precision, and no nil for empty.
func recordDigest(rec storage.ExportRecord) (string, [sha256.Size]byte) {
	at := func(t time.Time) time.Time { return t.Round(time.Microsecond).UTC() }
	atPtr := func(t *time.Time) *time.Time {
		if t == nil {
			return nil
		}
		v := at(*t)
		return &v
	}
	tags := func(m map[string]string) map[string]string {
		if m == nil {
			return map[string]string{}
		}
		return m
	}
	c := storage.ExportRecord{Type: rec.Type}
	var id string
	switch {
	case rec.Account != nil:
		a := *rec.Account
		a.CreatedAt = at(a.CreatedAt)
		if a.Scopes == nil {
			a.Scopes = []string{}
		}
		id, c.Account = a.ID, &a
	case rec.Key != nil:
		k := *rec.Key
		k.CreatedAt, k.Tags = at(k.CreatedAt), tags(k.Tags)
		id, c.Key = k.ID, &k
	case rec.Token != nil:
		t := *rec.Token
		t.CreatedAt, t.Tags = at(t.CreatedAt), tags(t.Tags)
		t.ExpiresAt, t.LastUsedAt, t.RotatedAt = atPtr(t.ExpiresAt), atPtr(t.LastUsedAt), atPtr(t.RotatedAt)
		id, c.Token = t.ID, &t
	}
	raw, _ := json.Marshal(c) // plain structs: cannot fail
	return rec.Type + " " + id, sha256.Sum256(raw)
}

// failLine answers an import error, naming the line and how many records
// were imported before it.
func (h *Handler) failLine(w http.ResponseWriter, r *http.Request, line, imported int, err error) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
	case errors.Is(err, storage.ErrInvalid):
		ae = errInvalid("", "line %d: %v", line, err)
	default:
		h.fail(w, r, fmt.Errorf("line %d: %w", line, err))
		return
	}
	if ae.extra == nil {
		ae.extra = map[string]any{}
	}
	ae.extra["line"] = line
	ae.extra["imported"] = imported
	writeError(w, ae)
}
