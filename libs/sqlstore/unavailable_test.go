package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"
)

func TestIsUnavailable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, refused := Open(ctx, Config{Driver: Postgres, URL: "postgres://postgres:pw@" + addr + "/x?connect_timeout=2"})
	if refused == nil {
		t.Fatal("Got(Open to a closed port) = nil; want an error")
	}
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", refused, true},
		{"deadline", fmt.Errorf("load: %w", context.DeadlineExceeded), true},
		{"already classified", fmt.Errorf("load: %w", &UnavailableError{Err: errors.New("x")}), true},
		{"no rows", fmt.Errorf("load: %w", sql.ErrNoRows), false},
		{"client left", context.Canceled, false},
		{"nil", nil, false},
	}
	for _, c := range cases {
		if got := IsUnavailable(c.err); got != c.want {
			t.Errorf("Got(IsUnavailable(%s)) = %v; want %v", c.name, got, c.want)
		}
	}
}

// SQLite busy beyond the busy timeout is "retry later", not a bug.
func TestIsUnavailableSQLiteBusy(t *testing.T) {
	t.Parallel()
	path := t.TempDir() + "/busy.db"
	holder, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if _, err := holder.Exec("CREATE TABLE t (x INTEGER)"); err != nil {
		t.Fatal(err)
	}
	tx, err := holder.Begin() // BEGIN IMMEDIATE: takes the write lock
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	contender, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer contender.Close()
	_, err = contender.Exec("INSERT INTO t VALUES (1)")
	if err == nil {
		t.Fatal("Got(write while another connection holds the lock) = nil; want SQLITE_BUSY")
	}
	if !IsUnavailable(fmt.Errorf("insert: %w", err)) {
		t.Errorf("Got(IsUnavailable(%v)) = false; want true", err)
	}
}
