// Package testkit holds shared helpers for tests that need real backing
// services (PostgreSQL, Redis).
//
// Every helper follows the same rule: when the service is not reachable the
// test is skipped, except under CI (CI=true) where it fails, so a missing
// service can never silently turn a CI run green.
//
// Environment:
//
//	AGENTIDP_TEST_POSTGRES_URL  default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable
//	AGENTIDP_TEST_REDIS_URL     default redis://127.0.0.1:6379/0
package testkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

const (
	// EnvPostgresURL names the variable holding the test PostgreSQL URL.
	EnvPostgresURL = "AGENTIDP_TEST_POSTGRES_URL"
	// EnvRedisURL names the variable holding the test Redis URL.
	EnvRedisURL = "AGENTIDP_TEST_REDIS_URL"

	// DefaultPostgresURL is used when EnvPostgresURL is unset.
	DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	// DefaultRedisURL is used when EnvRedisURL is unset.
	DefaultRedisURL = "redis://127.0.0.1:6379/0"

	pingTimeout = 3 * time.Second
)

// unreachable skips the test, or fails it under CI.
func unreachable(t testing.TB, what, env, url string, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not reachable at %s (set %s): %v", what, url, env, err)
	}
	t.Skipf("%s not reachable at %s (set %s): %v", what, url, env, err)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// RandomSuffix returns n random bytes hex-encoded (2n characters).
func RandomSuffix(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func pgConnect(ctx context.Context, url string) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, err
	}
	if err := conn.Ping(ctx); err != nil {
		conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// PostgresURL returns the URL of a reachable PostgreSQL server, or skips the
// test (fails it when CI=true).
func PostgresURL(t testing.TB) string {
	t.Helper()
	url := envOr(EnvPostgresURL, DefaultPostgresURL)
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()
	conn, err := pgConnect(ctx, url)
	if err != nil {
		unreachable(t, "PostgreSQL", EnvPostgresURL, url, err)
		return ""
	}
	conn.Close(context.Background())
	return url
}

// PostgresSchema returns the server URL and the name of a freshly created,
// uniquely named schema ("t_" + random hex). The schema is dropped with
// CASCADE in t.Cleanup. Callers should use it as their search_path (for
// sqlstore: Config.Schema).
func PostgresSchema(t testing.TB) (url string, schema string) {
	t.Helper()
	url = PostgresURL(t)
	schema = "t_" + RandomSuffix(8)
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()
	conn, err := pgConnect(ctx, url)
	if err != nil {
		unreachable(t, "PostgreSQL", EnvPostgresURL, url, err)
		return "", ""
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatalf("testkit: create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgConnect(ctx, url)
		if err != nil {
			t.Logf("testkit: drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Logf("testkit: drop schema %s: %v", schema, err)
		}
	})
	return url, schema
}

func redisClient(url string) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	opts.DialTimeout = pingTimeout
	opts.ReadTimeout = pingTimeout
	opts.WriteTimeout = pingTimeout
	opts.MaxRetries = 0
	return redis.NewClient(opts), nil
}

// RedisURL returns the URL of a reachable Redis server, or skips the test
// (fails it when CI=true).
func RedisURL(t testing.TB) string {
	t.Helper()
	url := envOr(EnvRedisURL, DefaultRedisURL)
	c, err := redisClient(url)
	if err != nil {
		unreachable(t, "Redis", EnvRedisURL, url, err)
		return ""
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), pingTimeout)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		unreachable(t, "Redis", EnvRedisURL, url, err)
		return ""
	}
	return url
}

// RedisPrefix returns a key prefix unique to this test ("test:" + random hex
// + ":"). In t.Cleanup every key under the prefix is deleted (SCAN + DEL).
// It skips/fails like RedisURL when Redis is unreachable.
func RedisPrefix(t testing.TB) string {
	t.Helper()
	url := RedisURL(t)
	prefix := "test:" + RandomSuffix(8) + ":"
	t.Cleanup(func() {
		c, err := redisClient(url)
		if err != nil {
			t.Logf("testkit: redis cleanup: %v", err)
			return
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := deletePrefix(ctx, c, prefix); err != nil {
			t.Logf("testkit: redis cleanup %s: %v", prefix, err)
		}
	})
	return prefix
}

func deletePrefix(ctx context.Context, c *redis.Client, prefix string) error {
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, prefix+"*", 500).Result()
		if err != nil {
			return fmt.Errorf("scan: %w", err)
		}
		if len(keys) > 0 {
			if err := c.Del(ctx, keys...).Err(); err != nil {
				return fmt.Errorf("del: %w", err)
			}
		}
		cursor = next
		if cursor == 0 {
			return nil
		}
	}
}
