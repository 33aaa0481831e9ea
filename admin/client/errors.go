package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Error is an error answer of the API: Keygate's
// {"error": code, "message": …, "field": …}, or the {"error": message} of
// Caddy's admin endpoint, or any other body, in Message.
type Error struct {
	// Status is the HTTP status of the answer.
	Status int
	// Code is the API's error code (invalid_request, not_found, conflict,
	// insufficient_scope, forbidden, unavailable, …); empty when the
	// answer is not the API's.
	Code string
	// Message says what went wrong, on one line.
	Message string
	// Field names the JSON field or query parameter at fault (400).
	Field string
	// RequiredScope is the scope the route needs (403 insufficient_scope).
	RequiredScope string
	// Scope is the scope a write would grant but the caller lacks (403
	// forbidden).
	Scope string
	// Line is the line of an import at fault, and Imported how many
	// records were imported before it.
	Line, Imported int
	// RetryAfter is the Retry-After header of a 503, if any.
	RetryAfter string
}

// Error reads like `400 invalid_request (field scopes): scope "Apps": …`.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(e.Status))
	b.WriteByte(' ')
	if e.Code != "" {
		b.WriteString(e.Code)
	} else {
		b.WriteString(http.StatusText(e.Status))
	}
	if e.Field != "" {
		fmt.Fprintf(&b, " (field %s)", e.Field)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// IsNotFound reports whether err is an answer 404.
func IsNotFound(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == http.StatusNotFound
}

// maxErrorBytes bounds the error bodies read.
const maxErrorBytes = 64 << 10

// maxMessageLen bounds Error.Message.
const maxMessageLen = 500

// readError reads the error answer resp.
func readError(resp *http.Response) *Error {
	e := &Error{Status: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After")}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
	body = bytes.TrimSpace(body)
	var v struct {
		Error         string `json:"error"`
		Message       string `json:"message"`
		Field         string `json:"field"`
		RequiredScope string `json:"required_scope"`
		Scope         string `json:"scope"`
		Line          int    `json:"line"`
		Imported      int    `json:"imported"`
	}
	if err := json.Unmarshal(body, &v); err == nil && (v.Error != "" || v.Message != "") {
		e.Code, e.Message, e.Field = v.Error, v.Message, v.Field
		e.RequiredScope, e.Scope, e.Line, e.Imported = v.RequiredScope, v.Scope, v.Line, v.Imported
		if e.Message == "" {
			// Caddy's own admin errors are {"error": "<message>"}.
			e.Code, e.Message = "", v.Error
		}
	} else {
		e.Message = string(body)
	}
	e.Message = strings.Join(strings.Fields(e.Message), " ")
	if len(e.Message) > maxMessageLen {
		e.Message = strings.ToValidUTF8(e.Message[:maxMessageLen], "") + "…"
	}
	return e
}

// redact replaces secret in err's message, so that a token value never
// shows in an error, even if an answer echoes it.
func redact(err error, secret string) error {
	var e *Error
	if secret == "" || !errors.As(err, &e) || !strings.Contains(e.Message, secret) {
		return err
	}
	c := *e
	c.Message = strings.ReplaceAll(c.Message, secret, "[REDACTED]")
	return &c
}
