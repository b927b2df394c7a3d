package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// UnavailableError marks a database error that means "the database cannot
// be reached or cannot take the work right now" rather than "this request
// is wrong": connection failures, a pool that could not hand out a
// connection in time, a server shutting down, SQLite busy beyond its
// timeout. It implements Unavailable() so the HTTP edge (libs/httpx)
// answers 503 with Retry-After without importing this package. Its text is
// never sent to clients (it can name the host).
type UnavailableError struct{ Err error }

func (e *UnavailableError) Error() string { return "database unavailable: " + e.Err.Error() }

// Unwrap returns the driver's error.
func (e *UnavailableError) Unwrap() error { return e.Err }

// Unavailable reports true: the caller should retry later.
func (e *UnavailableError) Unavailable() bool { return true }

// IsUnavailable reports whether err (or an error it wraps) is a
// connection-level failure of either driver (see UnavailableError).
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var ue *UnavailableError
	if errors.As(err, &ue) {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08 connection exception, 53300 too many connections,
		// 57P01-57P03 shutdown / cannot connect now.
		return strings.HasPrefix(pgErr.Code, "08") || pgErr.Code == "53300" ||
			pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03"
	}
	var sqErr *sqlite.Error
	if errors.As(err, &sqErr) {
		switch sqErr.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
			return true
		}
		return false
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return true
	}
	// A deadline hit while waiting for the pool or the server: the request
	// was fine, the database too slow. Cancellation (the client left) is not.
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) {
		return true
	}
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone)
}

// classify wraps a connection-level failure in *UnavailableError and
// returns every other error unchanged.
func classify(err error) error {
	if err == nil || !IsUnavailable(err) {
		return err
	}
	var ue *UnavailableError
	if errors.As(err, &ue) {
		return err
	}
	return &UnavailableError{Err: err}
}
