package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode"

	"go.uber.org/zap"

	"github.com/keygate/keygate/storage"
)

// apiError is an error answered to the client as
// {"error": code, "message": message, "field": field, ...extra}.
type apiError struct {
	status  int
	code    string
	message string
	field   string
	extra   map[string]any
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errInvalid(field, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: "invalid_request", message: fmt.Sprintf(format, args...), field: field}
}

func errNotFound(format string, args ...any) *apiError {
	return &apiError{status: http.StatusNotFound, code: "not_found", message: fmt.Sprintf(format, args...)}
}

// fail answers err: API errors as they are, store errors by their kind,
// anything else as a 500 that is logged. A request whose client went
// away is not a server error: nobody reads the answer, so it is logged at
// debug level and not answered.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	var se *storage.Error
	switch {
	case r.Context().Err() != nil && !errors.As(err, &ae) && !errors.As(err, &se):
		h.logger.Debug("admin request abandoned by its client", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
		return
	case errors.As(err, &ae):
	case errors.As(err, &se):
		ae = ruleError(se)
	case errors.Is(err, storage.ErrNotFound):
		ae = errNotFound("not found")
	case errors.Is(err, storage.ErrInvalid):
		ae = errInvalid("", "the request holds a value the key store cannot keep")
	case errors.Is(err, storage.ErrConflict):
		ae = &apiError{status: http.StatusConflict, code: "conflict", message: "conflicts with an existing record"}
	case errors.Is(err, storage.ErrUnavailable):
		h.logger.Warn("key store unavailable", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
		w.Header().Set("Retry-After", storage.UnavailableRetryAfter)
		ae = &apiError{status: http.StatusServiceUnavailable, code: "unavailable", message: "the key store is unavailable; retry later"}
	default:
		h.logger.Error("admin request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
		ae = &apiError{status: http.StatusInternalServerError, code: "internal", message: "internal error"}
	}
	writeError(w, ae)
}

// ruleError answers a keystore rule's refusal.
func ruleError(e *storage.Error) *apiError {
	switch {
	case errors.Is(e.Kind, storage.ErrInvalid):
		return &apiError{status: http.StatusBadRequest, code: "invalid_request", message: e.Message, field: e.Field}
	case errors.Is(e.Kind, storage.ErrNotFound):
		return &apiError{status: http.StatusNotFound, code: "not_found", message: e.Message, field: e.Field}
	case errors.Is(e.Kind, storage.ErrConflict):
		return &apiError{status: http.StatusConflict, code: "conflict", message: e.Message, field: e.Field}
	case e.Scope != "":
		return &apiError{status: http.StatusForbidden, code: "forbidden", message: e.Message, extra: map[string]any{"scope": e.Scope}}
	}
	// A refusal of a usage policy names the field it refuses.
	return &apiError{status: http.StatusForbidden, code: "forbidden", message: e.Message, field: e.Field}
}

func writeError(w http.ResponseWriter, e *apiError) {
	body := make(map[string]any, 3+len(e.extra))
	for k, v := range e.extra {
		body[k] = v
	}
	body["error"] = e.code
	body["message"] = e.message
	if e.field != "" {
		body["field"] = e.field
	}
	writeJSON(w, e.status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// decode reads the JSON body into v: one object, no unknown fields, at
// most MaxBodyBytes.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return decodeError(err)
		}
		return errInvalid("", "the body must hold exactly one JSON object")
	}
	return nil
}

func decodeError(err error) error {
	var (
		mbe *http.MaxBytesError
		se  *json.SyntaxError
		te  *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &mbe):
		return &apiError{status: http.StatusRequestEntityTooLarge, code: "too_large",
			message: fmt.Sprintf("the body exceeds %d bytes", mbe.Limit)}
	case errors.As(err, &se):
		return errInvalid("", "malformed JSON at byte %d", se.Offset)
	case errors.As(err, &te):
		field := jsonPath(te.Field)
		if field == "" {
			return errInvalid("", "the body must be a JSON object")
		}
		return errInvalid(field, "%s must be of type %s, not %s", field, te.Type, te.Value)
	case errors.Is(err, io.EOF):
		return errInvalid("", "empty body: a JSON object is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errInvalid("", "truncated JSON body")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return errInvalid(field, "unknown field %q", field)
	}
	return errInvalid("", "invalid JSON body: %v", err)
}

// jsonPath is the JSON path of an UnmarshalTypeError's Field: without
// the Go names of the embedded structs it passes through
// ("UpdateKeyRequest.name" is "name"), the API's JSON names being lower
// case.
func jsonPath(field string) string {
	parts := strings.Split(field, ".")
	out := parts[:0]
	for _, p := range parts {
		if p != "" && !unicode.IsUpper([]rune(p)[0]) {
			out = append(out, p)
		}
	}
	return strings.Join(out, ".")
}
