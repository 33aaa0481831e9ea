package admin

import (
	"bufio"
	"bytes"
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
	err := h.ks.Export(r.Context(), Trusted, func(rec storage.ExportRecord) error {
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
		var outcome storage.ImportOutcome
		err := dec.Decode(&rec)
		if err != nil {
			err = errInvalid("", "line %d: %v", line, err)
		} else {
			outcome, err = h.ks.Import(r.Context(), Trusted, rec)
		}
		if err != nil {
			h.failLine(w, r, line, res.Imported, err)
			return
		}
		switch outcome {
		case storage.ImportCreated:
			res.Created++
		case storage.ImportUnchanged:
			res.Unchanged++
		default:
			res.Updated++
		}
		res.Imported++
	}
	if err := sc.Err(); err != nil {
		h.failLine(w, r, line+1, res.Imported, errInvalid("", "reading the import: %v", err))
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// failLine answers an import error, naming the line and how many records
// were imported before it; an error of the store itself (unavailable,
// internal) is answered as elsewhere.
func (h *Handler) failLine(w http.ResponseWriter, r *http.Request, line, imported int, err error) {
	var ae *apiError
	var se *storage.Error
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &se):
		// A rule's refusal, with its field (a conflict's "name" or "hash").
		ae = ruleError(se)
		ae.message = fmt.Sprintf("line %d: %s", line, ae.message)
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
