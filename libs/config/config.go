// Package config reads configuration from environment variables and reports
// every problem at once, so that an operator fixes a bad deployment in one
// round instead of one variable per restart.
package config

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Env reads typed values from a getenv function and collects problems.
type Env struct {
	getenv func(string) string
	errs   []error
}

// New returns an Env over getenv (os.Getenv in production, a map in tests).
func New(getenv func(string) string) *Env {
	return &Env{getenv: getenv}
}

// Err returns every problem found so far, joined, or nil.
func (e *Env) Err() error {
	return errors.Join(e.errs...)
}

// Fail records a problem found by the caller's own validation.
func (e *Env) Fail(format string, args ...any) {
	e.errs = append(e.errs, fmt.Errorf(format, args...))
}

// String returns the variable or def when unset.
func (e *Env) String(name, def string) string {
	if v := strings.TrimSpace(e.getenv(name)); v != "" {
		return v
	}
	return def
}

// Required returns the variable and records a problem when it is unset.
func (e *Env) Required(name string) string {
	v := strings.TrimSpace(e.getenv(name))
	if v == "" {
		e.errs = append(e.errs, fmt.Errorf("%s is required", name))
	}
	return v
}

// Int returns the variable as an integer, or def.
func (e *Env) Int(name string, def int) int {
	v := strings.TrimSpace(e.getenv(name))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: not an integer", name, v))
		return def
	}
	return n
}

// Bool returns the variable as a boolean, or def.
func (e *Env) Bool(name string, def bool) bool {
	v := strings.TrimSpace(e.getenv(name))
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: not a boolean", name, v))
		return def
	}
	return b
}

// Duration returns the variable as a Go duration ("1h", "90s"), or def.
func (e *Env) Duration(name string, def time.Duration) time.Duration {
	v := strings.TrimSpace(e.getenv(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: not a non-negative duration (e.g. 30s, 1h)", name, v))
		return def
	}
	return d
}

// OneOf returns the variable when it is one of allowed, else records a problem.
func (e *Env) OneOf(name, def string, allowed ...string) string {
	v := e.String(name, def)
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	e.errs = append(e.errs, fmt.Errorf("%s=%q: must be one of %s", name, v, strings.Join(allowed, ", ")))
	return def
}

// Key returns a secret key given as hex or base64 of at least minLen bytes.
// The value itself never appears in an error.
func (e *Env) Key(name string, minLen int, required bool) []byte {
	v := strings.TrimSpace(e.getenv(name))
	if v == "" {
		if required {
			e.errs = append(e.errs, fmt.Errorf("%s is required (%d+ random bytes, hex or base64)", name, minLen))
		}
		return nil
	}
	k, err := DecodeKey(v)
	if err != nil || len(k) < minLen {
		e.errs = append(e.errs, fmt.Errorf("%s: must be at least %d bytes, hex or base64 encoded", name, minLen))
		return nil
	}
	return k
}

// DecodeKey decodes a key written as hex or (raw or padded, std or URL) base64.
func DecodeKey(v string) ([]byte, error) {
	if k, err := hex.DecodeString(v); err == nil {
		return k, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(v); err == nil {
			return k, nil
		}
	}
	return nil, errors.New("neither hex nor base64")
}

// List returns a comma-separated variable as trimmed, non-empty items.
func (e *Env) List(name string, def []string) []string {
	v := strings.TrimSpace(e.getenv(name))
	if v == "" {
		return def
	}
	var out []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
