package sqlstore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/agentidp/agentidp/libs/sqlstore"
	"github.com/agentidp/agentidp/libs/testkit"
)

var drivers = []sqlstore.Driver{sqlstore.SQLite, sqlstore.Postgres}

// target opens fresh, isolated databases of one driver; open may be called
// several times to get separate handles on the same database.
type target struct {
	driver sqlstore.Driver
	open   func(t *testing.T) *sqlstore.DB
}

func newTarget(t *testing.T, d sqlstore.Driver) target {
	t.Helper()
	var cfg sqlstore.Config
	switch d {
	case sqlstore.SQLite:
		cfg = sqlstore.Config{Driver: d, URL: filepath.Join(t.TempDir(), "test.db")}
	case sqlstore.Postgres:
		url, schema := testkit.PostgresSchema(t)
		cfg = sqlstore.Config{Driver: d, URL: url, Schema: schema, MaxConns: 8}
	}
	return target{driver: d, open: func(t *testing.T) *sqlstore.DB {
		t.Helper()
		db, err := sqlstore.Open(context.Background(), cfg)
		if err != nil {
			t.Fatalf("open %s: %v", d, err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}}
}

// forEachDriver runs body once per driver (the conformance pattern).
func forEachDriver(t *testing.T, body func(t *testing.T, tg target)) {
	for _, d := range drivers {
		t.Run(string(d), func(t *testing.T) { body(t, newTarget(t, d)) })
	}
}

var testMigrations = fstest.MapFS{
	"postgres/0001_init.sql": {Data: []byte("CREATE TABLE items (id TEXT PRIMARY KEY, n INTEGER NOT NULL, at TIMESTAMPTZ);\nCREATE TABLE counter (k TEXT PRIMARY KEY, v INTEGER NOT NULL);")},
	"postgres/0002_more.sql": {Data: []byte("ALTER TABLE items ADD COLUMN note TEXT; INSERT INTO counter (k, v) VALUES ('runs', 0); UPDATE counter SET v = v + 1 WHERE k = 'runs';")},
	"postgres/README.txt":    {Data: []byte("ignored")},
	"sqlite/0001_init.sql":   {Data: []byte("CREATE TABLE items (id TEXT PRIMARY KEY, n INTEGER NOT NULL, at TIMESTAMP);\nCREATE TABLE counter (k TEXT PRIMARY KEY, v INTEGER NOT NULL);")},
	"sqlite/0002_more.sql":   {Data: []byte("ALTER TABLE items ADD COLUMN note TEXT; INSERT INTO counter (k, v) VALUES ('runs', 0); UPDATE counter SET v = v + 1 WHERE k = 'runs';")},
}

func migrated(t *testing.T, tg target) *sqlstore.DB {
	t.Helper()
	db := tg.open(t)
	if err := db.Migrate(context.Background(), testMigrations); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestMigrate(t *testing.T) {
	forEachDriver(t, func(t *testing.T, tg target) {
		ctx := context.Background()
		db := tg.open(t)
		if v, err := db.AppliedMigrations(ctx); err != nil || len(v) != 0 {
			t.Fatalf("before: %v %v", v, err)
		}
		for i := 0; i < 3; i++ {
			if err := db.Migrate(ctx, testMigrations); err != nil {
				t.Fatalf("run %d: %v", i, err)
			}
		}
		v, err := db.AppliedMigrations(ctx)
		if err != nil || len(v) != 2 || v[0] != "0001_init" || v[1] != "0002_more" {
			t.Fatalf("applied = %v, %v", v, err)
		}
		var runs int
		if err := db.QueryRowContext(ctx, "SELECT v FROM counter WHERE k = ?", "runs").Scan(&runs); err != nil || runs != 1 {
			t.Fatalf("runs = %d, %v", runs, err)
		}
		// A failing migration is rolled back and reported; earlier ones stay.
		bad := fstest.MapFS{}
		for k, f := range testMigrations {
			bad[k] = f
		}
		bad[string(tg.driver)+"/0003_bad.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE good (x INTEGER); SELECT * FROM no_such_table;")}
		if err := db.Migrate(ctx, bad); err == nil {
			t.Fatal("bad migration succeeded")
		}
		if v, _ := db.AppliedMigrations(ctx); len(v) != 2 {
			t.Fatalf("applied after failure = %v", v)
		}
		if _, err := db.ExecContext(ctx, "SELECT * FROM good"); err == nil {
			t.Fatal("failed migration not rolled back")
		}
		if err := db.Migrate(ctx, fstest.MapFS{}); err == nil {
			t.Fatal("missing driver dir should be an error")
		}
	})
}

func TestMigrateConcurrentPostgres(t *testing.T) {
	tg := newTarget(t, sqlstore.Postgres)
	dbs := make([]*sqlstore.DB, 4)
	for i := range dbs {
		dbs[i] = tg.open(t)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(dbs))
	for i, db := range dbs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = db.Migrate(context.Background(), testMigrations)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var runs int
	if err := dbs[0].QueryRowContext(context.Background(), "SELECT v FROM counter WHERE k = 'runs'").Scan(&runs); err != nil || runs != 1 {
		t.Fatalf("runs = %d, %v", runs, err)
	}
	if v, _ := dbs[0].AppliedMigrations(context.Background()); len(v) != 2 {
		t.Fatalf("applied = %v", v)
	}
}

func TestRebind(t *testing.T) {
	cases := []struct{ in, pg string }{
		{"SELECT 1", "SELECT 1"},
		{"SELECT * FROM t WHERE a = ? AND b = ?", "SELECT * FROM t WHERE a = $1 AND b = $2"},
		{"INSERT INTO t VALUES (?,?,?)", "INSERT INTO t VALUES ($1,$2,$3)"},
		{"SELECT '?' , ?", "SELECT '?' , $1"},
		{"SELECT 'it''s ?', ? FROM t", "SELECT 'it''s ?', $1 FROM t"},
		{`SELECT "we?ird" FROM t WHERE x = ?`, `SELECT "we?ird" FROM t WHERE x = $1`},
		{"SELECT ? -- why?\n, ?", "SELECT $1 -- why?\n, $2"},
		{"SELECT /* ? */ ?", "SELECT /* ? */ $1"},
		{"SELECT 'unterminated ?", "SELECT 'unterminated ?"},
		{"?", "$1"},
		{"a=?,b=?,c=?,d=?,e=?,f=?,g=?,h=?,i=?,j=?", "a=$1,b=$2,c=$3,d=$4,e=$5,f=$6,g=$7,h=$8,i=$9,j=$10"},
	}
	for _, c := range cases {
		if got := sqlstore.Rebind(sqlstore.Postgres, c.in); got != c.pg {
			t.Errorf("Rebind(postgres, %q) = %q, want %q", c.in, got, c.pg)
		}
		if got := sqlstore.Rebind(sqlstore.SQLite, c.in); got != c.in {
			t.Errorf("Rebind(sqlite, %q) = %q, want unchanged", c.in, got)
		}
	}
}

func TestUniqueViolation(t *testing.T) {
	forEachDriver(t, func(t *testing.T, tg target) {
		ctx := context.Background()
		db := migrated(t, tg)
		if _, err := db.ExecContext(ctx, "INSERT INTO items (id, n) VALUES (?, ?)", "a", 1); err != nil {
			t.Fatal(err)
		}
		_, err := db.ExecContext(ctx, "INSERT INTO items (id, n) VALUES (?, ?)", "a", 2)
		if !sqlstore.IsUniqueViolation(err) {
			t.Fatalf("want unique violation, got %v", err)
		}
		if !sqlstore.IsUniqueViolation(errors.Join(errors.New("wrapped"), err)) {
			t.Fatal("wrapped unique violation not recognised")
		}
		_, err = db.ExecContext(ctx, "INSERT INTO items (id, n) VALUES (?, ?)", "b", nil)
		if err == nil || sqlstore.IsUniqueViolation(err) {
			t.Fatalf("NOT NULL violation misclassified: %v", err)
		}
		if sqlstore.IsUniqueViolation(nil) {
			t.Fatal("nil is not a violation")
		}
	})
}

func TestTimeRoundTrip(t *testing.T) {
	forEachDriver(t, func(t *testing.T, tg target) {
		ctx := context.Background()
		db := migrated(t, tg)
		berlin := time.FixedZone("CEST", 2*3600)
		in := []time.Time{
			time.Date(2026, 3, 4, 5, 6, 7, 123456000, berlin),
			time.Date(2026, 3, 4, 3, 6, 7, 0, time.UTC),
			time.Now().Truncate(time.Microsecond),
		}
		for i, tm := range in {
			if _, err := db.ExecContext(ctx, "INSERT INTO items (id, n, at) VALUES (?, ?, ?)", string(rune('a'+i)), i, tm); err != nil {
				t.Fatal(err)
			}
		}
		for i, tm := range in {
			var got time.Time
			if err := db.QueryRowContext(ctx, "SELECT at FROM items WHERE id = ?", string(rune('a'+i))).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tm) || got.Location() != time.UTC {
				t.Errorf("%d: got %v (%v), want %v in UTC", i, got, got.Location(), tm)
			}
		}
		// Comparison and ordering in SQL follow the instants
		// (a = 03:06:07.123456Z, b = 03:06:07Z, c = now).
		var c int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM items WHERE at > ?", in[1]).Scan(&c); err != nil || c != 2 {
			t.Fatalf("count(at > b) = %d, %v", c, err)
		}
		var ids []string
		rows, err := db.QueryContext(ctx, "SELECT id FROM items ORDER BY at")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id string
			rows.Scan(&id)
			ids = append(ids, id)
		}
		rows.Close()
		if len(ids) != 3 || ids[0] != "b" || ids[1] != "a" || ids[2] != "c" {
			t.Fatalf("order = %v", ids)
		}
		var null *time.Time
		if err := db.QueryRowContext(ctx, "SELECT at FROM items WHERE at IS NULL UNION ALL SELECT NULL").Scan(&null); err != nil || null != nil {
			t.Fatalf("null time: %v %v", null, err)
		}
	})
}

