package httpx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// Bind decodes a JSON request body into v strictly: the content type must be
// JSON, unknown fields and trailing data are rejected, and the body may not
// exceed DefaultBodyLimit (413). Every failure is a 4xx *Error.
func Bind(c echo.Context, v any) error {
	return BindLimit(c, v, DefaultBodyLimit)
}

// BindLimit is Bind with a custom size limit in bytes.
func BindLimit(c echo.Context, v any, limit int64) error {
	r := c.Request()
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return &Error{Status: http.StatusUnsupportedMediaType, Code: CodeUnsupported, Message: "request body must be application/json"}
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeTooLarge, Message: fmt.Sprintf("request body exceeds %d bytes", limit)}
		}
		return Validation("could not read request body", nil)
	}
	return DecodeStrict(body, v)
}

// DecodeStrict decodes one JSON value with no unknown fields.
func DecodeStrict(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return Validation("request body is required", nil)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Validation(describeJSONError(err), nil)
	}
	if dec.More() {
		return Validation("request body must be a single JSON value", nil)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Validation("request body must be a single JSON value", nil)
	}
	return nil
}

func describeJSONError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at offset %d", se.Offset)
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("field %q must be %s", te.Field, te.Type)
		}
		return fmt.Sprintf("body must be %s", te.Type)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: unexpected end of input"
	}
	return "malformed JSON"
}

// JSON writes v with status and no caching.
func JSON(c echo.Context, status int, v any) error {
	h := c.Response().Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	c.Response().WriteHeader(status)
	return writeJSON(c.Response(), v)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
