package svcrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/agentidp/agentidp/libs/httpx"
	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/testkit"
	"github.com/labstack/echo/v4"
)

// tcpProxy forwards a loopback port to target until cut, so a test can
// take a database away from a pool that was opened against it.
type tcpProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	t.Cleanup(p.cut)
	return p
}

// cut closes the listening port and every proxied connection.
func (p *tcpProxy) cut() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// With PostgreSQL away, database-backed routes answered 500 INTERNAL_ERROR
// (so clients and load balancers could not tell "retry later" from a bug).
// They must answer 503 SERVICE_UNAVAILABLE with Retry-After, and the body
// must not carry the DSN, the host or the password.
func TestAttackDatabaseOutageAnswers503WithoutLeakingDSN(t *testing.T) {
	u, err := url.Parse(testkit.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := startProxy(t, u.Host)
	const password = "hunter2-not-for-clients"
	u.Host = proxy.ln.Addr().String()
	u.User = url.UserPassword(u.User.Username(), password)
	ctx := context.Background()
	db, err := sqlstore.Open(ctx, sqlstore.Config{Driver: sqlstore.Postgres, URL: u.String()})
	if err != nil {
		t.Fatalf("open through the proxy: %v", err)
	}
	t.Cleanup(func() { db.Close() })

	e := httpx.NewEcho(slog.New(slog.DiscardHandler))
	e.GET("/exec", func(c echo.Context) error {
		if _, err := db.ExecContext(c.Request().Context(), "SELECT 1"); err != nil {
			return fmt.Errorf("count agents: %w", err)
		}
		return c.NoContent(http.StatusNoContent)
	})
	e.GET("/row", func(c echo.Context) error {
		var n int
		if err := db.QueryRowContext(c.Request().Context(), "SELECT 1").Scan(&n); err != nil {
			return fmt.Errorf("load agent: %w", err)
		}
		return c.NoContent(http.StatusNoContent)
	})
	e.GET("/tx", func(c echo.Context) error {
		err := db.InTx(c.Request().Context(), func(tx *sqlstore.Tx) error {
			_, err := tx.ExecContext(c.Request().Context(), "SELECT 1")
			return err
		})
		if err != nil {
			return fmt.Errorf("create agent: %w", err)
		}
		return c.NoContent(http.StatusNoContent)
	})
	for _, path := range []string{"/exec", "/row", "/tx"} {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusNoContent {
			t.Fatalf("Got(%s with the database up) = %d %s; want 204", path, rec.Code, rec.Body)
		}
	}

	proxy.cut()
	// sqlstore classifies (the domain only wraps); httpx maps.
	_, err = db.ExecContext(ctx, "SELECT 1")
	var ue *sqlstore.UnavailableError
	if !errors.As(err, &ue) || !sqlstore.IsUnavailable(err) {
		t.Errorf("Got(ExecContext with the database away) = %v; want a *sqlstore.UnavailableError", err)
	}
	for _, path := range []string{"/exec", "/row", "/tx"} {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		body := rec.Body.String()
		var p httpx.Problem
		_ = json.Unmarshal(rec.Body.Bytes(), &p)
		if rec.Code != http.StatusServiceUnavailable || p.Code != httpx.CodeUnavailable || rec.Header().Get("Retry-After") != "1" {
			t.Errorf("Got(%s with the database away) = %d %q Retry-After %q; want 503 %s Retry-After 1",
				path, rec.Code, p.Code, rec.Header().Get("Retry-After"), httpx.CodeUnavailable)
		}
		for _, secret := range []string{password, proxy.ln.Addr().String(), "127.0.0.1", "postgres", u.User.Username()} {
			if strings.Contains(body, secret) {
				t.Errorf("Got(%s body) = %s; contains %q", path, body, secret)
			}
		}
	}
}