func TestInTx(t *testing.T) {
	forEachDriver(t, func(t *testing.T, tg target) {
		ctx := context.Background()
		db := migrated(t, tg)
		boom := errors.New("boom")
		err := db.InTx(ctx, func(tx *sqlstore.Tx) error {
			if _, err := tx.ExecContext(ctx, "INSERT INTO items (id, n) VALUES (?, ?)", "x", 1); err != nil {
				return err
			}
			var n int
			if err := tx.QueryRowContext(ctx, "SELECT n FROM items WHERE id = ?", "x").Scan(&n); err != nil || n != 1 {
				t.Errorf("read own write: %d %v", n, err)
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Error("panic swallowed")
				}
			}()
			_ = db.InTx(ctx, func(tx *sqlstore.Tx) error {
				tx.ExecContext(ctx, "INSERT INTO items (id, n) VALUES (?, ?)", "p", 1)
				panic("oops")
			})
		}()
		var c int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM items").Scan(&c); err != nil || c != 0 {
			t.Fatalf("rolled back rows visible: %d %v", c, err)
		}
		if err := db.InTx(ctx, func(tx *sqlstore.Tx) error {
			_, err := tx.ExecContext(ctx, "INSERT INTO items (id, n) VALUES (?, ?)", "y", 2)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM items").Scan(&c); err != nil || c != 1 {
			t.Fatalf("committed row: %d %v", c, err)
		}
	})
}

