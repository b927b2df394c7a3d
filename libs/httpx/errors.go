// Package httpx holds the suite's HTTP conventions: RFC 9457 problem bodies
// that also carry the seed's code/message/details, strict JSON decoding with
// size limits, the echo instance every service starts from, request ids,
// metrics, the internal-context middleware and the health endpoints.
package httpx

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Error is the one error type services return to the HTTP edge. Anything
// else becomes a 500 whose detail never reaches the client.
type Error struct {
	Status     int
	Code       string
	Message    string
	Details    any
	RetryAfter time.Duration
	Err        error // cause, logged, never sent
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// Problem is the wire form: RFC 9457 members plus the seed's fields.
type Problem struct {
	Type    string `json:"type"`
	Title   string `json:"title"`
	Status  int    `json:"status"`
	Detail  string `json:"detail"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Details any    `json:"details,omitempty"`
}

// Problem renders the error for the client.
func (e *Error) Problem() Problem {
	return Problem{
		Type:    "about:blank",
		Title:   http.StatusText(e.Status),
		Status:  e.Status,
		Detail:  e.Message,
		Code:    e.Code,
		Message: e.Message,
		Details: e.Details,
	}
}

// Error codes shared by every service (the seed's names).
const (
	CodeValidation   = "VALIDATION_ERROR"
	CodeUnauthorized = "UNAUTHORIZED"
	CodeForbidden    = "FORBIDDEN"
	CodeNotFound     = "NOT_FOUND"
	CodeTierLimit    = "TIER_LIMIT_EXCEEDED"
	CodeRateLimited  = "RATE_LIMITED"
	CodeUnavailable  = "SERVICE_UNAVAILABLE"
	CodeTooLarge     = "PAYLOAD_TOO_LARGE"
	CodeInternal     = "INTERNAL_ERROR"
	CodeMethod       = "METHOD_NOT_ALLOWED"
	CodeUnsupported  = "UNSUPPORTED_MEDIA_TYPE"
)

// Validation is a 400 with optional field details.
func Validation(message string, details any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeValidation, Message: message, Details: details}
}

// Unauthorized is a 401.
func Unauthorized(message string) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: CodeUnauthorized, Message: message}
}

// Forbidden is a 403.
func Forbidden(message string) *Error {
	return &Error{Status: http.StatusForbidden, Code: CodeForbidden, Message: message}
}

// NotFound is a 404 with a resource-specific code such as AGENT_NOT_FOUND.
func NotFound(code, message string) *Error {
	return &Error{Status: http.StatusNotFound, Code: code, Message: message}
}

// Conflict is a 409 with a code such as AGENT_ALREADY_EXISTS.
func Conflict(code, message string) *Error {
	return &Error{Status: http.StatusConflict, Code: code, Message: message}
}

// TooMany is a 429 with Retry-After.
func TooMany(code, message string, retryAfter time.Duration) *Error {
	return &Error{Status: http.StatusTooManyRequests, Code: code, Message: message, RetryAfter: retryAfter}
}

// Unavailable is a 503 wrapping the cause (logged, not sent).
func Unavailable(message string, cause error) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: message, Err: cause, RetryAfter: time.Second}
}

// Internal wraps an unexpected error as a 500; the cause is logged only.
func Internal(cause error) *Error {
	return &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: "internal error", Err: cause}
}

// AsError converts any error to an *Error: a 503 for a dependency that
// cannot be reached (IsUnavailable), a 500 for other unknown ones.
func AsError(err error) *Error {
	var he *Error
	if errors.As(err, &he) {
		return he
	}
	if IsUnavailable(err) {
		return Unavailable("a backing service is unavailable; retry later", err)
	}
	return Internal(err)
}

// Unavailabler is implemented by errors that say whether they mean "a
// dependency cannot be reached right now" (libs/sqlstore marks connection
// failures, pool timeouts and SQLite busy this way). The HTTP edge answers
// those with 503 and Retry-After instead of 500, so the domain keeps
// returning plain wrapped errors.
type Unavailabler interface {
	Unavailable() bool
}

// IsUnavailable reports whether err means a dependency could not be
// reached: an error in the chain says so (Unavailabler), or the chain holds
// a network dial or I/O failure, or the driver reported a broken
// connection.
func IsUnavailable(err error) bool {
	var u Unavailabler
	if errors.As(err, &u) && u.Unavailable() {
		return true
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return true
	}
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone)
}

// RetryAfterSeconds formats a Retry-After value, at least 1.
func RetryAfterSeconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return strconv.FormatInt(s, 10)
}
