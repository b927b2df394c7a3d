package httpx

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
)

// RequestIDHeader carries the request id end to end.
const RequestIDHeader = "X-Request-Id"

// DefaultBodyLimit caps request bodies (bytes) unless a route sets its own.
const DefaultBodyLimit = 1 << 20

// NewEcho returns an echo instance with the suite's error handler, request
// ids, panic recovery and body limit. Routes are added by the caller.
func NewEcho(logger *slog.Logger) *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = ErrorHandler(logger)
	e.Use(requestID, recoverer(logger))
	return e
}

// ErrorHandler renders every error as a problem document and logs 5xx with
// their cause.
func ErrorHandler(logger *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		he := toError(err)
		if he.Status >= 500 {
			logger.ErrorContext(c.Request().Context(), "request failed",
				"method", c.Request().Method, "path", c.Request().URL.Path,
				"status", he.Status, "request_id", c.Response().Header().Get(RequestIDHeader), "err", he)
		}
		WriteError(c.Response(), he)
	}
}

func toError(err error) *Error {
	var he *Error
	if errors.As(err, &he) {
		return he
	}
	var ee *echo.HTTPError
	if errors.As(err, &ee) {
		msg := http.StatusText(ee.Code)
		if s, ok := ee.Message.(string); ok && s != "" {
			msg = s
		}
		switch ee.Code {
		case http.StatusNotFound:
			return NotFound(CodeNotFound, "no such route")
		case http.StatusMethodNotAllowed:
			return &Error{Status: ee.Code, Code: CodeMethod, Message: "method not allowed"}
		case http.StatusRequestEntityTooLarge:
			return &Error{Status: ee.Code, Code: CodeTooLarge, Message: "request body too large"}
		case http.StatusUnsupportedMediaType:
			return &Error{Status: ee.Code, Code: CodeUnsupported, Message: msg}
		case http.StatusUnauthorized:
			return Unauthorized(msg)
		}
		if ee.Code >= 400 && ee.Code < 500 {
			return &Error{Status: ee.Code, Code: CodeValidation, Message: msg}
		}
		return Internal(err)
	}
	if errors.Is(err, context.Canceled) {
		return &Error{Status: 499, Code: "CLIENT_CLOSED", Message: "client closed request"}
	}
	if IsUnavailable(err) {
		return Unavailable("a backing service is unavailable; retry later", err)
	}
	return Internal(err)
}

// WriteError writes e as application/problem+json.
func WriteError(w http.ResponseWriter, e *Error) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", RetryAfterSeconds(e.RetryAfter))
	}
	w.WriteHeader(e.Status)
	_ = writeJSON(w, e.Problem())
}

func requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		id := c.Request().Header.Get(RequestIDHeader)
		if id == "" || len(id) > 128 || strings.ContainsAny(id, "\r\n") {
			id = uuid.NewString()
			c.Request().Header.Set(RequestIDHeader, id)
		}
		c.Response().Header().Set(RequestIDHeader, id)
		return next(c)
	}
}

func recoverer(logger *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) (err error) {
			defer func() {
				if r := recover(); r != nil {
					if r == http.ErrAbortHandler {
						panic(r)
					}
					logger.ErrorContext(c.Request().Context(), "panic in handler", "path", c.Request().URL.Path, "panic", r)
					err = Internal(errors.New("panic"))
				}
			}()
			return next(c)
		}
	}
}