// Concurrent read-modify-write transactions must neither fail (SQLITE_BUSY)
// nor lose updates.
func TestConcurrentTx(t *testing.T) {
	forEachDriver(t, func(t *testing.T, tg target) {
		ctx := context.Background()
		db := migrated(t, tg)
		const workers, per = 8, 25
		var wg sync.WaitGroup
		errs := make(chan error, workers*per)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < per; i++ {
					err := db.InTx(ctx, func(tx *sqlstore.Tx) error {
						// Row lock on postgres; single writer on sqlite.
						q := "SELECT v FROM counter WHERE k = 'runs'"
						if tg.driver == sqlstore.Postgres {
							q += " FOR UPDATE"
						}
						var v int
						if err := tx.QueryRowContext(ctx, q).Scan(&v); err != nil {
							return err
						}
						_, err := tx.ExecContext(ctx, "UPDATE counter SET v = ? WHERE k = 'runs'", v+1)
						return err
					})
					if err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		var v int
		db.QueryRowContext(ctx, "SELECT v FROM counter WHERE k = 'runs'").Scan(&v)
		if v != 1+workers*per {
			t.Fatalf("v = %d, want %d", v, 1+workers*per)
		}
	})
}

func TestOpenErrors(t *testing.T) {
	if _, err := sqlstore.Open(context.Background(), sqlstore.Config{Driver: "oracle"}); err == nil {
		t.Fatal("unknown driver accepted")
	}
	if _, err := sqlstore.Open(context.Background(), sqlstore.Config{Driver: sqlstore.SQLite}); err == nil {
		t.Fatal("empty sqlite path accepted")
	}
	db, err := sqlstore.Open(context.Background(), sqlstore.Config{Driver: sqlstore.SQLite, URL: filepath.Join(t.TempDir(), "x.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.Pool() != nil || db.Driver() != sqlstore.SQLite || db.Ping(context.Background()) != nil {
		t.Fatal("sqlite accessors")
	}
	var fk int
	db.QueryRowContext(context.Background(), "PRAGMA foreign_keys").Scan(&fk)
	var jm string
	db.QueryRowContext(context.Background(), "PRAGMA journal_mode").Scan(&jm)
	if fk != 1 || jm != "wal" {
		t.Fatalf("pragmas: foreign_keys=%d journal_mode=%s", fk, jm)
	}
}

// TestSQLitePathWithURICharacters: a database path with '#' or '%' (as
// t.Run names with spaces or '#' produce) opens that very file; SQLite
// would otherwise end the path at '#' and let two databases share one file.
func TestSQLitePathWithURICharacters(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := context.Background()
	for _, name := range []string{"a#1", "a#2", "b%41"} {
		path := filepath.Join(dir, name, "x.db")
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		db, err := sqlstore.Open(ctx, sqlstore.Config{Driver: sqlstore.SQLite, URL: path})
		if err != nil {
			t.Fatalf("Open(%q) = %v", path, err)
		}
		t.Cleanup(func() { db.Close() })
		if _, err := db.ExecContext(ctx, "CREATE TABLE t (v TEXT)"); err != nil {
			t.Fatalf("Got(create table in %q) = %v; want a fresh database each", path, err)
		}
		if _, err := os.Stat(path); err != nil {
			t.Errorf("Got(stat %q) = %v; want the file there", path, err)
		}
	}
}
