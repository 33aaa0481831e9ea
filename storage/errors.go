package storage

import (
	"errors"
	"fmt"
)

// UnavailableRetryAfter is the Retry-After, in seconds, of every 503 that
// answers ErrUnavailable: on the request path and in the admin API alike.
const UnavailableRetryAfter = "2"

// Errors the keystore and backends return; callers test them with
// errors.Is.
var (
	// ErrNotFound means the account, key or token does not exist, or the
	// caller may not see it.
	ErrNotFound = errors.New("not found")
	// ErrConflict means the write collides with existing data (a taken
	// name, a token already rotated).
	ErrConflict = errors.New("conflict")
	// ErrUnavailable means the store could not be reached.
	ErrUnavailable = errors.New("store unavailable")
	// ErrInvalid means a value is refused: by a rule, or because the store
	// cannot hold it (such as a NUL byte in a text field).
	ErrInvalid = errors.New("invalid value")
	// ErrForbidden means the caller may not do this: it would grant a
	// scope the caller lacks, or the operation is for the trusted
	// principal only.
	ErrForbidden = errors.New("forbidden")
	// ErrRetiring means the token is being rotated out: it cannot be
	// rotated again, and its expiry can only be brought forward, never
	// removed or pushed later (that would un-retire it). It wraps
	// ErrConflict.
	ErrRetiring = fmt.Errorf("%w: the token is being rotated out", ErrConflict)
)

// Error is a refusal by a rule, with what a client needs to fix the
// request. Its message holds no secret.
type Error struct {
	// Kind is ErrInvalid, ErrNotFound, ErrConflict or ErrForbidden.
	Kind error
	// Field names the input at fault, if one is: the field whose value
	// is refused, or (ErrConflict) the field whose value is taken.
	Field string
	// Scope is the scope the caller lacks, for a refused grant.
	Scope string
	// Message says what is wrong.
	Message string
}

func (e *Error) Error() string { return e.Message }

// Unwrap returns e.Kind, so errors.Is(err, ErrInvalid) and the like work.
func (e *Error) Unwrap() error { return e.Kind }

func invalid(field, format string, args ...any) *Error {
	return &Error{Kind: ErrInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

func notFound(field, format string, args ...any) *Error {
	return &Error{Kind: ErrNotFound, Field: field, Message: fmt.Sprintf(format, args...)}
}

func conflict(field, format string, args ...any) *Error {
	return &Error{Kind: ErrConflict, Field: field, Message: fmt.Sprintf(format, args...)}
}

// nameTaken is the conflict of an account name another account has.
func nameTaken(name string) *Error {
	return conflict("name", "account name %q is taken", name)
}

func forbiddenScope(s string) *Error {
	return &Error{Kind: ErrForbidden, Scope: s, Message: "cannot grant scope " + s + ": the caller does not hold it"}
}
