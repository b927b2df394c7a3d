package testkit

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

func TestPostgresSchema(t *testing.T) {
	var url, schema string
	t.Run("inner", func(t *testing.T) {
		url, schema = PostgresSchema(t)
		conn, err := pgx.Connect(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "CREATE TABLE "+schema+".x (id int)"); err != nil {
			t.Fatal(err)
		}
	})
	if schema == "" {
		t.Skip("postgres unavailable")
	}
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM information_schema.schemata WHERE schema_name=$1", schema).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("schema %s not dropped", schema)
	}
}

func TestRedisPrefix(t *testing.T) {
	var url, prefix string
	t.Run("inner", func(t *testing.T) {
		prefix = RedisPrefix(t)
		url = RedisURL(t)
		opts, _ := redis.ParseURL(url)
		c := redis.NewClient(opts)
		defer c.Close()
		for _, k := range []string{"a", "b", "c"} {
			if err := c.Set(context.Background(), prefix+k, "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
	})
	if prefix == "" {
		t.Skip("redis unavailable")
	}
	opts, _ := redis.ParseURL(url)
	c := redis.NewClient(opts)
	defer c.Close()
	keys, err := c.Keys(context.Background(), prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Fatalf("keys left: %v", keys)
	}
}
